"""What training does after each batch and each epoch: small callbacks in the manner of
mx.callback, each with one job, and the perplexity metric they report.

FeedForward.fit calls, in each epoch: the batch-end callbacks after every batch; then the
epoch-end callbacks, with the epoch's weights; then, only where there is held-out data, it
evaluates and calls the eval-end callbacks. So the work that needs the validation loss (the best
copy, annealing, the metrics row, then the run record's count of epochs done: see EpochEnd)
happens at eval end where there is held-out data, else at epoch end.
"""
import logging
import math
import os
import signal
import time

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx
import numpy as np

import checkpoint
import lstm


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


class Resumed:
    """Where a resumed run began: `skipped(epoch)` is how many batches of that epoch it had done
    before it stopped (0 for every other epoch)."""

    def __init__(self, epoch=0, batch=0):
        self.epoch, self.batch = epoch, batch

    def skipped(self, epoch):
        return self.batch if epoch == self.epoch else 0


class ProgressSpeedometer(mx.callback.Speedometer):
    """mx.callback.Speedometer's line, followed by the epoch's progress and the time it has left."""

    def __init__(self, batch_size, frequent, batches_per_epoch, resumed):
        super().__init__(batch_size, frequent)
        self.batches_per_epoch, self.resumed = batches_per_epoch, resumed
        self.epoch_tic = time.time()

    def __call__(self, param):
        if param.nbatch == 1 or param.nbatch < self.last_count:
            self.epoch_tic = time.time()
        super().__call__(param)
        if self.init and param.nbatch % self.frequent == 0:
            done = param.nbatch + self.resumed.skipped(param.epoch)
            left = (time.time() - self.epoch_tic) / param.nbatch * (self.batches_per_epoch - done)
            logging.info("Epoch[%d] %d/%d batches (%.0f%%), about %s left in the epoch", param.epoch, done,
                         self.batches_per_epoch, 100 * done / self.batches_per_epoch,
                         time.strftime("%H:%M:%S", time.gmtime(left)))


# the options that FeedForward gives the optimizer, and the optimizer's attribute for each
OPTIMIZER_OPTIONS = {"learning_rate": "lr", "wd": "wd", "momentum": "momentum", "clip_gradient": "clip_gradient"}
# Given again on --resume, any of these replaces the saved learning-rate schedule with a new one.
SCHEDULE_GIVEN_AGAIN = ("lr_step_epochs", "lr_cosine", "lr_final", "warmup_epochs")


def replace_saved_options(saved, fresh, given):
    """Makes the optimizer loaded from a checkpoint follow the options given again on the command
    line (`given`, taken from `fresh`, the optimizer built from them); it keeps its state."""
    saved.rescale_grad = fresh.rescale_grad  # 1 / batch size: the batch size may have changed
    for option, attr in OPTIMIZER_OPTIONS.items():
        if option not in given or not hasattr(saved, attr):
            continue
        if option == "learning_rate":  # the base rate (fresh.learning_rate is the schedule's first, 0 in a warm-up)
            before, value = saved.learning_rate, fresh.lr
            if saved.lr_scheduler is not None:
                rebase(saved.lr_scheduler, value)
            saved.lr = value
        else:
            before, value = getattr(saved, attr), getattr(fresh, attr)
            setattr(saved, attr, value)
        if before != value:
            logging.info("--%s %s from the command line replaces the checkpoint's %s",
                         option.replace("_", "-"), value, before)
    if given & set(SCHEDULE_GIVEN_AGAIN):  # the new schedule, at the saved step count
        if fresh.lr_scheduler is not None and "learning_rate" not in given:
            rebase(fresh.lr_scheduler, saved.lr)  # from the run's own rate, not the option's default
        saved.lr_scheduler = fresh.lr_scheduler


def rebase(schedule, base_lr):
    """Makes one of MXNet's schedules start from (and warm up to) `base_lr`."""
    schedule.base_lr = schedule.warmup_final_lr = base_lr
    if hasattr(schedule, "base_lr_orig"):  # the cosine and polynomial schedules
        schedule.base_lr_orig = base_lr


class TrainingOptimizer:
    """The optimizer that FeedForward trains with, which checkpoints save and --resume loads.

    FeedForward builds the optimizer from the options and hands it to the KVStore: this wraps the
    hand-over, so that a saved state, and the options given again, are loaded right then. A local
    store's updater then holds the optimizer in use; a distributed one keeps it on the servers, and
    the workers have the copy they sent.
    """

    def __init__(self, kv, states_file=None, given=()):
        self.kv, self.given = kv, None
        hand_over = kv.set_optimizer

        def set_optimizer(optimizer):
            hand_over(optimizer)
            self.given = optimizer
            if states_file and self._updater is not None:
                kv.load_optimizer_states(states_file)
                # MXNet's Updater keeps the fresh optimizer's choice to batch updates: SGD batches, Adam
                # cannot, and an Adam loaded over an SGD would fail in every update, silently
                self._updater.aggregate_updates = self._updater.optimizer.aggregate_num > 0
                replace_saved_options(self._updater.optimizer, optimizer, given)
        kv.set_optimizer = set_optimizer

    @property
    def _updater(self):
        return getattr(self.kv, "_updater", None)

    @property
    def optimizer(self):
        return self._updater.optimizer if self._updater is not None else self.given

    def save(self, target):
        """Writes the optimizer and its state (none to write where the servers hold them)."""
        if self._updater is not None:
            checkpoint.atomic_write(target, lambda tmp: self.kv.save_optimizer_states(tmp, dump_optimizer=True))

    def describe(self):
        """The optimizer and its settings in a few words, such as "adam wd=0 clip_gradient=5"."""
        optimizer = self.optimizer
        words = [type(optimizer).__name__.lower(), "wd=%g" % optimizer.wd]
        if hasattr(optimizer, "momentum"):
            words.append("momentum=%g" % optimizer.momentum)
        if optimizer.clip_gradient is not None:
            words.append("clip_gradient=%g" % optimizer.clip_gradient)
        return " ".join(words)


class GlobalNormClip:
    """Scales each batch's gradient down where its global L2 norm per character exceeds `max_norm`:
    the gradient of the mean loss over the batch's characters, the scale in which PyTorch's
    clip_grad_norm_ is usually given (our loss sums over the steps, so ours is that times the steps).

    FeedForward hands the KVStore one parameter's gradient at a time and updates as it goes, with
    no hook after the backward pass. This holds a batch's hand-overs back until the last parameter's
    arrives, then measures all of them, scales them and hands them on, before the next batch starts.
    """

    def __init__(self, kv, max_norm, chars_per_batch):
        self.max_norm, self.chars_per_batch = max_norm, chars_per_batch
        self.keys, self.held, self.norms, self.clipped = [], [], [], 0
        pushpull = kv.pushpull

        def noting_keys(start):  # FeedForward starts each parameter's key with init or broadcast
            def start_and_note(key, *args, **kwargs):
                start(key, *args, **kwargs)
                self.keys.extend(key if isinstance(key, (list, tuple)) else [key])
            return start_and_note

        def hold(key, value, out=None, priority=0):
            self.held.append((key, value, out, priority))
            if len(self.held) == len(self.keys):  # the batch's last parameter
                self._clip([grads for _, grads, _, _ in self.held])
                for held in self.held:
                    pushpull(*held)
                self.held = []
        kv.init, kv.broadcast, kv.pushpull = noting_keys(kv.init), noting_keys(kv.broadcast), hold

    def _clip(self, gradients):
        """`gradients`: each parameter's gradient on each device, summed over the batch's characters."""
        squares = []
        for on_devices in gradients:
            total = on_devices[0] if len(on_devices) == 1 else mx.nd.add_n(
                *[g.as_in_context(on_devices[0].context) for g in on_devices])
            squares.append(mx.nd.square(mx.nd.norm(total)).as_in_context(mx.cpu()))
        norm = math.sqrt(mx.nd.add_n(*squares).asscalar()) / self.chars_per_batch
        self.norms.append(norm)
        factor = self.max_norm / (norm + 1e-6)
        if factor < 1:
            self.clipped += 1
            for on_devices in gradients:
                for grad in on_devices:
                    grad *= factor

    def log_epoch(self, epoch, _symbol, _arg_params, _aux_params):
        """Epoch end: how large the gradient was and how often the clip acted."""
        if self.norms:
            logging.info("Epoch[%d] Gradient norm per character: median %.3g, max %.3g; clipped at %g in %d of "
                         "%d batches", epoch, sorted(self.norms)[len(self.norms) // 2], max(self.norms),
                         self.max_norm, self.clipped, len(self.norms))
        self.norms, self.clipped = [], 0


def batch_seed(seed, epoch, batch):
    """The seed of MXNet's generator, and so of dropout's masks, for batch `batch` of epoch `epoch`
    (both counted from 0)."""
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


def seed_next_batch(seed, batches_per_epoch, resumed):
    """Batch end: seeds MXNet's generator for the batch that comes next, from its place in the run.

    A resumed process seeds its generator afresh; without this its dropout masks would replay those
    of the run's first batches, which stateful training pairs with the very same text every epoch,
    so the model learns the masks and dropout stops regularising. Seeded by place, a resumed run
    draws the masks the uninterrupted one draws, and ends with the same parameters.
    """
    def seed_next(param):
        done = param.nbatch + resumed.skipped(param.epoch)
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


class Checkpointer:
    """Writes the weights, in the tutorial's names, and the optimizer: an epoch's (see EpochEnd)
    and, for a stopped run, those of the middle of one (the partial checkpoint, with the carried
    LSTM states of stateful training, `carried`)."""

    def __init__(self, prefix, symbol, to_tutorial, optimizer, backend, carried=None):
        self.prefix, self.symbol, self.to_tutorial = prefix, symbol, to_tutorial
        self.optimizer, self.backend, self.carried = optimizer, backend, carried

    def save_weights(self, epoch, arg_params, aux_params):
        """`<prefix>-symbol.json` and `<prefix>-%04d.params`, as the tutorial's do_checkpoint writes them."""
        checkpoint.save_checkpoint(self.prefix, epoch, self.symbol, self.to_tutorial(arg_params), aux_params)
        logging.info('Saved checkpoint to "%s"', checkpoint.params_path(self.prefix, epoch))

    def save_optimizer(self, epoch):
        self.optimizer.save(checkpoint.path("states", self.prefix, epoch, self.backend))

    def save_partial(self, epoch, arg_params, aux_params):
        checkpoint.save_params(checkpoint.path("partial", self.prefix, epoch), self.to_tutorial(arg_params),
                               aux_params)
        self.optimizer.save(checkpoint.path("partial_states", self.prefix, epoch, self.backend))
        if self.carried is not None:  # in one layout for both backends, so that either resumes it
            checkpoint.save_carried(self.prefix, epoch, lstm.states_by_layer(self.carried, self.backend))


def as_epoch_end(callback):
    """An eval-end callback, called at epoch end instead where there is no held-out data (its
    `param.eval_metric` is then None)."""
    def at_epoch_end(epoch, _symbol, _arg_params, _aux_params):
        callback(mx.model.BatchEndParam(epoch=epoch, nbatch=0, eval_metric=None, locals=None))
    return at_epoch_end


class EpochEnd:
    """Everything an epoch writes, in an order that makes it done only once all of it is written.

    `save_weights` (epoch end, the tutorial's do_checkpoint) writes `<prefix>-%04d.params` and
    notes the training metrics. `finish` (eval end, or epoch end where there is no held-out data)
    writes the optimizer state, the best copy where the epoch is the best so far, the metrics row,
    and last the run record's count of epochs done, with the best loss; then it prunes (`keep`).
    A run stopped before that last write (kill -9, a full disk, a second Ctrl-C) resumes at the
    epoch's start and does it again, so no epoch loses its optimizer state, its metrics row or its
    chance to be the best.
    """

    def __init__(self, prefix, saver, row, best_loss=None, keep=None):
        self.prefix, self.saver, self.row, self.keep = prefix, saver, row, keep
        self.best = ValidationLoss(math.inf if best_loss is None else best_loss)

    def save_weights(self, epoch, _symbol, arg_params, aux_params):
        self.saver.save_weights(epoch + 1, arg_params, aux_params)
        self.row.start(epoch)

    def finish(self, param):
        epoch = param.epoch + 1
        self.saver.save_optimizer(epoch)
        done = dict(epoch=epoch, batch=0)
        if param.eval_metric is not None:
            self.row.add_validation(param.eval_metric)
            if self.best.improves(param):
                best = checkpoint.path("best", self.prefix)
                checkpoint.copy_file(checkpoint.params_path(self.prefix, epoch), best)
                done.update(best_val_loss=self.best.best, best_epoch=epoch)
                logging.info("Best validation loss so far: copied to %s", best)
        checkpoint.save_metrics_row(self.prefix, self.row.values)
        checkpoint.save_run(self.prefix, **done)  # the epoch is done
        checkpoint.clear_partial(self.prefix)
        if self.keep:
            keep_newest(self.prefix, self.keep)


def keep_newest(prefix, keep):
    """Removes all but the newest `keep` epoch checkpoints."""
    for old in checkpoint.epochs(prefix)[:-keep]:
        for stale in [checkpoint.params_path(prefix, old)] + checkpoint.epoch_states(prefix, old):
            os.remove(stale)


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


def anneal(optimizer, factor, best_loss=math.inf):
    """Eval end: multiplies the learning rate by `factor` when the validation loss did not improve."""
    tracker = ValidationLoss(best_loss)

    def maybe_lower(param):
        if not tracker.improves(param):
            lr = optimizer.optimizer.learning_rate * factor
            optimizer.optimizer.set_learning_rate(lr)
            logging.info("Validation loss did not improve: learning rate now %g", lr)
    return maybe_lower


class MetricsRow:
    """One epoch's row of `<prefix>-metrics.csv` (checkpoint.METRICS_FIELDS): the training metrics at
    epoch end (`start`), then the validation metrics (`add_validation`); EpochEnd writes it."""

    def __init__(self, metric, optimizer, samples_per_epoch, resumed, batch_size):
        self.metric, self.optimizer = metric, optimizer
        self.samples_per_epoch, self.resumed, self.batch_size = samples_per_epoch, resumed, batch_size
        self.tic, self.values = time.time(), None

    def start(self, epoch):
        _, values = self.metric.get_global()
        seconds = time.time() - self.tic
        samples = self.samples_per_epoch - self.resumed.skipped(epoch) * self.batch_size
        self.values = dict(epoch=epoch + 1, train_perplexity=values[0], train_bits_per_char=values[1],
                           val_perplexity="", val_bits_per_char="",
                           learning_rate=self.optimizer.optimizer.learning_rate, optimizer=self.optimizer.describe(),
                           samples_per_sec=samples / seconds, seconds=seconds)
        self.tic = time.time()

    def add_validation(self, eval_metric):
        _, values = eval_metric.get_global()
        self.values.update(val_perplexity=values[0], val_bits_per_char=values[1])


def stop_on_divergence(metric, resumed):
    """Batch end: stops training once the loss is NaN or infinite (the last good checkpoint stays)."""
    def check(param):
        if metric.diverged:
            raise TrainingStopped("the loss became NaN or infinite at epoch %d, batch %d; the last good checkpoint "
                                  "stays (try a lower --learning-rate or --clip-gradient)"
                                  % (param.epoch + 1, param.nbatch + resumed.skipped(param.epoch)), 1)
    return check


class StopOnSignal:
    """Ctrl-C, SIGTERM or SIGHUP (a closed terminal): finishes the batch, writes the partial
    checkpoint (`checkpointer`) and stops; during an evaluation, it stops once the epoch is done
    (`after_epoch`). A second signal stops at once. A worker of distributed training that writes
    nothing (no `checkpointer`) trains on: under dist_sync the first worker's batch needs the
    others' gradients, and they may be a batch behind it.
    Use it as a context manager around fit, which installs and then restores the signal handlers;
    a signal ignored when the run starts (SIGHUP under nohup) stays ignored."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, prefix, checkpointer, resumed):
        self.prefix, self.checkpointer, self.resumed = prefix, checkpointer, resumed
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
        if self.checkpointer is None:
            logging.info("Signal %d: training on until the first worker has written its checkpoint and stopped "
                         "(dist_launch.py then stops this one; a second signal stops it at once)", signum)
        else:
            logging.info("Signal %d: stopping after this batch (or this evaluation) and writing a checkpoint", signum)

    def after_epoch(self, param):
        """Eval end (or epoch end), after the epoch is written: stops where a signal came meanwhile."""
        if self.signum is not None and self.checkpointer is not None:
            raise TrainingStopped("stopped by signal %d at the end of epoch %d, which is written whole: carry on "
                                  "with the same command and --resume" % (self.signum, param.epoch + 1),
                                  128 + self.signum)

    def __call__(self, param):
        if self.signum is None or self.checkpointer is None:
            return  # a worker that writes nothing trains on, so that the first worker can finish its batch

        arg_params, aux_params = param.locals["arg_params"], param.locals["aux_params"]
        param.locals["executor_manager"].copy_to(arg_params, aux_params)
        self.checkpointer.save_partial(param.epoch, arg_params, aux_params)
        done = param.nbatch + self.resumed.skipped(param.epoch)
        checkpoint.save_run(self.prefix, epoch=param.epoch, batch=done)
        raise TrainingStopped("stopped by signal %d in epoch %d after batch %d; a checkpoint of this point is "
                              "written: carry on with the same command and --resume"
                              % (self.signum, param.epoch + 1, done), 128 + self.signum)
