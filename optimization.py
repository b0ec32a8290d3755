"""What training adds to FeedForward's optimizer and KVStore: the optimizer's options and
learning-rate schedule, the saved optimizer state a resumed run goes on with, and the clip of the
global gradient norm.

FeedForward builds the optimizer from the options (optimizer_params) and hands it to the
KVStore; OptimizerState loads a checkpoint's state into it right then and saves it at
checkpoints. The step count comes from the run's place (`begin_num_update`), so a schedule goes
on where the run was.
"""
import logging
import math
import pickle

import device  # noqa: F401  (makes the CUDA libraries visible before mxnet loads)
import mxnet as mx

def optimizer_params(args, batches_per_epoch, place, lr_drops=0):
    """The optimizer's options, as FeedForward passes them on to mx.optimizer.create, for a run at
    `place` whose plateau schedule has lowered the rate `lr_drops` times."""
    rate = args.learning_rate * (args.lr_factor ** lr_drops if args.lr_schedule == "plateau" else 1)
    params = dict(learning_rate=rate, wd=args.wd, begin_num_update=place.updates(batches_per_epoch))
    if args.optimizer == "sgd":
        params["momentum"] = args.momentum
    if args.clip_gradient:
        params["clip_gradient"] = args.clip_gradient
    schedule = planned_schedule(args, batches_per_epoch)
    if schedule is not None:
        params["lr_scheduler"] = schedule
    return params


def planned_schedule(args, batches_per_epoch):
    """The schedule MXNet's optimizer follows by step count, or None (constant, or plateau, which
    the eval-end callback callbacks.Plateau lowers)."""
    warmup = int(round(args.warmup_epochs * batches_per_epoch))
    if args.lr_schedule == "cosine":
        return Cosine(
            max_update=max(args.lr_cosine_epochs * batches_per_epoch, warmup + 1), base_lr=args.learning_rate,
            final_lr=args.lr_final, warmup_steps=warmup)
    if args.lr_schedule == "step":
        return mx.lr_scheduler.MultiFactorScheduler(
            step=[e * batches_per_epoch for e in args.lr_step_epochs], factor=args.lr_factor,
            base_lr=args.learning_rate, warmup_steps=warmup)
    if warmup:
        return mx.lr_scheduler.FactorScheduler(step=batches_per_epoch, factor=1.0, base_lr=args.learning_rate,
                                               warmup_steps=warmup)
    return None


class Cosine(mx.lr_scheduler.CosineScheduler):
    """MXNet's cosine, at --lr-final past its end also in a run resumed there: MXNet's own moves
    its rate only at steps up to its end, so a process that begins past it would keep the first."""

    def __call__(self, num_update):
        return super().__call__(min(num_update, self.max_update))


class OptimizerState:
    """The optimizer that FeedForward trains with, whose state checkpoints save and a resumed run
    loads (`states`, as checkpoint.read_optimizer_states reads them).

    FeedForward hands the optimizer it built to the KVStore: this wraps the hand-over, so that the
    saved state is loaded into it right then. A local store's updater then holds the optimizer in
    use; a distributed one keeps it on the servers, and the workers have the copy they sent.
    """

    def __init__(self, kv, states=None):
        self.kv, self.handed = kv, None
        hand_over = kv.set_optimizer

        def set_optimizer(optimizer):
            hand_over(optimizer)
            self.handed = optimizer
            if states is not None and self._updater is not None:
                self._updater.set_states(pickle.dumps(states))  # the state alone: the optimizer is ours
        kv.set_optimizer = set_optimizer

    @property
    def _updater(self):
        return getattr(self.kv, "_updater", None)

    @property
    def optimizer(self):
        return self._updater.optimizer if self._updater is not None else self.handed

    def writer(self):
        """A function that writes the optimizer and its state to a file, or None where the servers
        hold them (what checkpoint.RunWriter takes)."""
        if self.kv.type.startswith("dist"):  # FeedForward updates on the servers
            return None
        return lambda target: self.kv.save_optimizer_states(target, dump_optimizer=True)

    def describe(self):
        """The optimizer and its settings in a few words, such as "adam wd=0 clip_gradient=5"."""
        optimizer = self.optimizer
        words = [type(optimizer).__name__.lower(), "wd=%g" % optimizer.wd]
        if hasattr(optimizer, "momentum"):
            words.append("momentum=%g" % optimizer.momentum)
        if optimizer.clip_gradient is not None:
            words.append("clip_gradient=%g" % optimizer.clip_gradient)
        return " ".join(words)


def global_norm_clip(kv, max_norm, chars_per_batch):
    """The GlobalNormClip of --clip-global-norm, or None where it is not asked for."""
    return GlobalNormClip(kv, max_norm, chars_per_batch) if max_norm else None


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
