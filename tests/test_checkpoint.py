"""checkpoint.py: the tutorial's format both ways, checked writes, the run lock, the vocabulary check."""
import os
import pickle
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import checkpoint
import files
import reference
from checkpoint import CheckpointError
from lstm import lstm_unroll

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nd_params(params):
    return {k: mx.nd.array(v) for k, v in params.items()}


def test_round_trip_in_mxnet_format(tmp_path):
    prefix = str(tmp_path / "ck" / "model")
    params = reference.random_params(2, 9, 4, 3, 9)
    symbol = lstm_unroll(2, 5, 9, 4, 3, 9)
    checkpoint.save_checkpoint(prefix, 3, symbol, nd_params(params), {})
    checkpoint.save_vocab(prefix, {"a": 1, "\n": 2})
    assert sorted(os.listdir(tmp_path / "ck")) == ["model-0003.params", "model-symbol.json", "model-vocab.json"]

    # MXNet's own reader accepts it
    sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, 3)
    assert sym.list_arguments() == symbol.list_arguments()
    for name, value in params.items():
        np.testing.assert_array_equal(arg_params[name].asnumpy(), value)

    loaded, _ = checkpoint.load_params(prefix, 3)
    assert set(loaded) == set(params)
    assert checkpoint.load_vocab(prefix) == {"a": 1, "\n": 2}
    assert checkpoint.model_shape(loaded) == dict(num_lstm_layer=2, input_size=9, num_hidden=4, num_embed=3, num_label=9)


def test_reads_a_bare_params_file_written_by_mxnet(tmp_path):
    """The tutorial's obama-0075.params comes without symbol or vocabulary files."""
    prefix = str(tmp_path / "obama")
    params = reference.random_params(3, 84, 8, 6, 84)
    mx.nd.save(prefix + "-0075.params", {"arg:" + k: v for k, v in nd_params(params).items()})
    assert checkpoint.latest_epoch(prefix) == 75
    assert checkpoint.load_vocab(prefix) is None
    arg_params, _ = checkpoint.load_params(prefix, 75)
    assert checkpoint.model_shape(arg_params)["num_lstm_layer"] == 3


def test_latest_epoch(tmp_path):
    prefix = str(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.latest_epoch(prefix)
    for epoch in (2, 10, 9):
        open(checkpoint.params_path(prefix, epoch), "w").close()
    open(prefix + "-best.params", "w").close()
    open(str(tmp_path / "mm-0011.params"), "w").close()
    assert checkpoint.epochs(prefix) == [2, 9, 10]
    assert checkpoint.latest_epoch(prefix) == 10


def test_corrupt_or_truncated_params_are_a_clear_error(tmp_path):
    prefix = str(tmp_path / "m")
    checkpoint.save_checkpoint(prefix, 1, None, nd_params(reference.random_params(1, 5, 2, 2, 5)), {})
    data = open(checkpoint.params_path(prefix, 1), "rb").read()
    open(checkpoint.params_path(prefix, 1), "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoint.load_params(prefix, 1)
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load_params(prefix, 2)


def test_wrong_shapes_are_a_clear_error():
    params = nd_params(reference.random_params(2, 9, 4, 3, 9))
    params["l1_h2h_weight"] = mx.nd.zeros((16, 5))
    with pytest.raises(CheckpointError, match="l1_h2h_weight should have shape"):
        checkpoint.model_shape(params)
    with pytest.raises(CheckpointError, match="not those of the tutorial"):
        checkpoint.model_shape({"fc_weight": mx.nd.zeros((2, 2))})


def test_failed_write_leaves_the_earlier_file(tmp_path):
    prefix = str(tmp_path / "m")
    checkpoint.save_vocab(prefix, {"a": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        checkpoint.save_vocab(prefix, {"a": Unserialisable()})
    assert checkpoint.load_vocab(prefix) == {"a": 1}
    assert os.listdir(tmp_path) == ["m-vocab.json"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read the vocabulary"),
    ('{"ab": 1}', "single characters"),
    ('{"a": true}', "single characters to ids"),
    ('{"a": 1, "b": 3}', "numbers its 2 characters otherwise than 1 to 2"),  # the seed would be fed as others
])
def test_bad_vocab_file_is_a_clear_error(tmp_path, content, message):
    prefix = str(tmp_path / "m")
    open(prefix + "-vocab.json", "w").write(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_vocab(prefix)


def truncating_save(real_save):
    """MXNet's writer on a full disk: it reports nothing and leaves the file short."""
    def save(path, data):
        real_save(path, data)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 3)
    return save


def test_a_short_write_is_an_error_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    prefix = str(tmp_path / "m")
    params = nd_params(reference.random_params(1, 5, 2, 2, 5))
    checkpoint.save_checkpoint(prefix, 1, None, params, {})
    before = open(checkpoint.params_path(prefix, 1), "rb").read()
    monkeypatch.setattr(mx.nd, "save", truncating_save(mx.nd.save))
    changed = {k: v + 1 for k, v in params.items()}
    with pytest.raises(files.FileError, match="does not read back as written"):
        checkpoint.save_checkpoint(prefix, 1, None, changed, {})
    assert open(checkpoint.params_path(prefix, 1), "rb").read() == before
    assert os.listdir(tmp_path) == ["m-0001.params"]


def test_the_symbol_file_is_written_only_when_it_changes(tmp_path):
    prefix = str(tmp_path / "m")
    five, six = lstm_unroll(1, 5, 9, 4, 3, 9), lstm_unroll(1, 6, 9, 4, 3, 9)
    checkpoint.save_symbol(prefix, five)
    path = prefix + "-symbol.json"
    os.utime(path, (1, 1))
    checkpoint.save_symbol(prefix, five)
    assert os.stat(path).st_mtime == 1
    checkpoint.save_symbol(prefix, six)
    assert os.stat(path).st_mtime != 1
    assert mx.sym.load(path).tojson() == six.tojson()


def test_an_unwritable_prefix_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write under --prefix"):
        checkpoint.RunLock(str(tmp_path / "file" / "m")).acquire()


def test_one_run_per_prefix_and_the_lock_names_its_holder(tmp_path):
    prefix = str(tmp_path / "m")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, %r); import checkpoint; "
                               "lock = checkpoint.RunLock(%r).acquire(); print('held', flush=True); time.sleep(60)"
                               % (REPO, prefix)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match=r"another training run \(process %d\)" % holder.pid):
            checkpoint.RunLock(prefix).acquire()
    finally:
        holder.kill()
        holder.wait()
    # a killed holder leaves no lock behind
    with checkpoint.RunLock(prefix):
        assert open(prefix + "-train.lock").read() == str(os.getpid())
    assert not os.path.exists(prefix + "-train.lock")


def test_the_lock_is_never_written_through_a_link(tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    os.symlink(victim, tmp_path / "m-train.lock")
    with pytest.raises(CheckpointError, match="m-train.lock is a symbolic link"):
        checkpoint.RunLock(str(tmp_path / "m")).acquire()
    assert victim.read_text() == "mine"


def test_stale_temporaries_are_removed(tmp_path):
    prefix = str(tmp_path / "m")
    for name in ("m-0002.params.tmp4242", "m-symbol.json.tmp17", "m-0001.params", "other-0001.params.tmp3"):
        (tmp_path / name).write_text("x")
    checkpoint.remove_stale_temporaries(prefix)
    assert sorted(os.listdir(tmp_path)) == ["m-0001.params", "other-0001.params.tmp3"]


def test_vocabulary_checks_say_what_differs(tmp_path):
    prefix = str(tmp_path / "m")
    checkpoint.save_vocab(prefix, {"a": 1, "b": 2, "c": 3})
    checkpoint.check_vocab(prefix, {"a": 1, "b": 2, "c": 3}, 4)
    with pytest.raises(CheckpointError, match=r"only the checkpoint has 'c'; only the corpus has 'z'.*--data"):
        checkpoint.check_vocab(prefix, {"a": 1, "b": 2, "z": 3}, 4)
    with pytest.raises(CheckpointError, match=r"same 3 characters, numbered in another order \('c' is 3 in the "
                                              r"checkpoint, 2 here\)"):
        checkpoint.check_vocab(prefix, {"a": 1, "c": 2, "b": 3}, 4)
    os.remove(prefix + "-vocab.json")  # the tutorial's bare .params: only the label count tells
    with pytest.raises(CheckpointError, match="predicts 3 characters but the corpus has 4.*--data"):
        checkpoint.check_vocab(prefix, {"a": 1, "b": 2, "c": 3, "d": 4}, 4)


def test_a_truncated_optimizer_state_is_a_clear_error(tmp_path):
    path = tmp_path / "m-0001-unrolled.states"
    path.write_bytes(pickle.dumps(({}, mx.optimizer.SGD(learning_rate=0.1)))[:40])
    with pytest.raises(CheckpointError, match="unreadable .*delete it"):
        checkpoint.read_optimizer_states(str(path))
