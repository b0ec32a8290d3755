"""Trains the tutorial's character-level LSTM on a corpus with mx.model.FeedForward.

    python train_obama.py                      # the tutorial: 3x512 LSTM, one epoch of obama.txt
    python train_obama.py --num-epoch 30 --optimizer adam --learning-rate 0.002 --clip-gradient 5
    python train_obama.py --resume --num-epoch 40   # carries on from the newest checkpoint
"""
import argparse
import csv
import logging
import math
import os
import signal
import sys
import time
import warnings

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # also while MXNet loads

import numpy as np  # noqa: E402

import device  # noqa: E402
import mxnet as mx  # noqa: E402

import bucket_io  # noqa: E402
import checkpoint  # noqa: E402
from lstm import (FUSED_PARAMS, bfloat16_graph, fuse_lstm_params, fused_lstm_unroll, lstm_unroll,  # noqa: E402
                  unfuse_lstm_params)

METRICS_FIELDS = ["epoch", "train_perplexity", "train_bits_per_char", "val_perplexity", "val_bits_per_char",
                  "learning_rate", "samples_per_sec", "seconds", "optimizer"]


def describe_optimizer(optimizer):
    """The optimizer and its settings in a few words, such as "adam wd=0 clip_gradient=5"."""
    words = [type(optimizer).__name__.lower(), "wd=%g" % optimizer.wd]
    if hasattr(optimizer, "momentum"):
        words.append("momentum=%g" % optimizer.momentum)
    if optimizer.clip_gradient is not None:
        words.append("clip_gradient=%g" % optimizer.clip_gradient)
    return " ".join(words)


class TrainingStopped(Exception):
    """Training ended early: interrupted (a checkpoint was written) or diverged."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class CharPerplexity(mx.metric.Perplexity):
    """Perplexity of the time-major predictions, padding (id 0) excluded, with bits per character.
    It also notes when a prediction is no longer finite (the loss diverged)."""

    def __init__(self):
        super().__init__(ignore_label=0, name="perplexity")
        self.diverged = False

    def update(self, labels, preds):
        # labels come (batch, seq_len); the graph predicts time-major, (seq_len * batch, num_label)
        super().update([label.T for label in labels], preds)
        self.diverged |= not all(math.isfinite(pred.sum().asscalar()) for pred in preds)

    @staticmethod
    def _with_bits(name_value):
        name, perplexity = name_value
        return [name, "bits-per-char"], [perplexity, math.log2(perplexity)]

    def get(self):
        return self._with_bits(super().get())

    def get_global(self):
        return self._with_bits(super().get_global())


class ProgressSpeedometer(mx.callback.Speedometer):
    """mx.callback.Speedometer's line, followed by the epoch's progress and the time it has left.
    `skipped(epoch)` is how many batches of that epoch a resumed run did before it stopped."""

    def __init__(self, batch_size, frequent, batches_per_epoch, skipped=lambda epoch: 0):
        super().__init__(batch_size, frequent)
        self.batches_per_epoch, self.skipped = batches_per_epoch, skipped
        self.epoch_tic = time.time()

    def __call__(self, param):
        if param.nbatch == 1 or param.nbatch < self.last_count:
            self.epoch_tic = time.time()
        super().__call__(param)
        if self.init and param.nbatch % self.frequent == 0:
            done = param.nbatch + self.skipped(param.epoch)
            left = (time.time() - self.epoch_tic) / param.nbatch * (self.batches_per_epoch - done)
            logging.info("Epoch[%d] %d/%d batches (%.0f%%), about %s left in the epoch", param.epoch, done,
                         self.batches_per_epoch, 100 * done / self.batches_per_epoch,
                         time.strftime("%H:%M:%S", time.gmtime(left)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the tutorial's character-level LSTM.")
    cli.add_corpus_options(p, bucket_io.DEFAULT_MIRROR,
                           "corpus file, UTF-8 (default: data/obama.txt, found by the corpus look-up)")
    cli.add_checkpoint_options(p, checkpoint.DEFAULT_PREFIX)
    p.add_argument("--seq-len", type=cli.positive_int, default=129, help="longest sentence; the bucket when --buckets is not given")
    p.add_argument("--buckets", type=cli.int_list, help="bucket lengths, such as 32,64,129 (default: --seq-len)")
    p.add_argument("--split-long-lines", action="store_true", help="cut lines longer than the largest bucket instead of failing")
    p.add_argument("--stream", action="store_true",
                   help="treat the corpus as one continuous text cut into --seq-len pieces, not one sample per line")
    p.add_argument("--val-frac", type=cli.fraction, default=0.05, help="the last fraction of sentences held out (0: none)")
    p.add_argument("--num-embed", type=cli.positive_int, default=256)
    p.add_argument("--num-lstm-layer", type=cli.positive_int, default=3)
    p.add_argument("--num-hidden", type=cli.positive_int, default=512)
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--dropout", type=cli.fraction, default=0.2)
    p.add_argument("--num-epoch", type=cli.positive_int, default=1, help="train until this many epochs are done")
    p.add_argument("--optimizer", choices=["sgd", "adam", "rmsprop"], default="sgd")
    p.add_argument("--learning-rate", type=cli.positive_float, default=0.01)
    p.add_argument("--momentum", type=cli.non_negative_float, default=0.0, help="for sgd")
    p.add_argument("--wd", type=cli.non_negative_float, default=0.0001)
    p.add_argument("--clip-gradient", type=cli.positive_float, help="clip each gradient element to [-C, C]")
    p.add_argument("--lr-factor", type=cli.positive_float, default=1.0,
                   help="multiply the learning rate by this (at most 1) at each --lr-step-epochs")
    p.add_argument("--lr-step-epochs", type=cli.int_list, help="epochs after which --lr-factor applies, such as 10,20")
    p.add_argument("--lr-anneal", type=cli.positive_float, help="multiply the learning rate by this when the validation "
                   "loss stops improving (0.25 divides it by 4, as word_language_model does)")
    p.add_argument("--keep", type=cli.positive_int, help="keep only the newest N epoch checkpoints (default: all)")
    p.add_argument("--resume", action="store_true", help="carry on from the newest checkpoint under --prefix; "
                   "optimizer options given again replace the saved ones")
    p.add_argument("--overwrite", action="store_true", help="start afresh even where --prefix already has checkpoints")
    p.add_argument("--rnn-backend", choices=["unrolled", "fused"], default="unrolled",
                   help="unrolled: the tutorial's graph of LSTM cells; fused: the same model on mx.sym.RNN "
                        "(oneDNN on the CPU, cuDNN on a GPU), faster. Checkpoints are the same")
    p.add_argument("--bf16", action="store_true",
                   help="unrolled backend on a CPU with AVX-512 bf16: matrix products in bfloat16 (float32 "
                        "parameters and checkpoints)")
    p.add_argument("--seed", type=cli.random_seed, default=0, help="seeds the initial weights, dropout and batch order")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                   help="shuffle the batch order each epoch (default); --no-shuffle keeps the corpus order")
    p.add_argument("--kv-store", choices=["local", "device", "dist_sync", "dist_async"], default="local",
                   help="MXNet's key-value store; dist_* train on its parameter server (see README)")
    p.add_argument("--launch-local", type=cli.positive_int, metavar="N",
                   help="start a scheduler, --num-servers servers and N workers on this machine and train with them")
    p.add_argument("--num-servers", type=cli.positive_int, default=1, help="with --launch-local")
    p.add_argument("--launch-timeout", type=cli.positive_int, help="with --launch-local: stop everything after S seconds")
    p.add_argument("--log-every", type=cli.positive_int, default=20, help="batches between progress lines")
    p.add_argument("--plot", action="store_true", help="only draw <prefix>-metrics.csv to <prefix>-curves.png")
    cli.add_device_options(p, "train on these GPUs, such as 0 or 0,1 (default: gpu(0) if MXNet can use it)")
    args = p.parse_args(argv)
    args.given = cli.given_options(p, argv)
    if args.lr_factor > 1:
        p.error("--lr-factor must be at most 1, got %s" % args.lr_factor)
    if args.lr_anneal is not None and not args.lr_anneal < 1:
        p.error("--lr-anneal must be in (0, 1), got %s" % args.lr_anneal)
    if args.launch_local and not args.kv_store.startswith("dist"):
        args.kv_store = "dist_sync"
    if args.lr_anneal is not None and args.kv_store.startswith("dist"):
        p.error("--lr-anneal does not reach the parameter servers, where the optimizer lives under --kv-store "
                "dist_*: use --lr-step-epochs, which the servers apply")
    if args.bf16 and args.rnn_backend == "fused":
        p.error("--bf16 needs --rnn-backend unrolled: MXNet 1.9.1's RNN operator has no bfloat16")
    if args.bf16 and device.bf16_unavailable_reason():
        p.error("--bf16 needs a CPU with AVX-512 bf16: %s" % device.bf16_unavailable_reason())
    if args.lr_anneal is not None and args.lr_step_epochs:
        p.error("--lr-anneal and --lr-step-epochs are two different schedules: choose one")
    return args


def init_states(num_lstm_layer, batch_size, num_hidden, backend="unrolled"):
    """The names and shapes of the zero initial LSTM states, fed as data."""
    if backend == "fused":
        return [("lstm_init_c", (batch_size, num_lstm_layer, num_hidden)),
                ("lstm_init_h", (batch_size, num_lstm_layer, num_hidden))]
    init_c = [("l%d_init_c" % l, (batch_size, num_hidden)) for l in range(num_lstm_layer)]
    init_h = [("l%d_init_h" % l, (batch_size, num_hidden)) for l in range(num_lstm_layer)]
    return init_c + init_h


def tutorial_params(arg_params, num_lstm_layer, num_hidden, num_embed):
    """The parameters under the tutorial's names, whichever backend trained them."""
    if FUSED_PARAMS not in arg_params:
        return arg_params
    params = {k: v for k, v in arg_params.items() if k != FUSED_PARAMS}
    unfused = unfuse_lstm_params(arg_params[FUSED_PARAMS], num_lstm_layer, num_hidden, num_embed)
    params.update({k: mx.nd.array(v) for k, v in unfused.items()})
    return params


def backend_params(params, backend, num_lstm_layer, num_hidden):
    """Tutorial-named parameters as the given backend takes them."""
    if backend != "fused":
        return params
    fused = {k: v for k, v in params.items() if not k.startswith("l")}
    fused[FUSED_PARAMS] = mx.nd.array(fuse_lstm_params(params, num_lstm_layer, num_hidden))
    return fused


def initial_params(initializer, num_lstm_layer, num_hidden, num_embed):
    """Per-layer LSTM parameters initialised as FeedForward initialises the unrolled graph's."""
    arrays = {}
    for i in range(num_lstm_layer):
        fan_in = num_embed if i == 0 else num_hidden
        for name, shape in (("l%d_i2h_weight" % i, (4 * num_hidden, fan_in)), ("l%d_i2h_bias" % i, (4 * num_hidden,)),
                            ("l%d_h2h_weight" % i, (4 * num_hidden, num_hidden)), ("l%d_h2h_bias" % i, (4 * num_hidden,))):
            arrays[name] = mx.nd.zeros(shape)
            initializer(mx.init.InitDesc(name), arrays[name])
    return arrays


def load_sentences(corpus, args, max_len):
    """The corpus as training and validation sentences: one per line, or (--stream) cut from
    the continuous text; the last --val-frac of them held out."""
    content = bucket_io.read_content(corpus)
    if args.stream:
        sentences = [content[i:i + max_len] for i in range(0, len(content), max_len)]
    else:
        sentences = bucket_io.split_sentences(content, "\n", max_len, args.split_long_lines)
    held_out = int(round(len(sentences) * args.val_frac))
    return sentences[:len(sentences) - held_out], sentences[len(sentences) - held_out:]


def states_path(prefix, epoch, backend):
    return "%s-%04d-%s.states" % (prefix, epoch, backend)


class Run:
    """What the callbacks share: the checkpoints, the metrics file, the best epoch, the signals."""

    def __init__(self, args, kv, metric, symbol, batches_per_epoch, has_validation):
        self.args, self.kv, self.metric, self.symbol = args, kv, metric, symbol
        self.writes = kv.rank == 0  # in distributed training only the first worker writes files
        self.given_optimizer = None
        self.batches_per_epoch = batches_per_epoch
        self.has_validation = has_validation
        self.stop_signal = None
        self.resumed_at = (None, 0)  # (epoch, batches done in it before a stop)
        self.epoch_tic = time.time()
        self.row = None
        self.best_loss = self._previous_best()

    def _previous_best(self):
        path = "%s-metrics.csv" % self.args.prefix
        if not os.path.exists(path):
            return math.inf
        with open(path, newline="") as f:
            losses = [math.log(float(r["val_perplexity"])) for r in csv.DictReader(f) if r["val_perplexity"]]
        return min(losses, default=math.inf)

    @property
    def optimizer(self):
        # a local KVStore's updater holds the optimizer in use (a loaded state replaces it);
        # a distributed one keeps it on the servers, and the workers have the copy they sent
        updater = getattr(self.kv, "_updater", None)
        return updater.optimizer if updater is not None else self.given_optimizer

    def save_optimizer_states(self, prefix, epoch):
        if getattr(self.kv, "_updater", None) is not None:
            checkpoint.atomic_write(states_path(prefix, epoch, self.args.rnn_backend),
                                    lambda tmp: self.kv.save_optimizer_states(tmp, dump_optimizer=True))

    def to_tutorial(self, arg_params):
        a = self.args
        return tutorial_params(arg_params, a.num_lstm_layer, a.num_hidden, a.num_embed)

    def save(self, epoch, arg_params, aux_params):
        checkpoint.save_checkpoint(self.args.prefix, epoch, self.symbol, self.to_tutorial(arg_params), aux_params)
        self.save_optimizer_states(self.args.prefix, epoch)

    def skipped(self, epoch):
        return self.resumed_at[1] if epoch == self.resumed_at[0] else 0

    def on_signal(self, signum, _frame):
        if self.stop_signal is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.stop_signal = signum
        logging.info("Signal %d: stopping after this batch and writing a checkpoint", signum)

    def batch_end(self, param):
        if self.metric.diverged:
            raise TrainingStopped("the loss became NaN or infinite at epoch %d, batch %d; the last good checkpoint "
                                  "stays (try a lower --learning-rate or --clip-gradient)"
                                  % (param.epoch + 1, param.nbatch + self.skipped(param.epoch)), 1)
        if self.stop_signal is not None and self.writes:
            manager = param.locals["executor_manager"]
            arg_params, aux_params = param.locals["arg_params"], param.locals["aux_params"]
            manager.copy_to(arg_params, aux_params)
            partial = "%s-partial" % self.args.prefix
            checkpoint.save_checkpoint(partial, param.epoch, None, self.to_tutorial(arg_params), aux_params)
            self.save_optimizer_states(partial, param.epoch)
            done = param.nbatch + self.skipped(param.epoch)
            checkpoint.save_progress(self.args.prefix, param.epoch, done, self.args.batch_size)
            raise TrainingStopped("stopped by signal %d in epoch %d after batch %d; a checkpoint of this point is "
                                  "written: carry on with the same command and --resume"
                                  % (self.stop_signal, param.epoch + 1, done), 128 + self.stop_signal)
        if self.stop_signal is not None:
            raise TrainingStopped("stopped by signal %d; the first worker writes the checkpoint" % self.stop_signal,
                                  128 + self.stop_signal)

    def epoch_end(self, epoch, _symbol, arg_params, aux_params):
        names, values = self.metric.get_global()
        logging.info("Epoch[%d] Train-%s=%f Train-%s=%f", epoch, names[0], values[0], names[1], values[1])
        if self.writes:
            self.save(epoch + 1, arg_params, aux_params)
            checkpoint.clear_progress(self.args.prefix)
            logging.info('Saved checkpoint to "%s"', checkpoint.params_path(self.args.prefix, epoch + 1))
        seconds = time.time() - self.epoch_tic
        optimizer = self.optimizer
        self.row = dict(epoch=epoch + 1, train_perplexity=values[0], train_bits_per_char=values[1],
                        val_perplexity="", val_bits_per_char="", learning_rate=optimizer.learning_rate,
                        optimizer=describe_optimizer(optimizer),
                        samples_per_sec=(self.batches_per_epoch - self.skipped(epoch)) * self.args.batch_size / seconds,
                        seconds=seconds)
        if not self.has_validation:
            self.end_epoch()

    def eval_end(self, param):
        names, values = param.eval_metric.get_global()
        logging.info("Epoch[%d] Validation-%s=%f Validation-%s=%f", param.epoch, names[0], values[0], names[1], values[1])
        self.row.update(val_perplexity=values[0], val_bits_per_char=values[1])
        loss = math.log(values[0])
        if loss < self.best_loss and self.writes:
            self.best_loss = loss
            best = "%s-best.params" % self.args.prefix
            checkpoint.copy_file(checkpoint.params_path(self.args.prefix, param.epoch + 1), best)
            logging.info("Best validation loss so far: copied to %s", best)
        elif self.args.lr_anneal:
            lr = self.optimizer.learning_rate * self.args.lr_anneal
            self.optimizer.set_learning_rate(lr)
            logging.info("Validation loss did not improve: learning rate now %g", lr)
        self.end_epoch()

    def end_epoch(self):
        self.epoch_tic = time.time()
        if not self.writes:
            return
        checkpoint.append_metrics(self.args.prefix, self.row, METRICS_FIELDS)
        if self.args.keep:
            for old in checkpoint.epochs(self.args.prefix)[:-self.args.keep]:
                for path in (checkpoint.params_path(self.args.prefix, old),
                             states_path(self.args.prefix, old, "unrolled"), states_path(self.args.prefix, old, "fused")):
                    if os.path.exists(path):
                        os.remove(path)


def resume_point(args):
    """(epoch, batch, params, states file) to carry on from: a signal's partial checkpoint when it is
    the newest, else the newest epoch checkpoint."""
    found = checkpoint.epochs(args.prefix)
    progress = checkpoint.load_progress(args.prefix)
    if progress and (not found or progress["epoch"] >= found[-1]):
        source, epoch, batch = "%s-partial" % args.prefix, progress["epoch"], progress["batch"]
        if progress.get("batch_size", args.batch_size) != args.batch_size:
            raise checkpoint.CheckpointError(
                "the run stopped after batch %d of epoch %d with --batch-size %d: resume it with the same "
                "--batch-size (the batches of an epoch depend on it)" % (batch, epoch + 1, progress["batch_size"]))
    else:
        source, epoch, batch = args.prefix, checkpoint.latest_epoch(args.prefix), 0
    params, aux = checkpoint.load_params(source, epoch)
    shape = checkpoint.model_shape(params)
    wanted = dict(num_lstm_layer=args.num_lstm_layer, num_hidden=args.num_hidden, num_embed=args.num_embed)
    if any(shape[k] != v for k, v in wanted.items()):
        raise checkpoint.CheckpointError(
            "the checkpoint has %(num_lstm_layer)d layers of %(num_hidden)d units over a %(num_embed)d-wide embedding; "
            "give the same --num-lstm-layer, --num-hidden and --num-embed to resume it" % shape)
    states = states_path(source, epoch, args.rnn_backend)
    if not os.path.exists(states):
        logging.warning("No optimizer state %s (another backend, or an older checkpoint): the optimizer starts afresh",
                        states)
        return epoch, batch, params, aux, None
    saved = type(checkpoint.read_optimizer(states)).__name__.lower()
    if "optimizer" in args.given and saved != args.optimizer:
        logging.warning("--optimizer %s replaces the checkpoint's %s: the optimizer starts afresh", args.optimizer, saved)
        return epoch, batch, params, aux, None
    return epoch, batch, params, aux, states


# the options that FeedForward gives the optimizer, and the optimizer's attribute for each
OPTIMIZER_OPTIONS = {"learning_rate": "lr", "wd": "wd", "momentum": "momentum", "clip_gradient": "clip_gradient"}


def replace_saved_options(saved, fresh, given):
    """Makes the optimizer loaded from a checkpoint follow the options given again on the command
    line (from `fresh`, the optimizer built from them); it keeps its state and the rest."""
    saved.rescale_grad = fresh.rescale_grad  # 1 / batch size: the batch size may have changed
    for option, attr in OPTIMIZER_OPTIONS.items():
        if option not in given or not hasattr(saved, attr):
            continue
        before, value = getattr(saved, attr), getattr(fresh, attr)
        if option == "learning_rate":
            before, value = saved.learning_rate, fresh.learning_rate
            if saved.lr_scheduler is not None:
                saved.lr_scheduler.base_lr = value
            saved.lr = value
        else:
            setattr(saved, attr, value)
        if before != value:
            logging.info("--%s %s from the command line replaces the checkpoint's %s",
                         option.replace("_", "-"), value, before)
    if "lr_step_epochs" in given:
        saved.lr_scheduler = fresh.lr_scheduler


def train(args, contexts):
    """Trains as the tutorial does, with the options above; returns the FeedForward model."""
    if args.bf16 and any(ctx.device_type != "cpu" for ctx in contexts):
        raise device.DeviceError("--bf16 runs on the CPU only (MXNet 1.9.1 has bfloat16 for oneDNN); add --cpu")
    corpus = bucket_io.find_corpus(args.data, mirror=args.data_mirror)
    if args.resume and checkpoint.load_progress(args.prefix) is None:
        checkpoint.latest_epoch(args.prefix)  # nothing to resume: say so before creating anything
    kv = mx.kv.create(args.kv_store)
    if kv.rank != 0:  # in distributed training only the first worker writes files
        return train_with(args, contexts, corpus, kv)
    with checkpoint.RunLock(args.prefix):
        checkpoint.remove_stale_temporaries(args.prefix)
        return train_with(args, contexts, corpus, kv)


def train_with(args, contexts, corpus, kv):
    vocab = bucket_io.build_vocab(corpus)
    logging.info("Corpus %s: vocab size = %d", corpus, len(vocab))
    buckets = sorted(args.buckets or [args.seq_len])
    train_sentences, val_sentences = load_sentences(corpus, args, buckets[-1])
    max_batches = None
    if kv.num_workers > 1:
        # each worker trains on its own share; a synchronous store needs the same number of batches from each
        per_worker = len(train_sentences) // kv.num_workers
        shares = [train_sentences[r * per_worker:(r + 1) * per_worker] for r in range(kv.num_workers)]
        max_batches = min(bucket_io.count_batches(share, buckets, args.batch_size) for share in shares)
        train_sentences = shares[kv.rank]
        logging.info("Worker %d of %d (%s): %d sentences, %d batches of %d an epoch; %s", kv.rank, kv.num_workers,
                     args.kv_store, len(train_sentences), max_batches, args.batch_size,
                     "each step sums %d samples" % (args.batch_size * kv.num_workers) if args.kv_store == "dist_sync"
                     else "the servers apply each worker's gradients as they come")
    states = init_states(args.num_lstm_layer, args.batch_size, args.num_hidden, args.rnn_backend)
    data_train = bucket_io.BucketSentenceIter(corpus, vocab, buckets, args.batch_size, states, seed=args.seed,
                                              sentences=train_sentences, shuffle=args.shuffle,
                                              max_batches=max_batches)
    if data_train.num_batches == 0:
        raise bucket_io.CorpusError("%s has fewer sentences than one batch (%d) in any bucket" % (corpus, args.batch_size))
    data_val = None
    if val_sentences:
        data_val = bucket_io.BucketSentenceIter(corpus, vocab, buckets, args.batch_size, states, sentences=val_sentences)
        if data_val.num_batches == 0:
            logging.warning("The %d held-out sentences make no full batch: no validation", len(val_sentences))
            data_val = None

    num_label = len(vocab) + 1
    unroll = fused_lstm_unroll if args.rnn_backend == "fused" else lstm_unroll

    def sym_gen(seq_len):
        symbol = unroll(args.num_lstm_layer, seq_len, num_label, num_hidden=args.num_hidden,
                        num_embed=args.num_embed, num_label=num_label, dropout=args.dropout)
        return bfloat16_graph(symbol) if args.bf16 else symbol

    np.random.seed(args.seed)
    mx.random.seed(args.seed)
    initializer = mx.init.Xavier(factor_type="in", magnitude=2.34)
    begin_epoch, batch, arg_params, aux_params, states_file = 0, 0, None, None, None
    earlier = checkpoint.epochs(args.prefix)
    if not args.resume and (earlier or checkpoint.load_progress(args.prefix)) and kv.rank == 0:
        if not args.overwrite:
            raise checkpoint.CheckpointError(
                "%s already has checkpoints (%s): add --resume to carry on, or --overwrite to start again"
                % (args.prefix, "epochs " + ",".join(map(str, earlier)) if earlier else "a stopped first epoch"))
        checkpoint.remove_run_files(args.prefix)
    if args.resume:
        begin_epoch, batch, arg_params, aux_params, states_file = resume_point(args)
        checkpoint.check_vocab(args.prefix, vocab, arg_params["cls_weight"].shape[0])
        logging.info("Resuming at epoch %d%s", begin_epoch + 1, ", after batch %d" % batch if batch else "")
        data_train.resume_at(begin_epoch, batch)
    elif args.rnn_backend == "fused":  # the fused vector starts as the unrolled graph's parameters would
        arg_params = initial_params(initializer, args.num_lstm_layer, args.num_hidden, args.num_embed)
    if arg_params is not None:
        arg_params = backend_params(arg_params, args.rnn_backend, args.num_lstm_layer, args.num_hidden)
    if begin_epoch >= args.num_epoch:
        logging.info("Already trained for %d epochs (--num-epoch %d): nothing to do", begin_epoch, args.num_epoch)
        return None
    if kv.rank == 0:
        checkpoint.save_vocab(args.prefix, vocab)

    optimizer_params = dict(learning_rate=args.learning_rate, wd=args.wd)
    if args.optimizer == "sgd":
        optimizer_params["momentum"] = args.momentum
    if args.clip_gradient:
        optimizer_params["clip_gradient"] = args.clip_gradient
    if args.lr_step_epochs:
        optimizer_params["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(
            step=[e * data_train.num_batches for e in args.lr_step_epochs], factor=args.lr_factor,
            base_lr=args.learning_rate)

    metric = CharPerplexity()
    with mx.name.NameManager():  # fresh automatic names: the same model always saves the same symbol file
        saved_symbol = lstm_unroll(args.num_lstm_layer, data_train.default_bucket_key, num_label, args.num_hidden,
                                   args.num_embed, num_label, args.dropout)
    run = Run(args, kv, metric, saved_symbol, data_train.num_batches, data_val is not None)
    if args.resume:
        run.resumed_at = (begin_epoch, batch)

    # The KVStore is our own object, so that its optimizer state can be saved and, on --resume,
    # loaded right after FeedForward gives it the optimizer.
    give_optimizer = kv.set_optimizer

    def set_optimizer(optimizer):
        give_optimizer(optimizer)
        run.given_optimizer = optimizer
        if states_file and getattr(kv, "_updater", None) is not None:
            kv.load_optimizer_states(states_file)
            replace_saved_options(kv._updater.optimizer, optimizer, args.given)
    kv.set_optimizer = set_optimizer
    with warnings.catch_warnings():
        # FeedForward is deprecated in MXNet 1.x in favour of Module; we keep the tutorial's API.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = mx.model.FeedForward(
            ctx=contexts, symbol=sym_gen, num_epoch=args.num_epoch, optimizer=args.optimizer,
            initializer=initializer, arg_params=arg_params, aux_params=aux_params, begin_epoch=begin_epoch,
            **optimizer_params)
    previous = {sig: signal.signal(sig, run.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        model.fit(X=data_train, eval_data=data_val, eval_metric=metric, kvstore=kv,
                  batch_end_callback=[ProgressSpeedometer(args.batch_size, args.log_every, data_train.num_batches,
                                                          run.skipped),
                                      run.batch_end],
                  epoch_end_callback=run.epoch_end, eval_end_callback=run.eval_end)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return model


def plot_curves(prefix):
    """Draws <prefix>-metrics.csv to <prefix>-curves.png."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise checkpoint.CheckpointError("--plot needs matplotlib (pip install matplotlib)")
    path = "%s-metrics.csv" % prefix
    if not os.path.exists(path):
        raise checkpoint.CheckpointError("no %s to plot; train first" % path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(7, 4))
    for column, label in (("train_bits_per_char", "training"), ("val_bits_per_char", "validation")):
        points = [(int(r["epoch"]), float(r[column])) for r in rows if r[column]]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per character")
    ax.legend()
    out = "%s-curves.png" % prefix
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out


LAUNCH_FLAGS = ("--launch-local", "--num-servers", "--launch-timeout", "--kv-store")


def strip_launch_flags(argv):
    """The training flags without --launch-local N and --num-servers S (in either spelling)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCH_FLAGS:
            skip = True
        elif not arg.startswith(tuple(flag + "=" for flag in LAUNCH_FLAGS)):
            out.append(arg)
    return out


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.plot:
            logging.info("Wrote %s", plot_curves(args.prefix))
            return 0
        if args.launch_local:
            import dist_launch
            argv = list(sys.argv[1:] if argv is None else argv)
            worker = [sys.executable, os.path.abspath(__file__)] + strip_launch_flags(argv)
            worker += ["--kv-store", args.kv_store]
            return dist_launch.launch_local(worker, args.launch_local, args.num_servers, args.launch_timeout)
        gpus = device.parse_gpu_list(args.gpus) if args.gpus else None
        contexts, why = device.choose_contexts(gpus=gpus, cpu=args.cpu)
        logging.info("Device: %s", why)
        train(args, contexts)
    except (bucket_io.CorpusError, checkpoint.CheckpointError, device.DeviceError) as err:
        return cli.fail("train_obama.py", err)
    except TrainingStopped as stop:
        print("train_obama.py: %s" % stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("train_obama.py: interrupted", file=sys.stderr)
        return cli.INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
