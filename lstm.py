"""The symbolic graph of the character-level LSTM, as in MXNet's tutorial.

Parameter names (`embed_weight`, `l%d_i2h_weight`, `l%d_i2h_bias`, `l%d_h2h_weight`,
`l%d_h2h_bias`, `cls_weight`, `cls_bias`) and state names (`l%d_init_c`, `l%d_init_h`) are
the tutorial's, so checkpoints move freely between its code and ours.
"""
from collections import namedtuple

import numpy as np

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx

LSTMState = namedtuple("LSTMState", ["c", "h"])
LSTMParam = namedtuple("LSTMParam", ["i2h_weight", "i2h_bias", "h2h_weight", "h2h_bias"])


def lstm(num_hidden, indata, prev_state, param, seqidx, layeridx, dropout=0.):
    """One LSTM step; the gates are sliced in the order in, transform, forget, out."""
    if dropout > 0.:
        indata = mx.sym.Dropout(data=indata, p=dropout)
    i2h = mx.sym.FullyConnected(data=indata, weight=param.i2h_weight, bias=param.i2h_bias,
                                num_hidden=num_hidden * 4, name="t%d_l%d_i2h" % (seqidx, layeridx))
    return _cell(num_hidden, i2h, prev_state, param, seqidx, layeridx)


def _cell(num_hidden, i2h, prev_state, param, seqidx, layeridx):
    """The rest of a step once the input's product `i2h` is known."""
    h2h = mx.sym.FullyConnected(data=prev_state.h, weight=param.h2h_weight, bias=param.h2h_bias,
                                num_hidden=num_hidden * 4, name="t%d_l%d_h2h" % (seqidx, layeridx))
    gates = mx.sym.SliceChannel(i2h + h2h, num_outputs=4, name="t%d_l%d_slice" % (seqidx, layeridx))
    in_gate = mx.sym.Activation(gates[0], act_type="sigmoid")
    in_transform = mx.sym.Activation(gates[1], act_type="tanh")
    forget_gate = mx.sym.Activation(gates[2], act_type="sigmoid")
    out_gate = mx.sym.Activation(gates[3], act_type="sigmoid")
    next_c = forget_gate * prev_state.c + in_gate * in_transform
    next_h = out_gate * mx.sym.Activation(next_c, act_type="tanh")
    return LSTMState(c=next_c, h=next_h)


def _layer_params_and_states(num_lstm_layer):
    """The named parameter and initial-state variables of each layer."""
    params, states = [], []
    for i in range(num_lstm_layer):
        params.append(LSTMParam(i2h_weight=mx.sym.Variable("l%d_i2h_weight" % i),
                                i2h_bias=mx.sym.Variable("l%d_i2h_bias" % i),
                                h2h_weight=mx.sym.Variable("l%d_h2h_weight" % i),
                                h2h_bias=mx.sym.Variable("l%d_h2h_bias" % i)))
        states.append(LSTMState(c=mx.sym.Variable("l%d_init_c" % i),
                                h=mx.sym.Variable("l%d_init_h" % i)))
    return params, states


def _embed(data, input_size, num_embed):
    return mx.sym.Embedding(data=data, input_dim=input_size, output_dim=num_embed,
                            weight=mx.sym.Variable("embed_weight"), name="embed")


def _drop_embedding(embed, embed_dropout):
    """Dropout on the embedding's output, the first layer's input, which --dropout leaves whole
    (as the tutorial does): each character's vector loses entries, so the first layer cannot lean
    on any one of them."""
    return mx.sym.Dropout(data=embed, p=embed_dropout, name="embed_dropout") if embed_dropout > 0. else embed


def _first_steps(name, seq_len, batch_width):
    """The input `name` (batch, steps), of which a graph of `seq_len` steps reads the first
    seq_len when its batches come `batch_width` wide (a shorter bucket's, see BucketSentenceIter)."""
    variable = mx.sym.Variable(name)
    if batch_width is None or batch_width == seq_len:
        return variable
    return mx.sym.slice_axis(variable, axis=1, begin=0, end=seq_len)


def _softmax_over(pred, seq_len, batch_width):
    """The training graph's SoftmaxOutput: the label, (batch, steps), made time-major as the predictions."""
    label = mx.sym.transpose(data=_first_steps("softmax_label", seq_len, batch_width))
    return mx.sym.SoftmaxOutput(data=pred, label=mx.sym.Reshape(data=label, shape=(-1,)), name="softmax")


def _classify(hidden, num_label):
    return mx.sym.FullyConnected(data=hidden, num_hidden=num_label, weight=mx.sym.Variable("cls_weight"),
                                 bias=mx.sym.Variable("cls_bias"), name="pred")


def _stack_step(hidden, states, params, num_hidden, seqidx, dropout):
    """Runs one time step through every layer; dropout on the input of layers >= 1."""
    for i in range(len(params)):
        states[i] = lstm(num_hidden, indata=hidden, prev_state=states[i], param=params[i],
                         seqidx=seqidx, layeridx=i, dropout=dropout if i > 0 else 0.)
        hidden = states[i].h
    if dropout > 0.:
        hidden = mx.sym.Dropout(data=hidden, p=dropout)
    return hidden


def _with_final_states(softmax, final_c, final_h):
    """The training graph's outputs for stateful training: the softmax, then each final state in
    the order of init_states, behind BlockGrad (no gradient flows across batches)."""
    return mx.sym.Group([softmax] + [mx.sym.BlockGrad(state) for state in list(final_c) + list(final_h)])


def _drop_weight(weight, weight_drop, name):
    """DropConnect on a recurrent weight: one mask for the whole sequence of a batch, a new one each
    batch. It regularises the hidden-to-hidden path, which dropout between layers leaves alone."""
    return mx.sym.Dropout(data=weight, p=weight_drop, name=name) if weight_drop > 0. else weight


def lstm_unroll(num_lstm_layer, seq_len, input_size, num_hidden, num_embed, num_label, dropout=0.,
                state_outputs=False, weight_drop=0., embed_dropout=0., batch_width=None):
    """The training graph over `seq_len` steps: data and softmax_label are (batch, seq_len).

    The same cells as the tutorial's, built layer by layer rather than step by step, so that each
    layer's input-to-hidden product covers all steps in one FullyConnected. Everything is
    time-major: the predictions come out (seq_len * batch, num_label), and the label is
    transposed to the same order before SoftmaxOutput. `state_outputs` adds the final states
    (l%d_c for every layer, then l%d_h), for stateful training. `weight_drop` drops entries of
    each h2h weight in training (see _drop_weight), `embed_dropout` entries of the embedding's
    output (see _drop_embedding).
    """
    params, states = _layer_params_and_states(num_lstm_layer)
    if weight_drop > 0.:  # Dropout infers neither shape nor type backwards: the weights state theirs
        params = [p._replace(h2h_weight=_drop_weight(
            mx.sym.Variable("l%d_h2h_weight" % i, shape=(4 * num_hidden, num_hidden), dtype="float32"),
            weight_drop, "l%d_h2h_weight_drop" % i)) for i, p in enumerate(params)]
    embed = _drop_embedding(_embed(_first_steps("data", seq_len, batch_width), input_size, num_embed), embed_dropout)
    layer_input = mx.sym.transpose(embed, axes=(1, 0, 2))  # (seq_len, batch, num_embed)
    for i, (param, state) in enumerate(zip(params, states)):
        if dropout > 0. and i > 0:
            layer_input = mx.sym.Dropout(data=layer_input, p=dropout)
        i2h = mx.sym.FullyConnected(data=layer_input, weight=param.i2h_weight, bias=param.i2h_bias,
                                    num_hidden=num_hidden * 4, flatten=False, name="l%d_i2h" % i)
        i2h_steps = mx.sym.SliceChannel(i2h, num_outputs=seq_len, axis=0, squeeze_axis=True)
        outputs = []
        for t in range(seq_len):
            state = _cell(num_hidden, i2h_steps[t], state, param, t, i)
            outputs.append(state.h)
        states[i] = state
        layer_input = mx.sym.stack(*outputs, axis=0)  # (seq_len, batch, num_hidden)
    if dropout > 0.:
        layer_input = mx.sym.Dropout(data=layer_input, p=dropout)
    pred = _classify(mx.sym.reshape(layer_input, shape=(-1, num_hidden)), num_label)
    softmax = _softmax_over(pred, seq_len, batch_width)
    if not state_outputs:
        return softmax
    return _with_final_states(softmax, [s.c for s in states], [s.h for s in states])


def lstm_inference_symbol(num_lstm_layer, input_size, num_hidden, num_embed, num_label, dropout=0.):
    """One step for generation: outputs Group([softmax] + [c, h of each layer])."""
    params, states = _layer_params_and_states(num_lstm_layer)
    hidden = _embed(mx.sym.Variable("data"), input_size, num_embed)
    hidden = _stack_step(hidden, states, params, num_hidden, 0, dropout)
    softmax = mx.sym.SoftmaxOutput(data=_classify(hidden, num_label), name="softmax")
    outputs = [softmax]
    for state in states:
        outputs += [state.c, state.h]
    return mx.sym.Group(outputs)


# The fused mx.sym.RNN keeps all layers' parameters in one flat vector: every layer's i2h then
# h2h weight, then every layer's i2h then h2h bias, with the gates in the order in, forget,
# transform, out. The tutorial's order is in, transform, forget, out: blocks 0, 2, 1, 3 swap.
FUSED_GATE_ORDER = [0, 2, 1, 3]
FUSED_PARAMS = "lstm_parameters"


def reorder_gates(array, num_hidden, order=FUSED_GATE_ORDER):
    """`array`'s four gate blocks (along its first axis), the tutorial's order taken as `order` says."""
    blocks = array.reshape((4, num_hidden) + array.shape[1:])
    return blocks[order].reshape(array.shape)


def _fused_layout(num_lstm_layer):
    """The tutorial's parameter names in the order of the fused vector."""
    names = []
    for i in range(num_lstm_layer):
        names += ["l%d_i2h_weight" % i, "l%d_h2h_weight" % i]
    for i in range(num_lstm_layer):
        names += ["l%d_i2h_bias" % i, "l%d_h2h_bias" % i]
    return names


def lstm_param_shapes(num_lstm_layer, num_hidden, num_embed):
    """The shape of each tutorial-named LSTM parameter (the one place they are written out)."""
    shapes = {}
    for i in range(num_lstm_layer):
        shapes["l%d_i2h_weight" % i] = (4 * num_hidden, num_embed if i == 0 else num_hidden)
        shapes["l%d_h2h_weight" % i] = (4 * num_hidden, num_hidden)
        shapes["l%d_i2h_bias" % i] = shapes["l%d_h2h_bias" % i] = (4 * num_hidden,)
    return shapes


def fuse_lstm_params(arg_params, num_lstm_layer, num_hidden):
    """The tutorial's per-layer LSTM parameters (numpy or NDArray) as the fused RNN's flat vector (numpy)."""
    parts = []
    for name in _fused_layout(num_lstm_layer):
        value = arg_params[name]
        value = value.asnumpy() if hasattr(value, "asnumpy") else value
        parts.append(reorder_gates(value, num_hidden).ravel())
    return np.concatenate(parts)


def unfuse_lstm_params(flat, num_lstm_layer, num_hidden, num_embed):
    """The fused RNN's flat vector back as the tutorial's named per-layer arrays (numpy)."""
    flat = flat.asnumpy() if hasattr(flat, "asnumpy") else flat
    shapes = lstm_param_shapes(num_lstm_layer, num_hidden, num_embed)
    out, offset = {}, 0
    for name in _fused_layout(num_lstm_layer):
        size = int(np.prod(shapes[name]))
        out[name] = reorder_gates(flat[offset:offset + size].reshape(shapes[name]), num_hidden)
        offset += size
    if offset != flat.size:
        raise ValueError("a fused vector of %d values does not fit %d layers of %d units over %d inputs"
                         % (flat.size, num_lstm_layer, num_hidden, num_embed))
    return out


def fused_layer_param_name(layer):
    return "lstm_l%d_parameters" % layer


def fuse_layer_params(arg_params, layer, num_hidden):
    """Layer `layer`'s tutorial parameters as a one-layer mx.sym.RNN's vector (numpy)."""
    names = ("i2h_weight", "i2h_bias", "h2h_weight", "h2h_bias")
    return fuse_lstm_params({"l0_" + n: arg_params["l%d_%s" % (layer, n)] for n in names}, 1, num_hidden)


def fused_layer_arrays(arg_params, layer, num_hidden):
    """Layer `layer`'s tutorial parameters in the fused gate order (mx.sym.RNN's and oneDNN's): its
    i2h weight, h2h weight, and the two biases summed (numpy)."""
    value = {name: arg_params["l%d_%s" % (layer, name)] for name in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")}
    value = {name: reorder_gates(v.asnumpy() if hasattr(v, "asnumpy") else v, num_hidden) for name, v in value.items()}
    return value["i2h_weight"], value["h2h_weight"], value["i2h_bias"] + value["h2h_bias"]


def fused_inference_symbol(num_lstm_layer, input_size, num_hidden, num_embed, num_label):
    """One step for a batch of streams, each layer one mx.sym.RNN: inputs `data` (batch,),
    `lstm_l%d_parameters` (see fuse_layer_params), `lstm_init_h` and `lstm_init_c`
    (num_lstm_layer, batch, num_hidden); outputs Group([probabilities, h, c]).

    One RNN per layer, not one for all: for a single step oneDNN's stacked RNN is the slower of the
    two (BENCHMARKS.md).
    """
    hidden = mx.sym.expand_dims(_embed(mx.sym.Variable("data"), input_size, num_embed), axis=0)
    init_h, init_c = mx.sym.Variable("lstm_init_h"), mx.sym.Variable("lstm_init_c")
    next_h, next_c = [], []
    for i in range(num_lstm_layer):
        rnn = mx.sym.RNN(data=hidden, parameters=mx.sym.Variable(fused_layer_param_name(i)),
                         state=mx.sym.slice_axis(init_h, axis=0, begin=i, end=i + 1),
                         state_cell=mx.sym.slice_axis(init_c, axis=0, begin=i, end=i + 1),
                         state_size=num_hidden, num_layers=1, mode="lstm", state_outputs=True,
                         name="lstm_l%d" % i)
        hidden = rnn[0]
        next_h.append(rnn[1])
        next_c.append(rnn[2])
    hidden = mx.sym.reshape(hidden, shape=(-1, num_hidden))
    return mx.sym.Group([mx.sym.softmax(_classify(hidden, num_label)),
                         mx.sym.concat(*next_h, dim=0), mx.sym.concat(*next_c, dim=0)])


def _fused_sizes(num_lstm_layer, num_hidden, num_embed):
    """The number of values of each layer's weights in the fused vector, and of each layer's biases."""
    shapes = lstm_param_shapes(num_lstm_layer, num_hidden, num_embed)
    weights = [int(np.prod(shapes["l%d_i2h_weight" % i]) + np.prod(shapes["l%d_h2h_weight" % i]))
               for i in range(num_lstm_layer)]
    return weights, 2 * shapes["l0_i2h_bias"][0]


def _fused_layer_weights(params, layer, num_lstm_layer, num_hidden, num_embed, weight_drop):
    """Layer `layer`'s i2h then h2h weight in the fused vector, as a list of slices to concatenate:
    with `weight_drop` the h2h one is apart and dropped as _drop_weight."""
    weights, _ = _fused_sizes(num_lstm_layer, num_hidden, num_embed)
    begin, end = sum(weights[:layer]), sum(weights[:layer + 1])
    if weight_drop <= 0.:
        return [mx.sym.slice_axis(params, axis=0, begin=begin, end=end)]
    h2h_begin = end - 4 * num_hidden * num_hidden
    h2h = mx.sym.slice_axis(params, axis=0, begin=h2h_begin, end=end)
    return [mx.sym.slice_axis(params, axis=0, begin=begin, end=h2h_begin),
            _drop_weight(h2h, weight_drop, "lstm_l%d_h2h_weight_drop" % layer)]


def _fused_layer_params(params, layer, num_lstm_layer, num_hidden, num_embed, weight_drop):
    """Layer `layer`'s share of the fused vector, laid out as a one-layer mx.sym.RNN wants it."""
    weights, biases = _fused_sizes(num_lstm_layer, num_hidden, num_embed)
    biases_begin = sum(weights) + biases * layer
    return mx.sym.concat(*_fused_layer_weights(params, layer, num_lstm_layer, num_hidden, num_embed, weight_drop),
                         mx.sym.slice_axis(params, axis=0, begin=biases_begin, end=biases_begin + biases), dim=0)


def _fused_all_params(params, num_lstm_layer, num_hidden, num_embed, weight_drop):
    """The whole fused vector for one stacked mx.sym.RNN, its h2h weights dropped as _drop_weight."""
    if weight_drop <= 0.:
        return params
    weights, _ = _fused_sizes(num_lstm_layer, num_hidden, num_embed)
    parts = [part for i in range(num_lstm_layer)
             for part in _fused_layer_weights(params, i, num_lstm_layer, num_hidden, num_embed, weight_drop)]
    return mx.sym.concat(*parts, mx.sym.slice_axis(params, axis=0, begin=sum(weights), end=None), dim=0)


def _rnn_outputs(rnn, state_outputs, final_h, final_c):
    """An RNN operator's output sequence; with `state_outputs` its final h and c go on the lists."""
    if not state_outputs:
        return rnn
    final_h.append(rnn[1])
    final_c.append(rnn[2])
    return rnn[0]


def _rnn(kernel, bf16, **lstm):
    """An LSTM over a sequence: mx.sym.RNN (`kernel` "mxnet"), or the same operator on oneDNN 3
    ("onednn", onednn_rnn.py), in bfloat16 with `bf16`."""
    if kernel == "onednn":
        import onednn_rnn
        return onednn_rnn.rnn(bf16=bf16, **lstm)
    return mx.sym.RNN(mode="lstm", **lstm)


def fused_lstm_unroll(num_lstm_layer, seq_len, input_size, num_hidden, num_embed, num_label, dropout=0.,
                      state_outputs=False, weight_drop=0., embed_dropout=0., batch_width=None, kernel="mxnet",
                      bf16=False):
    """The training graph of `lstm_unroll` built on mx.sym.RNN (oneDNN on the CPU, cuDNN on a GPU):
    the same model and maths, with the LSTM parameters in one vector (`lstm_parameters`, see
    fuse_lstm_params) and the zero initial states fed as `lstm_init_c` and `lstm_init_h`,
    (batch, num_lstm_layer, num_hidden). Dropout falls where the tutorial puts it: on the input of
    layers >= 1 and on the top layer's output.

    Without dropout all layers are one RNN operator. With dropout each layer is its own RNN with
    a Dropout between them, because MXNet 1.9.1's oneDNN RNN ignores the operator's own `p`.
    `state_outputs` adds the final states (lstm_c, then lstm_h, batch-major as the inputs).
    `weight_drop`, `embed_dropout` and `batch_width` are as in lstm_unroll; `kernel` and `bf16`
    choose what runs the LSTM (_rnn).
    """
    embed = _drop_embedding(_embed(_first_steps("data", seq_len, batch_width), input_size, num_embed), embed_dropout)
    weights, biases = _fused_sizes(num_lstm_layer, num_hidden, num_embed)
    # shape and type stated: Dropout (weight_drop) infers neither backwards from the RNN operator
    params = mx.sym.Variable(FUSED_PARAMS, shape=(sum(weights) + biases * num_lstm_layer,), dtype="float32")
    # fed batch-major, so that FeedForward can split them across devices
    init_h = mx.sym.transpose(mx.sym.Variable("lstm_init_h"), axes=(1, 0, 2))
    init_c = mx.sym.transpose(mx.sym.Variable("lstm_init_c"), axes=(1, 0, 2))
    hidden = mx.sym.transpose(embed, axes=(1, 0, 2))  # (seq_len, batch, num_embed)
    final_h, final_c = [], []
    if dropout > 0.:
        for i in range(num_lstm_layer):
            if i > 0:
                hidden = mx.sym.Dropout(data=hidden, p=dropout)
            layer_params = _fused_layer_params(params, i, num_lstm_layer, num_hidden, num_embed, weight_drop)
            rnn = _rnn(kernel, bf16, data=hidden, parameters=layer_params,
                       state=mx.sym.slice_axis(init_h, axis=0, begin=i, end=i + 1),
                       state_cell=mx.sym.slice_axis(init_c, axis=0, begin=i, end=i + 1),
                       state_size=num_hidden, num_layers=1, state_outputs=state_outputs, name="lstm_l%d" % i)
            hidden = _rnn_outputs(rnn, state_outputs, final_h, final_c)
    else:
        all_params = _fused_all_params(params, num_lstm_layer, num_hidden, num_embed, weight_drop)
        rnn = _rnn(kernel, bf16, data=hidden, parameters=all_params, state=init_h, state_cell=init_c,
                   state_size=num_hidden, num_layers=num_lstm_layer, state_outputs=state_outputs, name="lstm")
        hidden = _rnn_outputs(rnn, state_outputs, final_h, final_c)
    hidden = mx.sym.reshape(hidden, shape=(-1, num_hidden))  # time-major, as the unrolled graph's concat
    if dropout > 0.:
        hidden = mx.sym.Dropout(data=hidden, p=dropout)
    softmax = _softmax_over(_classify(hidden, num_label), seq_len, batch_width)
    if not state_outputs:
        return softmax
    batch_major = [mx.sym.transpose(mx.sym.concat(*final, dim=0), axes=(1, 0, 2)) for final in (final_c, final_h)]
    return _with_final_states(softmax, batch_major[:1], batch_major[1:])


def init_states(num_lstm_layer, batch_size, num_hidden, backend="unrolled"):
    """The names and shapes of the initial LSTM states that the training graph takes as data."""
    if backend == "fused":  # batch-major, so that FeedForward can split them across devices
        return [("lstm_init_c", (batch_size, num_lstm_layer, num_hidden)),
                ("lstm_init_h", (batch_size, num_lstm_layer, num_hidden))]
    init_c = [("l%d_init_c" % i, (batch_size, num_hidden)) for i in range(num_lstm_layer)]
    init_h = [("l%d_init_h" % i, (batch_size, num_hidden)) for i in range(num_lstm_layer)]
    return init_c + init_h


def states_by_layer(states, backend):
    """The LSTM states of init_states' layout for `backend` (arrays) as one layout for both: each
    layer's c, then each layer's h, each (batch, num_hidden), as the unrolled backend takes them."""
    if backend != "fused":
        return list(states)
    c, h = states  # (batch, num_lstm_layer, num_hidden)
    return [c[:, i] for i in range(c.shape[1])] + [h[:, i] for i in range(h.shape[1])]


def states_for_backend(by_layer, backend):
    """states_by_layer's layout back as init_states' layout for `backend` (numpy arrays)."""
    if backend != "fused":
        return list(by_layer)
    layers = len(by_layer) // 2
    return [np.stack(by_layer[:layers], axis=1), np.stack(by_layer[layers:], axis=1)]


def tutorial_params(arg_params, num_lstm_layer, num_hidden, num_embed):
    """The parameters (NDArrays) under the tutorial's names, whichever backend trained them."""
    if FUSED_PARAMS not in arg_params:
        return arg_params
    params = {k: v for k, v in arg_params.items() if k != FUSED_PARAMS}
    unfused = unfuse_lstm_params(arg_params[FUSED_PARAMS], num_lstm_layer, num_hidden, num_embed)
    params.update({k: mx.nd.array(v) for k, v in unfused.items()})
    return params


def backend_params(params, backend, num_lstm_layer, num_hidden):
    """Tutorial-named parameters (NDArrays) as the given backend's graph takes them."""
    if backend != "fused":
        return params
    lstm_names = set(_fused_layout(num_lstm_layer))
    fused = {k: v for k, v in params.items() if k not in lstm_names}
    fused[FUSED_PARAMS] = mx.nd.array(fuse_lstm_params(params, num_lstm_layer, num_hidden))
    return fused


def training_bytes(num_lstm_layer, num_hidden, num_embed, num_label, batch_size, seq_len):
    """Less than the memory that training takes, whichever backend: the parameters with their gradients
    and an optimizer's two states, and what a batch keeps for its backward pass (each layer's gates,
    states and products at each step, the embedding and the softmax)."""
    params = sum(int(np.prod(shape)) for shape in lstm_param_shapes(num_lstm_layer, num_hidden, num_embed).values())
    params += num_label * num_embed + num_label * (num_hidden + 1)
    per_step = num_lstm_layer * 12 * num_hidden + num_embed + 3 * num_label
    return 4 * (4 * params + batch_size * seq_len * per_step)


def initial_params(initializer, num_lstm_layer, num_hidden, num_embed):
    """Tutorial-named LSTM parameters initialised as FeedForward initialises the unrolled graph's,
    so that both backends start from the same weights."""
    arrays = {}
    for name, shape in lstm_param_shapes(num_lstm_layer, num_hidden, num_embed).items():
        arrays[name] = mx.nd.zeros(shape)
        initializer(mx.init.InitDesc(name), arrays[name])
    return arrays
