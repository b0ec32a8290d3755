"""mx.sym.RNN's LSTM on oneDNN 3 (onednn.py): a custom operator with the RNN operator's inputs,
outputs and flat parameter vector, so that the fused graph runs on either and its checkpoints
stay the same.

    lstm = onednn_rnn.rnn(data, parameters, state, state_cell, state_size=512, num_layers=3,
                          state_outputs=True, bf16=True)

Inputs: `data` (steps, batch, inputs), time-major; `parameters`, every layer's i2h then h2h
weight, then every layer's i2h then h2h bias, gates in, forget, transform, out (mx.sym.RNN's
layout); `state`, `state_cell` (layers, batch, units). Outputs: the top layer's sequence, and with
`state_outputs` the final h and c of every layer.
"""
import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx
import numpy as np

import onednn

OP_TYPE = "onednn_lstm"


def rnn(data, parameters, state, state_cell, state_size, num_layers, state_outputs=False, bf16=False, name=None):
    """The symbol of the operator (as mx.sym.RNN(mode="lstm") with these arguments)."""
    return mx.sym.Custom(data=data, parameters=parameters, state=state, state_cell=state_cell, op_type=OP_TYPE,
                         state_size=state_size, num_layers=num_layers, state_outputs=state_outputs, bf16=bf16,
                         name=name)


def layer_slices(num_layers, input_size, hidden):
    """Where each layer's i2h and h2h weights and biases lie in the flat vector: (begin, shape) each."""
    offset, weights = 0, []
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else hidden
        weights.append(((offset, (4 * hidden, inputs)), (offset + 4 * hidden * inputs, (4 * hidden, hidden))))
        offset += 4 * hidden * (inputs + hidden)
    biases = [((offset + 8 * hidden * layer, (4 * hidden,)), (offset + 8 * hidden * layer + 4 * hidden, (4 * hidden,)))
              for layer in range(num_layers)]
    return weights, biases, offset + 8 * hidden * num_layers


def _piece(flat, where):
    begin, shape = where
    return flat[begin:begin + int(np.prod(shape))].reshape(shape)


class LSTMOp(mx.operator.CustomOp):
    """A stack of onednn.Layer, one a layer, over the operator's fixed shapes."""

    def __init__(self, steps, batch, input_size, hidden, num_layers, state_outputs, bf16):
        super().__init__()
        self.state_outputs = state_outputs
        self.layers = [onednn.Layer(steps, batch, input_size if i == 0 else hidden, hidden, bf16)
                       for i in range(num_layers)]
        self.weights, self.biases, _ = layer_slices(num_layers, input_size, hidden)

    def forward(self, is_train, req, in_data, out_data, aux):
        x, flat, h0, c0 = (array.asnumpy() for array in in_data)
        final_h, final_c = [], []
        for i, layer in enumerate(self.layers):
            bias = _piece(flat, self.biases[i][0]) + _piece(flat, self.biases[i][1])
            x, h, c = layer.forward(x, h0[i], c0[i], _piece(flat, self.weights[i][0]), _piece(flat, self.weights[i][1]),
                                    bias, train=is_train)
            final_h.append(h)
            final_c.append(c)
        self.assign(out_data[0], req[0], x)  # numpy, copied once into MXNet's array
        if self.state_outputs:
            self.assign(out_data[1], req[1], np.stack(final_h))
            self.assign(out_data[2], req[2], np.stack(final_c))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        dy = out_grad[0].asnumpy()
        layers, batch, hidden = in_data[2].shape
        dh = out_grad[1].asnumpy() if self.state_outputs else np.zeros((layers, batch, hidden), np.float32)
        dc = out_grad[2].asnumpy() if self.state_outputs else np.zeros((layers, batch, hidden), np.float32)
        dflat = np.zeros(in_data[1].shape, np.float32)
        dh0, dc0 = np.zeros_like(dh), np.zeros_like(dc)
        for i in reversed(range(len(self.layers))):
            dy, dh0[i], dc0[i], dw_layer, dw_iter, dbias = self.layers[i].backward(dy, dh[i], dc[i])
            for where, grad in zip(self.weights[i] + self.biases[i], (dw_layer, dw_iter, dbias, dbias)):
                _piece(dflat, where)[...] = grad
        for k, grad in enumerate((dy, dflat, dh0, dc0)):
            self.assign(in_grad[k], req[k], grad)


@mx.operator.register(OP_TYPE)
class LSTMProp(mx.operator.CustomOpProp):
    def __init__(self, state_size, num_layers, state_outputs="False", bf16="False"):
        super().__init__(need_top_grad=True)
        self.hidden, self.num_layers = int(state_size), int(num_layers)
        self.state_outputs, self.bf16 = state_outputs == "True", bf16 == "True"

    def list_arguments(self):
        return ["data", "parameters", "state", "state_cell"]

    def list_outputs(self):
        return ["output", "state_output", "statecell_output"] if self.state_outputs else ["output"]

    def infer_shape(self, in_shape):
        steps, batch, inputs = in_shape[0]
        states = (self.num_layers, batch, self.hidden)
        flat = (layer_slices(self.num_layers, inputs, self.hidden)[2],)
        outputs = [(steps, batch, self.hidden)] + ([states, states] if self.state_outputs else [])
        return [in_shape[0], flat, states, states], outputs, []

    def create_operator(self, ctx, shapes, dtypes):
        steps, batch, inputs = shapes[0]
        return LSTMOp(steps, batch, inputs, self.hidden, self.num_layers, self.state_outputs, self.bf16)
