"""rnn_model.py: LSTMInferenceModel against the numpy LSTM step, and loading checkpoints."""
import mxnet as mx
import numpy as np
import pytest

import checkpoint
import reference
from rnn_model import LSTMInferenceModel, load_inference_model

LAYERS, VOCAB, HIDDEN, EMBED = 2, 10, 5, 4


# the step on MXNet's graph and on oneDNN 3
kernels = pytest.mark.parametrize("kernel", ["mxnet", "onednn"])


def make_model(params, kernel, batch_size=1):
    return LSTMInferenceModel(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, batch_size=batch_size, kernel=kernel,
                              arg_params={k: mx.nd.array(v) for k, v in params.items()})


@kernels
def test_steps_like_numpy_and_carries_state(kernel):
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=11)
    model = make_model(params, kernel)
    assert model.kernel == kernel
    states = reference.zero_states(LAYERS, 1, HIDDEN)
    for position, char in enumerate([1, 2, 3, 9, 0, 4]):
        prob = model.forward(mx.nd.array([char]), new_seq=position == 0)
        assert prob.shape == (1, VOCAB)
        np.testing.assert_allclose(prob, reference.step(params, [char], states), rtol=1e-4, atol=1e-6)


@kernels
def test_new_seq_restarts_from_zero_states(kernel):
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=12)
    model = make_model(params, kernel)
    first = model.forward(mx.nd.array([3]), new_seq=True)
    second = model.forward(mx.nd.array([3]))
    again = model.forward(mx.nd.array([3]), new_seq=True)
    np.testing.assert_allclose(again, first, rtol=1e-6)
    assert np.abs(second - first).max() > 1e-4


@kernels
def test_load_inference_model_reads_shapes_from_the_checkpoint(tmp_path, kernel):
    prefix = str(tmp_path / "m")
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=13)
    for epoch in (1, 2):
        checkpoint.save_checkpoint(prefix, epoch, None, {k: mx.nd.array(v * epoch) for k, v in params.items()}, {})
    model, epoch = load_inference_model(prefix, kernel=kernel)
    assert epoch == 2
    scaled = {k: v * 2 for k, v in params.items()}
    prob = model.forward(mx.nd.array([5]), new_seq=True)
    np.testing.assert_allclose(prob, reference.step(scaled, [5], reference.zero_states(LAYERS, 1, HIDDEN)),
                               rtol=1e-4, atol=1e-6)


@kernels
def test_streams_are_independent_and_restart_alone(kernel):
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=14)
    model = make_model(params, kernel, batch_size=3)
    states = reference.zero_states(LAYERS, 3, HIDDEN)
    for position, ids in enumerate([[1, 2, 3], [4, 4, 9], [0, 5, 6]]):
        prob = model.forward(np.array(ids), new_seq=position == 0)
        np.testing.assert_allclose(prob, reference.step(params, ids, states), rtol=1e-4, atol=1e-6)
    model.restart_streams([1])
    states = [(c * [[1], [0], [1]], h * [[1], [0], [1]]) for c, h in states]
    prob = model.forward(np.array([7, 8, 2]))
    np.testing.assert_allclose(prob, reference.step(params, [7, 8, 2], states), rtol=1e-4, atol=1e-6)


def test_a_checkpoint_moves_between_devices(tmp_path, monkeypatch):
    """Parameters saved from one device load on another: here cpu(1) to cpu(0) and back, chosen
    through the device choice as generate.py makes it (MXNet writes no device into .params)."""
    import device
    import generate
    prefix = str(tmp_path / "m")
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=15)
    checkpoint.save_checkpoint(prefix, 1, None, {k: mx.nd.array(v, ctx=mx.cpu(1)) for k, v in params.items()}, {})
    checkpoint.save_vocab(prefix, {chr(ord("a") + i): i + 1 for i in range(VOCAB - 1)})
    texts = {}
    for ctx in (mx.cpu(0), mx.cpu(1)):
        monkeypatch.setattr(device, "choose_contexts", lambda gpus=None, cpu=False, ctx=ctx: ([ctx], "test"))
        model, _ = load_inference_model(prefix, ctx=device.choose_contexts()[0][0], kernel="mxnet")
        assert model.step.executor.arg_dict["cls_weight"].context == ctx
        args = generate.parse_args(["abc", "--prefix", prefix, "--length", "20"])
        texts[ctx] = generate.run(args)
    assert texts[mx.cpu(0)] == texts[mx.cpu(1)] and len(texts[mx.cpu(0)]) == 3 + 20 + 1
