"""What the tests share: the one tiny configuration, the corpora, a tiny trained checkpoint, and
ways to run the commands as a user does."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import device  # noqa: E402  (before mxnet, as the project's modules import it)
import checkpoint  # noqa: E402

# The commands under test start as a user starts them, with Ctrl-C, SIGTERM and SIGHUP at their
# defaults, also where the suite itself runs with them ignored (started in the background, or under
# nohup): an ignored signal stays ignored across exec, and the commands keep an ignored one so.
for _signal, _default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL),
                          (signal.SIGHUP, signal.SIG_DFL)):
    if signal.getsignal(_signal) == signal.SIG_IGN:
        signal.signal(_signal, _default)

# The tiny model every training test uses, the recipe config/tiny.args: trains an epoch of 300
# lines in about a second.
TINY = ["@" + os.path.join(REPO, "config", "tiny.args")]
# The first 300 lines of obama.txt, the last 15 held out, make 35 training batches of 8.
TINY_BATCHES = 35

# bfloat16 runs only on CPUs with AVX-512 bf16; the suite runs on machines with and without it
needs_bf16 = pytest.mark.skipif(device.bf16_unavailable_reason() is not None,
                                reason="--bf16 cannot run here: %s" % device.bf16_unavailable_reason())


@pytest.fixture(scope="session")
def obama_path(tmp_path_factory):
    """obama.txt through the corpus look-up, copied into a temporary folder (never into the repo)."""
    import bucket_io
    target = str(tmp_path_factory.mktemp("corpus") / "obama.txt")
    try:
        return bucket_io.find_corpus(None, target=target, download=False)
    except bucket_io.CorpusError as err:
        pytest.skip("obama.txt is not available: %s" % err)


@pytest.fixture(scope="session")
def small_corpus(obama_path, tmp_path_factory):
    """The first 300 lines of obama.txt."""
    path = tmp_path_factory.mktemp("small") / "small.txt"
    with open(obama_path, encoding="utf-8") as f:
        lines = f.read().split("\n")[:300]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def trained(small_corpus, tmp_path_factory):
    """(prefix, the command's result) of one epoch of the tiny model, trained as a user would."""
    prefix = str(tmp_path_factory.mktemp("train") / "tiny")
    result = run_command("train_obama.py", "--data", small_corpus, "--prefix", prefix, *TINY)
    assert result.returncode == 0, result.stderr
    return prefix, result


@pytest.fixture
def trained_copy(trained, tmp_path):
    """The prefix of a copy of `trained`'s files in this test's folder, for tests that could harm them."""
    import shutil
    prefix, _ = trained
    folder = tmp_path / "run"
    folder.mkdir()
    for found in checkpoint.run_files(prefix):
        shutil.copy(found, folder)
    return str(folder / os.path.basename(prefix))


def run_command(script, *args, timeout=300, cwd=REPO):
    """Runs one of the project's commands in a fresh process, as a user does."""
    result = subprocess.run([sys.executable, os.path.join(REPO, script)] + list(args),
                            capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def start_command(script, *args, **popen):
    """Starts a command in a fresh process, its output and errors merged, to be read as it goes
    (`popen`: more of subprocess.Popen's arguments)."""
    return subprocess.Popen([sys.executable, os.path.join(REPO, script)] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, **popen)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if "error:" in line]


def assert_one_line_error(result, pattern):
    """The command failed with status 2 and said why in exactly one line matching `pattern`."""
    import re
    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and re.search(pattern, errors[0]), result.stderr


def params(prefix, epoch):
    """A checkpoint's parameters as numpy arrays."""
    arg_params, _ = checkpoint.load_params(prefix, epoch)
    return {k: v.asnumpy() for k, v in arg_params.items()}


def assert_same(a, b, tol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=tol, rtol=0, err_msg=name)


@pytest.fixture(scope="session")
def varied(small_corpus, tmp_path_factory):
    """A checkpoint of random weights (2 x 32 units) whose text varies, where the tiny runs' is all
    spaces, and its ONNX export: (prefix, path)."""
    import mxnet as mx
    import bucket_io
    import export_onnx
    import reference
    folder = tmp_path_factory.mktemp("varied")
    prefix, path = str(folder / "m"), str(folder / "m.onnx")
    vocab = bucket_io.build_vocab(small_corpus)
    params = reference.random_params(2, len(vocab) + 1, 32, 16, len(vocab) + 1, seed=3, scale=0.6)
    checkpoint.save_checkpoint(prefix, 1, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
    checkpoint.save_vocab(prefix, vocab)
    assert export_onnx.main(["--prefix", prefix, "--output", path]) == 0
    return prefix, path
