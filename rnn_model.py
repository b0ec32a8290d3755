"""LSTMInferenceModel: a trained checkpoint's parameters, stepped one character at a time."""
import device  # before mxnet: it makes the CUDA libraries visible
import mxnet as mx
import numpy as np

import checkpoint
from lstm import fuse_layer_params, fused_inference_symbol, fused_layer_arrays, fused_layer_param_name


class LSTMInferenceModel:
    """Steps the model one character at a time for `batch_size` independent streams, carrying
    the LSTM states from call to call.

    The step runs on `kernel`: "mxnet", one fused mx.sym.RNN per layer (the tutorial built some
    forty small operators instead), or "onednn", oneDNN 3 with the weights kept in its own layout
    (onednn.Step); by default the one device.lstm_kernel gives for `ctx`, as in training. The
    parameters are the tutorial's, converted on loading. `dropout` is accepted for the tutorial's
    signature: inference applies none.
    """

    def __init__(self, num_lstm_layer, input_size, num_hidden, num_embed, num_label, arg_params,
                 ctx=mx.cpu(), dropout=0., batch_size=1, kernel=None):
        self.num_label, self.batch_size = num_label, batch_size
        self.kernel = kernel or device.lstm_kernel([ctx])
        step = OneDNNStep if self.kernel == "onednn" else MXNetStep
        self.step = step(num_lstm_layer, input_size, num_hidden, num_embed, num_label, arg_params, ctx, batch_size)

    def forward(self, input_data, new_seq=False):
        """The (batch_size, num_label) probabilities of each stream's next character after
        `input_data`, the current character ids (an NDArray, array or list of batch_size ids)."""
        if new_seq:
            self.step.set_states(0., 0.)
        return self.step.forward(input_data)

    def get_states(self):
        """The (h, c) states as numpy arrays of shape (num_lstm_layer, batch_size, num_hidden)."""
        return self.step.get_states()

    def set_states(self, h, c):
        self.step.set_states(h, c)

    def restart_streams(self, streams):
        """Zeroes the states of the given streams only."""
        h, c = self.get_states()
        h[:, streams] = 0.
        c[:, streams] = 0.
        self.set_states(h, c)


class MXNetStep:
    """The step as one MXNet graph (lstm.fused_inference_symbol) bound once."""

    def __init__(self, num_lstm_layer, input_size, num_hidden, num_embed, num_label, arg_params, ctx, batch_size):
        sym = fused_inference_symbol(num_lstm_layer, input_size, num_hidden, num_embed, num_label)
        state_shape = (num_lstm_layer, batch_size, num_hidden)
        self.executor = sym.simple_bind(ctx=ctx, grad_req="null", data=(batch_size,),
                                        lstm_init_h=state_shape, lstm_init_c=state_shape)
        args = self.executor.arg_dict
        for name in ("embed_weight", "cls_weight", "cls_bias"):
            arg_params[name].copyto(args[name])
        for layer in range(num_lstm_layer):
            args[fused_layer_param_name(layer)][:] = fuse_layer_params(arg_params, layer, num_hidden)
        self.prob, self.next_h, self.next_c = self.executor.outputs
        self.h, self.c = args["lstm_init_h"], args["lstm_init_c"]

    def forward(self, ids):
        self.executor.arg_dict["data"][:] = ids
        self.executor.forward(is_train=False)
        self.next_h.copyto(self.h)
        self.next_c.copyto(self.c)
        return self.prob.asnumpy()

    def get_states(self):
        return self.h.asnumpy(), self.c.asnumpy()

    def set_states(self, h, c):
        self.h[:] = h
        self.c[:] = c


class OneDNNStep:
    """The step on the CPU in numpy and oneDNN 3: the embedding looked up in numpy, the layers and
    the classifier stepped by onednn.Step, the softmax in numpy (float32)."""

    def __init__(self, num_lstm_layer, input_size, num_hidden, num_embed, num_label, arg_params, ctx, batch_size):
        import onednn
        self.embed_weight = arg_params["embed_weight"].asnumpy()
        self.layers = onednn.Step([fused_layer_arrays(arg_params, i, num_hidden) for i in range(num_lstm_layer)],
                                  (arg_params["cls_weight"].asnumpy(), arg_params["cls_bias"].asnumpy()), batch_size)

    def forward(self, ids):
        ids = ids.asnumpy() if isinstance(ids, mx.nd.NDArray) else ids
        scores = self.layers(self.embed_weight[np.asarray(ids).astype(np.int64)])
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def get_states(self):
        return self.layers.h.copy(), self.layers.c.copy()

    def set_states(self, h, c):
        self.layers.h[...] = h
        self.layers.c[...] = c


def load_inference_model(prefix, epoch=None, ctx=mx.cpu(), batch_size=1, kernel=None):
    """An LSTMInferenceModel of a checkpoint (the newest epoch by default), and that epoch.

    The hyper-parameters follow from the parameter shapes, so only the files are needed.
    """
    if epoch is None:
        epoch = checkpoint.latest_epoch(prefix)
    arg_params, _ = checkpoint.load_params(prefix, epoch)
    shape = checkpoint.model_shape(arg_params)
    return LSTMInferenceModel(arg_params=arg_params, ctx=ctx, batch_size=batch_size, kernel=kernel, **shape), epoch
