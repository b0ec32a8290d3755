"""Reading and writing checkpoints in the tutorial's format.

A checkpoint is `<prefix>-symbol.json` and `<prefix>-%04d.params` (as `mx.model.save_checkpoint`
writes them, so `mx.model.load_checkpoint` reads ours and we read the tutorial's), plus
`<prefix>-vocab.json`, the character-to-id map. Every file is written under a temporary name and
renamed, so a crash never leaves a half file under the final name.
"""
import glob
import json
import os
import re

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx
from mxnet.base import MXNetError

DEFAULT_PREFIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "obama")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not an LSTM of the tutorial's shape."""


def atomic_write(path, write):
    """Calls write(tmp_path), then renames the temporary file to `path`."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def params_path(prefix, epoch):
    """`<prefix>-%04d.params`, or `<prefix>-best.params` for epoch "best"."""
    return "%s-best.params" % prefix if epoch == "best" else "%s-%04d.params" % (prefix, epoch)


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params):
    """Writes the symbol and the epoch's parameters, with the names and layout of mx.model.save_checkpoint."""
    if symbol is not None:
        atomic_write("%s-symbol.json" % prefix, symbol.save)
    save_dict = {"arg:%s" % k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    save_dict.update({"aux:%s" % k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    atomic_write(params_path(prefix, epoch), lambda tmp: mx.nd.save(tmp, save_dict))


def _save_json(path, value):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, indent=0, sort_keys=True)
    atomic_write(path, write)


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


def save_progress(prefix, epoch, batch):
    """Notes where a stopped run was: `batch` batches into epoch `epoch` (0-based)."""
    _save_json("%s-progress.json" % prefix, {"epoch": epoch, "batch": batch})


def load_progress(prefix):
    path = "%s-progress.json" % prefix
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            progress = json.load(f)
        return {"epoch": int(progress["epoch"]), "batch": int(progress["batch"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError("%s is not readable; delete it to resume from the last full epoch" % path)


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
