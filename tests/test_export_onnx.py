"""export_onnx.py: the exported one-step model in onnxruntime against LSTMInferenceModel (each
backend, a stateful run, float16 weights), its vocabulary, and its bad inputs; generate.py --onnx
from the file, without MXNet, against generate.py on the checkpoint."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import checkpoint
import export_onnx
from conftest import REPO, TINY, assert_one_line_error, run_command
from rnn_model import load_inference_model

ort = pytest.importorskip("onnxruntime")
STREAMS = 3


def onnx_session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def max_difference_over(steps, prefix, path):
    """The largest difference in probability between onnxruntime on the file and LSTMInferenceModel
    on the checkpoint, over `steps` steps of STREAMS streams that feed on their greedy choices."""
    model, _ = load_inference_model(prefix, batch_size=STREAMS, kernel="mxnet")
    session = onnx_session(path)
    layers, _, hidden = model.get_states()[0].shape
    h = c = np.zeros((layers, STREAMS, hidden), np.float32)
    ids, worst = np.array([1, 2, 3]), 0.0
    for position in range(steps):
        expected = model.forward(ids, new_seq=position == 0)
        probs, h, c = session.run(None, {"ids": ids.astype(np.int64), "h": h, "c": c})
        worst = max(worst, float(np.abs(probs - expected).max()))
        ids = expected.argmax(axis=1)
    return worst


@pytest.fixture(scope="module")
def runs(small_corpus, tmp_path_factory):
    """A tiny run of each backend and a stateful one: their prefixes."""
    found = {}
    for name, options in (("unrolled", []), ("fused", ["--rnn-backend", "fused", "--dropout", "0.2"]),
                          ("stateful", ["--stateful", "--seq-len", "16", "--rnn-backend", "fused"])):
        prefix = str(tmp_path_factory.mktemp(name) / "m")
        result = run_command("train_obama.py", *TINY, "--data", small_corpus, "--prefix", prefix,
                             "--num-lstm-layer", "2", *options)
        assert result.returncode == 0, result.stderr
        found[name] = prefix
    return found


@pytest.mark.parametrize("run", ["unrolled", "fused", "stateful"])
def test_the_exported_step_gives_the_models_probabilities_over_500_steps(runs, run, tmp_path):
    path = str(tmp_path / "m.onnx")
    assert export_onnx.main(["--prefix", runs[run], "--output", path]) == 0
    assert max_difference_over(500, runs[run], path) < 1e-5


def test_the_file_carries_the_vocabulary_and_float16_halves_it(runs, tmp_path):
    import onnx
    full, half = str(tmp_path / "full.onnx"), str(tmp_path / "half.onnx")
    assert export_onnx.main(["--prefix", runs["fused"], "--epoch", "best", "--output", full]) == 0
    assert export_onnx.main(["--prefix", runs["fused"], "--output", half, "--float16"]) == 0
    props = {p.key: p.value for p in onnx.load(full).metadata_props}
    assert json.loads(props["vocab"]) == checkpoint.load_vocab(runs["fused"])
    assert os.path.getsize(half) < 0.6 * os.path.getsize(full)
    assert max_difference_over(50, runs["fused"], half) < 1e-2


def test_bad_inputs_are_one_line_and_write_nothing(runs, tmp_path):
    prefix = runs["unrolled"]
    out = str(tmp_path / "m.onnx")
    assert_one_line_error(run_command("export_onnx.py", "--prefix", str(tmp_path / "none"), "--output", out),
                          "no checkpoint")
    assert_one_line_error(run_command("export_onnx.py", "--prefix", prefix, "--output", prefix + "-0001.params"),
                          "one of the files of the checkpoint")
    assert_one_line_error(run_command("export_onnx.py", "--prefix", prefix, "--output", str(tmp_path)),
                          "cannot write")
    broken = str(tmp_path / "broken")
    with open(broken + "-0001.params", "wb") as f:
        f.write(b"not a checkpoint")
    assert_one_line_error(run_command("export_onnx.py", "--prefix", broken, "--output", out), "0001.params")
    assert_one_line_error(run_command("export_onnx.py", "--prefix", prefix), "--output")
    assert not os.path.exists(out)


def test_without_onnx_the_export_is_one_clear_line(runs, tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert export_onnx.main(["--prefix", runs["unrolled"], "--output", str(tmp_path / "m.onnx")]) == 2
    assert "onnx is not installed: pip install -r requirements.txt" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "m.onnx")


# generate.py run as a user runs it, in a process where any import of MXNet fails
WITHOUT_MXNET = """
import runpy, sys
sys.modules["mxnet"] = None
sys.argv = ["generate.py"] + sys.argv[1:]
runpy.run_path(%r, run_name="__main__")
""" % os.path.join(REPO, "generate.py")


def generate_without_mxnet(*args):
    result = subprocess.run([sys.executable, "-c", WITHOUT_MXNET] + list(args), capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize("options", [
    [], ["--sample", "--seed", "7", "--temperature", "0.8"], ["--sample", "--seed", "3", "--top-k", "4",
    "--num-samples", "3"], ["--beam", "4", "--length", "40"], ["--stream", "--sample", "--seed", "1"],
    ["--sample", "--seed", "2", "--stop-at", "e", "--num-samples", "2"]])
def test_the_exported_file_generates_the_checkpoints_text_without_mxnet(varied, options):
    prefix, exported = varied
    prime = ["Thank you", "--length", "120"]
    expected = run_command("generate.py", *prime, "--prefix", prefix, *options)
    assert expected.returncode == 0, expected.stderr
    assert len(set(expected.stdout[len("Thank you"):].strip())) >= 3  # a text that tells states apart
    result = generate_without_mxnet(*prime, "--onnx", exported, *options)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.stdout


def test_imported_the_file_steps_as_the_checkpoint_does_through_generates_functions(varied):
    import generate
    from onnx_inference import ONNXInferenceModel
    prefix, exported = varied
    model = ONNXInferenceModel(exported, batch_size=4)
    reference_model, _ = load_inference_model(prefix, batch_size=4)
    assert model.vocab == checkpoint.load_vocab(prefix)
    texts = generate.generate_texts(model, model.vocab, "Thank you", 80, sample=True, rng=np.random.RandomState(5))
    assert texts == generate.generate_texts(reference_model, model.vocab, "Thank you", 80, sample=True,
                                            rng=np.random.RandomState(5))
    assert len(set(texts)) == 4  # four streams, drawn apart
    assert generate.beam_search(model, model.vocab, "Thank", 30)[0] == generate.beam_search(
        reference_model, model.vocab, "Thank", 30)[0]


def test_the_exported_file_writes_its_text_to_output(varied, tmp_path):
    _, exported = varied
    out = str(tmp_path / "text.txt")
    result = generate_without_mxnet("Thank you", "--length", "30", "--onnx", exported, "--output", out)
    assert result.returncode == 0, result.stderr
    with open(out, encoding="utf-8") as f:
        assert f.read().startswith("Thank you") and result.stdout == ""


def test_bad_exported_files_and_options_are_one_line(varied, tmp_path):
    prefix, exported = varied
    import onnx
    from onnx import TensorProto, helper
    garbage, foreign = str(tmp_path / "garbage.onnx"), str(tmp_path / "foreign.onnx")
    with open(garbage, "wb") as f:
        f.write(b"not an onnx file")
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(other), foreign)
    bad_vocab = str(tmp_path / "bad-vocab.onnx")
    model = onnx.load(exported)
    helper.set_model_props(model, {"vocab": json.dumps({"ab": 1})})
    onnx.save(model, bad_vocab)
    for args, message in [
            (["--onnx", str(tmp_path / "none.onnx")], "cannot read the ONNX file .*none.onnx"),
            (["--onnx", str(tmp_path)], "not a regular file"),
            (["--onnx", garbage], "garbage.onnx cannot be loaded"),
            (["--onnx", foreign], "foreign.onnx was not written by export_onnx.py"),
            (["--onnx", bad_vocab], "bad-vocab.onnx's metadata is not a map from single characters"),
            (["--onnx", exported, "--epoch", "1"], "not with --epoch"),
            (["--onnx", exported, "--prefix", prefix], "--prefix: not allowed with argument --onnx"),
            (["--onnx", exported, "--output", str(tmp_path)], "cannot write the output"),
            (["--onnx", exported, "--output", exported], "is the ONNX file it reads")]:
        assert_one_line_error(generate_without_mxnet("Thank you", *args), message)
    assert_one_line_error(generate_without_mxnet("Thank you \u00e9", "--onnx", exported), "not in the vocabulary")
    assert sorted(os.listdir(tmp_path)) == ["bad-vocab.onnx", "foreign.onnx", "garbage.onnx"]  # nothing written


def test_without_onnxruntime_generating_from_a_file_is_one_clear_line(varied, monkeypatch, capsys):
    import generate
    _, exported = varied
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert generate.main(["Thank you", "--onnx", exported]) == 2
    assert "onnxruntime is not installed: pip install -r requirements.txt" in capsys.readouterr().err
