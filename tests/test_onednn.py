"""onednn.py and onednn_rnn.py: the LSTM on oneDNN 3 against an independent numpy LSTM (its
gradients by finite differences), and against mx.sym.RNN, in float32 and bfloat16."""
import mxnet as mx
import numpy as np
import pytest

import onednn
import onednn_rnn
from conftest import needs_bf16
from reference import sigmoid

STEPS, BATCH, INPUTS, HIDDEN = 5, 3, 4, 6


def numpy_lstm(x, h0, c0, w_layer, w_iter, bias):
    """One layer in float64, gates in oneDNN's order (in, forget, candidate, out)."""
    h, c, ys, n = h0, c0, [], HIDDEN
    for t in range(len(x)):
        gates = x[t] @ w_layer.T + h @ w_iter.T + bias
        c = sigmoid(gates[:, n:2 * n]) * c + sigmoid(gates[:, :n]) * np.tanh(gates[:, 2 * n:3 * n])
        h = sigmoid(gates[:, 3 * n:]) * np.tanh(c)
        ys.append(h)
    return np.array(ys), h, c


def layer_inputs(seed, scale=0.5):
    rng = np.random.RandomState(seed)
    return [rng.randn(STEPS, BATCH, INPUTS), rng.randn(BATCH, HIDDEN), rng.randn(BATCH, HIDDEN),
            scale * rng.randn(4 * HIDDEN, INPUTS), scale * rng.randn(4 * HIDDEN, HIDDEN), rng.randn(4 * HIDDEN)]


def finite_differences(inputs, heads, eps=1e-6):
    """The gradient of sum(outputs * heads) with respect to every input, by central differences."""
    def loss(values):
        return sum((out * head).sum() for out, head in zip(numpy_lstm(*values), heads))
    grads = []
    for k, value in enumerate(inputs):
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            moved = [v.copy() for v in inputs]
            moved[k][index] += eps
            up = loss(moved)
            moved[k][index] -= 2 * eps
            grad[index] = (up - loss(moved)) / (2 * eps)
        grads.append(grad)
    return grads


def run_layer(bf16, seed):
    """A layer's outputs and gradients on random inputs, and the numpy LSTM's (its gradients by
    finite differences) on the same."""
    inputs = layer_inputs(seed)
    rng = np.random.RandomState(seed + 1)
    heads = [rng.randn(STEPS, BATCH, HIDDEN), rng.randn(BATCH, HIDDEN), rng.randn(BATCH, HIDDEN)]
    layer = onednn.Layer(STEPS, BATCH, INPUTS, HIDDEN, bf16=bf16)
    outputs = layer.forward(*inputs)
    return outputs, layer.backward(*heads), numpy_lstm(*inputs), finite_differences(inputs, heads)


def test_a_layer_is_the_numpy_lstm_outputs_and_every_gradient():
    outputs, grads, expected_outputs, expected_grads = run_layer(False, 0)
    for got, expected in zip(outputs, expected_outputs):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the gradients of the input sequence, both initial states, both weights and the bias
    for got, expected in zip(grads, expected_grads):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@needs_bf16
def test_a_bfloat16_layer_is_the_numpy_lstm_to_bfloat16_precision():
    """bf16 has 8 bits of mantissa: about 0.4% a product, which the recurrence carries on."""
    outputs, grads, expected_outputs, expected_grads = run_layer(True, 2)
    for got, expected in zip(outputs, expected_outputs):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=0.02)
        assert np.abs(got - expected).max() > 1e-6  # it really ran in bfloat16
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, atol=0.05 * max(1.0, np.abs(expected).max()))


def test_a_generation_step_is_the_numpy_lstm_of_a_stack_and_carries_its_states():
    """onednn.Step, a character at a time, against each layer of the numpy LSTM over the sequence
    and the classifier after the top one; the first layer's inputs are narrower than the others',
    and the states start where they are set."""
    rng = np.random.RandomState(9)
    layers = [(0.5 * rng.randn(4 * HIDDEN, width), 0.5 * rng.randn(4 * HIDDEN, HIDDEN), rng.randn(4 * HIDDEN))
              for width in (INPUTS, HIDDEN)]
    classifier = (rng.randn(7, HIDDEN), rng.randn(7))
    x, h0, c0 = rng.randn(STEPS, BATCH, INPUTS), rng.randn(2, BATCH, HIDDEN), rng.randn(2, BATCH, HIDDEN)
    step = onednn.Step(layers, classifier, BATCH)
    step.h[...], step.c[...] = h0, c0
    scores = np.array([step(x[t]).copy() for t in range(STEPS)])
    expected = x
    for i, layer in enumerate(layers):
        expected, h, c = numpy_lstm(expected, h0[i], c0[i], *layer)
        np.testing.assert_allclose(step.h[i], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(step.c[i], c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, expected @ classifier[0].T + classifier[1], rtol=1e-5, atol=1e-5)


def bind_and_run(symbol, values):
    executor = symbol.simple_bind(mx.cpu(), **{k: v.shape for k, v in values.items()})
    for name, value in values.items():
        executor.arg_dict[name][:] = value
    executor.forward(is_train=True)
    heads = [mx.nd.array(np.random.RandomState(7 + k).randn(*out.shape)) for k, out in enumerate(executor.outputs)]
    executor.backward(heads)
    return [out.asnumpy() for out in executor.outputs] + [executor.grad_dict[k].asnumpy() for k in values]


@pytest.mark.parametrize("state_outputs", [True, False])
def test_the_operator_is_mxnets_rnn_on_a_stack_of_layers(state_outputs):
    """Inputs, outputs and the flat parameter vector as mx.sym.RNN(mode="lstm") has them: the same
    outputs, final states and gradients (of the sequence, the vector and both initial states)."""
    layers, rng = 3, np.random.RandomState(5)
    size = onednn_rnn.layer_slices(layers, INPUTS, HIDDEN)[2]
    values = dict(data=rng.randn(STEPS, BATCH, INPUTS), parameters=0.4 * rng.randn(size),
                  state=rng.randn(layers, BATCH, HIDDEN), state_cell=rng.randn(layers, BATCH, HIDDEN))
    arguments = {k: mx.sym.Variable(k) for k in values}
    ours = onednn_rnn.rnn(**arguments, state_size=HIDDEN, num_layers=layers, state_outputs=state_outputs)
    mxnets = mx.sym.RNN(**arguments, state_size=HIDDEN, num_layers=layers, mode="lstm", state_outputs=state_outputs)
    for got, expected in zip(bind_and_run(ours, values), bind_and_run(mxnets, values)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_without_the_library_the_kernel_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(onednn, "library_path", lambda: None)
    monkeypatch.setattr(onednn, "_lib", None)
    with pytest.raises(onednn.OneDNNError, match="pip install -r requirements.txt"):
        onednn._library()
