"""Trains the tutorial's character-level LSTM on a corpus with mx.model.FeedForward.

    python train_obama.py                      # the tutorial: 3x512 LSTM, one epoch of obama.txt
    python train_obama.py --num-epoch 30 --optimizer adam --learning-rate 0.002 --clip-gradient 5
    python train_obama.py --resume --num-epoch 40   # carries on from the newest checkpoint, as the run was

Read top to bottom: the options, then train() (data, symbol, starting point, FeedForward, fit),
then main. What happens after each batch and epoch lives in callbacks.py; the files under
--prefix in checkpoint.py.
"""

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # from the first import on, also while MXNet loads

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections import namedtuple  # noqa: E402

import numpy as np  # noqa: E402

import device  # noqa: E402
import mxnet as mx  # noqa: E402
from mxnet.base import MXNetError  # noqa: E402

import bucket_io  # noqa: E402
import callbacks  # noqa: E402
import checkpoint  # noqa: E402
import lstm  # noqa: E402


def add_data_options(data):
    """What the model reads, and in what order."""
    cli.add_corpus_options(data, bucket_io.DEFAULT_MIRROR,
                           "corpus file, UTF-8 (default: data/obama.txt, found by the corpus look-up)")
    data.add_argument("--seq-len", type=cli.positive_int, default=129,
                      help="longest sentence; the bucket when --buckets is not given")
    data.add_argument("--buckets", type=cli.int_list, help="bucket lengths, such as 32,64,129 (default: --seq-len)")
    data.add_argument("--split-long-lines", action=argparse.BooleanOptionalAction, default=False,
                      help="cut lines longer than the largest bucket instead of failing")
    data.add_argument("--stream", action=argparse.BooleanOptionalAction, default=False,
                      help="treat the corpus as one continuous text cut into --seq-len pieces, not one sample a line")
    data.add_argument("--stateful", action=argparse.BooleanOptionalAction, default=False,
                      help="read the corpus as one running text in --batch-size streams: each batch of --seq-len "
                           "steps continues them, from the LSTM states the batch before ended in")
    data.add_argument("--val-frac", type=cli.fraction, default=0.05, help="the last fraction of sentences held out (0: none)")
    data.add_argument("--batch-size", type=cli.positive_int, default=32)
    data.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                      help="shuffle the batch order each epoch (default); --no-shuffle keeps the corpus order")
    data.add_argument("--seed", type=cli.random_seed, default=0, help="seeds the initial weights, dropout and batch order")


def add_model_options(model):
    """The network, its regularisation and the backend that runs it."""
    model.add_argument("--num-embed", type=cli.positive_int, default=256)
    model.add_argument("--num-lstm-layer", type=cli.positive_int, default=3)
    model.add_argument("--num-hidden", type=cli.positive_int, default=512)
    model.add_argument("--dropout", type=cli.fraction, default=0.2)
    model.add_argument("--weight-drop", type=cli.fraction, default=0.,
                       help="drop this fraction of each hidden-to-hidden weight in training, one mask a batch "
                            "(DropConnect): regularises the recurrent path, which --dropout does not reach")
    model.add_argument("--embed-dropout", type=cli.fraction, default=0.,
                       help="drop this fraction of the embedding's output in training: regularises the first "
                            "layer's input, which --dropout does not reach")
    model.add_argument("--embed-init", choices=["xavier", "normal"], default="xavier",
                       help="how the character embedding starts: xavier, as the tutorial's other weights, or "
                            "normal, N(0, 1) as PyTorch's nn.Embedding (a stronger input to the first layer)")
    model.add_argument("--rnn-backend", choices=["unrolled", "fused"], default="unrolled",
                       help="unrolled: the tutorial's graph of LSTM cells; fused: the same model on mx.sym.RNN "
                            "(oneDNN on the CPU, cuDNN on a GPU), faster. Checkpoints are the same")
    model.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                       help="unrolled backend on a CPU with AVX-512 bf16: matrix products in bfloat16 (float32 "
                            "parameters and checkpoints)")


def add_optimization_options(optimization):
    """The optimizer and its learning-rate schedule."""
    optimization.add_argument("--num-epoch", type=cli.positive_int, default=1, help="train until this many epochs are done")
    optimization.add_argument("--optimizer", choices=["sgd", "adam", "rmsprop"], default="sgd")
    optimization.add_argument("--learning-rate", type=cli.positive_float, default=0.01)
    optimization.add_argument("--momentum", type=cli.non_negative_float, default=0.0, help="for sgd")
    optimization.add_argument("--wd", type=cli.non_negative_float, default=0.0001)
    optimization.add_argument("--clip-gradient", type=cli.positive_float, help="clip each gradient element to [-C, C]")
    optimization.add_argument("--clip-global-norm", type=cli.positive_float,
                              help="scale each batch's gradient down to this global L2 norm where it is larger, "
                                   "measured per character (the gradient of the mean loss, PyTorch's clip_grad_norm_ "
                                   "scale); logs the norms each epoch")
    optimization.add_argument("--lr-factor", type=cli.positive_float, default=1.0,
                              help="multiply the learning rate by this (at most 1) at each --lr-step-epochs")
    optimization.add_argument("--lr-step-epochs", type=cli.int_list,
                              help="epochs after which --lr-factor applies, such as 10,20")
    optimization.add_argument("--lr-anneal", type=cli.positive_float,
                              help="multiply the learning rate by this when the validation loss stops improving "
                                   "(0.25 divides it by 4, as word_language_model does)")
    optimization.add_argument("--lr-cosine", action="store_true",
                              help="lower the learning rate along a half cosine to --lr-final at --num-epoch "
                                   "(MXNet's CosineScheduler); --resume keeps the saved curve unless this is given again")
    optimization.add_argument("--lr-final", type=cli.non_negative_float, default=0.0,
                              help="the learning rate at the end of --lr-cosine")
    optimization.add_argument("--warmup-epochs", type=cli.non_negative_float, default=0.0,
                              help="raise the learning rate linearly from 0 over this many epochs (such as 0.5) "
                                   "before any schedule")


def build_parser():
    """The options, in groups: data, model, optimization, checkpoints, where."""
    p = argparse.ArgumentParser(description="Train the tutorial's character-level LSTM.")
    add_data_options(p.add_argument_group("data"))
    add_model_options(p.add_argument_group("model"))
    add_optimization_options(p.add_argument_group("optimization"))

    saving = p.add_argument_group("checkpoints")
    cli.add_checkpoint_options(saving, checkpoint.DEFAULT_PREFIX)
    saving.add_argument("--keep", type=cli.positive_int, help="keep only the newest N epoch checkpoints (default: all)")
    saving.add_argument("--resume", action="store_true",
                        help="carry on from the newest checkpoint under --prefix, with the run's own options (the "
                             "data, model, backend, --num-epoch, regularisation and optimizer); those given again "
                             "replace them")
    saving.add_argument("--overwrite", action="store_true", help="start afresh even where --prefix already has checkpoints")

    where = p.add_argument_group("where")
    cli.add_device_options(where, "train on these GPUs, such as 0 or 0,1 (default: gpu(0) if MXNet can use it)")
    where.add_argument("--kv-store", choices=["local", "device", "dist_sync", "dist_async"], default="local",
                       help="MXNet's key-value store; dist_* train on its parameter server (dist_launch.py)")
    where.add_argument("--log-every", type=cli.positive_int, default=20, help="batches between progress lines")
    return p


def parse_args(argv=None):
    """The options, with what makes no sense refused in one line; on --resume, the run's own where
    they are not given again (logged)."""
    p = build_parser()
    args = p.parse_args(argv)
    args.given = cli.given_options(p, argv)
    if args.resume and args.overwrite:
        p.error("--resume carries on the run under --prefix and --overwrite starts a new one there: give one of them")
    kept = keep_the_runs_options(args, p) if args.resume else []  # CheckpointError: nothing to resume
    message = refusal(args)
    if message:  # it may come from an option the run had, not one typed now
        p.error(message + kept_note(kept, message))
    if kept:
        logging.info("The run's own options, kept on --resume (give one again to change it): %s",
                     " ".join(typed for _, typed in kept))
    return args


# What a run is beyond its weights and optimizer: on --resume the run's own values, from its
# run record, stand where these are not given again, so that a bare --resume trains on as the run did.
KEPT_ON_RESUME = ("data", "seq_len", "buckets", "split_long_lines", "stream", "stateful", "val_frac", "batch_size",
                  "shuffle", "seed", "num_embed", "num_lstm_layer", "num_hidden", "dropout", "weight_drop",
                  "embed_dropout", "rnn_backend", "bf16", "num_epoch", "clip_global_norm", "lr_anneal")
# The optimizer state holds the planned schedules; --lr-anneal is a callback, kept unless another is given.
SCHEDULE_OPTIONS = ("lr_anneal", "lr_step_epochs", "lr_cosine")
LOCAL_ONLY = ("clip_global_norm", "lr_anneal")  # refused with --kv-store dist_* (see refusal)


def keep_the_runs_options(args, parser):
    """Sets the options in KEPT_ON_RESUME that are not given again to the run's own, checked as the
    option checks what is typed; returns them as (flag, value) pairs. Says so where there is nothing
    to resume, and warns where the run's own options are not known (no run record)."""
    record = checkpoint.load_run(args.prefix)
    if record is None:
        epoch = checkpoint.latest_epoch(args.prefix)  # nothing to resume: say so before creating anything
        logging.warning("%s has no run record (%s): epoch %d resumes with this command's options and the "
                        "defaults, which need not be the run's own", args.prefix, checkpoint.path("run", args.prefix),
                        epoch)
    saved = (record or {}).get("options") or {}
    actions = {action.dest: action for action in parser._actions}
    kept = []
    for name in KEPT_ON_RESUME:
        if name not in saved or name in args.given:
            continue
        value = record_value(actions[name], saved[name], args.prefix)
        if value == getattr(args, name) or (name == "lr_anneal" and args.given & set(SCHEDULE_OPTIONS)):
            continue
        if name in LOCAL_ONLY and args.kv_store.startswith("dist"):
            logging.warning("The run's --%s %s is not kept: it does not work with --kv-store %s",
                            name.replace("_", "-"), value, args.kv_store)
            continue
        setattr(args, name, value)
        kept.append(("--" + name.replace("_", "-"), as_typed("--" + name.replace("_", "-"), value)))
    return kept


def record_value(action, value, prefix):
    """An option's value from the run record, checked by the option's own type and choices."""
    flag = action.option_strings[0]
    try:
        if isinstance(action.default, bool) or action.nargs == 0:
            if not isinstance(value, bool):
                raise argparse.ArgumentTypeError("expected true or false")
            return value
        if value is None and action.default is None:
            return None
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        typed = action.type(text) if action.type else text
        if action.choices is not None and typed not in action.choices:
            raise argparse.ArgumentTypeError("expected one of %s" % ", ".join(action.choices))
        return typed
    except (argparse.ArgumentTypeError, TypeError) as err:
        raise checkpoint.CheckpointError("the run record %s holds %s %r, which %s does not take (%s): restore the "
                                         "record, or give %s again" % (checkpoint.path("run", prefix), flag, value,
                                                                       flag, err, flag))


def as_typed(flag, value):
    """An option as one would type it: --stateful, --no-stateful, --buckets 32,64, --dropout 0.4."""
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, list):
        return "%s %s" % (flag, ",".join(map(str, value)))
    return "%s %s" % (flag, value)


def kept_note(kept, message):
    """Says which of the options a refusal names were kept from the run, not given."""
    named = [typed for flag, typed in kept if flag in message]
    return " (%s: the run's own, kept on --resume)" % ", ".join(named) if named else ""


def refusal(args):
    """Why the options make no sense together, or None."""
    if args.lr_factor > 1:
        return "--lr-factor must be at most 1, got %s" % args.lr_factor
    if args.lr_anneal is not None and not args.lr_anneal < 1:
        return "--lr-anneal must be in (0, 1), got %s" % args.lr_anneal
    if args.clip_global_norm and args.kv_store.startswith("dist"):
        return ("--clip-global-norm needs every gradient in one place; under --kv-store dist_* each worker has only "
                "its own: use --clip-gradient")
    if args.lr_anneal is not None and args.kv_store.startswith("dist"):
        return ("--lr-anneal does not reach the parameter servers, where the optimizer lives under --kv-store "
                "dist_*: use --lr-step-epochs, which the servers apply")
    schedules = [flag for flag, given in (("--lr-anneal", args.lr_anneal is not None),
                                          ("--lr-step-epochs", bool(args.lr_step_epochs)),
                                          ("--lr-cosine", args.lr_cosine)) if given]
    if len(schedules) > 1:
        return "%s are different schedules: choose one" % " and ".join(schedules)
    if args.lr_anneal is not None and args.warmup_epochs:
        return "--warmup-epochs goes with a planned schedule (--lr-cosine, --lr-step-epochs or none), not --lr-anneal"
    if "lr_final" in args.given and not args.lr_cosine:
        return "--lr-final is where --lr-cosine ends: give --lr-cosine too"
    from_saved_rate = args.resume and "learning_rate" not in args.given  # starting_point checks against that rate
    if args.lr_cosine and args.lr_final >= args.learning_rate and not from_saved_rate:
        return "--lr-final (%g) must be below --learning-rate (%g)" % (args.lr_final, args.learning_rate)
    if args.stateful and (args.buckets or args.stream or args.split_long_lines):
        return ("--stateful reads the corpus as one text in steps of --seq-len: not with --buckets, --stream "
                "or --split-long-lines")
    if args.bf16 and args.rnn_backend == "fused":
        return "--bf16 needs --rnn-backend unrolled: MXNet 1.9.1's RNN operator has no bfloat16"
    if args.bf16 and device.bf16_unavailable_reason():
        return "--bf16 needs a CPU with AVX-512 bf16: %s" % device.bf16_unavailable_reason()
    if args.kv_store.startswith("dist") and "DMLC_ROLE" not in os.environ:
        return ("--kv-store %s trains on MXNet's parameter server, which the DMLC_* variables configure: start it "
                "with dist_launch.py (see docs/where.md)" % args.kv_store)
    return None


# The tutorial's initialisation; the fused backend starts from the same weights (lstm.initial_params).
INITIALIZER = mx.init.Xavier(factor_type="in", magnitude=2.34)


def initializer(embed_init):
    """The tutorial's initialiser, with the embedding drawn from N(0, 1) for --embed-init normal."""
    if embed_init == "xavier":
        return INITIALIZER
    return mx.init.Mixed(["embed_weight", ".*"], [mx.init.Normal(1.0), INITIALIZER])

# saved_optimizer: the optimizer read from optimizer_states, the file that the KVStore loads
Start = namedtuple("Start", ["epoch", "batch", "arg_params", "aux_params", "optimizer_states", "best_loss",
                             "saved_optimizer"], defaults=(None,))


def train(args, contexts):
    """Trains as the tutorial does, with the options above; returns the FeedForward model."""
    # the data: the corpus's lines in buckets (--stateful: its running text in streams), the last
    # --val-frac held out; each worker its share
    corpus = bucket_io.find_corpus(args.data, mirror=args.data_mirror)
    vocab = bucket_io.build_vocab(corpus)
    logging.info("Corpus %s: vocab size = %d", corpus, len(vocab))
    check_memory(args, len(vocab) + 1, contexts)
    kv = mx.kv.create(args.kv_store)
    writes = kv.rank == 0  # in distributed training only the first worker writes files
    data_train, data_val = (load_streams if args.stateful else load_data)(args, corpus, vocab, kv)

    sym_gen, saved_symbol = symbols(args, len(vocab) + 1, data_train.default_bucket_key)

    with checkpoint.RunLock(args.prefix) if writes else contextlib.nullcontext():
        # the starting point: fresh weights, or where the checkpoints under --prefix left off
        np.random.seed(args.seed)
        mx.random.seed(args.seed)
        start = starting_point(args, vocab, writes)
        if start.epoch >= args.num_epoch:
            logging.info("Already trained for %d epochs (--num-epoch %d): nothing to do", start.epoch, args.num_epoch)
            return None
        begin_at(args, start, data_train)
        if writes:
            record_run(args, vocab, start)

        # the model, and fit with the tutorial's checkpoint callback among ours
        optimizer = callbacks.TrainingOptimizer(kv, start.optimizer_states, args.given)
        characters = args.batch_size * data_train.default_bucket_key  # a batch's, for the norm per character
        clip = callbacks.GlobalNormClip(kv, args.clip_global_norm, characters) if args.clip_global_norm else None
        with warnings.catch_warnings():  # FeedForward is deprecated in favour of Module; we keep the tutorial's API
            warnings.simplefilter("ignore", DeprecationWarning)
            model = mx.model.FeedForward(
                ctx=contexts, symbol=sym_gen, num_epoch=args.num_epoch, optimizer=args.optimizer,
                initializer=initializer(args.embed_init), arg_params=start.arg_params, aux_params=start.aux_params,
                begin_epoch=start.epoch, **optimizer_params(args, data_train.num_batches))
        metric = callbacks.CharPerplexity()
        calls = make_callbacks(args, metric, optimizer, saved_symbol, data_train, data_val, start, writes, clip)
        with calls.stop:
            model.fit(X=data_train, eval_data=data_val, eval_metric=metric, kvstore=kv,
                      batch_end_callback=calls.batch_end, epoch_end_callback=calls.epoch_end,
                      eval_end_callback=calls.eval_end, eval_batch_end_callback=calls.eval_batch_end)
    return model


def symbols(args, num_label, batch_width):
    """The training graphs, one unrolled graph a bucket length as the tutorial's sym_gen (each fed
    batches `batch_width` wide), and the symbol that checkpoints save, as the tutorial saved it."""
    unroll = lstm.fused_lstm_unroll if args.rnn_backend == "fused" else lstm.lstm_unroll

    def sym_gen(seq_len):
        symbol = unroll(args.num_lstm_layer, seq_len, num_label, num_hidden=args.num_hidden, num_embed=args.num_embed,
                        num_label=num_label, dropout=args.dropout, state_outputs=args.stateful,
                        weight_drop=args.weight_drop, embed_dropout=args.embed_dropout, batch_width=batch_width)
        return lstm.bfloat16_graph(symbol) if args.bf16 else symbol
    with mx.name.NameManager():  # fresh automatic names: the same model always saves the same symbol file
        saved_symbol = lstm.lstm_unroll(args.num_lstm_layer, batch_width, num_label, args.num_hidden, args.num_embed,
                                        num_label, args.dropout, weight_drop=args.weight_drop,
                                        embed_dropout=args.embed_dropout)
    return sym_gen, saved_symbol


def begin_at(args, start, data_train):
    """Puts the data, the dropout masks and the carried states where the run starts."""
    if args.resume:
        logging.info("Resuming at epoch %d%s", start.epoch + 1, ", after batch %d" % start.batch if start.batch else "")
        mx.random.seed(callbacks.batch_seed(args.seed, start.epoch, start.batch))  # the masks of this batch
    data_train.resume_at(start.epoch, start.batch)
    if args.stateful and start.batch:
        restore_carried(args.prefix, start.epoch, data_train, args.rnn_backend)


def check_memory(args, num_label, contexts):
    """Refuses, before anything is built, sizes whose training cannot fit the machine's memory."""
    steps = max(args.buckets or [args.seq_len])
    needed = lstm.training_bytes(args.num_lstm_layer, args.num_hidden, args.num_embed, num_label, args.batch_size,
                                 steps)
    if all(ctx.device_type == "cpu" for ctx in contexts) and needed > device.memory_bytes():
        raise device.DeviceError(
            "%d layers of %d units, batches of %d x %d steps: training needs more than %.0f GB, and this machine "
            "has %.0f GB; give smaller sizes" % (args.num_lstm_layer, args.num_hidden, args.batch_size, steps,
                                                 needed / 2 ** 30, device.memory_bytes() / 2 ** 30))


def load_data(args, corpus, vocab, kv):
    """The training and (where there is held-out data) validation iterators."""
    buckets = sorted(args.buckets or [args.seq_len])
    train_sentences, val_sentences = bucket_io.corpus_sentences(
        bucket_io.read_content(corpus), buckets[-1], args.stream, args.split_long_lines, args.val_frac)
    max_batches = None
    if kv.num_workers > 1:
        train_sentences, max_batches = bucket_io.worker_share(train_sentences, buckets, args.batch_size, kv.rank,
                                                              kv.num_workers)
        logging.info("Worker %d of %d (%s): %d sentences, %d batches of %d an epoch; %s", kv.rank, kv.num_workers,
                     args.kv_store, len(train_sentences), max_batches, args.batch_size,
                     "each step sums %d samples" % (args.batch_size * kv.num_workers) if args.kv_store == "dist_sync"
                     else "the servers apply each worker's gradients as they come")
    states = lstm.init_states(args.num_lstm_layer, args.batch_size, args.num_hidden, args.rnn_backend)
    data_train = bucket_io.BucketSentenceIter(corpus, vocab, buckets, args.batch_size, states, seed=args.seed,
                                              sentences=train_sentences, shuffle=args.shuffle,
                                              max_batches=max_batches)
    if data_train.num_batches == 0:
        raise bucket_io.CorpusError("%s has fewer sentences than one batch (%d) in any bucket" % (corpus, args.batch_size))
    if not val_sentences:
        return data_train, None
    # every held-out sentence, in the same batches at every evaluation: the same text is scored each time
    return data_train, bucket_io.BucketSentenceIter(corpus, vocab, buckets, args.batch_size, states,
                                                    sentences=val_sentences, shuffle=False, pad_last=True)


def load_streams(args, corpus, vocab, kv):
    """The iterators of stateful training: the running text in --batch-size streams, the held-out
    tail (the lines the per-line protocol holds out) in as many, every character of it scored."""
    content = bucket_io.read_content(corpus)
    if bucket_io.wrap_length(content):
        logging.info("The corpus is hard-wrapped at %d characters: its newlines are joined, as one running text",
                     bucket_io.wrap_length(content))
    train_text, val_text = bucket_io.stream_texts(content, args.val_frac)
    max_batches = None
    if kv.num_workers > 1:  # each worker its own contiguous part, and as many batches as the shortest
        share = len(train_text) // kv.num_workers
        max_batches = (share // args.batch_size - 1) // args.seq_len
        train_text = train_text[kv.rank * share:(kv.rank + 1) * share]
    states = lstm.init_states(args.num_lstm_layer, args.batch_size, args.num_hidden, args.rnn_backend)
    data_train = bucket_io.StreamIter(bucket_io.text2id(train_text, vocab), args.batch_size, args.seq_len, states,
                                      max_batches=max_batches)
    if data_train.num_batches == 0:
        raise bucket_io.CorpusError("%s is too short for %d streams of %d steps" % (corpus, args.batch_size, args.seq_len))
    if len(val_text) < 2 * args.batch_size:
        return data_train, None
    return data_train, bucket_io.StreamIter(bucket_io.text2id(val_text, vocab), args.batch_size, args.seq_len,
                                            states, pad_last=True)


def restore_carried(prefix, epoch, data_train, backend):
    """Puts the LSTM states that a stopped stateful run carried back into the iterator, in the
    layout of the backend that goes on (either backend may have written them)."""
    carried = checkpoint.load_carried(prefix, epoch)
    if carried is None:
        logging.warning("The partial checkpoint carries no LSTM states: its streams restart from zero states")
        return
    carried = [state.asnumpy() for state in carried]
    if carried[0].ndim == 3:  # written by the fused backend before the states had one layout
        carried = lstm.states_by_layer(carried, "fused")
    for state, saved in zip(data_train.states, lstm.states_for_backend(carried, backend)):
        state[:] = saved


def starting_point(args, vocab, writes):
    """Where training starts: fresh (refusing to overwrite a run unasked), or (--resume) where the run
    under --prefix got to, checked against the options and the corpus before anything is written."""
    if writes and not args.resume:
        earlier = checkpoint.epochs(args.prefix)
        stopped = (checkpoint.load_run(args.prefix) or {}).get("batch", 0) > 0
        if (earlier or stopped) and not args.overwrite:
            raise checkpoint.CheckpointError(
                "%s already has checkpoints (%s): add --resume to carry on, or --overwrite to start again"
                % (args.prefix, "epochs " + ",".join(map(str, earlier)) if earlier else "a stopped first epoch"))
        if args.overwrite:
            checkpoint.remove_run_files(args.prefix)
    if writes:
        checkpoint.check_metrics(args.prefix)  # a file that is not ours is refused now, not at the epoch's end
    epoch, batch, arg_params, aux_params, states, record = (
        checkpoint.resume_point(args.prefix, args.rnn_backend) if args.resume else (0, 0, None, None, None, None))
    if arg_params is None:  # a fresh run, or one resumed before its first epoch was done
        if args.resume:
            logging.info("The run has no epoch done yet: it starts again from its first")
        if args.rnn_backend != "fused":
            return Start(0, 0, None, None, None, None)
        params = lstm.initial_params(INITIALIZER, args.num_lstm_layer, args.num_hidden, args.num_embed)
        return Start(0, 0, lstm.backend_params(params, "fused", args.num_lstm_layer, args.num_hidden), None, None, None)

    shape = checkpoint.model_shape(arg_params)
    if any(shape[k] != getattr(args, k) for k in ("num_lstm_layer", "num_hidden", "num_embed")):
        raise checkpoint.CheckpointError(
            "the checkpoint has %(num_lstm_layer)d layers of %(num_hidden)d units over a %(num_embed)d-wide embedding; "
            "give the same --num-lstm-layer, --num-hidden and --num-embed to resume it" % shape)
    if batch:
        check_same_batches(args, record, epoch, batch)
    checkpoint.check_vocab(args.prefix, vocab, shape["num_label"])
    saved = checkpoint.read_optimizer(states) if states else None
    saved_name = type(saved).__name__.lower()
    if states is None:
        logging.warning("The optimizer starts afresh: %s", no_optimizer_state_reason(args, record, epoch))
    elif "optimizer" in args.given and saved_name != args.optimizer:
        logging.warning("--optimizer %s replaces the checkpoint's %s: the optimizer starts afresh", args.optimizer,
                        saved_name)
        states = None
    base_lr = saved.lr if states else args.learning_rate  # the rate a cosine given again starts from
    if args.lr_cosine and "learning_rate" not in args.given and args.lr_final >= base_lr:
        raise checkpoint.CheckpointError("--lr-final (%g) must be below the run's learning rate (%g), from which the "
                                         "resumed cosine starts; give --learning-rate too" % (args.lr_final, base_lr))
    params = lstm.backend_params(arg_params, args.rnn_backend, args.num_lstm_layer, args.num_hidden)
    return Start(epoch, batch, params, aux_params, states, (record or {}).get("best_val_loss"),
                 saved if states else None)


# What the batches of an epoch, and their order, depend on: a run stopped inside an epoch resumes
# only with the same values, or it would go on in another place of another order.
BATCH_OPTIONS = ("data", "seq_len", "buckets", "split_long_lines", "stream", "stateful", "val_frac", "batch_size",
                 "shuffle", "seed")


def check_same_batches(args, record, epoch, batch):
    """Refuses to resume a partial checkpoint with data options other than the run's."""
    saved = (record or {}).get("options") or {}
    here = dict(vars(args), data=args.data and os.path.abspath(args.data))
    for name in BATCH_OPTIONS:
        if name in saved and saved[name] != here[name]:
            flag = "--" + name.replace("_", "-")
            raise checkpoint.CheckpointError(
                "the run stopped after batch %d of epoch %d with %s: resume it with the same %s (the batches of an "
                "epoch depend on it)" % (batch, epoch + 1, as_typed(flag, saved[name]), flag))


def no_optimizer_state_reason(args, record, epoch):
    """Why a resumed checkpoint has no optimizer state for the backend that goes on with it."""
    if record is None:
        return "the checkpoint has none (the tutorial's, or one copied without its .states file)"
    if record.get("backend") not in (None, args.rnn_backend):
        return ("the run was trained with --rnn-backend %s, whose optimizer state does not fit the %s backend's "
                "parameters" % (record["backend"], args.rnn_backend))
    if str((record.get("options") or {}).get("kv_store", "local")).startswith("dist"):
        return "a distributed run keeps its optimizer on the parameter servers, which save none"
    return "%s is missing" % checkpoint.path("states", args.prefix, epoch, args.rnn_backend)


def record_run(args, vocab, start):
    """The vocabulary and the run record of a run that starts or resumes."""
    checkpoint.save_vocab(args.prefix, vocab)
    options = {k: v for k, v in vars(args).items() if k != "given"}
    options["data"] = args.data and os.path.abspath(args.data)  # a bare --resume may run from elsewhere
    if start.saved_optimizer is not None:  # it goes on: the record keeps its options, not the defaults
        options.update(saved_optimizer_options(args, start.saved_optimizer,
                                               (checkpoint.load_run(args.prefix) or {}).get("options") or {}))
    checkpoint.save_run(args.prefix, options=options, backend=args.rnn_backend,
                        model=dict(num_lstm_layer=args.num_lstm_layer, num_hidden=args.num_hidden,
                                   num_embed=args.num_embed, num_label=len(vocab) + 1),
                        epoch=start.epoch, batch=start.batch, best_val_loss=start.best_loss)


def saved_optimizer_options(args, saved, recorded):
    """The options of the optimizer `saved` in a checkpoint that a resume goes on with: those not given
    again, and the recorded schedule's unless another schedule is given (see callbacks.replace_saved_options)."""
    options = {"optimizer": type(saved).__name__.lower()}
    for name, attr in callbacks.OPTIMIZER_OPTIONS.items():
        if name not in args.given and hasattr(saved, attr):
            options[name] = getattr(saved, attr)  # lr: the base rate, before any schedule
    if not args.given & set(callbacks.SCHEDULE_GIVEN_AGAIN):
        options.update((name, recorded[name]) for name in ("lr_factor",) + callbacks.SCHEDULE_GIVEN_AGAIN
                       if name in recorded)
    return options


def optimizer_params(args, batches_per_epoch):
    """The optimizer's options, as FeedForward passes them on to mx.optimizer.create."""
    params = dict(learning_rate=args.learning_rate, wd=args.wd)
    if args.optimizer == "sgd":
        params["momentum"] = args.momentum
    if args.clip_gradient:
        params["clip_gradient"] = args.clip_gradient
    warmup = int(round(args.warmup_epochs * batches_per_epoch))
    if args.lr_cosine:
        params["lr_scheduler"] = mx.lr_scheduler.CosineScheduler(
            max_update=max(args.num_epoch * batches_per_epoch, warmup + 1), base_lr=args.learning_rate,
            final_lr=args.lr_final, warmup_steps=warmup)
    elif args.lr_step_epochs:
        params["lr_scheduler"] = mx.lr_scheduler.MultiFactorScheduler(
            step=[e * batches_per_epoch for e in args.lr_step_epochs], factor=args.lr_factor,
            base_lr=args.learning_rate, warmup_steps=warmup)
    elif warmup:
        params["lr_scheduler"] = mx.lr_scheduler.FactorScheduler(
            step=batches_per_epoch, factor=1.0, base_lr=args.learning_rate, warmup_steps=warmup)
    return params


Callbacks = namedtuple("Callbacks", ["batch_end", "epoch_end", "eval_end", "eval_batch_end", "stop"])


def make_callbacks(args, metric, optimizer, symbol, data_train, data_val, start, writes, clip=None):
    """FeedForward's batch-end, epoch-end and eval-end callbacks (callbacks.py says when each runs),
    and the signal handler to hold around fit."""
    resumed = callbacks.Resumed(start.epoch, start.batch)
    to_tutorial = functools.partial(lstm.tutorial_params, num_lstm_layer=args.num_lstm_layer,
                                    num_hidden=args.num_hidden, num_embed=args.num_embed)
    saver = callbacks.Checkpointer(args.prefix, symbol, to_tutorial, optimizer, args.rnn_backend,
                                   data_train.states if args.stateful else None) if writes else None
    stop = callbacks.StopOnSignal(args.prefix, saver, resumed)
    carry = [callbacks.carry_states(data_train)] if args.stateful else []
    # only the dropouts draw random numbers in a batch
    reseed = ([callbacks.seed_next_batch(args.seed, data_train.num_batches, resumed)]
              if args.dropout or args.weight_drop or args.embed_dropout else [])
    batch_end = [callbacks.ProgressSpeedometer(args.batch_size, args.log_every, data_train.num_batches, resumed),
                 callbacks.stop_on_divergence(metric, resumed)] + reseed + carry + [stop]
    epoch_end = [callbacks.log_training_metrics(metric)] + ([clip.log_epoch] if clip else [])
    # once the epoch is evaluated (eval end; epoch end where there is no held-out data): the annealing,
    # then the epoch's files, the run record last, then a stop asked for meanwhile
    evaluated = []
    if data_val is not None:
        evaluated.append(callbacks.log_validation_metrics)
        if args.lr_anneal:
            evaluated.append(callbacks.anneal(optimizer, args.lr_anneal, start.best_loss or float("inf")))
    if writes:
        row = callbacks.MetricsRow(metric, optimizer, data_train.num_batches * args.batch_size, resumed,
                                   args.batch_size)
        epoch = callbacks.EpochEnd(args.prefix, saver, row, start.best_loss, args.keep)
        epoch_end.append(epoch.save_weights)
        evaluated.append(epoch.finish)
    evaluated.append(stop.after_epoch)
    if data_val is None:
        epoch_end += [callbacks.as_epoch_end(callback) for callback in evaluated]
        evaluated = []
    eval_batch_end = [callbacks.carry_states(data_val)] if args.stateful and data_val is not None else None
    return Callbacks(batch_end, epoch_end, evaluated, eval_batch_end, stop)


def mxnet_message(err):
    """The line of an MXNetError that says what went wrong (MXNet adds a stack trace)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = [line for line in lines if "Check failed" in line or "Error" in line] or lines or ["(no message)"]
    return said[0][:300]


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        args = parse_args(argv)
        contexts = device.contexts_for(args.gpus, args.cpu)
        if args.bf16 and any(ctx.device_type != "cpu" for ctx in contexts):
            raise device.DeviceError("--bf16 runs on the CPU only (MXNet 1.9.1 has bfloat16 for oneDNN); add --cpu")
        train(args, contexts)
    except (bucket_io.CorpusError, checkpoint.CheckpointError, device.DeviceError) as err:
        return cli.fail("train_obama.py", err)
    except MemoryError:
        return cli.fail("train_obama.py", "out of memory: give smaller sizes (--num-hidden, --batch-size, --seq-len)", 1)
    except MXNetError as err:  # what the checks above could not foresee, in MXNet's words
        return cli.fail("train_obama.py", "MXNet failed: %s" % mxnet_message(err), 1)
    except callbacks.TrainingStopped as stop:
        print("train_obama.py: %s" % stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        return cli.fail("train_obama.py", "interrupted", cli.INTERRUPTED)
    return 0


if __name__ == "__main__":
    # a worker of MXNet's parameter server that stops early ends at once: at exit MXNet would wait
    # for the workers still training, for ever
    cli.run(main, end_at_once=os.environ.get("DMLC_ROLE") == "worker")
