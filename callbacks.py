"""What training does after each batch and each epoch: FeedForward's callbacks, small and in
the manner of mx.callback, each with one job; the perplexity metric they report; and
fit_callbacks, which puts them together for a run.

FeedForward.fit calls, in each epoch: the batch-end callbacks after every batch; then the
epoch-end callbacks, with the epoch's weights; then, only where there is held-out data, it
evaluates and calls the eval-end callbacks. So the work that needs the validation loss (the best
copy, annealing, the metrics row, then the run record's count of epochs done: see EpochEnd)
happens at eval end where there is held-out data, else at epoch end.
"""
import logging
import math
import signal
import time
from collections import namedtuple

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx
import numpy as np

import checkpoint


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
        # labels come (batch, width); the graph predicts time-major, (steps * batch, num_label), for
        # the first `steps` of them (a shorter bucket's batch comes padded to the longest bucket's width).
        # A stateful graph outputs its final states after the predictions: they are not scored.
        preds = preds[:len(labels)]
        super().update([label[:, :pred.shape[0] // label.shape[0]].T for label, pred in zip(labels, preds)], preds)
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
    """mx.callback.Speedometer's line, followed by the epoch's progress and the time it has left."""

    def __init__(self, batch_size, frequent, batches_per_epoch, place):
        super().__init__(batch_size, frequent)
        self.batches_per_epoch, self.place = batches_per_epoch, place
        self.epoch_tic = time.time()

    def __call__(self, param):
        if param.nbatch == 1 or param.nbatch < self.last_count:
            self.epoch_tic = time.time()
        super().__call__(param)
        if self.init and param.nbatch % self.frequent == 0:
            done = param.nbatch + self.place.skipped(param.epoch)
            left = (time.time() - self.epoch_tic) / param.nbatch * (self.batches_per_epoch - done)
            logging.info("Epoch[%d] %d/%d batches (%.0f%%), about %s left in the epoch", param.epoch, done,
                         self.batches_per_epoch, 100 * done / self.batches_per_epoch,
                         time.strftime("%H:%M:%S", time.gmtime(left)))


def batch_seed(seed, epoch, batch):
    """The seed of MXNet's generator, and so of dropout's masks, for batch `batch` of epoch `epoch`
    (both counted from 0)."""
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


def seed_next_batch(seed, batches_per_epoch, place):
    """Batch end: seeds MXNet's generator for the batch that comes next, from its place in the run.

    A resumed process seeds its generator afresh; without this its dropout masks would replay those
    of the run's first batches, which stateful training pairs with the very same text every epoch,
    so the model learns the masks and dropout stops regularising. Seeded by place, a resumed run
    draws the masks the uninterrupted one draws, and ends with the same parameters.
    """
    def seed_next(param):
        done = param.nbatch + place.skipped(param.epoch)
        epoch, batch = (param.epoch + 1, 0) if done >= batches_per_epoch else (param.epoch, done)
        mx.random.seed(batch_seed(seed, epoch, batch))
    return seed_next


def carry_states(iterator):
    """Batch end (training or evaluation) in stateful training: the final LSTM states of the batch
    become the iterator's initial states for the next, each device's streams from that device."""
    def carry(param):
        manager = param.locals["executor_manager"]
        for executor, part in zip(manager.curr_execgrp.train_execs, manager.slices):
            for state, final in zip(iterator.states, executor.outputs[1:]):
                state[part.start:part.stop] = final
    return carry


def as_epoch_end(callback):
    """An eval-end callback, called at epoch end instead where there is no held-out data (its
    `param.eval_metric` is then None)."""
    def at_epoch_end(epoch, _symbol, _arg_params, _aux_params):
        callback(mx.model.BatchEndParam(epoch=epoch, nbatch=0, eval_metric=None, locals=None))
    return at_epoch_end


class EpochEnd:
    """Everything an epoch writes (through `writer`, a checkpoint.RunWriter), in an order that
    makes it done only once all of it is written.

    `save_weights` (epoch end, the tutorial's do_checkpoint) writes `<prefix>-%04d.params` and
    notes the training metrics. `finish` (eval end, or epoch end where there is no held-out data)
    writes the optimizer state, the best copy where the epoch is the best so far, the metrics row,
    and last the run record's count of epochs done, with the best loss and the plateau's drops;
    then it prunes (`keep`). A run stopped before that last write (kill -9, a full disk, a second
    Ctrl-C) resumes at the epoch's start and does it again, so no epoch loses its optimizer state,
    its metrics row or its chance to be the best.
    """

    def __init__(self, writer, row, best_loss=None, keep=None, plateau=None):
        self.writer, self.row, self.keep, self.plateau = writer, row, keep, plateau
        self.best = ValidationLoss(math.inf if best_loss is None else best_loss)

    def save_weights(self, epoch, _symbol, arg_params, aux_params):
        self.writer.save_epoch(epoch + 1, arg_params, aux_params)
        self.row.start(epoch)

    def finish(self, param):
        epoch = param.epoch + 1
        self.writer.save_optimizer(checkpoint.Place(epoch, 0))
        done = dict(lr_drops=self.plateau.drops) if self.plateau else {}
        if param.eval_metric is not None:
            self.row.add_validation(param.eval_metric)
            if self.best.improves(param):
                self.writer.copy_best(epoch)
                done.update(best_val_loss=self.best.best, best_epoch=epoch)
        self.writer.save_metrics_row(self.row.values)
        self.writer.epoch_done(epoch, **done)
        if self.keep:
            self.writer.keep_newest(self.keep)


def log_training_metrics(metric):
    """Epoch end: the epoch's training perplexity and bits per character."""
    def log(epoch, _symbol, _arg_params, _aux_params):
        names, values = metric.get_global()
        logging.info("Epoch[%d] Train-%s=%f Train-%s=%f", epoch, names[0], values[0], names[1], values[1])
    return log


def log_validation_metrics(param):
    """Eval end: the held-out perplexity and bits per character."""
    names, values = param.eval_metric.get_global()
    logging.info("Epoch[%d] Validation-%s=%f Validation-%s=%f", param.epoch, names[0], values[0], names[1], values[1])


class ValidationLoss:
    """The lowest validation loss (nats per character) so far, carried over from the run record."""

    def __init__(self, best=math.inf):
        self.best = best

    def improves(self, param):
        loss = math.log(param.eval_metric.get_global()[1][0])
        if loss < self.best:
            self.best = loss
            return True
        return False


class Plateau:
    """Eval end (--lr-schedule plateau): multiplies the learning rate by `factor` when the
    validation loss did not improve on the best so far; `drops` counts how often (the run record
    keeps it, so that a resumed run goes on at the lowered rate)."""

    def __init__(self, optimizer, factor, best_loss=None, drops=0):
        self.optimizer, self.factor, self.drops = optimizer, factor, drops
        self.tracker = ValidationLoss(math.inf if best_loss is None else best_loss)

    def __call__(self, param):
        if not self.tracker.improves(param):
            self.drops += 1
            lr = self.optimizer.optimizer.learning_rate * self.factor
            self.optimizer.optimizer.set_learning_rate(lr)
            logging.info("Validation loss did not improve: learning rate now %g", lr)


class MetricsRow:
    """One epoch's row of `<prefix>-metrics.csv` (checkpoint.METRICS_FIELDS): the training metrics at
    epoch end (`start`), then the validation metrics (`add_validation`); EpochEnd writes it."""

    def __init__(self, metric, optimizer, samples_per_epoch, place, batch_size):
        self.metric, self.optimizer = metric, optimizer
        self.samples_per_epoch, self.place, self.batch_size = samples_per_epoch, place, batch_size
        self.tic, self.values = time.time(), None

    def start(self, epoch):
        _, values = self.metric.get_global()
        seconds = time.time() - self.tic
        samples = self.samples_per_epoch - self.place.skipped(epoch) * self.batch_size
        self.values = dict(epoch=epoch + 1, train_perplexity=values[0], train_bits_per_char=values[1],
                           val_perplexity="", val_bits_per_char="",
                           learning_rate=self.optimizer.optimizer.learning_rate, optimizer=self.optimizer.describe(),
                           samples_per_sec=samples / seconds, seconds=seconds)
        self.tic = time.time()

    def add_validation(self, eval_metric):
        _, values = eval_metric.get_global()
        self.values.update(val_perplexity=values[0], val_bits_per_char=values[1])


def stop_on_divergence(metric, place):
    """Batch end: stops training once the loss is NaN or infinite (the last good checkpoint stays)."""
    def check(param):
        if metric.diverged:
            raise TrainingStopped("the loss became NaN or infinite at epoch %d, batch %d; the last good checkpoint "
                                  "stays (try a lower --learning-rate or --clip-gradient)"
                                  % (param.epoch + 1, param.nbatch + place.skipped(param.epoch)), 1)
    return check


class StopOnSignal:
    """Ctrl-C, SIGTERM or SIGHUP (a closed terminal): finishes the batch, writes the partial
    checkpoint (through `writer`, a checkpoint.RunWriter) and stops; during an evaluation, it stops
    once the epoch is done (`after_epoch`). A second signal stops at once. A worker of distributed
    training that writes nothing (no `writer`) trains on: under dist_sync the first worker's batch needs the
    others' gradients, and they may be a batch behind it.
    Use it as a context manager around fit, which installs and then restores the signal handlers;
    a signal ignored when the run starts (SIGHUP under nohup) stays ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, writer, place):
        self.writer, self.place = writer, place
        self.signum, self.previous = None, {}

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self.on_signal) for sig in self.SIGNALS
                         if signal.getsignal(sig) != signal.SIG_IGN}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def on_signal(self, signum, _frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.writer is None:
            logging.info("Signal %d: training on until the first worker has written its checkpoint and stopped "
                         "(dist_launch.py then stops this one; a second signal stops it at once)", signum)
        else:
            logging.info("Signal %d: stopping after this batch (or this evaluation) and writing a checkpoint", signum)

    def after_epoch(self, param):
        """Eval end (or epoch end), after the epoch is written: stops where a signal came meanwhile."""
        if self.signum is not None and self.writer is not None:
            raise TrainingStopped("stopped by signal %d at the end of epoch %d, which is written whole: carry on "
                                  "with the same command and --resume" % (self.signum, param.epoch + 1),
                                  128 + self.signum)

    def __call__(self, param):
        if self.signum is None or self.writer is None:
            return  # a worker that writes nothing trains on, so that the first worker can finish its batch

        arg_params, aux_params = param.locals["arg_params"], param.locals["aux_params"]
        param.locals["executor_manager"].copy_to(arg_params, aux_params)
        done = param.nbatch + self.place.skipped(param.epoch)
        self.writer.save_stopped(checkpoint.Place(param.epoch, done), arg_params, aux_params)
        raise TrainingStopped("stopped by signal %d in epoch %d after batch %d; a checkpoint of this point is "
                              "written: carry on with the same command and --resume"
                              % (self.signum, param.epoch + 1, done), 128 + self.signum)


Callbacks = namedtuple("Callbacks", ["batch_end", "epoch_end", "eval_end", "eval_batch_end", "stop"])


def fit_callbacks(args, metric, optimizer, writer, data_train, data_val, start, clip=None):
    """FeedForward's batch-end, epoch-end and eval-end callbacks for a run with the options `args`
    that starts at `start` (train_obama.Start), and the signal handler to hold around fit.
    `writer`: the run's checkpoint.RunWriter, or None for a distributed worker that writes nothing;
    `clip`: the optimization.GlobalNormClip, whose figures are logged each epoch."""
    place = start.place
    stop = StopOnSignal(writer, place)
    carry = [carry_states(data_train)] if args.stateful else []
    # only the dropouts draw random numbers in a batch
    reseed = ([seed_next_batch(args.seed, data_train.num_batches, place)]
              if args.dropout or args.weight_drop or args.embed_dropout else [])
    batch_end = [ProgressSpeedometer(args.batch_size, args.log_every, data_train.num_batches, place),
                 stop_on_divergence(metric, place)] + reseed + carry + [stop]
    epoch_end = [log_training_metrics(metric)] + ([clip.log_epoch] if clip else [])
    # once the epoch is evaluated (eval end; epoch end where there is no held-out data): the plateau,
    # then the epoch's files, the run record last, then a stop asked for meanwhile
    evaluated, plateau = [], None
    if data_val is not None:
        evaluated.append(log_validation_metrics)
        if args.lr_schedule == "plateau":
            plateau = Plateau(optimizer, args.lr_factor, start.best_loss, start.lr_drops)
            evaluated.append(plateau)
    if writer is not None:
        row = MetricsRow(metric, optimizer, data_train.num_batches * args.batch_size, place, args.batch_size)
        epoch = EpochEnd(writer, row, start.best_loss, args.keep, plateau)
        epoch_end.append(epoch.save_weights)
        evaluated.append(epoch.finish)
    evaluated.append(stop.after_epoch)
    if data_val is None:
        epoch_end += [as_epoch_end(callback) for callback in evaluated]
        evaluated = []
    eval_batch_end = [carry_states(data_val)] if args.stateful and data_val is not None else None
    return Callbacks(batch_end, epoch_end, evaluated, eval_batch_end, stop)
