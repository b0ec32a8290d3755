"""ONNXInferenceModel: a file that export_onnx.py wrote, stepped one character at a time by
onnxruntime, with LSTMInferenceModel's methods, so that generate.py's functions run either.

It needs numpy and onnxruntime only, not MXNet: a model trained here generates where MXNet 1.9.1
does not install, and starts without MXNet's import.
"""
import json

import numpy as np

import files


class ONNXInferenceModel:
    """Steps an exported model for `batch_size` independent streams, carrying the LSTM states from
    call to call. `vocab` is the character-to-id map the file carries in its metadata."""

    def __init__(self, path, batch_size=1, threads=None):
        self.session = open_session(path, threads)
        self.vocab = _vocab(self.session, path)
        layers, _, hidden = self.session.get_inputs()[1].shape
        self.num_label = self.session.get_outputs()[0].shape[1]
        self.batch_size = batch_size
        self.h = np.zeros((layers, batch_size, hidden), np.float32)
        self.c = np.zeros_like(self.h)

    def forward(self, input_data, new_seq=False):
        """The (batch_size, num_label) probabilities of each stream's next character after
        `input_data`, the current character ids (an array or list of batch_size ids)."""
        if new_seq:
            self.set_states(0., 0.)
        ids = np.asarray(input_data).astype(np.int64).reshape(self.batch_size)
        probs, self.h, self.c = self.session.run(None, {"ids": ids, "h": self.h, "c": self.c})
        return probs

    def get_states(self):
        """The (h, c) states as numpy arrays of shape (layers, batch_size, hidden)."""
        return self.h.copy(), self.c.copy()

    def set_states(self, h, c):
        self.h = np.broadcast_to(np.asarray(h, np.float32), self.h.shape).copy()
        self.c = np.broadcast_to(np.asarray(c, np.float32), self.c.shape).copy()

    def restart_streams(self, streams):
        """Zeroes the states of the given streams only."""
        self.h[:, streams] = 0.
        self.c[:, streams] = 0.


def open_session(path, threads=None):
    """An onnxruntime session of the file at `path` on the CPU, or a FileError that says why not.
    `threads`: onnxruntime's intra-op threads (None: its default, one a core)."""
    try:
        import onnxruntime
    except ImportError:
        raise files.FileError("onnxruntime is not installed: pip install -r requirements.txt")
    files.check_regular(path, "ONNX file", "the file export_onnx.py wrote")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings are for the file's author, not for a user generating text
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own classes, not exported under one name
        first_line = (str(err).splitlines() or ["(no message)"])[0]
        raise files.FileError("the ONNX file %s cannot be loaded (corrupt, or not ONNX): %s" % (path, first_line[:200]))


def _vocab(session, path):
    """The vocabulary of the file's metadata, checked against its inputs and outputs."""
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    meta = session.get_modelmeta().custom_metadata_map
    if names != (["ids", "h", "c"], ["probs", "h_out", "c_out"]) or "vocab" not in meta:
        raise files.FileError("the ONNX file %s was not written by export_onnx.py (its inputs, outputs or "
                              "vocabulary are not a character model's)" % path)
    try:
        vocab = json.loads(meta["vocab"])
    except ValueError:
        vocab = None
    problem = files.vocab_problem(vocab)
    if not problem and len(vocab) >= session.get_outputs()[0].shape[1]:
        problem = "has more characters than the model has outputs"
    if problem:
        raise files.FileError("the vocabulary in the ONNX file %s's metadata %s: export it again with "
                              "export_onnx.py" % (path, problem))
    return vocab
