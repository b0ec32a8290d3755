"""The two commands as a user runs them: train a tiny model, generate from it in a fresh process."""
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

import checkpoint
import train_obama

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num-lstm-layer", "1", "--num-hidden", "16", "--num-embed", "8", "--batch-size", "16", "--log-every", "5"]


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(REPO, script)] + list(args),
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def assert_one_line_error(result, pattern):
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and re.search(pattern, errors[0]), result.stderr


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("train") / "tiny")
    result = run("train_obama.py", "--data", small_corpus, "--prefix", prefix, *TINY)
    assert result.returncode == 0, result.stderr
    return prefix, result


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


def test_generate_reads_the_checkpoint_in_a_fresh_process(trained):
    prefix, _ = trained
    result = run("generate.py", "The United States", "--prefix", prefix, "--length", "50")
    assert result.returncode == 0, result.stderr
    text = result.stdout[:-1]  # print's newline
    assert text.startswith("The United States") and len(text) == len("The United States") + 50
    sampled = [run("generate.py", "The", "--prefix", prefix, "--length", "40", "--sample", "--seed", "7").stdout
               for _ in range(2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == len("The") + 40 + 1


def test_training_lowers_the_perplexity_in_process(small_corpus, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    with caplog.at_level(logging.INFO):
        assert train_obama.main(["--data", small_corpus, "--prefix", prefix, "--num-epoch", "3",
                                 "--dropout", "0", "--learning-rate", "0.1", "--momentum", "0.9"] + TINY) == 0
    perplexities = [float(x) for x in re.findall(r"Train-perplexity=([\d.]+)", caplog.text)]
    assert len(perplexities) == 3 and perplexities[2] < perplexities[0]
    assert checkpoint.epochs(prefix) == [1, 2, 3]


def test_perplexity_metric_matches_a_direct_computation():
    rng = np.random.RandomState(0)
    batch, seq_len, labels = 3, 4, 5
    label = rng.randint(0, labels, size=(batch, seq_len))
    label[0, -1] = label[2, 1] = 0
    pred = rng.dirichlet(np.ones(labels), size=seq_len * batch)  # time-major rows: t * batch + b
    nll = [-math.log(pred[t * batch + b, label[b, t]]) for b in range(batch) for t in range(seq_len) if label[b, t]]
    metric = train_obama.CharPerplexity()
    metric.update([mx.nd.array(label)], [mx.nd.array(pred)])
    names, values = metric.get()
    assert names == ["perplexity", "bits-per-char"]
    assert values[0] == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)
    assert values[1] == pytest.approx(np.mean(nll) / math.log(2), rel=1e-5)


def test_train_bad_inputs_are_one_clear_line(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    assert_one_line_error(run("train_obama.py", "--data", str(tmp_path / "nope.txt"), "--prefix", prefix),
                          "corpus file not found")
    assert_one_line_error(run("train_obama.py", "--bogus"), "unrecognized arguments: --bogus")
    assert_one_line_error(run("train_obama.py", "--num-hidden", "0"), "must be at least 1")
    assert_one_line_error(run("train_obama.py", "--data", small_corpus, "--seq-len", "100", "--prefix", prefix),
                          r"line 1 is 129 characters long, more than the largest bucket \(100\)")
    assert_one_line_error(run("train_obama.py", "--data", small_corpus, "--gpus", "0", "--prefix", prefix),
                          "cannot use GPU 0")
    assert_one_line_error(run("train_obama.py", "--bf16", "--rnn-backend", "fused"), "--bf16 needs --rnn-backend unrolled")
    assert not os.path.exists(tmp_path / "m-0001.params")


def test_generate_bad_inputs_are_one_clear_line(trained, tmp_path):
    prefix, _ = trained
    assert_one_line_error(run("generate.py", "Thé", "--prefix", prefix), "not in the vocabulary: 'é'")
    assert_one_line_error(run("generate.py", "The", "--prefix", str(tmp_path / "none")), "no checkpoint")
    assert_one_line_error(run("generate.py", "The", "--prefix", prefix, "--epoch", "7"), "not found")
    assert_one_line_error(run("generate.py", "The", "--prefix", prefix, "--sample", "--temperature", "0"),
                          "--temperature: must be positive")
    broken = str(tmp_path / "broken")
    for suffix in ("-0001.params", "-vocab.json"):
        with open(prefix + suffix, "rb") as src, open(broken + suffix, "wb") as dst:
            dst.write(src.read()[:200] if suffix.endswith("params") else src.read())
    assert_one_line_error(run("generate.py", "The", "--prefix", broken), "corrupt or truncated")


def test_generate_options_end_to_end(trained, tmp_path):
    prefix, _ = trained
    three = run("generate.py", "The", "--prefix", prefix, "--length", "30", "--num-samples", "3",
                "--sample", "--top-k", "5", "--seed", "2")
    assert three.returncode == 0, three.stderr
    samples = re.findall(r"=== sample (\d) ===\n(.*)\n", three.stdout)
    assert [n for n, _ in samples] == ["1", "2", "3"]
    assert all(text.startswith("The") and len(text) == 33 for _, text in samples)
    assert len({text for _, text in samples}) > 1

    prime = tmp_path / "prime.txt"
    prime.write_text("Thank you.\nThe", encoding="utf-8")
    out = tmp_path / "out.txt"
    written = run("generate.py", "--prime-file", str(prime), "--prefix", prefix, "--length", "25", "--output", str(out))
    assert written.returncode == 0 and written.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("Thank you.\nThe")
    streamed = run("generate.py", "--prime-file", str(prime), "--prefix", prefix, "--length", "25", "--stream")
    assert streamed.stdout == out.read_text(encoding="utf-8")

    skipped = run("generate.py", "Thé", "--prefix", prefix, "--length", "10", "--skip-unknown")
    assert skipped.returncode == 0 and skipped.stdout.startswith("Th") and "'é'" in skipped.stderr
    beam = run("generate.py", "The", "--prefix", prefix, "--length", "15", "--beam", "4")
    assert beam.returncode == 0 and len(beam.stdout) == 3 + 15 + 1 and "log-likelihood" in beam.stderr


def test_generate_option_mistakes_are_one_clear_line(trained, tmp_path):
    prefix, _ = trained
    assert_one_line_error(run("generate.py", "--prefix", prefix), "either a SEED string or --prime-file")
    assert_one_line_error(run("generate.py", "The", "--beam", "2", "--sample"), "--beam finds the one most likely")
    assert_one_line_error(run("generate.py", "The", "--stream", "--num-samples", "2"), "--stream prints one sample")
    assert_one_line_error(run("generate.py", "--prime-file", str(tmp_path / "missing.txt"), "--prefix", prefix),
                          "cannot read the prime file")
    assert_one_line_error(run("generate.py", "The", "--prefix", prefix, "--output", str(tmp_path / "no" / "dir.txt")),
                          "cannot write the output .*: No such file or directory")


def test_defaults_are_the_tutorials():
    args = train_obama.parse_args([])
    assert (args.seq_len, args.num_embed, args.num_lstm_layer, args.num_hidden, args.batch_size) == (129, 256, 3, 512, 32)
    assert (args.dropout, args.num_epoch, args.learning_rate, args.momentum, args.wd) == (0.2, 1, 0.01, 0.0, 0.0001)
    assert (args.optimizer, args.rnn_backend, args.kv_store, args.log_every) == ("sgd", "unrolled", "local", 20)
    assert args.prefix.endswith(os.path.join("checkpoints", "obama"))


def test_generate_length_zero_prints_the_seed_only(trained):
    prefix, _ = trained
    result = run("generate.py", "The", "--prefix", prefix, "--length", "0")
    assert result.returncode == 0 and result.stdout == "The\n", result.stderr


def test_generate_finds_an_unwritable_output_before_generating(trained, tmp_path):
    prefix, _ = trained
    result = run("generate.py", "The", "--prefix", prefix, "--output", str(tmp_path))  # a folder
    assert_one_line_error(result, "cannot write the output .*: Is a directory")
    assert "Loaded" not in result.stderr and os.listdir(tmp_path) == []


def test_generate_more_samples_than_one_batch_holds_in_parts(trained, monkeypatch, capsys):
    import generate
    prefix, _ = trained
    monkeypatch.setattr(generate, "MAX_STREAMS", 4)
    assert generate.main(["The", "--prefix", prefix, "--length", "12", "--num-samples", "10", "--sample",
                          "--seed", "3"]) == 0
    samples = re.findall(r"=== sample (\d+) ===\n(.*)\n", capsys.readouterr().out)
    assert [int(n) for n, _ in samples] == list(range(1, 11))
    assert all(text.startswith("The") and len(text) == 15 for _, text in samples)
    assert len({text for _, text in samples}) > 4  # the parts do not repeat each other


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "nan"], "--temperature: must be a finite number"),
    (["--seed", "99999999999"], "--seed: must be between 0 and"),
    (["--prefix", " "], "--prefix: must name a path"),
    (["--length", "-5"], "--length: must not be negative"),
    (["--beam", "100000"], "--beam takes at most"),
])
def test_generate_refuses_numbers_that_make_no_sense(argv, message, capsys):
    import generate
    with pytest.raises(SystemExit) as stop:
        generate.parse_args(["The"] + argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert stop.value.code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors


def test_ctrl_c_in_generate_is_quiet_and_leaves_no_file(trained, tmp_path):
    prefix, _ = trained
    out = tmp_path / "speech.txt"
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "generate.py"), "The", "--prefix", prefix,
                             "--length", "10000000", "--output", str(out)],
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    for line in proc.stderr:  # interrupt once it generates
        if "Loaded" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []
