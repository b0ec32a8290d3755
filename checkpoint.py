"""Reading and writing checkpoints in the tutorial's format.

A checkpoint is `<prefix>-symbol.json` and `<prefix>-%04d.params` (as `mx.model.save_checkpoint`
writes them, so `mx.model.load_checkpoint` reads ours and we read the tutorial's), plus
`<prefix>-vocab.json`, the character-to-id map. Every file is written under a temporary name and
renamed, so a crash never leaves a half file under the final name.
"""
import csv
import fcntl
import glob
import json
import os
import pickle
import re
import shutil

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx
from mxnet.base import MXNetError

DEFAULT_PREFIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "obama")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not an LSTM of the tutorial's shape."""


def atomic_write(path, write, verify=None):
    """Calls write(tmp_path), checks the result with verify(tmp_path) when given, then renames the
    temporary file to `path`. Any failure is a CheckpointError; the earlier file stays as it was.

    MXNet's own writers do not report a full disk, so what they write is read back (`verify`).
    """
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        write(tmp)
        if verify is not None and not verify(tmp):
            raise CheckpointError("writing %s failed: the file does not read back as written (disk full?); "
                                  "the files written before stay as they were" % path)
        os.replace(tmp, path)
    except OSError as err:
        raise CheckpointError("cannot write %s: %s" % (path, err.strerror or err))
    except MXNetError:
        raise CheckpointError("writing %s failed: MXNet's writer could not write it all (disk full?); "
                              "the files written before stay as they were" % path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def params_path(prefix, epoch):
    """`<prefix>-%04d.params`, or `<prefix>-best.params` for epoch "best"."""
    return "%s-best.params" % prefix if epoch == "best" else "%s-%04d.params" % (prefix, epoch)


def _write_text(text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return write


def _reads_back_as(text):
    def verify(path):
        with open(path, encoding="utf-8") as f:
            return f.read() == text
    return verify


def _holds(arrays):
    def verify(path):
        try:
            saved = mx.nd.load(path)
        except MXNetError:
            return False
        return isinstance(saved, dict) and saved.keys() == arrays.keys() and all(
            saved[k].shape == v.shape and (saved[k].asnumpy() == v.asnumpy()).all() for k, v in arrays.items())
    return verify


def save_symbol(prefix, symbol):
    """Writes `<prefix>-symbol.json` (the text Symbol.save writes), only when it changes."""
    _save_text("%s-symbol.json" % prefix, symbol.tojson())


def save_params(path, arg_params, aux_params):
    """Writes parameters with the names and layout of mx.model.save_checkpoint."""
    save_dict = {"arg:%s" % k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    save_dict.update({"aux:%s" % k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    atomic_write(path, lambda tmp: mx.nd.save(tmp, save_dict), _holds(save_dict))


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params):
    """Writes the symbol and the epoch's parameters, as mx.model.save_checkpoint does."""
    if symbol is not None:
        save_symbol(prefix, symbol)
    save_params(params_path(prefix, epoch), arg_params, aux_params)


def copy_file(source, target):
    """Copies a written file under another name, checked as any other write."""
    with open(source, "rb") as f:
        content = f.read()

    def verify(path):
        with open(path, "rb") as f:
            return f.read() == content
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp), verify)


def _save_text(path, text):
    """Writes a text file, checked, unless it already holds `text`."""
    if os.path.exists(path) and _reads_back_as(text)(path):
        return
    atomic_write(path, _write_text(text), _reads_back_as(text))


def _save_json(path, value):
    _save_text(path, json.dumps(value, ensure_ascii=False, indent=0, sort_keys=True))


class RunLock:
    """Holds `<prefix>-train.lock` for as long as one training run uses the prefix.

    An fcntl lock: the kernel releases it when the process ends, even by kill -9, so no stale
    lock is ever left to remove by hand. Taking it also proves that the prefix can be written.
    """

    def __init__(self, prefix):
        self.path = "%s-train.lock" % prefix
        self.file = None

    def acquire(self):
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            while self.file is None:
                f = open(self.path, "a+")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.seek(0)
                    holder = f.read().strip() or "unknown"
                    f.close()
                    raise CheckpointError("another training run (process %s) is using --prefix %s; wait for it to "
                                          "end or choose another --prefix" % (holder, self.path[:-len("-train.lock")]))
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino:
                    self.file = f  # else the holder before us removed the file meanwhile: take the new one
                else:
                    f.close()
            self.file.truncate(0)
            self.file.write(str(os.getpid()))
            self.file.flush()
        except OSError as err:
            raise CheckpointError("cannot write under --prefix %s: %s" % (self.path[:-len("-train.lock")],
                                                                         err.strerror or err))
        return self

    def release(self):
        if self.file is not None:
            os.remove(self.path)
            self.file.close()
            self.file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def remove_stale_temporaries(prefix):
    """Removes the temporary files that a killed run left under `prefix` (call it holding the lock)."""
    for path in glob.glob(glob.escape(prefix) + "-*.tmp[0-9]*"):
        os.remove(path)


def save_vocab(prefix, vocab):
    _save_json("%s-vocab.json" % prefix, vocab)


def load_vocab(prefix):
    """The vocabulary saved beside a checkpoint, or None when there is none (the tutorial's)."""
    path = "%s-vocab.json" % prefix
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError("cannot read the vocabulary %s: %s" % (path, err))
    if not isinstance(vocab, dict) or not all(isinstance(k, str) and len(k) == 1 and isinstance(v, int) and v > 0
                                              for k, v in vocab.items()):
        raise CheckpointError("%s is not a map from single characters to positive ids" % path)
    return vocab


def _characters(chars):
    return " ".join(repr(c) for c in sorted(chars))


def vocab_difference(saved, vocab):
    """Says how two vocabularies differ, in a few words."""
    only_saved, only_here = set(saved) - set(vocab), set(vocab) - set(saved)
    if only_saved or only_here:
        parts = []
        if only_saved:
            parts.append("only the checkpoint has %s" % _characters(only_saved))
        if only_here:
            parts.append("only the corpus has %s" % _characters(only_here))
        return "; ".join(parts)
    moved = sorted((c for c in vocab if vocab[c] != saved[c]), key=vocab.get)
    return "the same %d characters, numbered in another order (%r is %d in the checkpoint, %d here)" % (
        len(vocab), moved[0], saved[moved[0]], vocab[moved[0]])


def check_vocab(prefix, vocab, num_label):
    """Refuses a corpus whose vocabulary is not the one the checkpoint under `prefix` was trained
    with: its -vocab.json where there is one, else (the tutorial's bare .params) its label count."""
    saved = load_vocab(prefix)
    if saved is not None and saved != vocab:
        raise CheckpointError("the corpus's vocabulary is not the checkpoint's (%s): give the corpus it was "
                              "trained on with --data" % vocab_difference(saved, vocab))
    if num_label != len(vocab) + 1:
        raise CheckpointError("the checkpoint predicts %d characters but the corpus has %d: give the corpus it was "
                              "trained on with --data" % (num_label - 1, len(vocab)))


def epochs(prefix):
    """The epoch numbers that have a parameter file under `prefix`, ascending."""
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"-(\d{4,})\.params$")
    found = [pattern.match(os.path.basename(p)) for p in glob.glob(glob.escape(prefix) + "-*.params")]
    return sorted(int(m.group(1)) for m in found if m)


def latest_epoch(prefix):
    found = epochs(prefix)
    if not found:
        raise CheckpointError("no checkpoint %s-NNNN.params found; train first (python train_obama.py)" % prefix)
    return found[-1]


def load_params(prefix, epoch):
    """The (arg_params, aux_params) of an epoch.

    Read without the symbol file (what mx.model.load_checkpoint does besides), so that a bare
    `obama-0075.params` from the tutorial loads too.
    """
    path = params_path(prefix, epoch)
    if not os.path.exists(path):
        raise CheckpointError("checkpoint not found: %s" % path)
    try:
        saved = mx.nd.load(path)
    except MXNetError:
        raise CheckpointError("%s is not a readable MXNet parameter file (corrupt or truncated?)" % path)
    if not isinstance(saved, dict):
        raise CheckpointError("%s holds no named parameters" % path)
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value
        elif kind == "aux":
            aux_params[name] = value
    return arg_params, aux_params


def model_shape(arg_params):
    """The hyper-parameters of an LSTM checkpoint, read off its parameter shapes."""
    try:
        num_layers = 0
        while "l%d_i2h_weight" % num_layers in arg_params:
            num_layers += 1
        input_size, num_embed = arg_params["embed_weight"].shape
        num_label, num_hidden = arg_params["cls_weight"].shape
        expected = {"cls_bias": (num_label,)}
        for i in range(num_layers):
            fan_in = num_embed if i == 0 else num_hidden
            expected.update({"l%d_i2h_weight" % i: (4 * num_hidden, fan_in), "l%d_i2h_bias" % i: (4 * num_hidden,),
                             "l%d_h2h_weight" % i: (4 * num_hidden, num_hidden), "l%d_h2h_bias" % i: (4 * num_hidden,)})
    except (KeyError, ValueError):
        raise CheckpointError("the parameters are not those of the tutorial's LSTM (need embed_weight, "
                              "l0_i2h_weight, ..., cls_weight)")
    for name, shape in expected.items():
        if name not in arg_params or tuple(arg_params[name].shape) != shape:
            raise CheckpointError("parameter %s should have shape %s" % (name, shape))
    if num_layers == 0:
        raise CheckpointError("the parameters hold no LSTM layer (l0_i2h_weight is missing)")
    return dict(num_lstm_layer=num_layers, input_size=input_size, num_hidden=num_hidden,
                num_embed=num_embed, num_label=num_label)


def save_progress(prefix, epoch, batch, batch_size):
    """Notes where a stopped run was: `batch` batches of `batch_size` into epoch `epoch` (0-based)."""
    _save_json("%s-progress.json" % prefix, {"epoch": epoch, "batch": batch, "batch_size": batch_size})


def load_progress(prefix):
    path = "%s-progress.json" % prefix
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            progress = json.load(f)
        return {key: int(value) for key, value in progress.items() if key in ("epoch", "batch", "batch_size")}
    except (OSError, ValueError, AttributeError, TypeError):
        raise CheckpointError("%s is not readable; delete it to resume from the last full epoch" % path)


def read_optimizer(path):
    """The optimizer saved in an optimizer-state file (kv.save_optimizer_states with dump_optimizer)."""
    try:
        with open(path, "rb") as f:
            saved = pickle.load(f)
        _, optimizer = saved
    except Exception as err:  # a truncated or foreign file: pickle raises many kinds of error
        raise CheckpointError("the optimizer state %s is unreadable (%s: truncated?); delete it to resume with "
                              "the optimizer started afresh" % (path, type(err).__name__))
    if not isinstance(optimizer, mx.optimizer.Optimizer):
        raise CheckpointError("%s holds no MXNet optimizer; delete it to resume with the optimizer started afresh"
                              % path)
    return optimizer


def append_metrics(prefix, row, fields):
    """Adds one epoch's row to `<prefix>-metrics.csv` (a file begun by an older version keeps its columns)."""
    path = "%s-metrics.csv" % prefix
    try:
        if os.path.exists(path):
            with open(path, newline="") as f:
                fields = next(csv.reader(f), None) or fields
            header = False
        else:
            header = True
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise CheckpointError("cannot write %s: %s" % (path, err.strerror or err))


def clear_progress(prefix):
    """Forgets a stopped run's partial checkpoint once a full epoch has been written after it."""
    for path in glob.glob(glob.escape(prefix) + "-partial-*") + ["%s-progress.json" % prefix]:
        if os.path.exists(path):
            os.remove(path)


def remove_run_files(prefix):
    """Removes what a training run wrote under `prefix`, before another starts there afresh."""
    for path in glob.glob(glob.escape(prefix) + "-*"):
        name = path[len(prefix) + 1:]
        if re.fullmatch(r"\d{4,}\.params|\d{4,}-\w+\.states|best\.params|metrics\.csv|curves\.png|progress\.json"
                        r"|symbol\.json|vocab\.json|partial-.*", name):
            os.remove(path)
