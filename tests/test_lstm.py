"""lstm.py: the graphs against an independent numpy LSTM (the fused one on either kernel), the fused
layouts, bfloat16."""
import functools
import re

import mxnet as mx
import numpy as np
import pytest

import reference
from conftest import needs_bf16
from lstm import (FUSED_PARAMS, LSTMParam, LSTMState, fuse_layer_params, fuse_lstm_params,
                  fused_inference_symbol, fused_layer_param_name, fused_lstm_unroll, init_states, lstm_inference_symbol,
                  lstm_unroll, unfuse_lstm_params)

LAYERS, VOCAB, HIDDEN, EMBED, SEQ, BATCH = 2, 11, 6, 5, 7, 3


def is_lstm_param(name):
    """The tutorial's per-layer LSTM parameters, l0_i2h_weight to l%d_h2h_bias (the fused vector's part)."""
    return re.fullmatch(r"l\d+_(i2h|h2h)_(weight|bias)", name) is not None


def as_fused_params(params):
    """The tutorial's parameters as the fused graph takes them: the LSTM's in one vector."""
    return dict({k: v for k, v in params.items() if not is_lstm_param(k)},
                **{FUSED_PARAMS: fuse_lstm_params(params, LAYERS, HIDDEN)})


def graph_for(backend):
    """The training graph builder and a parameter converter for a --rnn-backend, or "onednn": the
    fused graph with its LSTM on oneDNN 3 (onednn_rnn.py) instead of mx.sym.RNN."""
    if backend == "unrolled":
        return lstm_unroll, dict
    return functools.partial(fused_lstm_unroll, kernel="onednn" if backend == "onednn" else "mxnet"), as_fused_params


def layout(backend):
    """The parameter and state layout of a backend of graph_for: "unrolled" or "fused"."""
    return "unrolled" if backend == "unrolled" else "fused"


def bind(symbol, params, shapes, train_params=False):
    grad_req = {name: "write" if train_params and name in params else "null" for name in symbol.list_arguments()}
    executor = symbol.simple_bind(mx.cpu(), grad_req=grad_req, **shapes)
    for name, value in params.items():
        executor.arg_dict[name][:] = value
    return executor


def state_shapes(batch):
    shapes = {}
    for i in range(LAYERS):
        shapes["l%d_init_c" % i] = (batch, HIDDEN)
        shapes["l%d_init_h" % i] = (batch, HIDDEN)
    return shapes


def test_namedtuples_have_the_tutorial_fields():
    assert LSTMState._fields == ("c", "h")
    assert LSTMParam._fields == ("i2h_weight", "i2h_bias", "h2h_weight", "h2h_bias")


def test_unrolled_graph_has_the_tutorial_names():
    symbol = lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB)
    expected = {"data", "softmax_label", "embed_weight", "cls_weight", "cls_bias"}
    for i in range(LAYERS):
        expected |= {"l%d_%s" % (i, n) for n in ("i2h_weight", "i2h_bias", "h2h_weight", "h2h_bias", "init_c", "init_h")}
    assert set(symbol.list_arguments()) == expected
    assert symbol.list_outputs() == ["softmax_output"]


def test_unrolled_graph_matches_numpy_lstm():
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=1)
    data = np.random.RandomState(2).randint(0, VOCAB, size=(BATCH, SEQ))
    shapes = dict(state_shapes(BATCH), data=(BATCH, SEQ), softmax_label=(BATCH, SEQ))
    executor = bind(lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB), params, shapes)
    executor.arg_dict["data"][:] = data
    executor.forward(is_train=False)
    expected = reference.unrolled_probs(params, data, LAYERS, HIDDEN)
    np.testing.assert_allclose(executor.outputs[0].asnumpy(), expected, rtol=1e-4, atol=1e-6)


def test_label_is_matched_time_major():
    """The softmax gradient is p - onehot(label): the label must line up with the time-major rows."""
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=3)
    rng = np.random.RandomState(4)
    data = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    label = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    shapes = dict(state_shapes(BATCH), data=(BATCH, SEQ), softmax_label=(BATCH, SEQ))
    executor = bind(lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB), params, shapes, train_params=True)
    executor.arg_dict["data"][:] = data
    executor.arg_dict["softmax_label"][:] = label
    executor.forward(is_train=True)
    executor.backward()
    probs = reference.unrolled_probs(params, data, LAYERS, HIDDEN)
    onehot = np.eye(VOCAB)[label.T.reshape(-1)]
    np.testing.assert_allclose(executor.grad_dict["cls_bias"].asnumpy(), (probs - onehot).sum(axis=0),
                               rtol=1e-4, atol=1e-5)


def test_dropout_only_in_training():
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=5)
    data = np.random.RandomState(6).randint(0, VOCAB, size=(BATCH, SEQ))
    shapes = dict(state_shapes(BATCH), data=(BATCH, SEQ), softmax_label=(BATCH, SEQ))
    symbol = lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB, dropout=0.5)
    executor = bind(symbol, params, shapes, train_params=True)
    executor.arg_dict["data"][:] = data
    expected = reference.unrolled_probs(params, data, LAYERS, HIDDEN)
    executor.forward(is_train=False)
    np.testing.assert_allclose(executor.outputs[0].asnumpy(), expected, rtol=1e-4, atol=1e-6)
    executor.forward(is_train=True)
    assert np.abs(executor.outputs[0].asnumpy() - expected).max() > 1e-3
    # one dropout (over all steps) on the input of each layer above the first, one on the top output
    ops = [n for n in symbol.get_internals().list_outputs() if n.startswith("dropout") and n.endswith("_output")]
    assert len(ops) == LAYERS


def test_inference_symbol_matches_numpy_steps():
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=7)
    symbol = lstm_inference_symbol(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB)
    assert len(symbol.list_outputs()) == 1 + 2 * LAYERS
    executor = bind(symbol, params, dict(state_shapes(1), data=(1,)))
    states = reference.zero_states(LAYERS, 1, HIDDEN)
    for char in [3, 1, 4, 1, 5]:
        executor.arg_dict["data"][:] = char
        executor.forward(is_train=False)
        probs = reference.step(params, [char], states)
        np.testing.assert_allclose(executor.outputs[0].asnumpy(), probs, rtol=1e-4, atol=1e-6)
        for layer, (c, h) in enumerate(states):
            np.testing.assert_allclose(executor.outputs[1 + 2 * layer].asnumpy(), c, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(executor.outputs[2 + 2 * layer].asnumpy(), h, rtol=1e-4, atol=1e-6)
            executor.arg_dict["l%d_init_c" % layer][:] = c
            executor.arg_dict["l%d_init_h" % layer][:] = h


def test_fused_vector_round_trips_the_tutorial_names():
    params = reference.random_params(3, VOCAB, HIDDEN, EMBED, VOCAB, seed=8)
    flat = fuse_lstm_params(params, 3, HIDDEN)
    assert flat.size == sum(v.size for k, v in params.items() if is_lstm_param(k))
    back = unfuse_lstm_params(flat, 3, HIDDEN, EMBED)
    assert set(back) == {k for k in params if is_lstm_param(k)}
    for name, value in back.items():
        np.testing.assert_array_equal(value, params[name])
    # the in-gate rows stay first, the transform and forget blocks swap
    np.testing.assert_array_equal(flat[HIDDEN * EMBED:2 * HIDDEN * EMBED],
                                  params["l0_i2h_weight"][2 * HIDDEN:3 * HIDDEN].ravel())


def test_fused_step_matches_numpy_lstm():
    batch = 3
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=9)
    symbol = fused_inference_symbol(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB)
    shapes = dict(data=(batch,), lstm_init_h=(LAYERS, batch, HIDDEN), lstm_init_c=(LAYERS, batch, HIDDEN))
    executor = symbol.simple_bind(mx.cpu(), grad_req="null", **shapes)
    for name in ("embed_weight", "cls_weight", "cls_bias"):
        executor.arg_dict[name][:] = params[name]
    for layer in range(LAYERS):
        executor.arg_dict[fused_layer_param_name(layer)][:] = fuse_layer_params(params, layer, HIDDEN)
    states = reference.zero_states(LAYERS, batch, HIDDEN)
    for ids in ([1, 2, 3], [4, 0, 10], [7, 7, 7]):
        executor.arg_dict["data"][:] = ids
        executor.forward(is_train=False)
        probs, h, c = [out.asnumpy() for out in executor.outputs]
        np.testing.assert_allclose(probs, reference.step(params, ids, states), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(h, np.stack([s[1] for s in states]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(c, np.stack([s[0] for s in states]), rtol=1e-4, atol=1e-6)
        executor.arg_dict["lstm_init_h"][:] = h
        executor.arg_dict["lstm_init_c"][:] = c


@pytest.mark.parametrize("kernel", ["mxnet", "onednn"])
def test_fused_training_graph_matches_the_unrolled_one(kernel):
    """Same parameters through both graphs, the fused one's LSTM on mx.sym.RNN or on oneDNN 3: the
    same probabilities and the same gradients."""
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=10)
    rng = np.random.RandomState(11)
    data = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    label = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    unrolled = bind(lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB), params,
                    dict(state_shapes(BATCH), data=(BATCH, SEQ), softmax_label=(BATCH, SEQ)), train_params=True)
    fused_params = as_fused_params(params)
    fused = bind(fused_lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB, kernel=kernel), fused_params,
                 dict(data=(BATCH, SEQ), softmax_label=(BATCH, SEQ), lstm_init_h=(BATCH, LAYERS, HIDDEN),
                      lstm_init_c=(BATCH, LAYERS, HIDDEN)), train_params=True)
    for executor in (unrolled, fused):
        executor.arg_dict["data"][:] = data
        executor.arg_dict["softmax_label"][:] = label
        executor.forward(is_train=True)
        executor.backward()
    np.testing.assert_allclose(fused.outputs[0].asnumpy(), unrolled.outputs[0].asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.outputs[0].asnumpy(), reference.unrolled_probs(params, data, LAYERS, HIDDEN),
                               rtol=1e-4, atol=1e-6)
    grads = unfuse_lstm_params(fused.grad_dict[FUSED_PARAMS], LAYERS, HIDDEN, EMBED)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, unrolled.grad_dict[name].asnumpy(), rtol=1e-4, atol=1e-5)
    for name in ("embed_weight", "cls_weight"):
        np.testing.assert_allclose(fused.grad_dict[name].asnumpy(), unrolled.grad_dict[name].asnumpy(),
                                   rtol=1e-4, atol=1e-5)


def bind_training_graph(backend, params, outputs=None, **graph_options):
    """The backend's training graph over (BATCH, SEQ), fed `params` (the tutorial's names), with
    gradients asked for: an executor that computes none runs Dropout as in inference. `outputs`
    names inner outputs to read back instead of the softmax."""
    unroll, convert = graph_for(backend)
    symbol = unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB, **graph_options)
    if outputs:
        symbol = mx.sym.Group([symbol.get_internals()[name] for name in outputs])
    arguments = symbol.list_arguments()
    shapes = dict(init_states(LAYERS, BATCH, HIDDEN, layout(backend)), data=(BATCH, SEQ), softmax_label=(BATCH, SEQ))
    return bind(symbol, {k: v for k, v in convert(params).items() if k in arguments},
                {k: v for k, v in shapes.items() if k in arguments}, train_params=True)


@pytest.mark.parametrize("backend", ["fused", "onednn"])
def test_fused_graph_with_dropout_is_the_unrolled_one(backend):
    """With dropout the layers are separate RNNs over slices of the one vector: a dropout too small
    to drop anything gives the unrolled graph's probabilities and gradients."""
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=12)
    rng = np.random.RandomState(13)
    data = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    label = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    unrolled = bind(lstm_unroll(LAYERS, SEQ, VOCAB, HIDDEN, EMBED, VOCAB, dropout=1e-9), params,
                    dict(state_shapes(BATCH), data=(BATCH, SEQ), softmax_label=(BATCH, SEQ)), train_params=True)
    fused = bind_training_graph(backend, params, dropout=1e-9)
    assert fused.arg_dict[FUSED_PARAMS].shape == (fuse_lstm_params(params, LAYERS, HIDDEN).size,)
    for executor in (unrolled, fused):
        executor.arg_dict["data"][:] = data
        executor.arg_dict["softmax_label"][:] = label
        executor.forward(is_train=True)
        executor.backward()
    np.testing.assert_allclose(fused.outputs[0].asnumpy(), reference.unrolled_probs(params, data, LAYERS, HIDDEN),
                               rtol=1e-4, atol=1e-6)
    grads = unfuse_lstm_params(fused.grad_dict[FUSED_PARAMS], LAYERS, HIDDEN, EMBED)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, unrolled.grad_dict[name].asnumpy(), rtol=1e-4, atol=1e-5)


def test_fused_dropout_reaches_the_layers_below_the_top():
    """In training the top layer's output (before the dropout on it) must already differ from the
    deterministic one, as in the unrolled graph; the first layer's input gets no dropout."""
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=14)
    data = np.random.RandomState(15).randint(0, VOCAB, size=(BATCH, SEQ))
    names = ["lstm_l0_output", "lstm_l%d_output" % (LAYERS - 1)]
    executor = bind_training_graph("fused", params, names, dropout=0.5)
    executor.arg_dict["data"][:] = data
    first, top = [out.asnumpy().copy() for out in executor.forward(is_train=False)]
    first_train, top_train = [out.asnumpy() for out in executor.forward(is_train=True)]
    np.testing.assert_allclose(first_train, first, rtol=1e-6)
    assert np.abs(top_train - top).max() > 1e-3


@needs_bf16
@pytest.mark.parametrize("dropout", [0., 1e-9])
def test_the_bfloat16_kernel_keeps_the_maths_to_bfloat16_precision(dropout):
    """--bf16: the fused graph on oneDNN 3 in bfloat16 gives the numpy LSTM's probabilities and the
    classifier's gradient to bfloat16's precision (8 bits of mantissa), its arrays float32."""
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=16)
    rng = np.random.RandomState(17)
    data = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    label = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    executor = bind_training_graph("onednn", params, dropout=dropout, bf16=True)
    executor.arg_dict["data"][:] = data
    executor.arg_dict["softmax_label"][:] = label
    executor.forward(is_train=True)
    executor.backward()
    probs = reference.unrolled_probs(params, data, LAYERS, HIDDEN)
    got = executor.outputs[0].asnumpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, probs, rtol=0.03, atol=2e-3)
    assert np.abs(got - probs).max() > 1e-6  # the LSTM really ran in bfloat16
    onehot = np.eye(VOCAB)[label.T.reshape(-1)]
    np.testing.assert_allclose(executor.grad_dict["cls_bias"].asnumpy(), (probs - onehot).sum(axis=0), atol=0.05)


@pytest.mark.parametrize("backend", ["unrolled", "fused", "onednn"])
def test_a_text_in_two_pieces_with_the_state_carried_is_the_text_in_one(backend):
    """Stateful training's graph: the final states of the first piece, fed as the initial states of
    the second, give the probabilities of the whole text in one piece (and of the numpy LSTM)."""
    unroll, convert = graph_for(backend)
    params = convert(reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=20))
    data = np.random.RandomState(21).randint(1, VOCAB, size=(BATCH, 2 * SEQ))

    def run(seq_len, pieces):
        executor = bind(unroll(LAYERS, seq_len, VOCAB, HIDDEN, EMBED, VOCAB, state_outputs=True), params,
                        dict(init_states(LAYERS, BATCH, HIDDEN, layout(backend)), data=(BATCH, seq_len),
                             softmax_label=(BATCH, seq_len)))
        probs = []
        for piece in pieces:
            executor.arg_dict["data"][:] = piece
            executor.forward(is_train=True)  # training mode: dropout is 0, so it must change nothing
            probs.append(executor.outputs[0].asnumpy())
            for (name, _), final in zip(init_states(LAYERS, BATCH, HIDDEN, layout(backend)), executor.outputs[1:]):
                executor.arg_dict[name][:] = final
        return probs

    whole = run(2 * SEQ, [data])[0]
    first, second = run(SEQ, [data[:, :SEQ], data[:, SEQ:]])
    # time-major rows: the first SEQ steps of the whole are the first piece's
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole, reference.unrolled_probs(reference.random_params(
        LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=20), data, LAYERS, HIDDEN), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend,dropout", [("unrolled", 0.), ("fused", 0.), ("fused", 1e-9), ("onednn", 0.),
                                             ("onednn", 1e-9)])
def test_weight_drop_is_one_mask_on_the_h2h_weights_for_all_steps(backend, dropout):
    """--weight-drop in training: the probabilities are the numpy LSTM's with each h2h weight masked
    and scaled by 1 / (1 - p), one mask for every step (read back from the gradient, which is 0
    exactly where a weight was dropped); outside training the weights are whole. dropout 1e-9 gives
    the fused graph's one-RNN-a-layer path, 0 its one stacked RNN."""
    p = 0.5
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=30)
    rng = np.random.RandomState(31)
    data = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    executor = bind_training_graph(backend, params, dropout=dropout, weight_drop=p)
    executor.arg_dict["data"][:] = data
    executor.arg_dict["softmax_label"][:] = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    whole = reference.unrolled_probs(params, data, LAYERS, HIDDEN)
    np.testing.assert_allclose(executor.forward(is_train=False)[0].asnumpy(), whole, rtol=1e-4, atol=1e-6)

    probs = executor.forward(is_train=True)[0].asnumpy()
    executor.backward()
    if backend != "unrolled":
        grads = unfuse_lstm_params(executor.grad_dict[FUSED_PARAMS], LAYERS, HIDDEN, EMBED)
    else:
        grads = {k: v.asnumpy() for k, v in executor.grad_dict.items() if v is not None}
    masked = dict(params)
    for i in range(LAYERS):
        kept = grads["l%d_h2h_weight" % i] != 0
        assert 0.2 < kept.mean() < 0.8
        assert (grads["l%d_i2h_weight" % i] != 0).all()  # the input weights are never dropped
        masked["l%d_h2h_weight" % i] = params["l%d_h2h_weight" % i] * kept / (1 - p)
    np.testing.assert_allclose(probs, reference.unrolled_probs(masked, data, LAYERS, HIDDEN), rtol=1e-4, atol=1e-6)
    assert np.abs(probs - whole).max() > 1e-3


@pytest.mark.parametrize("backend,dropout", [("unrolled", 0.), ("unrolled", 1e-9), ("fused", 0.), ("fused", 1e-9),
                                             ("onednn", 1e-9)])
def test_embed_dropout_masks_the_first_layers_input(backend, dropout):
    """--embed-dropout in training: the embedding's output, read back from the graph, is each
    character's vector with entries zeroed or scaled by 1 / (1 - p), and the probabilities are the
    numpy LSTM's fed those vectors; outside training nothing is dropped. dropout 1e-9 (masks that
    keep all) builds the between-layer Dropouts, and on the fused graph one RNN a layer."""
    p = 0.5
    params = reference.random_params(LAYERS, VOCAB, HIDDEN, EMBED, VOCAB, seed=40)
    rng = np.random.RandomState(41)
    data = rng.randint(0, VOCAB, size=(BATCH, SEQ))
    executor = bind_training_graph(backend, params, ["softmax_output", "embed_dropout_output"],
                                   dropout=dropout, embed_dropout=p)
    executor.arg_dict["data"][:] = data
    whole = reference.unrolled_probs(params, data, LAYERS, HIDDEN)
    np.testing.assert_allclose(executor.forward(is_train=False)[0].asnumpy(), whole, rtol=1e-4, atol=1e-6)

    probs, dropped = (out.asnumpy() for out in executor.forward(is_train=True))
    scales = dropped / params["embed_weight"][data]  # (batch, seq, embed); the random weights have no zeros
    kept = scales != 0
    assert 0.2 < kept.mean() < 0.8
    np.testing.assert_allclose(scales[kept], 1 / (1 - p), rtol=1e-5)
    np.testing.assert_allclose(probs, reference.unrolled_probs(params, data, LAYERS, HIDDEN, scales),
                               rtol=1e-4, atol=1e-6)
    assert np.abs(probs - whole).max() > 1e-3
