"""Every file under a checkpoint prefix: their names, writing them safely, reading them back.

A checkpoint is `<prefix>-symbol.json` and `<prefix>-%04d.params` (as `mx.model.save_checkpoint`
writes them, so `mx.model.load_checkpoint` reads ours and we read the tutorial's), plus
`<prefix>-vocab.json`, the character-to-id map. Training adds the files of FILES below. Every file
is written under a temporary name, read back, and renamed, so neither a crash nor a full disk
ever leaves a half file under the final name.
"""
import csv
import errno
import fcntl
import glob
import io
import json
import logging
import os
import pickle
import re
from collections import namedtuple

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx
from mxnet.base import MXNetError

import bucket_io
import files
import lstm
from lstm import lstm_param_shapes

DEFAULT_PREFIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "obama")

# The files under a prefix, by what they hold: the one place their names are spelled.
FILES = {
    "symbol": "%s-symbol.json",           # the training graph, as the tutorial saved it
    "vocab": "%s-vocab.json",             # character -> id
    "params": "%s-%04d.params",           # the weights after epoch N
    "states": "%s-%04d-%s.states",        # the optimizer after epoch N, per backend
    "best": "%s-best.params",             # the epoch with the lowest validation loss
    "partial": "%s-partial-%04d.params",  # the weights of a run stopped inside epoch N + 1
    "partial_states": "%s-partial-%04d-%s.states",
    "partial_carry": "%s-partial-%04d.carry",  # the LSTM states stateful training carries there
    "metrics": "%s-metrics.csv",          # a row an epoch
    "run": "%s-run.json",                 # the run record: options, model, how far, best loss
    "curves": "%s-curves.png",            # plot_curves.py's picture of the metrics
    "lock": "%s-train.lock",              # held by the one training run using the prefix
}


def path(kind, prefix, *numbers):
    """The name of a file of `kind` (a key of FILES) under `prefix`."""
    return FILES[kind] % ((prefix,) + numbers)


class CheckpointError(files.FileError):
    """A checkpoint is missing, unreadable, or not an LSTM of the tutorial's shape."""


def mxnet_writer(target, write):
    """`write`, with an MXNet writer's failure (it raises MXNetError) said as a CheckpointError."""
    def guarded(tmp):
        try:
            write(tmp)
        except MXNetError:
            raise CheckpointError("writing %s failed: MXNet's writer could not write it all (disk full?); "
                                  "the files written before stay as they were" % target)
    return guarded


def params_path(prefix, epoch):
    """`<prefix>-%04d.params`, or `<prefix>-best.params` for epoch "best"."""
    return path("best", prefix) if epoch == "best" else path("params", prefix, epoch)


def _holds(arrays):
    def verify(written):
        try:
            saved = mx.nd.load(written)
        except MXNetError:
            return False
        return isinstance(saved, dict) and saved.keys() == arrays.keys() and all(
            saved[k].shape == v.shape and (saved[k].asnumpy() == v.asnumpy()).all() for k, v in arrays.items())
    return verify


def save_symbol(prefix, symbol):
    """Writes `<prefix>-symbol.json` (the text Symbol.save writes), only when it changes."""
    files.save_text(path("symbol", prefix), symbol.tojson())


def save_params(target, arg_params, aux_params):
    """Writes parameters with the names and layout of mx.model.save_checkpoint."""
    save_dict = {"arg:%s" % k: v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    save_dict.update({"aux:%s" % k: v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    files.atomic_write(target, mxnet_writer(target, lambda tmp: mx.nd.save(tmp, save_dict)), _holds(save_dict))


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params):
    """Writes the symbol and the epoch's parameters, as mx.model.save_checkpoint does."""
    if symbol is not None:
        save_symbol(prefix, symbol)
    save_params(params_path(prefix, epoch), arg_params, aux_params)


def copy_file(source, target):
    """Copies a written file under another name, checked as any other write."""
    with open(source, "rb") as f:
        files.save_bytes(target, f.read())


def _save_json(target, value):
    files.save_text(target, json.dumps(value, ensure_ascii=False, indent=0, sort_keys=True))


class RunLock:
    """Holds `<prefix>-train.lock` for as long as one training run uses the prefix, and removes
    the temporary files that a killed run left there.

    An fcntl lock: the kernel releases it when the process ends, even by kill -9, so no stale
    lock is ever left to remove by hand. Taking it also proves that the prefix can be written.
    """

    def __init__(self, prefix):
        self.prefix, self.path = prefix, path("lock", prefix)
        self.file = None

    def acquire(self):
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            while self.file is None:
                try:  # never through a link: truncating one would empty the file it points to
                    f = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644),
                                  "r+")
                except OSError as err:
                    if err.errno != errno.ELOOP:
                        raise
                    raise CheckpointError("%s is a symbolic link; the run's lock is a file of its own, never written "
                                          "through a link: remove the link" % self.path)
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.seek(0)
                    holder = f.read().strip() or "unknown"
                    f.close()
                    raise CheckpointError("another training run (process %s) is using --prefix %s; wait for it to "
                                          "end or choose another --prefix" % (holder, self.prefix))
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino:
                    self.file = f  # else the holder before us removed the file meanwhile: take the new one
                else:
                    f.close()
            self.file.truncate(0)
            self.file.write(str(os.getpid()))
            self.file.flush()
            remove_stale_temporaries(self.prefix)  # what a killed run left: no run writes them now
        except OSError as err:
            raise CheckpointError("cannot write under --prefix %s: %s" % (self.prefix, err.strerror or err))
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
    for stale in glob.glob(glob.escape(prefix) + "-*.tmp[0-9]*"):
        os.remove(stale)


def save_vocab(prefix, vocab):
    _save_json(path("vocab", prefix), vocab)


def _load_json(source, what):
    try:
        with open(source, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError("cannot read the %s %s: %s" % (what, source, err))


def load_vocab(prefix):
    """The vocabulary saved beside a checkpoint, or None when there is none (the tutorial's)."""
    source = path("vocab", prefix)
    if not os.path.exists(source):
        return None
    vocab = _load_json(source, "vocabulary")
    problem = files.vocab_problem(vocab)
    if problem:
        raise CheckpointError("%s %s" % (source, problem))
    return vocab


def load_vocab_or_build(prefix, corpus=None, mirror=None):
    """The checkpoint's saved vocabulary, or (for the tutorial's bare .params) the corpus's."""
    vocab = load_vocab(prefix)
    if vocab is None:
        corpus = bucket_io.find_corpus(corpus, mirror=mirror)
        logging.info("No %s; building the vocabulary from %s", path("vocab", prefix), corpus)
        vocab = bucket_io.build_vocab(corpus)
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


def epoch_states(prefix, epoch):
    """The optimizer-state files of epoch `epoch` under `prefix`, whichever backend wrote them."""
    return glob.glob(path("states", glob.escape(prefix), epoch, "*"))


def latest_epoch(prefix):
    found = epochs(prefix)
    if not found:
        raise CheckpointError("no checkpoint %s-NNNN.params found; train first (python train_obama.py)" % prefix)
    return found[-1]


def load_params(prefix, epoch):
    """The (arg_params, aux_params) of an epoch (a number, or "best").

    Read without the symbol file (what mx.model.load_checkpoint does besides), so that a bare
    `obama-0075.params` from the tutorial loads too.
    """
    return load_params_file(params_path(prefix, epoch))


def load_params_file(source):
    """The (arg_params, aux_params) of a parameter file written as mx.model.save_checkpoint does."""
    if not os.path.exists(source):
        raise CheckpointError("checkpoint not found: %s" % source)
    try:
        saved = mx.nd.load(source)
    except MXNetError:
        raise CheckpointError("%s is not a readable MXNet parameter file (corrupt or truncated?)" % source)
    if not isinstance(saved, dict):
        raise CheckpointError("%s holds no named parameters" % source)
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value
        elif kind == "aux":
            aux_params[name] = value
    return arg_params, aux_params


def model_shape(arg_params):
    """The hyper-parameters of an LSTM checkpoint (tutorial names), read off its parameter shapes."""
    try:
        num_layers = 0
        while "l%d_i2h_weight" % num_layers in arg_params:
            num_layers += 1
        input_size, num_embed = arg_params["embed_weight"].shape
        num_label, num_hidden = arg_params["cls_weight"].shape
    except (KeyError, ValueError):
        raise CheckpointError("the parameters are not those of the tutorial's LSTM (need embed_weight, "
                              "l0_i2h_weight, ..., cls_weight)")
    if num_layers == 0:
        raise CheckpointError("the parameters hold no LSTM layer (l0_i2h_weight is missing)")
    expected = dict(lstm_param_shapes(num_layers, num_hidden, num_embed), cls_bias=(num_label,))
    for name, shape in expected.items():
        if name not in arg_params or tuple(arg_params[name].shape) != shape:
            raise CheckpointError("parameter %s should have shape %s" % (name, shape))
    return dict(num_lstm_layer=num_layers, input_size=input_size, num_hidden=num_hidden,
                num_embed=num_embed, num_label=num_label)


def _read_run(prefix):
    source = path("run", prefix)
    return _load_json(source, "run record") if os.path.exists(source) else None


def _count(value, least=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def load_run(prefix):
    """The run record of the training under `prefix` (see save_run), or None where there is none."""
    try:
        record = _read_run(prefix)
    except CheckpointError as err:
        raise CheckpointError("%s: the record holds the run's options and how far it got; restore it, or move it "
                              "away to resume the newest epoch with this command's options" % err)
    if record is None:
        return None
    if not isinstance(record, dict) or not _count(record.get("epoch")) or not _count(record.get("batch")) \
            or not isinstance(record.get("options", {}), dict):
        raise CheckpointError("%s is not a run record of this project: it holds the run's options and how far it "
                              "got; restore it, or move it away to resume the newest epoch with this command's "
                              "options" % path("run", prefix))
    return record


def save_run(prefix, **changes):
    """Updates the run record `<prefix>-run.json`: the options, the model's shape and backend, how
    far training got (`epoch` epochs done, then `batch` batches of the next, whose weights are the
    partial checkpoint) and the best validation loss so far."""
    record = _read_run(prefix)
    record = dict(record if isinstance(record, dict) else {}, **changes)
    _save_json(path("run", prefix), record)


def read_optimizer_states(source):
    """The optimizer state in an optimizer-state file, and the name of the optimizer that holds it
    ("adam"): kv.save_optimizer_states writes (states, optimizer) with dump_optimizer."""
    try:
        with open(source, "rb") as f:
            states, optimizer = pickle.load(f)
    except Exception as err:  # a truncated or foreign file: pickle raises many kinds of error
        raise CheckpointError("the optimizer state %s is unreadable (%s: truncated?); delete it to resume with "
                              "the optimizer started afresh" % (source, type(err).__name__))
    if not isinstance(optimizer, mx.optimizer.Optimizer) or not isinstance(states, dict):
        raise CheckpointError("%s holds no MXNet optimizer; delete it to resume with the optimizer started afresh"
                              % source)
    return states, type(optimizer).__name__.lower()


class Place(namedtuple("Place", ["epoch", "batch"])):
    """Where a run is: `epoch` epochs done, then `batch` batches of the next (the epoch MXNet's
    callbacks number `epoch`, from 0)."""
    __slots__ = ()

    def skipped(self, epoch):
        """How many batches of `epoch` were done before this process began (0 for any other)."""
        return self.batch if epoch == self.epoch else 0

    def updates(self, batches_per_epoch):
        """The optimizer's step count here: one update a batch."""
        return self.epoch * batches_per_epoch + self.batch


# resume_point's answer: `optimizer_states` is the file of the backend asked for, or None
Resume = namedtuple("Resume", ["place", "arg_params", "aux_params", "optimizer_states", "record"])


def resume_point(prefix, backend):
    """Where a run under `prefix` carries on (a Resume). The run record says how far the run got: an
    epoch counts once the record does, after all of the epoch's files are written, and a place
    inside an epoch means the partial checkpoint of a run stopped there. Without a record (the
    tutorial's bare `.params`), the newest epoch. No parameters: the run has nothing done yet."""
    record = load_run(prefix)
    place = Place(latest_epoch(prefix), 0) if record is None else Place(record["epoch"], record["batch"])
    if place.batch > 0:
        arg_params, aux_params = load_params_file(path("partial", prefix, place.epoch))
    elif place.epoch > 0:
        arg_params, aux_params = load_params(prefix, place.epoch)
    else:
        return Resume(place, None, None, None, record)
    states = optimizer_states_path(prefix, place, backend)
    return Resume(place, arg_params, aux_params, states if os.path.exists(states) else None, record)


def optimizer_states_path(prefix, place, backend):
    """The optimizer-state file of `backend` at `place` (an epoch's end, or a partial checkpoint)."""
    return path("partial_states" if place.batch else "states", prefix, place.epoch, backend)


def make_room(prefix, resume, overwrite):
    """Before a run writes under `prefix`: refuses to start afresh where a run is, unless
    `overwrite` removes it; refuses a metrics file that is not ours now, not at the epoch's end."""
    if not resume:
        earlier = epochs(prefix)
        stopped = (load_run(prefix) or {}).get("batch", 0) > 0
        if (earlier or stopped) and not overwrite:
            raise CheckpointError(
                "%s already has checkpoints (%s): add --resume to carry on, or --overwrite to start again"
                % (prefix, "epochs " + ",".join(map(str, earlier)) if earlier else "a stopped first epoch"))
        if overwrite:
            remove_run_files(prefix)
    check_metrics(prefix)


def saved_optimizer_state(prefix, resume, optimizer, backend):
    """The saved optimizer state that a run resumed at `resume` (a Resume) with `optimizer` and
    `backend` goes on with (None where the checkpoint has none), refused where it cannot: another
    optimizer's, or another backend's parameters'."""
    source, record = resume.optimizer_states, resume.record or {}
    trained_with = record.get("backend", backend)
    if source is None and trained_with != backend:  # the other backend's: it fits only where it holds nothing
        other = optimizer_states_path(prefix, resume.place, trained_with)
        source = other if os.path.exists(other) else None
    if source is None:
        logging.warning("The optimizer starts afresh: %s", no_optimizer_state_reason(prefix, resume, backend))
        return None
    states, name = read_optimizer_states(source)
    if name != optimizer:
        raise CheckpointError(
            "the run's optimizer state is %s's, so --optimizer %s cannot carry it on: to change the optimizer, "
            "start a new run from this one with --init-from %s" % (name, optimizer, prefix))
    if source != resume.optimizer_states and any(state is not None for state in states.values()):
        raise CheckpointError(
            "the run's optimizer state fits the %s backend's parameters, not the %s backend's: carry it on with "
            "--rnn-backend %s, or start a new run from this one with --init-from %s"
            % (trained_with, backend, trained_with, prefix))
    return states


def no_optimizer_state_reason(prefix, resume, backend):
    """Why a resumed checkpoint has no optimizer state."""
    if resume.record is None:
        return "the checkpoint has none (the tutorial's, or one copied without its .states file)"
    if str((resume.record.get("options") or {}).get("kv_store", "local")).startswith("dist"):
        return "a distributed run keeps its optimizer on the parameter servers, which save none"
    return "%s is missing" % optimizer_states_path(prefix, resume.place, backend)


class RunWriter:
    """What training writes under a prefix, in training's own verbs. `to_tutorial` turns the
    backend's parameters into the tutorial's names; `write_optimizer(target)` writes the optimizer
    state (None where the parameter servers hold it); `carried` are the LSTM states stateful
    training carries from batch to batch."""

    def __init__(self, prefix, symbol, to_tutorial, backend, write_optimizer=None, carried=None):
        self.prefix, self.symbol, self.to_tutorial, self.backend = prefix, symbol, to_tutorial, backend
        self.write_optimizer, self.carried = write_optimizer, carried

    def save_epoch(self, epoch, arg_params, aux_params):
        """`<prefix>-symbol.json` and `<prefix>-%04d.params`, as the tutorial's do_checkpoint writes them."""
        save_checkpoint(self.prefix, epoch, self.symbol, self.to_tutorial(arg_params), aux_params)
        logging.info('Saved checkpoint to "%s"', params_path(self.prefix, epoch))

    def save_optimizer(self, place):
        if self.write_optimizer is not None:
            target = optimizer_states_path(self.prefix, place, self.backend)
            files.atomic_write(target, mxnet_writer(target, self.write_optimizer))

    def copy_best(self, epoch):
        """Copies epoch `epoch`'s weights to `<prefix>-best.params`."""
        copy_file(params_path(self.prefix, epoch), path("best", self.prefix))
        logging.info("Best validation loss so far: copied to %s", path("best", self.prefix))

    def save_metrics_row(self, row):
        save_metrics_row(self.prefix, row)

    def epoch_done(self, epoch, **record):
        """Marks `epoch` epochs done in the run record, the last of an epoch's writes, with what else
        the record keeps of the run's place (the best loss, the plateau's rate drops)."""
        save_run(self.prefix, epoch=epoch, batch=0, **record)
        clear_partial(self.prefix)

    def save_stopped(self, place, arg_params, aux_params):
        """The partial checkpoint of a run stopped at `place`: weights, optimizer state, carried LSTM
        states (in one layout for both backends, so that either resumes them), then the record."""
        save_params(path("partial", self.prefix, place.epoch), self.to_tutorial(arg_params), aux_params)
        self.save_optimizer(place)
        if self.carried is not None:
            save_carried(self.prefix, place.epoch, lstm.states_by_layer(self.carried, self.backend))
        save_run(self.prefix, epoch=place.epoch, batch=place.batch)

    def keep_newest(self, keep):
        """Removes all but the newest `keep` epoch checkpoints."""
        for old in epochs(self.prefix)[:-keep]:
            for stale in [params_path(self.prefix, old)] + epoch_states(self.prefix, old):
                os.remove(stale)


def save_carried(prefix, epoch, states):
    """Writes the LSTM states that stateful training carries from batch to batch."""
    arrays = {"state%d" % i: state.as_in_context(mx.cpu()) for i, state in enumerate(states)}
    target = path("partial_carry", prefix, epoch)
    files.atomic_write(target, mxnet_writer(target, lambda tmp: mx.nd.save(tmp, arrays)), _holds(arrays))


def load_carried(prefix, epoch, backend):
    """The LSTM states a stopped stateful run carried, as numpy arrays in the layout of `backend`
    (either backend may have written them), or None."""
    source = path("partial_carry", prefix, epoch)
    if not os.path.exists(source):
        logging.warning("The partial checkpoint carries no LSTM states: its streams restart from zero states")
        return None
    try:
        saved = mx.nd.load(source)
        carried = [saved["state%d" % i].asnumpy() for i in range(len(saved))]
    except (MXNetError, KeyError):
        raise CheckpointError("%s is not readable (corrupt or truncated?)" % source)
    if carried[0].ndim == 3:  # written by the fused backend before the states had one layout
        carried = lstm.states_by_layer(carried, "fused")
    return lstm.states_for_backend(carried, backend)


def clear_partial(prefix):
    """Forgets a stopped run's partial checkpoint once a full epoch has been written after it."""
    for stale in glob.glob(glob.escape(prefix) + "-partial-*"):
        os.remove(stale)


# The columns of `<prefix>-metrics.csv`; a file begun by an older version may have fewer.
METRICS_FIELDS = ["epoch", "train_perplexity", "train_bits_per_char", "val_perplexity", "val_bits_per_char",
                  "learning_rate", "samples_per_sec", "seconds", "optimizer"]
TEXT_METRICS = ("optimizer",)  # the other columns are numbers, or empty


def _metrics_problem(header, rows):
    """Why a metrics file's header and rows (lists of strings) are not ours, or None."""
    if not header or header[0] != "epoch" or not set(header) <= set(METRICS_FIELDS):
        return "its header is not this project's (%s)" % ",".join(header or [])[:80]
    epoch = 0
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            return "line %d has %d fields, the header %d" % (line, len(row), len(header))
        values = dict(zip(header, row))
        try:
            if int(values["epoch"]) <= epoch:
                return "line %d: the epochs do not go up" % line
            epoch = int(values["epoch"])
            for name in set(header) - set(TEXT_METRICS) - {"epoch"}:
                float(values[name] or 0)
        except ValueError:
            return "line %d holds something other than numbers" % line
    return None


MAX_METRICS_BYTES = 16 << 20  # a row an epoch: far more than any run writes


def _read_metrics_file(source):
    """The header and rows (lists of strings) of a metrics file, refused (CheckpointError) unless ours."""
    try:
        with open(source, "rb") as f:
            raw = f.read(MAX_METRICS_BYTES + 1)
    except OSError as err:
        raise CheckpointError("cannot read %s: %s" % (source, err.strerror or err))
    try:
        lines = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        problem = ("it is larger than %d MB" % (MAX_METRICS_BYTES >> 20) if len(raw) > MAX_METRICS_BYTES
                   else _metrics_problem(lines[0] if lines else None, lines[1:]))
    except (UnicodeDecodeError, csv.Error):
        problem = "it is not UTF-8 CSV text"
    if problem:
        raise CheckpointError("%s is not a metrics file of this project (%s): move it away, or give another "
                              "--prefix" % (source, problem))
    return lines[0], lines[1:]


def check_metrics(prefix):
    """Refuses (CheckpointError) a `<prefix>-metrics.csv` that is not ours, before a run writes anything."""
    if os.path.lexists(path("metrics", prefix)):
        read_metrics(prefix)


def save_metrics_row(prefix, row):
    """Writes `<prefix>-metrics.csv` with one epoch's row (a dict) as its last: a row of the same or a
    later epoch, left by a run stopped before that epoch was done, is replaced. The whole file is
    written as every other file is (so a row is never cut short), in the columns it began with."""
    target = path("metrics", prefix)
    header, rows = _read_metrics_file(target) if os.path.lexists(target) else (METRICS_FIELDS, [])
    rows = [r for r in rows if int(r[0]) < row["epoch"]] + [[row.get(name, "") for name in header]]
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows([header] + rows)
    files.save_text(target, out.getvalue())


def read_metrics(prefix):
    """The rows of `<prefix>-metrics.csv`, as dictionaries of strings (refused unless ours)."""
    source = path("metrics", prefix)
    if not os.path.lexists(source):
        raise CheckpointError("no %s; train first" % source)
    header, rows = _read_metrics_file(source)
    return [dict(zip(header, row)) for row in rows]


def _pattern(template):
    """A FILES template as a regular expression over the part of a name after `<prefix>`."""
    parts = re.split(r"(%04d|%s)", template[len("%s"):])
    return "".join({"%04d": r"\d{4,}", "%s": r"\w+"}.get(part, re.escape(part)) for part in parts)


def _run_file_names():
    return re.compile("|".join(_pattern(template) for template in FILES.values()))


def run_files(prefix):
    """The files of FILES that exist under `prefix`."""
    names = _run_file_names()
    return [found for found in glob.glob(glob.escape(prefix) + "-*") if names.fullmatch(found[len(prefix):])]


def is_run_file(prefix, target):
    """Whether writing `target` would replace one of the files of the run under `prefix`: it is named
    as one (links resolved), or is one under another name (a hard link)."""
    real, base = os.path.realpath(target), os.path.realpath(prefix)
    if real.startswith(base + "-") and _run_file_names().fullmatch(real[len(base):]):
        return True
    return os.path.exists(target) and any(os.path.samefile(target, found) for found in run_files(prefix))


def remove_run_files(prefix):
    """Removes what a training run wrote under `prefix` (the FILES), before another starts there afresh."""
    lock = path("lock", prefix)
    for found in run_files(prefix):
        if found != lock:
            os.remove(found)
