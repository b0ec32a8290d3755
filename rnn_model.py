"""LSTMInferenceModel: a trained checkpoint's parameters, stepped one character at a time."""
import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx

import checkpoint
from lstm import lstm_inference_symbol


class LSTMInferenceModel:
    """Runs the one-step inference graph, carrying the LSTM states from call to call."""

    def __init__(self, num_lstm_layer, input_size, num_hidden, num_embed, num_label, arg_params,
                 ctx=mx.cpu(), dropout=0.):
        self.sym = lstm_inference_symbol(num_lstm_layer, input_size, num_hidden, num_embed, num_label, dropout)
        self.num_label = num_label
        batch_size = 1
        self.state_names = []
        for i in range(num_lstm_layer):
            self.state_names += ["l%d_init_c" % i, "l%d_init_h" % i]
        shapes = {name: (batch_size, num_hidden) for name in self.state_names}
        shapes["data"] = (batch_size,)
        self.executor = self.sym.simple_bind(ctx=ctx, grad_req="null", **shapes)
        for name, array in self.executor.arg_dict.items():
            if name in arg_params:
                arg_params[name].copyto(array)
        # outputs are [softmax, l0 c, l0 h, l1 c, ...], in the order of state_names
        self.next_states = dict(zip(self.state_names, self.executor.outputs[1:]))

    def forward(self, input_data, new_seq=False):
        """The (1, num_label) probabilities of the next character after `input_data` (an id array)."""
        args = self.executor.arg_dict
        if new_seq:
            for name in self.state_names:
                args[name][:] = 0.
        args["data"][:] = input_data
        self.executor.forward(is_train=False)
        for name in self.state_names:
            self.next_states[name].copyto(args[name])
        return self.executor.outputs[0].asnumpy()


def load_inference_model(prefix, epoch=None, ctx=mx.cpu()):
    """An LSTMInferenceModel of a checkpoint (the newest epoch by default), and that epoch.

    The hyper-parameters follow from the parameter shapes, so only the files are needed.
    """
    if epoch is None:
        epoch = checkpoint.latest_epoch(prefix)
    arg_params, _ = checkpoint.load_params(prefix, epoch)
    shape = checkpoint.model_shape(arg_params)
    return LSTMInferenceModel(arg_params=arg_params, ctx=ctx, **shape), epoch
