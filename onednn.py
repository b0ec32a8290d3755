"""The LSTM on oneDNN 3 for the CPU: one layer over a whole sequence, forward and backward, in
float32 or bfloat16, through oneDNN's C API (libdnnl.so.3 of the onednn-cpu-gomp wheel) by ctypes.

MXNet 1.9.1 links its own oneDNN 2.4, whose LSTM has no bfloat16; this one loads beside it with no
clash. Arrays are numpy's, float32, in the gate order of mx.sym.RNN and oneDNN (input, forget,
candidate, output); in bfloat16 the products and activations run in bf16 with float32
accumulation, and every array given or returned stays float32.

Two pitfalls of oneDNN 3.2 inside MXNet shape this (../shared/onednn-notes.md): a primitive finds
its library-managed scratchpad only on the thread that made it, and MXNet calls custom operators
from threads it rotates; and OpenMP regions started from a second thread halve the speed. So every
primitive has a scratchpad of ours, and all oneDNN work runs on one thread of this module's.
"""
import concurrent.futures
import ctypes
import glob
import os
import sys

import numpy as np

# oneDNN 3.2's enumerations (dnnl_types.h)
F32, BF16 = 3, 2
TNC, LDNC, LDGOI, LDGO, ANY = 4, 5, 31, 5, 1
CPU, FORWARD_TRAINING, FORWARD_INFERENCE, BACKWARD, LEFT2RIGHT = 1, 64, 96, 128, 1
SCRATCHPAD_USER, STREAM_DEFAULT = 1, 1
QUERY_IMPL_INFO, QUERY_WORKSPACE, QUERY_SCRATCHPAD, QUERY_EXEC_ARG = 8, 135, 136, 255
SRC_LAYER, SRC_ITER, SRC_ITER_C, DST_LAYER, DST_ITER, DST_ITER_C = 1, 2, 3, 17, 18, 19
WEIGHTS_LAYER, WEIGHTS_ITER, BIAS, WORKSPACE, SCRATCHPAD, FROM, TO = 33, 34, 41, 64, 80, 1, 17
DIFF = 128  # DNNL_ARG_DIFF_X = DNNL_ARG_X + 128 for each of the arguments above
SRC, WEIGHTS, DST, AB = 1, 33, 17, 3  # a matrix product's arguments, and the row-major tag
CREATE_LSTM, NO_FLAGS = "dnnl_lstm_forward_primitive_desc_create", ctypes.c_uint(0)
MEMORY_ALLOCATE = ctypes.c_void_p(2 ** 64 - 1)

_lib = None
_worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="onednn")


class OneDNNError(RuntimeError):
    """oneDNN is not installed, or refused or failed a call."""


def library_path():
    """libdnnl.so.3 of the onednn-cpu-gomp wheel, installed into this Python's prefix."""
    for root in (sys.prefix, os.path.dirname(os.path.dirname(sys.executable))):
        found = sorted(glob.glob(os.path.join(root, "lib", "libdnnl.so.3*")))
        if found:
            return found[0]
    return None


def _library():
    global _lib
    if _lib is None:
        path = library_path()
        if path is None:
            raise OneDNNError("oneDNN 3 is not installed: pip install -r requirements.txt (onednn-cpu-gomp)")
        _lib = ctypes.CDLL(path)
        _lib.dnnl_primitive_desc_query_md.restype = ctypes.c_void_p
        _lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
    return _lib


def _check(status, what):
    if status != 0:
        raise OneDNNError("oneDNN refused %s (status %d)" % (what, status))


def _call(name, *args):
    _check(getattr(_library(), name)(*args), name)


class ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class Engine:
    """The CPU engine and its stream, made once, on the worker thread."""

    def __init__(self):
        self.engine, self.stream = ctypes.c_void_p(), ctypes.c_void_p()
        _call("dnnl_engine_create", ctypes.byref(self.engine), CPU, 0)
        _call("dnnl_stream_create", ctypes.byref(self.stream), self.engine, STREAM_DEFAULT)
        self.scratch = np.empty(0, np.uint8)

    def scratchpad(self, memory, md):
        """Points a primitive's scratchpad memory at the one scratch buffer, grown to fit: primitives
        run one at a time on this thread, so they can all share it."""
        size = _library().dnnl_memory_desc_get_size(ctypes.c_void_p(md))
        if self.scratch.size < size:
            self.scratch = np.empty(size, np.uint8)
        _call("dnnl_memory_set_data_handle", memory, _pointer(self.scratch))
        return memory

    def desc(self, dims, data_type, tag):
        md = ctypes.c_void_p()
        _call("dnnl_memory_desc_create_with_tag", ctypes.byref(md), len(dims), (ctypes.c_int64 * 12)(*dims),
              data_type, tag)
        return md

    def memory(self, md, handle=MEMORY_ALLOCATE):
        memory = ctypes.c_void_p()
        _call("dnnl_memory_create", ctypes.byref(memory), ctypes.c_void_p(md if isinstance(md, int) else md.value),
              self.engine, handle)
        return memory

    def execute(self, primitive, args):
        array = (ExecArg * len(args))(*[ExecArg(arg, memory.value) for arg, memory in args.items()])
        _call("dnnl_primitive_execute", primitive, self.stream, len(args), array)
        _call("dnnl_stream_wait", self.stream)

    def reorder(self, source_md, target_md):
        """A reorder primitive between two memory descriptors (a layout change, or f32 <-> bf16)."""
        pd, primitive = ctypes.c_void_p(), ctypes.c_void_p()
        _call("dnnl_reorder_primitive_desc_create", ctypes.byref(pd), ctypes.c_void_p(source_md), self.engine,
              ctypes.c_void_p(target_md), self.engine, None)
        _call("dnnl_primitive_create", ctypes.byref(primitive), pd)
        return primitive


_engine = None


def _on_worker(function, *args):
    """Runs `function` on the module's one oneDNN thread, and returns what it returns."""
    def with_engine():
        global _engine
        if _engine is None:
            _engine = Engine()
        return function(_engine, *args)
    return _worker.submit(with_engine).result()


def _pointer(array):
    return ctypes.c_void_p(array.ctypes.data)


class Primitive:
    """A primitive with its descriptor, a scratchpad of ours (the engine's shared one), and the
    memory descriptors of its arguments as it wants them; `arguments` are those of its
    dnnl_*_primitive_desc_create between the engine and the attributes."""

    def __init__(self, engine, create, arguments):
        attr = ctypes.c_void_p()
        _call("dnnl_primitive_attr_create", ctypes.byref(attr))
        _call("dnnl_primitive_attr_set_scratchpad_mode", attr, SCRATCHPAD_USER)
        self.pd, self.primitive = ctypes.c_void_p(), ctypes.c_void_p()
        _call(create, ctypes.byref(self.pd), engine.engine, *arguments, attr)
        _call("dnnl_primitive_create", ctypes.byref(self.primitive), self.pd)
        self._scratchpad = engine.memory(self.md(QUERY_SCRATCHPAD), None)

    def scratchpad(self, engine):
        return engine.scratchpad(self._scratchpad, self.md(QUERY_SCRATCHPAD))

    def md(self, what, index=0):
        return _library().dnnl_primitive_desc_query_md(self.pd, what, index)

    def arg_md(self, arg):
        return self.md(QUERY_EXEC_ARG, arg)

    def destroy(self):
        for name, handle in (("dnnl_primitive_destroy", self.primitive), ("dnnl_primitive_desc_destroy", self.pd),
                             ("dnnl_memory_destroy", self._scratchpad)):
            getattr(_library(), name)(handle)

    def implementation(self):
        name = ctypes.c_char_p()
        _call("dnnl_primitive_desc_query", self.pd, QUERY_IMPL_INFO, 0, ctypes.byref(name))
        return name.value.decode()


# The arguments of an LSTM layer: its inputs, and its outputs
INPUTS = (SRC_LAYER, SRC_ITER, SRC_ITER_C, WEIGHTS_LAYER, WEIGHTS_ITER, BIAS)
OUTPUTS = (DST_LAYER, DST_ITER, DST_ITER_C)
# float32 even in bfloat16: the cell state and the bias (oneDNN's bf16 LSTM), and every gradient
# (oneDNN's bf16 backward has no other form)
ALWAYS_F32 = (SRC_ITER_C, DST_ITER_C, BIAS)


class Layer:
    """One LSTM layer of `hidden` units over `steps` steps of `batch` streams of `input_size`
    features: forward (training keeps what backward needs) and backward, all arrays float32 numpy
    (states (batch, hidden), weights (4 hidden, input_size) and (4 hidden, hidden), bias (4 hidden,))."""

    def __init__(self, steps, batch, input_size, hidden, bf16=False):
        self.steps, self.batch, self.input_size, self.hidden, self.bf16 = steps, batch, input_size, hidden, bf16
        self.shapes = {SRC_LAYER: (steps, batch, input_size), DST_LAYER: (steps, batch, hidden),
                       WEIGHTS_LAYER: (4 * hidden, input_size), WEIGHTS_ITER: (4 * hidden, hidden), BIAS: (4 * hidden,)}
        self.reorders = {}
        _on_worker(self._build)

    def _build(self, engine):
        steps, batch, input_size, hidden = self.steps, self.batch, self.input_size, self.hidden
        plain = {SRC_LAYER: ((steps, batch, input_size), TNC), DST_LAYER: ((steps, batch, hidden), TNC),
                 WEIGHTS_LAYER: ((1, 1, input_size, 4, hidden), LDGOI), WEIGHTS_ITER: ((1, 1, hidden, 4, hidden), LDGOI),
                 BIAS: ((1, 1, 4, hidden), LDGO)}
        for arg in (SRC_ITER, SRC_ITER_C, DST_ITER, DST_ITER_C):
            plain[arg] = ((1, 1, batch, hidden), LDNC)
        # ours: float32 numpy arrays in plain layouts, their data handles set at each call
        self.ours = {arg: engine.memory(engine.desc(dims, F32, tag), None) for arg, (dims, tag) in plain.items()}
        compute = BF16 if self.bf16 else F32

        def wanted(arg, data_type):  # the weights in the layout the primitive chooses
            dims, tag = plain[arg]
            return engine.desc(dims, data_type, ANY if arg in (WEIGHTS_LAYER, WEIGHTS_ITER) else tag)
        order = (SRC_LAYER, SRC_ITER, SRC_ITER_C, WEIGHTS_LAYER, WEIGHTS_ITER, None, None, BIAS) + OUTPUTS
        descs = [wanted(arg, F32 if arg in ALWAYS_F32 else compute) if arg else None for arg in order]
        diffs = [wanted(arg, F32) if arg else None for arg in order]
        self.training = Primitive(engine, CREATE_LSTM, [FORWARD_TRAINING, LEFT2RIGHT] + descs + [NO_FLAGS])
        self.inference = Primitive(engine, CREATE_LSTM, [FORWARD_INFERENCE, LEFT2RIGHT] + descs + [NO_FLAGS])
        self.backward_pd = Primitive(engine, "dnnl_lstm_backward_primitive_desc_create",
                                     [BACKWARD, LEFT2RIGHT] + descs + diffs + [NO_FLAGS, self.training.pd])
        self.workspace = engine.memory(self.training.md(QUERY_WORKSPACE))
        # the primitives' own memories of each argument, in the layouts and types they want
        self.memories = {(id(pd), arg): engine.memory(pd.arg_md(arg)) for pd in (self.training, self.inference)
                         for arg in INPUTS + OUTPUTS}
        self.memories.update({(id(self.backward_pd), arg): engine.memory(self.backward_pd.arg_md(arg))
                              for arg in INPUTS + OUTPUTS + tuple(DIFF + arg for arg in INPUTS + OUTPUTS)})

    def implementation(self):
        """oneDNN's name for the code it runs the forward pass with, such as "rnn,brgemm:avx512_core_amx"."""
        return _on_worker(lambda _engine: self.training.implementation())

    def _memory(self, pd, arg):
        return self.memories[(id(pd), arg)]

    def _reorder(self, engine, source, source_md, target, target_md):
        key = (source_md, target_md)
        if key not in self.reorders:
            self.reorders[key] = engine.reorder(source_md, target_md)
        engine.execute(self.reorders[key], {FROM: source, TO: target})

    def _ours(self, arg, array):
        _call("dnnl_memory_set_data_handle", self.ours[arg], _pointer(array))
        return self.ours[arg]

    def _load(self, engine, pd, arg, array, as_arg=None):
        """Puts the float32 `array` into the primitive's memory of `arg` (ours is that of `as_arg`)."""
        ours = self._ours(as_arg or arg, array)
        self._reorder(engine, ours, _md_of(ours), self._memory(pd, arg), pd.arg_md(arg))

    def _read(self, engine, pd, arg, as_arg=None):
        """The primitive's memory of `arg` as a float32 numpy array (in the layout of `as_arg`)."""
        array = np.empty(self.shapes.get(as_arg or arg, (self.batch, self.hidden)), np.float32)
        ours = self._ours(as_arg or arg, array)
        self._reorder(engine, self._memory(pd, arg), pd.arg_md(arg), ours, _md_of(ours))
        return array

    def forward(self, x, h0, c0, w_layer, w_iter, bias, train=True):
        """(y, hT, cT): the layer's outputs (steps, batch, hidden) and final states."""
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (x, h0, c0, w_layer, w_iter, bias)]
        return _on_worker(self._forward, arrays, train)

    def _forward(self, engine, arrays, train):
        pd = self.training if train else self.inference
        self.inputs = dict(zip(INPUTS, arrays))  # backward reads them again, in its own layouts
        for arg, array in self.inputs.items():
            self._load(engine, pd, arg, array)
        args = {arg: self._memory(pd, arg) for arg in INPUTS + OUTPUTS}
        args[SCRATCHPAD] = pd.scratchpad(engine)
        if train:
            args[WORKSPACE] = self.workspace
        engine.execute(pd.primitive, args)
        return tuple(self._read(engine, pd, arg) for arg in OUTPUTS)

    def backward(self, dy, dhT, dcT):
        """The gradients (dx, dh0, dc0, dw_layer, dw_iter, dbias) of the last training forward,
        given those of its outputs (y, hT, cT)."""
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (dy, dhT, dcT)]
        return _on_worker(self._backward, arrays)

    def _backward(self, engine, arrays):
        pd = self.backward_pd
        for arg, array in self.inputs.items():
            self._load(engine, pd, arg, array)
        for arg in OUTPUTS:  # the forward's outputs, in the layouts backward wants
            self._reorder(engine, self._memory(self.training, arg), self.training.arg_md(arg), self._memory(pd, arg),
                          pd.arg_md(arg))
        for arg, array in zip(OUTPUTS, arrays):
            self._load(engine, pd, DIFF + arg, array, as_arg=arg)
        for arg in (WEIGHTS_LAYER, WEIGHTS_ITER, BIAS):  # backward adds to these
            _zero(self._memory(pd, DIFF + arg), pd.arg_md(DIFF + arg))
        args = {arg: self._memory(pd, arg) for arg in INPUTS + OUTPUTS}
        args.update({DIFF + arg: self._memory(pd, DIFF + arg) for arg in INPUTS + OUTPUTS})
        args[WORKSPACE], args[SCRATCHPAD] = self.workspace, pd.scratchpad(engine)
        engine.execute(pd.primitive, args)
        return tuple(self._read(engine, pd, DIFF + arg, as_arg=arg) for arg in INPUTS)


def _md_of(memory):
    md = ctypes.c_void_p()
    _call("dnnl_memory_get_memory_desc", memory, ctypes.byref(md))
    return md.value


def _zero(memory, md):
    handle = ctypes.c_void_p()
    _call("dnnl_memory_get_data_handle", memory, ctypes.byref(handle))
    ctypes.memset(handle, 0, _library().dnnl_memory_desc_get_size(ctypes.c_void_p(md)))


class Step:
    """One step of a stack of LSTM layers and a classifier for `batch` streams, for generation, in
    float32: each layer's weights put into its primitive's own layout once, and the states `h` and
    `c` (layers, batch, hidden) kept from call to call, so a step costs the products and little else.

    `layers`: each layer's (w_layer (4 hidden, inputs), w_iter (4 hidden, hidden), bias (4 hidden,)),
    in oneDNN's gate order; `classifier`: (weight (labels, hidden), bias (labels,)). The classifier
    runs here too, not in numpy: OpenBLAS's threads and oneDNN's OpenMP threads spinning by turns on
    the same cores slowed a step several-fold.
    """

    def __init__(self, layers, classifier, batch):
        hidden = layers[0][1].shape[1]
        self.batch, self.hidden = batch, hidden
        self.h, self.c = (np.zeros((len(layers), batch, hidden), np.float32) for _ in range(2))
        self._next_h, self._next_c = np.zeros_like(self.h), np.zeros_like(self.c)
        self.x = np.zeros((1, batch, layers[0][0].shape[1]), np.float32)
        self.outputs = [np.zeros((1, batch, hidden), np.float32) for _ in layers]
        self.scores = np.zeros((batch, classifier[1].shape[0]), np.float32)
        self._biases = [np.ascontiguousarray(bias, dtype=np.float32) for _, _, bias in layers]
        self._classifier = (np.ascontiguousarray(np.transpose(classifier[0]), dtype=np.float32),
                            np.ascontiguousarray(classifier[1], dtype=np.float32).reshape(1, -1))
        self._owned = []  # the memories and primitives to destroy with this step
        _on_worker(self._build, layers)

    def _build(self, engine, layers):
        self.primitives = [self._layer(engine, i, w_layer, w_iter) for i, (w_layer, w_iter, _) in enumerate(layers)]
        weight, bias = self._classifier
        plain = {SRC: self.outputs[-1][0], WEIGHTS: weight, BIAS: bias, DST: self.scores}
        descs = {arg: engine.desc(array.shape, F32, AB) for arg, array in plain.items()}
        pd = self._own(Primitive(engine, "dnnl_matmul_primitive_desc_create", [descs[SRC], descs[WEIGHTS],
                                                                             descs[BIAS], descs[DST]]))
        self.primitives.append((pd, {arg: self._own(engine.memory(descs[arg], _pointer(array)))
                                     for arg, array in plain.items()}))

    def _layer(self, engine, i, w_layer, w_iter):
        """Layer i's primitive, and its arguments: ours in place, the weights in its own layout."""
        inputs = w_layer.shape[1]
        plain = {SRC_LAYER: ((1, self.batch, inputs), TNC, self.x if i == 0 else self.outputs[i - 1]),
                 DST_LAYER: ((1, self.batch, self.hidden), TNC, self.outputs[i]),
                 BIAS: ((1, 1, 4, self.hidden), LDGO, self._biases[i])}
        for arg, array in ((SRC_ITER, self.h), (SRC_ITER_C, self.c), (DST_ITER, self._next_h),
                           (DST_ITER_C, self._next_c)):
            plain[arg] = ((1, 1, self.batch, self.hidden), LDNC, array[i])
        weights = {WEIGHTS_LAYER: ((1, 1, inputs, 4, self.hidden), w_layer),
                   WEIGHTS_ITER: ((1, 1, self.hidden, 4, self.hidden), w_iter)}
        descs = {arg: engine.desc(dims, F32, tag) for arg, (dims, tag, _) in plain.items()}
        descs.update({arg: engine.desc(dims, F32, ANY) for arg, (dims, _) in weights.items()})
        order = (SRC_LAYER, SRC_ITER, SRC_ITER_C, WEIGHTS_LAYER, WEIGHTS_ITER, None, None, BIAS) + OUTPUTS
        pd = self._own(Primitive(engine, CREATE_LSTM, [FORWARD_INFERENCE, LEFT2RIGHT]
                                 + [descs[arg] if arg else None for arg in order] + [NO_FLAGS]))
        args = {arg: self._own(engine.memory(descs[arg], _pointer(array))) for arg, (_, _, array) in plain.items()}
        for arg, (dims, array) in weights.items():  # into the primitive's layout, once
            array = np.ascontiguousarray(array, dtype=np.float32)
            ours = self._own(engine.memory(engine.desc(dims, F32, LDGOI), _pointer(array)))
            args[arg] = self._own(engine.memory(pd.arg_md(arg)))
            engine.execute(self._own(engine.reorder(_md_of(ours), pd.arg_md(arg)), "dnnl_primitive_destroy"),
                           {FROM: ours, TO: args[arg]})
        return pd, args

    def _own(self, thing, destroy="dnnl_memory_destroy"):
        """`thing`, destroyed with this step: a Primitive, or a handle that `destroy` destroys."""
        self._owned.append((thing, destroy))
        return thing

    def __call__(self, x):
        """The classifier's scores (batch, labels) after the inputs `x` (batch, inputs); the states move on."""
        self.x[0] = x
        _on_worker(self._step)
        np.copyto(self.h, self._next_h)  # the primitives read and write these same arrays
        np.copyto(self.c, self._next_c)
        return self.scores

    def _step(self, engine):
        for pd, args in self.primitives:
            args[SCRATCHPAD] = pd.scratchpad(engine)  # the shared buffer may have moved
            engine.execute(pd.primitive, args)

    def __del__(self):
        for thing, destroy in reversed(getattr(self, "_owned", ())):
            thing.destroy() if isinstance(thing, Primitive) else getattr(_library(), destroy)(thing)
