import os

import mxnet as mx
import numpy as np
import pytest

import checkpoint
import reference
from checkpoint import CheckpointError
from lstm import lstm_unroll


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


def test_bad_vocab_file_is_a_clear_error(tmp_path):
    prefix = str(tmp_path / "m")
    open(prefix + "-vocab.json", "w").write("{not json")
    with pytest.raises(CheckpointError, match="cannot read the vocabulary"):
        checkpoint.load_vocab(prefix)
    open(prefix + "-vocab.json", "w").write('{"ab": 1}')
    with pytest.raises(CheckpointError, match="single characters"):
        checkpoint.load_vocab(prefix)
