"""train_obama.py, the training command: what it writes, its options (validation, metrics, best
and kept checkpoints, optimizers, schedules, backends), resuming, and what it does with bad input
and faults. Runs "as a user" start the command in a fresh process; the others call main()."""
import math
import os
import re
import signal
import subprocess
import time

import mxnet as mx
import numpy as np
import pytest

import callbacks
import checkpoint
import options
import train_obama
from reference import held_out_perplexity
from conftest import (TINY, TINY_BATCHES, assert_one_line_error, assert_same, error_lines, needs_bf16, params,
                      run_command, start_command)


def train(*argv):
    return train_obama.main(TINY + list(argv))


def run_script(*argv, **popen):
    return start_command("train_obama.py", *TINY, *argv, **popen)


def wait_for(proc, pattern, timeout=120):
    """Reads the process's log until a line matches; returns all lines read."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    proc.kill()
    raise AssertionError("no line matched %r:\n%s" % (pattern, "".join(lines)))


read_metrics = checkpoint.read_metrics


def test_training_writes_a_checkpoint_in_the_tutorial_format(trained):
    prefix, result = trained
    assert "bucket of len 129 : 285 samples" in result.stderr  # 15 of 300 lines held out
    assert re.search(r"Epoch\[0\] Batch \[0-5\]\tSpeed: [\d.]+ samples/sec\tperplexity=[\d.]+\tbits-per-char=", result.stderr)
    assert "Device: using the CPU" in result.stderr
    assert 'Saved checkpoint to "%s-0001.params"' % prefix in result.stderr
    assert "deprecated" not in result.stderr
    symbol, arg_params, _ = mx.model.load_checkpoint(prefix, 1)
    assert "softmax_label" in symbol.list_arguments()
    assert set(arg_params) == {"embed_weight", "l0_i2h_weight", "l0_i2h_bias", "l0_h2h_weight", "l0_h2h_bias",
                               "cls_weight", "cls_bias"}
    vocab = checkpoint.load_vocab(prefix)
    assert len(vocab) + 1 == arg_params["cls_weight"].shape[0]


def test_training_lowers_the_perplexity_in_process(small_corpus, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    with caplog.at_level("INFO"):
        assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "3", "--dropout", "0",
                     "--learning-rate", "0.1", "--momentum", "0.9") == 0
    perplexities = [float(x) for x in re.findall(r"Train-perplexity=([\d.]+)", caplog.text)]
    assert len(perplexities) == 3 and perplexities[2] < perplexities[0]
    assert checkpoint.epochs(prefix) == [1, 2, 3]


def test_train_bad_inputs_are_one_clear_line(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    assert_one_line_error(run_command("train_obama.py", "--data", str(tmp_path / "nope.txt"), "--prefix", prefix),
                          "corpus file not found")
    assert_one_line_error(run_command("train_obama.py", "--bogus"), "unrecognized arguments: --bogus")
    assert_one_line_error(run_command("train_obama.py", "--num-hidden", "0"), "must be at least 1")
    assert_one_line_error(run_command("train_obama.py", "--data", small_corpus, "--seq-len", "100", "--prefix", prefix),
                          r"line 1 is 129 characters long, more than the largest bucket \(100\)")
    assert_one_line_error(run_command("train_obama.py", "--data", small_corpus, "--gpus", "0", "--prefix", prefix),
                          "cannot use GPU 0")
    assert_one_line_error(run_command("train_obama.py", "--bf16"), "--bf16 runs the fused backend's LSTM on oneDNN 3")
    assert not os.path.exists(tmp_path / "m-0001.params")


def test_defaults_are_the_tutorials():
    args = options.parse_args([])
    assert (args.seq_len, args.num_embed, args.num_lstm_layer, args.num_hidden, args.batch_size) == (129, 256, 3, 512, 32)
    assert (args.dropout, args.num_epoch, args.learning_rate, args.momentum, args.wd) == (0.2, 1, 0.01, 0.0, 0.0001)
    assert (args.optimizer, args.rnn_backend, args.kv_store, args.log_every) == ("sgd", "unrolled", "local", 20)
    assert args.prefix.endswith(os.path.join("checkpoints", "obama"))


@pytest.mark.parametrize("optimizer, schedule, rates, bare, dropout", [
    ("sgd", ["--momentum", "0.9", "--lr-schedule", "step", "--lr-step-epochs", "1", "--lr-factor", "0.5"], [0.01, 0.005],
     False, "0"),
    ("adam", [], [0.01, 0.01], False, "0"),
    # a bare --resume: the corpus, the optimizer, its rate and the dropout are the run's own, not the defaults
    ("adam", [], [0.01, 0.01], True, "0"),
    # the resumed epoch draws the dropout masks the uninterrupted run draws there, not the first epoch's again
    ("adam", [], [0.01, 0.01], False, "0.5"),
    ("adam", ["--rnn-backend", "fused"], [0.01, 0.01], False, "0.5"),
    ("adam", ["--embed-dropout", "0.5"], [0.01, 0.01], False, "0"),  # the only dropout
])
def test_resume_gives_the_same_parameters_as_one_run(small_corpus, tmp_path, optimizer, schedule, rates, bare, dropout):
    common = ["--data", small_corpus, "--dropout", dropout, "--optimizer", optimizer, "--learning-rate", "0.01"] + schedule
    one, two = str(tmp_path / "one" / "m"), str(tmp_path / "two" / "m")
    assert train(*common, "--prefix", one, "--num-epoch", "2") == 0
    assert train(*common, "--prefix", two, "--num-epoch", "1") == 0
    assert train(*([] if bare else common), "--prefix", two, "--num-epoch", "2", "--resume") == 0
    assert_same(params(one, 2), params(two, 2))
    assert np.abs(params(two, 2)["cls_weight"] - params(two, 1)["cls_weight"]).max() > 1e-3
    assert [float(r["learning_rate"]) for r in read_metrics(two)] == rates
    # the same held-out text scored at every evaluation, whichever process makes it
    assert [r["val_perplexity"] for r in read_metrics(two)] == [r["val_perplexity"] for r in read_metrics(one)]
    # nothing left to do
    assert train(*common, "--prefix", two, "--num-epoch", "2", "--resume") == 0
    assert checkpoint.epochs(two) == [1, 2]


def test_validation_metrics_and_the_best_epoch(small_corpus, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    with caplog.at_level("INFO"):
        assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "3",
                     "--optimizer", "adam", "--learning-rate", "0.01", "--clip-gradient", "5") == 0
    # 300 lines: the last 15 are held out
    assert "bucket of len 129 : 285 samples" in caplog.text and "bucket of len 129 : 15 samples" in caplog.text
    assert len(re.findall(r"Validation-perplexity=[\d.]+ Validation-bits-per-char=[\d.]+", caplog.text)) == 3
    assert re.search(r"Epoch\[0\] 5/%d batches \(14%%\), about \d\d:\d\d:\d\d left" % TINY_BATCHES, caplog.text)
    rows = read_metrics(prefix)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == checkpoint.METRICS_FIELDS
    for r in rows:
        assert float(r["val_bits_per_char"]) == pytest.approx(np.log2(float(r["val_perplexity"])))
        assert float(r["samples_per_sec"]) > 0 and float(r["learning_rate"]) == 0.01
        assert r["optimizer"] == "adam wd=0.0001 clip_gradient=5"
    losses = [np.log(float(r["val_perplexity"])) for r in rows]
    best_epoch = 1 + int(np.argmin(losses))
    record = checkpoint.load_run(prefix)
    assert record["best_epoch"] == best_epoch and record["best_val_loss"] == pytest.approx(min(losses), rel=1e-6)
    assert (record["epoch"], record["batch"], record["backend"]) == (3, 0, "unrolled")
    assert record["model"] == dict(num_lstm_layer=1, num_hidden=16, num_embed=8,
                                   num_label=len(checkpoint.load_vocab(prefix)) + 1)
    best = mx.nd.load(prefix + "-best.params")
    assert_same({k[4:]: v.asnumpy() for k, v in best.items()}, params(prefix, best_epoch), tol=0)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    generated = run_command("generate.py", "The", "--prefix", prefix, "--epoch", "best", "--length", "10")
    assert generated.returncode == 0 and generated.stdout.startswith("The"), generated.stderr
    assert "-best.params" in generated.stderr


def test_keep_leaves_the_newest_epochs(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "3", "--keep", "2") == 0
    assert checkpoint.epochs(prefix) == [2, 3]
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".states")) == ["m-0002-unrolled.states",
                                                                               "m-0003-unrolled.states"]


def test_val_frac_zero_is_the_tutorial(small_corpus, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    with caplog.at_level("INFO"):
        assert train("--data", small_corpus, "--prefix", prefix, "--val-frac", "0") == 0
    assert "bucket of len 129 : 300 samples" in caplog.text and "Validation" not in caplog.text
    assert read_metrics(prefix)[0]["val_perplexity"] == ""
    assert not os.path.exists(prefix + "-best.params")


def test_anneal_when_validation_stops_improving(small_corpus, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    with caplog.at_level("INFO"):  # a rate this high makes the validation loss go up at once
        assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "3", "--learning-rate", "3",
                     "--lr-schedule", "plateau", "--lr-factor", "0.25", "--clip-gradient", "1") == 0
    rates = [float(r["learning_rate"]) for r in read_metrics(prefix)]
    vals = [float(r["val_perplexity"]) for r in read_metrics(prefix)]
    # each epoch's validation loss, against the best before it, decides the next epoch's rate
    expected = [3.0]
    for i in range(3):
        expected.append(expected[-1] * (1 if vals[i] < min(vals[:i], default=np.inf) else 0.25))
    assert rates == pytest.approx(expected[:3])
    assert caplog.text.count("did not improve") == sum(later < earlier for earlier, later in zip(expected, expected[1:]))


def test_divergence_stops_with_a_clear_message(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix, "--learning-rate", "1e30", "--momentum", "0.9") == 1
    assert "became NaN or infinite at epoch 1, batch" in capsys.readouterr().err
    assert checkpoint.epochs(prefix) == []


def whole_and_stopped(common, tmp_path):
    """Trains (two epochs) once uninterrupted and once stopped by SIGTERM early in the second;
    returns the two prefixes and what the stopped run printed."""
    whole, stopped = str(tmp_path / "whole" / "m"), str(tmp_path / "stopped" / "m")
    assert run_script(*common, "--prefix", whole).wait(timeout=300) == 0
    proc = run_script(*common, "--prefix", stopped)
    wait_for(proc, r"Epoch\[1\] Batch \[0-5\]")
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    return whole, stopped, out


def test_sigterm_writes_a_checkpoint_and_resume_carries_on_exactly(small_corpus, tmp_path):
    common = ["--data", small_corpus, "--dropout", "0", "--momentum", "0.9", "--num-epoch", "2"]
    whole, stopped, out = whole_and_stopped(common, tmp_path)
    assert "stopped by signal 15 in epoch 2 after batch" in out and "--resume" in out
    assert "Traceback" not in out
    assert checkpoint.load_run(stopped)["epoch"] == 1

    first_stop = checkpoint.load_run(stopped)["batch"]

    # stopped a second time inside the same, resumed epoch: the count of batches done goes on
    again = run_script(*common, "--prefix", stopped, "--resume")
    lines = wait_for(again, r"Epoch\[1\] \d+/%d batches" % TINY_BATCHES)
    assert re.search(r"Epoch\[1\] %d/%d batches" % (first_stop + 5, TINY_BATCHES), lines[-1]), lines[-1]
    again.send_signal(signal.SIGINT)
    out = again.communicate(timeout=120)[0]
    assert again.returncode == 128 + signal.SIGINT, out
    assert checkpoint.load_run(stopped)["batch"] >= first_stop + 5

    resumed = run_script(*common, "--prefix", stopped, "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert re.search(r"Resuming at epoch 2, after batch \d+", out)
    assert_same(params(whole, 2), params(stopped, 2))
    assert checkpoint.load_run(stopped)["batch"] == 0 and not [f for f in os.listdir(tmp_path / "stopped")
                                                                if "partial" in f]


def cosine_rate(update, warmup, total, base, final):
    """MXNet's CosineScheduler, written out: linear warm-up from 0, then a half cosine to `final`."""
    if update < warmup:
        return base * update / warmup
    return final + (base - final) * (1 + math.cos(math.pi * (update - warmup) / (total - warmup))) / 2


def test_cosine_schedule_after_a_warm_up_and_its_exact_resume(small_corpus, tmp_path):
    common = ["--data", small_corpus, "--dropout", "0", "--optimizer", "adam", "--wd", "0", "--num-epoch", "2",
              "--learning-rate", "0.01", "--lr-schedule", "cosine", "--lr-final", "0.001", "--warmup-epochs", "0.5"]
    whole, stopped, _ = whole_and_stopped(common, tmp_path)
    warmup = round(0.5 * TINY_BATCHES)
    expected = [cosine_rate(e * TINY_BATCHES, warmup, 2 * TINY_BATCHES, 0.01, 0.001) for e in (1, 2)]
    assert expected[0] < 0.01 and expected[1] == pytest.approx(0.001)
    assert [float(r["learning_rate"]) for r in read_metrics(whole)] == pytest.approx(expected, rel=1e-6)

    resumed = run_script(*common, "--prefix", stopped, "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert_same(params(whole, 2), params(stopped, 2))
    assert [float(r["learning_rate"]) for r in read_metrics(stopped)] == pytest.approx(expected, rel=1e-6)


def test_an_extended_run_keeps_its_cosine_unless_a_new_length_is_given(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    common = ["--data", small_corpus, "--prefix", prefix, "--optimizer", "adam", "--wd", "0"]
    assert train(*common, "--learning-rate", "0.005", "--lr-schedule", "cosine", "--lr-final", "0.001") == 0
    assert train(*common, "--resume", "--num-epoch", "2") == 0  # the curve ended at epoch 1: at --lr-final after it
    recorded = checkpoint.load_run(prefix)["options"]
    assert (recorded["lr_schedule"], recorded["lr_cosine_epochs"], recorded["lr_final"], recorded["learning_rate"]) == (
        "cosine", 1, 0.001, 0.005)
    # a new length, from the run's own 0.005 (not the default rate), at the step the run reached
    assert train(*common, "--resume", "--num-epoch", "4", "--lr-cosine-epochs", "4") == 0
    n = TINY_BATCHES
    assert [float(r["learning_rate"]) for r in read_metrics(prefix)] == pytest.approx(
        [0.001, 0.001, cosine_rate(3 * n, 0, 4 * n, 0.005, 0.001), 0.001], rel=1e-6)


def test_resume_refuses_a_final_rate_above_the_runs_own(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    common = ["--data", small_corpus, "--prefix", prefix, "--optimizer", "adam", "--wd", "0"]
    assert train(*common, "--learning-rate", "0.005", "--lr-schedule", "cosine") == 0
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    # 0.008 is below the option's default rate (0.01) but above the run's 0.005: the curve would rise
    with pytest.raises(SystemExit):
        train(*common, "--resume", "--num-epoch", "2", "--lr-final", "0.008")
    err = capsys.readouterr().err
    assert "--lr-final (0.008) must be below --learning-rate (0.005) (the options not given again are the run's own" \
        in err and "Traceback" not in err
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before
    # 0.02 is above the default but below a run's 0.03: allowed
    other = str(tmp_path / "n")
    assert train(*common[:2], "--prefix", other, "--optimizer", "adam", "--learning-rate", "0.03",
                 "--lr-schedule", "cosine") == 0
    assert train(*common[:2], "--prefix", other, "--resume", "--num-epoch", "2", "--lr-final", "0.02") == 0
    assert float(read_metrics(other)[-1]["learning_rate"]) == pytest.approx(0.02, rel=1e-6)


@pytest.mark.parametrize("devices", [1, 2])
def test_global_norm_clip_scales_the_whole_step_to_the_given_norm(small_corpus, tmp_path, caplog, devices):
    # one batch of 8 lines (129 steps), plain SGD: the step is -lr / 8 * factor * (the gradient summed over the
    # batch's 8 * 129 characters); clipped to norm c per character, the step's global norm is lr * c * 129
    corpus = tmp_path / "ten.txt"
    with open(small_corpus, encoding="utf-8") as f:
        corpus.write_text("".join(f.readlines()[:10]), encoding="utf-8")
    contexts = [mx.cpu(i) for i in range(devices)]

    def one_batch(name, *clip):
        args = options.parse_args(TINY + ["--data", str(corpus), "--val-frac", "0.2", "--prefix", str(tmp_path / name),
                                              "--optimizer", "sgd", "--momentum", "0", "--wd", "0", "--dropout", "0",
                                              "--learning-rate", "0.1", *clip])
        train_obama.train(args, contexts)
        return params(str(tmp_path / name), 1)
    with caplog.at_level("INFO"):
        small, smaller = one_batch("a", "--clip-global-norm", "0.002"), one_batch("b", "--clip-global-norm", "0.001")
    assert "clipped at 0.001 in 1 of 1 batches" in caplog.text
    apart = math.sqrt(sum(((small[k] - smaller[k]).astype(np.float64) ** 2).sum() for k in small))
    assert apart == pytest.approx(0.1 * 0.001 * 129, rel=1e-3)
    # a norm the gradient stays under changes nothing
    assert_same(one_batch("c"), one_batch("d", "--clip-global-norm", "1e6"), tol=0)


def test_warm_up_alone_ramps_to_a_constant_rate(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "2", "--learning-rate", "0.01",
                 "--warmup-epochs", "1.5") == 0
    # epoch 1 ends two thirds of the way up the ramp, epoch 2 past it
    assert [float(r["learning_rate"]) for r in read_metrics(prefix)] == pytest.approx(
        [0.01 * TINY_BATCHES / round(1.5 * TINY_BATCHES), 0.01], rel=1e-6)


def test_kill_9_leaves_earlier_checkpoints_loadable(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    proc = run_script("--data", small_corpus, "--prefix", prefix, "--num-epoch", "50")
    wait_for(proc, r'Saved checkpoint to ".*-0002.params"')
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    for epoch in checkpoint.epochs(prefix):
        arg_params, _ = checkpoint.load_params(prefix, epoch)
        checkpoint.model_shape(arg_params)
    assert len(checkpoint.epochs(prefix)) >= 2
    assert checkpoint.load_vocab(prefix)


def test_the_other_backend_resumes_a_checkpoint_whose_optimizer_holds_no_state(small_corpus, tmp_path, caplog, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "1") == 0  # plain SGD: no state
    with caplog.at_level("INFO"):
        assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "2", "--resume",
                     "--rnn-backend", "fused") == 0
    assert "optimizer starts afresh" not in caplog.text
    assert set(params(prefix, 2)) == set(params(prefix, 1))
    losses = [float(r["val_perplexity"]) for r in read_metrics(prefix)]
    assert losses[1] < losses[0]
    # Adam's state fits only the backend that made it: refused in one line
    adam = str(tmp_path / "adam")
    assert train("--data", small_corpus, "--prefix", adam, "--optimizer", "adam") == 0
    assert train("--prefix", adam, "--resume", "--num-epoch", "2", "--rnn-backend", "fused") == 2
    assert "fits the unrolled backend's parameters, not the fused backend's: carry it on with --rnn-backend " \
        "unrolled" in error_lines(capsys.readouterr().err)[0]


def test_a_checkpoint_of_either_lstm_kernel_resumes_on_the_other_and_steps_alike(small_corpus, tmp_path,
                                                                                 monkeypatch):
    """The fused backend's LSTM runs on mx.sym.RNN or on oneDNN 3 (device.lstm_kernel): an epoch of Adam
    written on mx.sym.RNN and resumed on oneDNN ends where a run on mx.sym.RNN throughout does, and the
    checkpoint steps to the numpy LSTM's probabilities in LSTMInferenceModel on either kernel."""
    import device
    import reference
    from rnn_model import load_inference_model
    fused = ["--data", small_corpus, "--rnn-backend", "fused", "--optimizer", "adam", "--num-epoch"]
    straight, switched = str(tmp_path / "straight"), str(tmp_path / "switched")
    onednn_or_not = device.lstm_kernel
    monkeypatch.setattr(device, "lstm_kernel", lambda contexts: "mxnet")
    assert train(*fused, "2", "--prefix", straight) == 0
    assert train(*fused, "1", "--prefix", switched) == 0
    monkeypatch.setattr(device, "lstm_kernel", onednn_or_not)
    assert device.lstm_kernel([mx.cpu()]) == "onednn"
    assert train("--prefix", switched, "--resume", "--num-epoch", "2") == 0
    assert_same(params(switched, 2), params(straight, 2), tol=1e-4)
    weights = params(switched, 2)
    for kernel in ("mxnet", "onednn"):
        model, _ = load_inference_model(switched, 2, kernel=kernel)
        states = reference.zero_states(1, 1, 16)
        for position, char in enumerate([3, 1, 4, 1, 5]):
            np.testing.assert_allclose(model.forward([char], new_seq=position == 0),
                                       reference.step(weights, [char], states), rtol=1e-4, atol=1e-6)


@needs_bf16
def test_bf16_trains_to_the_float32_loss_and_checkpoints_stay_float32(small_corpus, tmp_path, capsys):
    common = ["--data", small_corpus, "--optimizer", "adam", "--learning-rate", "0.01", "--num-epoch", "2",
              "--rnn-backend", "fused"]
    assert train(*common, "--prefix", str(tmp_path / "fp32" / "m")) == 0
    assert train(*common, "--prefix", str(tmp_path / "bf16" / "m"), "--bf16") == 0
    fp32, bf16 = read_metrics(str(tmp_path / "fp32" / "m")), read_metrics(str(tmp_path / "bf16" / "m"))
    assert float(bf16[1]["val_perplexity"]) < float(bf16[0]["val_perplexity"])
    assert abs(float(bf16[1]["val_bits_per_char"]) / float(fp32[1]["val_bits_per_char"]) - 1) < 0.01
    trained = params(str(tmp_path / "bf16" / "m"), 2)
    assert set(trained) == set(params(str(tmp_path / "fp32" / "m"), 2))
    assert all(v.dtype == np.float32 for v in trained.values())
    with pytest.raises(SystemExit):
        train(*common, "--prefix", str(tmp_path / "x"), "--bf16", "--rnn-backend", "unrolled")
    assert "--bf16 runs the fused backend's LSTM on oneDNN 3 in bfloat16" in capsys.readouterr().err


def test_resume_mismatches_are_clear_errors(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "2", "--num-hidden", "32") == 2
    assert "give the same --num-lstm-layer" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text("xyz\n" * 50, encoding="utf-8")
    assert train("--data", str(other), "--prefix", prefix, "--resume", "--num-epoch", "2") == 2
    assert "vocabulary" in capsys.readouterr().err
    assert train("--data", small_corpus, "--prefix", str(tmp_path / "none"), "--resume") == 2


def test_tinyshakespeare_stateful_with_its_own_vocabulary(tmp_path, caplog):
    import bucket_io
    source = os.path.join(bucket_io.DEFAULT_MIRROR, "tinyshakespeare.txt")
    if not os.path.exists(source):
        pytest.skip("tinyshakespeare.txt is not in the mirror")
    corpus = tmp_path / "shakespeare.txt"
    corpus.write_text(open(source, encoding="utf-8").read()[:40000], encoding="utf-8")
    prefix = str(tmp_path / "m")
    with caplog.at_level("INFO"):
        assert train("--data", str(corpus), "--prefix", prefix, "--stateful", "--seq-len", "100") == 0
    # the last 5% of the lines held out (its newlines kept: it is not hard-wrapped), the rest in 8
    # streams of 100 steps a batch, each batch's labels one character on
    lines = corpus.read_text(encoding="utf-8").split("\n")
    training = "\n".join(lines[:len(lines) - round(0.05 * len(lines))])
    assert "Epoch[0] 45/%d batches" % ((len(training) // 8 - 1) // 100) in caplog.text
    vocab = checkpoint.load_vocab(prefix)
    assert vocab == bucket_io.build_vocab(str(corpus)) and len(vocab) + 1 == params(prefix, 1)["cls_bias"].size


def test_a_fresh_run_never_overwrites_checkpoints_unasked(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix, "--num-epoch", "2") == 0
    before = open(checkpoint.params_path(prefix, 2), "rb").read()
    assert train("--data", small_corpus, "--prefix", prefix) == 2
    assert "already has checkpoints (epochs 1,2): add --resume" in capsys.readouterr().err
    assert open(checkpoint.params_path(prefix, 2), "rb").read() == before
    open(prefix + "-notes.txt", "w").write("mine")
    assert train("--data", small_corpus, "--prefix", prefix, "--overwrite", "--seed", "1") == 0
    assert checkpoint.epochs(prefix) == [1] and len(read_metrics(prefix)) == 1
    assert os.path.exists(prefix + "-notes.txt")


def test_a_failed_write_stops_training_and_keeps_the_earlier_epochs(small_corpus, tmp_path, monkeypatch, capsys):
    prefix = str(tmp_path / "m")
    common = ["--data", small_corpus, "--prefix", prefix]
    assert train(*common) == 0
    before = {name: open(tmp_path / name, "rb").read() for name in os.listdir(tmp_path)}

    def full_disk(path, data):  # MXNet's writer on a full disk: no error, a short file
        with open(path, "wb") as f:
            f.write(b"\x12\x01\x00\x00")
    monkeypatch.setattr(mx.nd, "save", full_disk)
    assert train(*common, "--resume", "--num-epoch", "2") == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "m-0002.params failed: the file does not read back as written" in errors[0]
    after = {name: open(tmp_path / name, "rb").read() for name in os.listdir(tmp_path)}
    assert after.pop("m-run.json") and before.pop("m-run.json")  # the record of the new run's options
    assert after == before  # no new epoch, no temporary file, nothing changed
    assert (checkpoint.load_run(prefix)["epoch"], checkpoint.load_run(prefix)["batch"]) == (1, 0)


def test_an_unwritable_prefix_is_one_line_before_training(small_corpus, tmp_path, capsys, caplog):
    (tmp_path / "file").write_text("a file, not a folder")
    with caplog.at_level("INFO"):
        assert train("--data", small_corpus, "--prefix", str(tmp_path / "file" / "m")) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "cannot write under --prefix" in errors[0]
    assert "Start training" not in caplog.text


def test_one_run_per_prefix_and_a_killed_runs_temporaries_go(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    first = run_script("--data", small_corpus, "--prefix", prefix, "--num-epoch", "50")
    try:
        wait_for(first, r'Saved checkpoint to ".*-0001.params"')
        assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "60") == 2
        errors = error_lines(capsys.readouterr().err)
        assert len(errors) == 1 and "another training run (process %d)" % first.pid in errors[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    done = checkpoint.epochs(prefix)[-1]
    stale = tmp_path / ("m-%04d.params.tmp%d" % (done + 1, first.pid))
    stale.write_bytes(b"half a file")
    assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", str(done + 1)) == 0
    assert not stale.exists()
    epochs = [int(r["epoch"]) for r in read_metrics(prefix)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == done + 1


def test_resume_follows_the_options_given_again_and_init_from_starts_another_run(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    common = ["--data", small_corpus, "--prefix", prefix]
    assert train(*common, "--learning-rate", "0.01", "--momentum", "0.5") == 0
    assert train(*common, "--resume", "--num-epoch", "2", "--learning-rate", "0.05") == 0
    recorded = checkpoint.load_run(prefix)["options"]  # given again: the run's from here on
    assert (recorded["optimizer"], recorded["learning_rate"], recorded["momentum"]) == ("sgd", 0.05, 0.5)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    # the state of one optimizer cannot carry another on: refused, and said how to change it
    assert train(*common, "--resume", "--num-epoch", "3", "--optimizer", "adam") == 2
    assert "the run's optimizer state is sgd's, so --optimizer adam cannot carry it on: to change the optimizer, start " \
        "a new run from this one with --init-from" in error_lines(capsys.readouterr().err)[0]
    # a new run from the best epoch's weights, its optimizer fresh; the source run's files are only read
    other = str(tmp_path / "n")
    assert train("--data", small_corpus, "--prefix", other, "--init-from", prefix, "--init-epoch", "best",
                 "--optimizer", "adam", "--learning-rate", "0.002", "--wd", "0") == 0
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    best = checkpoint.load_run(prefix)["best_epoch"]
    trained_on = params(other, 1)
    assert np.abs(trained_on["cls_weight"] - params(prefix, best)["cls_weight"]).max() < 0.1  # near its start
    fresh = str(tmp_path / "fresh")
    assert train("--data", small_corpus, "--prefix", fresh, "--optimizer", "adam", "--learning-rate", "0.002") == 0
    assert float(read_metrics(other)[0]["val_perplexity"]) < float(read_metrics(fresh)[0]["val_perplexity"])
    assert checkpoint.load_run(other)["options"]["init_from"] == prefix
    assert [r["optimizer"] for r in read_metrics(other)] == ["adam wd=0"]
    assert train(*common, "--resume", "--num-epoch", "3") == 0  # nothing given again: the run's own
    assert [float(r["learning_rate"]) for r in read_metrics(prefix)] == [0.01, 0.05, 0.05]


def test_init_from_refuses_another_model_or_vocabulary(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    assert train("--data", small_corpus, "--prefix", str(tmp_path / "n"), "--init-from", prefix,
                 "--num-hidden", "32") == 2
    assert "has 1 layers of 16 units over a 8-wide embedding; give the same --num-lstm-layer" in \
        error_lines(capsys.readouterr().err)[0]
    other = tmp_path / "other.txt"
    other.write_text("xyz\n" * 50, encoding="utf-8")
    assert train("--data", str(other), "--prefix", str(tmp_path / "n"), "--init-from", prefix) == 2
    assert "vocabulary" in error_lines(capsys.readouterr().err)[0]
    assert train("--data", small_corpus, "--prefix", str(tmp_path / "n"), "--init-from", prefix,
                 "--init-epoch", "7") == 2
    assert "checkpoint not found" in error_lines(capsys.readouterr().err)[0]
    assert not os.path.exists(tmp_path / "n-0001.params")


def test_ctrl_c_in_the_first_epoch_resumes_from_its_partial_checkpoint(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    common = ["--data", small_corpus, "--prefix", prefix, "--log-every", "5"]
    proc = run_script(*common)
    wait_for(proc, r"Epoch\[0\] Batch \[0-5\]")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "--resume" in out and "Traceback" not in out
    assert checkpoint.epochs(prefix) == []
    assert train(*common) == 2  # a fresh run would throw the stopped epoch away
    assert "a stopped first epoch" in capsys.readouterr().err
    assert train(*common, "--resume", "--batch-size", "4") == 2
    assert "resume it with the same --batch-size" in error_lines(capsys.readouterr().err)[0]
    assert train(*common, "--resume") == 0
    assert checkpoint.epochs(prefix) == [1] and checkpoint.load_run(prefix)["batch"] == 0


def test_a_truncated_optimizer_state_is_one_line(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    states = prefix + "-0001-unrolled.states"
    data = open(states, "rb").read()
    open(states, "wb").write(data[: len(data) // 2])
    assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "2") == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "is unreadable" in errors[0]


def test_the_vocabulary_is_checked_before_anything_is_written(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    os.remove(prefix + "-vocab.json")  # as the tutorial's checkpoints come
    other = tmp_path / "other.txt"
    other.write_text("xyz\n" * 50, encoding="utf-8")
    assert train("--data", str(other), "--prefix", prefix, "--resume", "--num-epoch", "2") == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "corpus has 4: give the corpus it was trained on with --data" in errors[0]
    assert not os.path.exists(prefix + "-vocab.json")
    assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "2") == 0
    assert checkpoint.epochs(prefix) == [1, 2]


@pytest.mark.parametrize("argv, message", [
    (["--learning-rate", "nan"], "--learning-rate: must be a finite number"),
    (["--learning-rate", "inf"], "--learning-rate: must be a finite number"),
    (["--learning-rate", "0"], "--learning-rate: must be positive"),
    (["--learning-rate", "1e300"], "--learning-rate: must be within float32's range"),  # MXNet's updates failed
    (["--momentum", "1e39"], "--momentum: must be within float32's range"),
    (["--wd", "1e300"], "--wd: must be within float32's range"),
    (["--wd", "nan"], "--wd: must be a finite number"),
    (["--momentum", "-0.9"], "--momentum: must not be negative"),
    (["--clip-gradient", "-5"], "--clip-gradient: must be positive"),
    (["--lr-schedule", "step", "--lr-step-epochs", "2", "--lr-factor", "2"], "--lr-factor must be below 1"),
    (["--lr-schedule", "step"], "--lr-schedule step needs --lr-step-epochs"),
    (["--lr-schedule", "weekly"], "--lr-schedule: invalid choice: 'weekly'"),
    (["--seed", "4294967296"], "--seed: must be between 0 and 4294967295"),
    (["--seed", "-1"], "--seed: must be between 0 and 4294967295"),
    (["--prefix", ""], "--prefix: must name a path"),
    (["--dropout", "1"], r"--dropout: must be in \[0, 1\)"),
    (["--weight-drop", "1"], r"--weight-drop: must be in \[0, 1\)"),
    (["--weight-drop", "nan"], "--weight-drop: must be a finite number"),
    (["--embed-dropout", "-0.1"], r"--embed-dropout: must be in \[0, 1\)"),
    (["--num-epoch", "two"], "--num-epoch: expected a whole number"),
    (["--lr-schedule", "plateau", "--kv-store", "dist_sync"], "--lr-schedule plateau does not reach the parameter servers"),
    (["--clip-global-norm", "5", "--kv-store", "dist_sync"], "--clip-global-norm needs every gradient in one place"),
    (["--clip-global-norm", "0"], "--clip-global-norm: must be positive"),
    (["--lr-schedule", "plateau", "--warmup-epochs", "1"], "--warmup-epochs goes with a planned schedule"),
    (["--lr-schedule", "cosine", "--learning-rate", "0.01", "--lr-final", "0.01"], "--lr-final .* must be below"),
    (["--lr-cosine"], "unrecognized arguments: --lr-cosine"),  # the schedule is one option now
    (["--stream"], "unrecognized arguments: --stream"),  # superseded by --stateful
    (["--init-epoch", "3"], "--init-epoch is the epoch of --init-from: give --init-from too"),
    (["--prefix", "/tmp/run/m", "--init-from", "/tmp/run/../run/m"], "--init-from names this run's own --prefix"),
    (["@/no/such/recipe.args"], "No such file or directory: '/no/such/recipe.args'"),
    (["--warmup-epochs", "-1"], "--warmup-epochs: must not be negative"),
    (["--resume", "--overwrite"], "--resume carries on the run under --prefix and --overwrite starts a new one"),
    (["--kv-store", "dist_sync"], "start it with dist_launch.py"),  # without the DMLC_* variables
])
def test_numbers_that_make_no_sense_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        options.parse_args(argv)
    errors = error_lines(capsys.readouterr().err)
    assert stop.value.code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors


def wait_until_mapped(proc, library, timeout=60):
    """Whether the process has mapped the shared library (Linux's /proc) within `timeout` seconds,
    still running."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        try:
            with open("/proc/%d/maps" % proc.pid) as maps:
                if library in maps.read():
                    return True
        except OSError:  # it has just exited
            return False
        time.sleep(0.005)
    return False


def test_ctrl_c_during_start_up_is_quiet(small_corpus, tmp_path):
    prefix = tmp_path / "run" / "m"
    proc = run_script("--data", small_corpus, "--prefix", str(prefix))
    # MXNet is loading, the quiet handler in place (a fixed wait raced a busy machine's start-up)
    assert wait_until_mapped(proc, "libmxnet.so"), proc.communicate()[0]
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and "Traceback" not in out, out
    left = os.listdir(prefix.parent) if prefix.parent.exists() else []
    assert not [name for name in left if ".tmp" in name or name.endswith(".lock")]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs of its own, where the machine lets the tests mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: %s" % mounted.stderr.strip())
    yield disk
    subprocess.run(["umount", "-l", str(disk)])


def test_a_really_full_disk_stops_training_and_keeps_the_earlier_epochs(small_corpus, small_disk):
    prefix = str(small_disk / "m")
    common = ["--data", small_corpus, "--prefix", prefix, "--optimizer", "adam"]
    assert run_script(*common).wait(timeout=120) == 0
    before = {name: open(small_disk / name, "rb").read() for name in os.listdir(small_disk)}
    with open(small_disk / "filler", "wb", buffering=0) as filler:  # fill the disk, then leave 8 KB: too little for a checkpoint
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(small_disk / "filler", os.path.getsize(small_disk / "filler") - 8192)
    proc = run_script(*common, "--resume", "--num-epoch", "2")
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert re.search(r"error: writing .*m-0002.params failed: .*disk full", out)
    os.remove(small_disk / "filler")
    after = {name: open(small_disk / name, "rb").read() for name in os.listdir(small_disk)}
    assert after.pop("m-run.json") and before.pop("m-run.json")  # the record of the new run's options
    assert after == before


@pytest.mark.parametrize("backend", ["unrolled", "fused"])
def test_stateful_batches_start_where_the_batch_before_ended_on_each_device(small_corpus, tmp_path, monkeypatch,
                                                                           backend):
    seen = []  # per batch: its epoch, the initial states it was fed, the final states it gave
    real_carry = callbacks.carry_states

    def recording_carry(iterator):
        carry = real_carry(iterator)

        def record(param):
            executors = param.locals["executor_manager"].curr_execgrp.train_execs
            names = [name for name, _ in iterator.init_states]
            fed = [np.concatenate([e.arg_dict[name].asnumpy() for e in executors]) for name in names]
            final = [np.concatenate([e.outputs[1 + k].asnumpy() for e in executors]) for k in range(len(names))]
            seen.append((param.epoch, fed, final))
            carry(param)
        return record
    monkeypatch.setattr(callbacks, "carry_states", recording_carry)
    args = options.parse_args(TINY + ["--data", small_corpus, "--prefix", str(tmp_path / "m"), "--stateful",
                                          "--val-frac", "0", "--num-epoch", "2", "--rnn-backend", backend])
    train_obama.train(args, [mx.cpu(0), mx.cpu(1)])  # two devices, each with half the streams
    with open(small_corpus, encoding="utf-8") as f:  # the running text in 8 streams, 129 steps a batch
        per_epoch = (len(f.read().replace("\n", "")) // 8 - 1) // 129
    assert len(seen) == 2 * per_epoch
    within_epochs = [(fed, final_before) for (epoch, fed, _), (epoch_before, _, final_before) in zip(seen[1:], seen)
                     if epoch == epoch_before]
    assert len(within_epochs) == 2 * (per_epoch - 1)
    for fed, final_before in within_epochs:
        for state, carried in zip(fed, final_before):
            np.testing.assert_array_equal(state, carried)
    starts = [fed for (epoch, fed, _), before in zip(seen, [(None,)] + seen) if epoch != before[0]]
    assert len(starts) == 2 and all(np.abs(state).max() == 0 for fed in starts for state in fed)
    assert np.abs(seen[0][2][0]).max() > 0.01  # the states carried are not zeros


def test_stateful_resume_ends_as_an_uninterrupted_run_and_generates(small_corpus, tmp_path):
    # with dropout: stopped in the middle of an epoch, the resumed run goes on with the masks the
    # uninterrupted one draws there (replaying the first batches' masks on the same text made it differ)
    common = ["--data", small_corpus, "--stateful", "--dropout", "0.3", "--momentum", "0.9", "--num-epoch", "2"]
    whole, stopped, _ = whole_and_stopped(common, tmp_path)
    assert checkpoint.load_carried(stopped, 1, "unrolled") is not None
    # a bare --resume: the corpus, --stateful, the sizes, the dropout and --num-epoch are the run's own
    resumed = start_command("train_obama.py", "--prefix", stopped, "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and re.search(r"Resuming at epoch 2, after batch \d+", out), out
    assert_same(params(whole, 2), params(stopped, 2))
    generated = run_command("generate.py", "The United States", "--prefix", stopped, "--length", "300")
    assert generated.returncode == 0 and generated.stdout.startswith("The United States"), generated.stderr
    assert len(generated.stdout) <= len("The United States") + 300 + 1


def test_embed_init_normal_draws_the_embedding_from_a_unit_normal(small_corpus, tmp_path):
    runs = {}
    for init in ("xavier", "normal"):
        prefix = str(tmp_path / init / "m")
        args = options.parse_args(TINY + ["--data", small_corpus, "--prefix", prefix, "--embed-init", init,
                                              "--learning-rate", "1e-9", "--rnn-backend", "fused"])
        train_obama.train(args, [mx.cpu()])  # a rate this small leaves the weights where they started
        runs[init] = params(prefix, 1)
    assert runs["normal"]["embed_weight"].std() == pytest.approx(1.0, rel=0.1)
    assert runs["xavier"]["embed_weight"].std() < 0.5
    # the other weights keep the tutorial's Xavier scale (drawn after the embedding, so not the same values)
    assert runs["normal"]["cls_weight"].std() == pytest.approx(runs["xavier"]["cls_weight"].std(), rel=0.1)


@pytest.mark.parametrize("backend", ["unrolled", "fused"])
def test_weight_drop_leaves_the_dropped_recurrent_weights_of_a_batch_untouched(small_corpus, tmp_path, backend):
    """One batch of plain SGD with --weight-drop 0.5: about half of each h2h weight gets no gradient and
    keeps its starting value (a rate of 1e-9 shows where the weights started); every other weight moves."""
    corpus = tmp_path / "ten.txt"
    with open(small_corpus, encoding="utf-8") as f:
        corpus.write_text("".join(f.readlines()[:10]), encoding="utf-8")

    def one_batch(name, rate, *more):
        args = options.parse_args(TINY + ["--data", str(corpus), "--val-frac", "0.2", "--prefix", str(tmp_path / name),
                                              "--optimizer", "sgd", "--momentum", "0", "--wd", "0", "--dropout", "0",
                                              "--rnn-backend", backend, "--learning-rate", rate, *more])
        train_obama.train(args, [mx.cpu()])
        return params(str(tmp_path / name), 1)
    start, dropped = one_batch("start", "1e-9"), one_batch("dropped", "0.5", "--weight-drop", "0.5")
    whole = one_batch("whole", "0.5")
    unchanged = start["l0_h2h_weight"] == dropped["l0_h2h_weight"]
    assert 0.35 < unchanged.mean() < 0.65
    assert (start["l0_h2h_weight"] != whole["l0_h2h_weight"]).all()
    for name in ("l0_i2h_weight", "embed_weight", "cls_weight"):
        assert (dropped[name] != start[name]).mean() > 0.5


def test_resume_keeps_the_runs_regularisation_unless_given_again(small_corpus, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    common = ["--data", small_corpus, "--prefix", prefix]
    assert train(*common, "--dropout", "0", "--weight-drop", "0.3", "--embed-dropout", "0.2",
                 "--clip-global-norm", "7") == 0
    with caplog.at_level("INFO"):
        assert train(*common, "--resume", "--num-epoch", "2") == 0
    recorded = checkpoint.load_run(prefix)["options"]
    assert (recorded["dropout"], recorded["weight_drop"], recorded["embed_dropout"], recorded["clip_global_norm"]) == (
        0.0, 0.3, 0.2, 7.0)
    assert "clipped at 7 in" in caplog.text
    assert train(*common, "--resume", "--num-epoch", "3", "--weight-drop", "0", "--dropout", "0.1",
                 "--embed-dropout", "0") == 0
    options = checkpoint.load_run(prefix)["options"]
    assert (options["dropout"], options["weight_drop"], options["embed_dropout"], options["clip_global_norm"]) == (
        0.1, 0.0, 0.0, 7.0)


def test_resume_keeps_the_runs_data_model_and_backend_and_names_them_in_a_refusal(small_corpus, tmp_path, capsys,
                                                                                   monkeypatch):
    prefix = str(tmp_path / "m")
    monkeypatch.chdir(os.path.dirname(small_corpus))  # the corpus given by a relative path, resumed from elsewhere
    run = ["--data", os.path.basename(small_corpus), "--prefix", prefix, "--stateful", "--seq-len", "16",
           "--rnn-backend", "fused", "--seed", "7", "--num-epoch", "2"]
    assert train(*run) == 0
    monkeypatch.chdir(tmp_path)
    args = options.parse_args(["--prefix", prefix, "--resume"])
    assert (args.data, args.stateful, args.seq_len, args.batch_size, args.rnn_backend, args.seed, args.num_epoch,
            args.num_hidden, args.num_embed, args.num_lstm_layer) == (small_corpus, True, 16, 8, "fused", 7, 2, 16, 8, 1)
    assert train_obama.main(["--prefix", prefix, "--resume"]) == 0  # trained for the run's 2 epochs: nothing to do
    assert checkpoint.epochs(prefix) == [1, 2]
    # given again, an option replaces the run's own; one the run had that clashes is named as kept
    args = options.parse_args(["--prefix", prefix, "--resume", "--no-stateful", "--batch-size", "4"])
    assert (args.stateful, args.batch_size, args.seq_len) == (False, 4, 16)
    with pytest.raises(SystemExit):
        options.parse_args(["--prefix", prefix, "--resume", "--buckets", "8,16"])
    refusal = error_lines(capsys.readouterr().err)[-1]
    assert "not with --buckets" in refusal
    assert refusal.endswith("(the options not given again are the run's own, from %s-run.json)" % prefix)


def test_a_record_written_before_the_schedule_was_one_option_resumes_in_todays_terms(tmp_path, capsys, monkeypatch):
    prefix = str(tmp_path / "m")
    old = {"lr_anneal": 0.5, "lr_cosine": False, "lr_step_epochs": None, "stream": False, "data_mirror": "/x",
           "num_epoch": 6, "resume": False, "given": None}
    checkpoint.save_run(prefix, epoch=1, batch=0, options=old)
    args = options.parse_args(["--prefix", prefix, "--resume"])
    assert (args.lr_schedule, args.lr_factor, args.num_epoch) == ("plateau", 0.5, 6)
    checkpoint.save_run(prefix, options=dict(old, lr_anneal=None, lr_cosine=True))
    args = options.parse_args(["--prefix", prefix, "--resume"])
    assert (args.lr_schedule, args.lr_cosine_epochs) == ("cosine", 6)  # the curve planned over the run's epochs
    checkpoint.save_run(prefix, options=dict(old, lr_anneal=None, lr_step_epochs=[2, 4]))
    assert options.parse_args(["--prefix", prefix, "--resume"]).lr_schedule == "step"
    # what cannot hold under the one rule is refused: the plateau on parameter servers
    monkeypatch.setenv("DMLC_ROLE", "worker")  # as dist_launch.py starts a worker
    checkpoint.save_run(prefix, options=old)
    with pytest.raises(SystemExit):
        options.parse_args(["--prefix", prefix, "--resume", "--kv-store", "dist_sync"])
    assert "--lr-schedule plateau does not reach the parameter servers" in capsys.readouterr().err


@pytest.fixture
def three_bucket_corpus(small_corpus, tmp_path):
    """small_corpus's 300 lines cut to 12, 40 and 129 characters in turn: lines that fill three buckets."""
    with open(small_corpus, encoding="utf-8") as f:
        lines = f.read().split("\n")[:300]
    path = tmp_path / "three.txt"
    path.write_text("\n".join(line[:(12, 40, 129)[i % 3]] for i, line in enumerate(lines)) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("backend", ["unrolled", "fused"])
def test_several_buckets_train_resume_and_score_every_held_out_line(three_bucket_corpus, tmp_path, backend):
    common = ["--data", three_bucket_corpus, "--buckets", "16,48,129", "--rnn-backend", backend, "--dropout", "0.3",
              "--optimizer", "adam", "--num-epoch", "2"]
    whole, stopped, _ = whole_and_stopped(common, tmp_path)
    resumed = run_script("--prefix", stopped, "--resume")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    for samples in (95, 5):  # training, then held out: the last 15 lines, 5 of each length
        assert all("bucket of len %3d : %d samples" % (size, samples) in out for size in (16, 48, 129)), out
    assert_same(params(whole, 2), params(stopped, 2))
    # the held-out loss is every held-out line's, scored as an independent numpy LSTM scores it
    vocab = checkpoint.load_vocab(whole)
    with open(three_bucket_corpus, encoding="utf-8") as f:
        held_out = [[vocab[c] for c in line] for line in f.read().split("\n")[285:300]]
    expected = held_out_perplexity(params(whole, 2), held_out, 1, 16)
    for prefix in (whole, stopped):
        rows = read_metrics(prefix)
        assert float(rows[1]["val_perplexity"]) == pytest.approx(expected, rel=1e-4)
        assert [r["val_perplexity"] for r in rows] == [r["val_perplexity"] for r in read_metrics(whole)]


@pytest.mark.parametrize("failing, schedule", [
    ("-0002-unrolled.states", ["--optimizer", "adam", "--learning-rate", "0.01"]),
    ("-best.params", ["--optimizer", "adam", "--learning-rate", "0.01"]),
    # a rate this high makes the validation loss go up at once: the rate is annealed at epoch ends
    ("-0002-unrolled.states", ["--learning-rate", "3", "--clip-gradient", "1", "--lr-schedule", "plateau",
                               "--lr-factor", "0.25"]),
    ("-metrics.csv", ["--learning-rate", "3", "--clip-gradient", "1", "--lr-schedule", "plateau", "--lr-factor", "0.25"]),
])
def test_an_epoch_stopped_before_all_of_it_is_written_is_done_again(small_corpus, tmp_path, monkeypatch, capsys,
                                                                   failing, schedule):
    common = ["--data", small_corpus, "--dropout", "0.2", "--num-epoch", "3"] + schedule
    whole, stopped = str(tmp_path / "whole" / "m"), str(tmp_path / "stopped" / "m")
    assert train(*common, "--prefix", whole) == 0
    # the second epoch's weights are written, then one of its other files fails (a full disk, or kill -9 there)
    import files
    real_write = files.atomic_write

    def write(target, *how):
        if target == stopped + failing and checkpoint.epochs(stopped) == [1, 2]:
            raise files.FileError("cannot write %s: No space left on device" % target)
        return real_write(target, *how)
    monkeypatch.setattr(files, "atomic_write", write)
    assert train(*common, "--prefix", stopped) == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert checkpoint.load_run(stopped)["epoch"] == 1
    assert train(*common, "--prefix", stopped, "--resume") == 0  # epoch 2 again, then 3
    assert "optimizer starts afresh" not in capsys.readouterr().err
    assert_same(params(whole, 3), params(stopped, 3))
    untimed = ("samples_per_sec", "seconds")
    assert [{k: v for k, v in r.items() if k not in untimed} for r in read_metrics(stopped)] == [
        {k: v for k, v in r.items() if k not in untimed} for r in read_metrics(whole)]
    assert checkpoint.load_run(stopped)["best_epoch"] == checkpoint.load_run(whole)["best_epoch"]
    assert_same(params(whole, "best"), params(stopped, "best"), tol=0)
    if "plateau" in schedule:  # the rate was lowered after epoch 1 or 2: the resumed run follows it
        assert len({r["learning_rate"] for r in read_metrics(whole)}) > 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_last_evaluation_stops_after_the_epoch_is_written(small_corpus, tmp_path, monkeypatch,
                                                                            capsys, signum):
    prefix = str(tmp_path / "m")
    real_log = callbacks.log_validation_metrics

    def signalled_while_evaluating(param):  # eval end: what a signal during the evaluation leaves
        os.kill(os.getpid(), signum)
        real_log(param)
    monkeypatch.setattr(callbacks, "log_validation_metrics", signalled_while_evaluating)
    assert train("--data", small_corpus, "--prefix", prefix) == 128 + signum  # not 0: a scheduler sees the stop
    assert "stopped by signal %d at the end of epoch 1, which is written whole" % signum in capsys.readouterr().err
    assert checkpoint.load_run(prefix)["epoch"] == 1 and len(read_metrics(prefix)) == 1
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_sighup_writes_a_partial_checkpoint_unless_ignored_as_under_nohup(small_corpus, tmp_path):
    common = ["--data", small_corpus, "--num-epoch", "2"]
    proc = run_script(*common, "--prefix", str(tmp_path / "hup" / "m"))
    wait_for(proc, r"Epoch\[1\] Batch \[0-5\]")
    proc.send_signal(signal.SIGHUP)  # the terminal closed
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGHUP and "stopped by signal 1 in epoch 2" in out, out
    assert checkpoint.load_run(str(tmp_path / "hup" / "m"))["batch"] > 0
    nohup = run_script(*common, "--prefix", str(tmp_path / "nohup" / "m"),
                       preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_for(nohup, r"Epoch\[1\] Batch \[0-5\]")
    nohup.send_signal(signal.SIGHUP)
    out = nohup.communicate(timeout=120)[0]
    assert nohup.returncode == 0 and checkpoint.epochs(str(tmp_path / "nohup" / "m")) == [1, 2], out


def test_a_metrics_file_that_is_not_ours_is_refused_before_training(small_corpus, tmp_path, capsys):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    with open(prefix + "-metrics.csv", "ab") as f:
        f.write(b"2,\xff\xfe")  # not UTF-8: training used to die at the epoch's end
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "2") == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "m-metrics.csv is not a metrics file of this project" in errors[0], errors
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("run, again", [
    (["--stateful", "--seq-len", "16"], ["--seq-len", "32"]),
    ([], ["--seed", "3"]),
    ([], ["--no-shuffle"]),
    ([], ["--val-frac", "0.1"]),
    ([], ["--buckets", "64,129"]),
])
def test_a_stopped_epoch_resumes_only_with_the_same_batches(small_corpus, tmp_path, capsys, run, again):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix, *run) == 0
    # as a run stopped after batch 5 of epoch 2 leaves it
    checkpoint.copy_file(checkpoint.params_path(prefix, 1), checkpoint.path("partial", prefix, 1))
    checkpoint.save_run(prefix, epoch=1, batch=5)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert train("--prefix", prefix, "--resume", "--num-epoch", "2", *again) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "the run stopped after batch 5 of epoch 2 with" in errors[0], errors
    assert "resume it with the same %s" % again[0].replace("--no-", "--") in errors[0]
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("option, value, message", [
    ("dropout", float("nan"), r"--dropout nan, which --dropout does not take \(must be a finite number"),
    ("rnn_backend", "bogus", r"--rnn-backend 'bogus', which --rnn-backend does not take \(expected one of"),
    ("seq_len", "abc", r"--seq-len 'abc', which --seq-len does not take \(expected a whole number"),
    ("batch_size", 0, r"--batch-size 0, which --batch-size does not take \(must be at least 1"),
    ("stateful", "yes", r"--stateful 'yes', which --stateful does not take \(expected true or false"),
])
def test_options_read_from_the_run_record_are_checked_as_typed_ones(small_corpus, tmp_path, capsys, option, value,
                                                                   message):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    record = checkpoint.load_run(prefix)
    record["options"][option] = value
    checkpoint.save_run(prefix, **record)
    assert train_obama.main(["--prefix", prefix, "--resume", "--num-epoch", "2"]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    assert checkpoint.epochs(prefix) == [1]


def test_without_its_run_record_a_resume_says_whose_options_it_takes(small_corpus, tmp_path, capsys, caplog):
    prefix = str(tmp_path / "m")
    assert train("--data", small_corpus, "--prefix", prefix) == 0
    with open(prefix + "-run.json", "w") as f:
        f.write("{not json")
    assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "2") == 2
    error = error_lines(capsys.readouterr().err)[0]
    assert "m-run.json" in error and "restore it" in error and "delete" not in error
    os.remove(prefix + "-run.json")
    with caplog.at_level("WARNING"):
        assert train("--data", small_corpus, "--prefix", prefix, "--resume", "--num-epoch", "2") == 0
    assert "has no run record" in caplog.text and "need not be the run's own" in caplog.text


def test_a_stateful_partial_checkpoint_resumes_in_the_other_backend(small_corpus, tmp_path):
    # plain SGD holds no optimizer state and dropout 0 draws nothing: resumed by the unrolled backend, a
    # run stopped by the fused one ends where it would have ended, its carried states read in its layout
    common = ["--data", small_corpus, "--stateful", "--seq-len", "16", "--dropout", "0", "--momentum", "0",
              "--num-epoch", "2", "--rnn-backend", "fused"]
    whole, stopped, _ = whole_and_stopped(common, tmp_path)
    resumed = run_script("--prefix", stopped, "--resume", "--rnn-backend", "unrolled")
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and re.search(r"Resuming at epoch 2, after batch \d+", out), out
    # the two backends' sums round differently: 1.6e-4 apart after the epoch, where the streams restarted
    # from zero states instead of the carried ones end 2.9e-3 apart
    assert_same(params(whole, 2), params(stopped, 2), tol=5e-4)


def test_a_corpus_that_is_no_file_or_has_invisible_characters_is_named_so(small_corpus, tmp_path, monkeypatch):
    prefix = str(tmp_path / "m")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)  # reading it would block for ever
    for device in ("/dev/zero", fifo):
        assert_one_line_error(run_command("train_obama.py", *TINY, "--data", device, "--prefix", prefix),
                              "the corpus %s is not a regular file" % device)
    with open(small_corpus, encoding="utf-8") as f:
        text = f.read()
    for name, content, named in (("crlf.txt", text.replace("\n", "\r\n"), r"ends in '\\r': the file has Windows line ends"),
                                 ("bom.txt", "\ufeff" + text, r"starts with a byte-order mark, U\+FEFF")):
        (tmp_path / name).write_text(content, encoding="utf-8", newline="")
        assert_one_line_error(run_command("train_obama.py", *TINY, "--data", str(tmp_path / name), "--prefix", prefix),
                              r"line 1 is 130 characters long, more than the largest bucket \(129\) \(it %s" % named)
    import bucket_io
    monkeypatch.setattr(bucket_io, "MAX_CORPUS_BYTES", 1 << 20)  # a corpus larger than this is not read at all
    (tmp_path / "big.txt").write_bytes(b"ab\n" * (1 << 19))
    import files
    with pytest.raises(files.FileError, match="larger than the 1 MB this reads"):
        bucket_io.read_content(str(tmp_path / "big.txt"), limit=bucket_io.MAX_CORPUS_BYTES)
    assert not os.path.exists(prefix + "-0001.params")


@pytest.mark.parametrize("sizes", [["--seq-len", "100000000"], ["--num-hidden", "100000"]])
def test_sizes_memory_cannot_hold_are_one_line(small_corpus, tmp_path, sizes):
    assert_one_line_error(run_command("train_obama.py", "--data", small_corpus, "--prefix", str(tmp_path / "m"), *sizes),
                          r"training needs more than \d+ GB, and this machine has \d+ GB; give smaller sizes")
    assert os.listdir(tmp_path) == []


def test_what_mxnet_refuses_unforeseen_is_one_line(small_corpus, tmp_path, monkeypatch, capsys):
    def refuse(*_args, **_kwargs):
        raise mx.base.MXNetError("[23:10:01] ../src/storage/storage.cc:199: Check failed: e == cudaSuccess\n"
                                 "Stack trace:\n  [bt] (0) /lib/libmxnet.so(+0x1) [0x7f]")
    monkeypatch.setattr(mx.model.FeedForward, "fit", refuse)
    assert train("--data", small_corpus, "--prefix", str(tmp_path / "m")) == 1
    errors = error_lines(capsys.readouterr().err)
    assert errors == ["train_obama.py: error: MXNet failed: [23:10:01] ../src/storage/storage.cc:199: Check failed: "
                      "e == cudaSuccess"]
