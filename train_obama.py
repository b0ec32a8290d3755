"""Trains the tutorial's character-level LSTM on a corpus with mx.model.FeedForward.

    python train_obama.py                        # the tutorial: 3x512 LSTM, one epoch of obama.txt
    python train_obama.py @config/short.args     # a recipe file; options after it win
    python train_obama.py --prefix P --resume    # carries on the run under P, its options its own

Read top to bottom: train() (data, symbol, starting point, FeedForward, fit), then the functions
it calls in that order, then main. The options are in options.py, what happens after each batch
and epoch in callbacks.py, the files under --prefix in checkpoint.py.
"""

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # from the first import on, also while MXNet loads

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
import optimization  # noqa: E402
import options  # noqa: E402

# The tutorial's initialisation; the fused backend starts from the same weights (lstm.initial_params).
INITIALIZER = mx.init.Xavier(factor_type="in", magnitude=2.34)

# Where training starts: the place, the weights and optimizer state (None: fresh), what the record keeps
Start = namedtuple("Start", ["place", "arg_params", "aux_params", "optimizer_states", "best_loss", "lr_drops"])
FRESH = Start(checkpoint.Place(0, 0), None, None, None, None, 0)


def train(args, contexts):
    """Trains as the tutorial does; returns the FeedForward model (None: no epoch left to train)."""
    # the data: the corpus's lines in buckets (--stateful: its running text in streams), the last
    # --val-frac held out; each worker its share
    corpus = bucket_io.find_corpus(args.data)
    vocab = bucket_io.build_vocab(corpus)
    logging.info("Corpus %s: vocab size = %d", corpus, len(vocab))
    check_memory(args, len(vocab) + 1, contexts)
    kv = mx.kv.create(args.kv_store)
    writes = kv.rank == 0  # in distributed training only the first worker writes files
    data_train, data_val = load_data(args, corpus, vocab, kv)
    sym_gen, saved_symbol = symbols(args, len(vocab) + 1, data_train.default_bucket_key, device.lstm_kernel(contexts))

    with checkpoint.RunLock(args.prefix) if writes else contextlib.nullcontext():
        start = starting_point(args, vocab, writes)
        if start.place.epoch >= args.num_epoch:
            logging.info("Already trained for %d epochs (--num-epoch): nothing to do", start.place.epoch)
            return None
        begin_at(args, start, data_train)
        if writes:
            record_run(args, vocab, start)

        # the model, and fit with the tutorial's checkpoint callback among ours
        optimizer = optimization.OptimizerState(kv, start.optimizer_states)
        clip = optimization.global_norm_clip(kv, args.clip_global_norm, args.batch_size * data_train.default_bucket_key)
        with warnings.catch_warnings():  # FeedForward is deprecated in favour of Module; we keep the tutorial's API
            warnings.simplefilter("ignore", DeprecationWarning)
            model = mx.model.FeedForward(
                ctx=contexts, symbol=sym_gen, num_epoch=args.num_epoch, optimizer=args.optimizer,
                initializer=initializer(args.embed_init), arg_params=start.arg_params, aux_params=start.aux_params,
                begin_epoch=start.place.epoch,
                **optimization.optimizer_params(args, data_train.num_batches, start.place, start.lr_drops))
        metric = callbacks.CharPerplexity()
        writer = run_writer(args, saved_symbol, optimizer, data_train) if writes else None
        calls = callbacks.fit_callbacks(args, metric, optimizer, writer, data_train, data_val, start, clip)
        with calls.stop:
            model.fit(X=data_train, eval_data=data_val, eval_metric=metric, kvstore=kv,
                      batch_end_callback=calls.batch_end, epoch_end_callback=calls.epoch_end,
                      eval_end_callback=calls.eval_end, eval_batch_end_callback=calls.eval_batch_end)
    return model


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
    states = lstm.init_states(args.num_lstm_layer, args.batch_size, args.num_hidden, args.rnn_backend)
    worker = (kv.rank, kv.num_workers)
    if args.stateful:
        return bucket_io.stream_iterators(corpus, vocab, args.seq_len, args.batch_size, states, args.val_frac, worker)
    return bucket_io.line_iterators(corpus, vocab, args.buckets or [args.seq_len], args.batch_size, states, args.seed,
                                    args.shuffle, args.split_long_lines, args.val_frac, worker)


def symbols(args, num_label, batch_width, kernel):
    """The training graphs, one unrolled graph a bucket length as the tutorial's sym_gen (each fed
    batches `batch_width` wide; the fused backend's LSTM run by `kernel`, device.lstm_kernel), and
    the symbol that checkpoints save, as the tutorial saved it."""
    fused = dict(kernel=kernel, bf16=args.bf16) if args.rnn_backend == "fused" else {}
    unroll = lstm.fused_lstm_unroll if args.rnn_backend == "fused" else lstm.lstm_unroll

    def sym_gen(seq_len):
        return unroll(args.num_lstm_layer, seq_len, num_label, num_hidden=args.num_hidden, num_embed=args.num_embed,
                      num_label=num_label, dropout=args.dropout, state_outputs=args.stateful,
                      weight_drop=args.weight_drop, embed_dropout=args.embed_dropout, batch_width=batch_width, **fused)
    with mx.name.NameManager():  # fresh automatic names: the same model always saves the same symbol file
        saved_symbol = lstm.lstm_unroll(args.num_lstm_layer, batch_width, num_label, args.num_hidden, args.num_embed,
                                        num_label, args.dropout, weight_drop=args.weight_drop,
                                        embed_dropout=args.embed_dropout)
    return sym_gen, saved_symbol


def starting_point(args, vocab, writes):
    """Where training starts: fresh (refusing to overwrite a run unasked), from another run's
    weights (--init-from), or (--resume) where the run under --prefix got to; checked against the
    options and the corpus before anything is written."""
    if writes:
        checkpoint.make_room(args.prefix, args.resume, args.overwrite)
    np.random.seed(args.seed)
    mx.random.seed(args.seed)
    resume = checkpoint.resume_point(args.prefix, args.rnn_backend) if args.resume else None
    if resume is not None and resume.arg_params is not None:
        return resumed_start(args, vocab, resume)
    if resume is not None:
        logging.info("The run has no epoch done yet: it starts again from its first")
    if args.init_from:
        epoch = args.init_epoch or checkpoint.latest_epoch(args.init_from)
        arg_params, aux_params = checkpoint.load_params(args.init_from, epoch)
        check_model(args, arg_params, args.init_from, vocab)
        logging.info("Starting from the weights of %s", checkpoint.params_path(args.init_from, epoch))
    elif args.rnn_backend == "fused":
        arg_params = lstm.initial_params(INITIALIZER, args.num_lstm_layer, args.num_hidden, args.num_embed)
        aux_params = None
    else:
        return FRESH
    params = lstm.backend_params(arg_params, args.rnn_backend, args.num_lstm_layer, args.num_hidden)
    return FRESH._replace(arg_params=params, aux_params=aux_params)


def resumed_start(args, vocab, resume):
    """The start of a resumed run, at the place its checkpoints under --prefix got to."""
    record = resume.record or {}
    check_model(args, resume.arg_params, args.prefix, vocab)
    if resume.place.batch:
        check_same_batches(args, record, resume.place)
    states = checkpoint.saved_optimizer_state(args.prefix, resume, args.optimizer, args.rnn_backend)
    params = lstm.backend_params(resume.arg_params, args.rnn_backend, args.num_lstm_layer, args.num_hidden)
    return Start(resume.place, params, resume.aux_params, states, record.get("best_val_loss"),
                 record.get("lr_drops", 0))


def check_model(args, arg_params, prefix, vocab):
    """Refuses a checkpoint (under `prefix`) whose sizes or vocabulary are not this run's."""
    shape = checkpoint.model_shape(arg_params)
    if any(shape[k] != getattr(args, k) for k in ("num_lstm_layer", "num_hidden", "num_embed")):
        raise checkpoint.CheckpointError(
            "%s has %d layers of %d units over a %d-wide embedding; give the same --num-lstm-layer, --num-hidden "
            "and --num-embed" % (prefix, shape["num_lstm_layer"], shape["num_hidden"], shape["num_embed"]))
    checkpoint.check_vocab(prefix, vocab, shape["num_label"])


# What the batches of an epoch, and their order, depend on: a run stopped inside an epoch resumes
# only with the same values, or it would go on in another place of another order.
BATCH_OPTIONS = ("data", "seq_len", "buckets", "split_long_lines", "stateful", "val_frac", "batch_size", "shuffle",
                 "seed")


def check_same_batches(args, record, place):
    """Refuses to resume a partial checkpoint with data options given again other than the run's."""
    saved = record.get("options") or {}
    here = dict(vars(args), data=args.data and os.path.abspath(args.data))
    for name in BATCH_OPTIONS:
        if name in saved and saved[name] != here[name]:
            flag = "--" + name.replace("_", "-")
            raise checkpoint.CheckpointError(
                "the run stopped after batch %d of epoch %d with %s set to %s: resume it with the same %s (the "
                "batches of an epoch depend on it)" % (place.batch, place.epoch + 1, flag, saved[name], flag))


def begin_at(args, start, data_train):
    """Puts the data, the dropout masks and the carried states where the run starts."""
    place = start.place
    if args.resume:
        logging.info("Resuming at epoch %d%s", place.epoch + 1, ", after batch %d" % place.batch if place.batch else "")
        mx.random.seed(callbacks.batch_seed(args.seed, place.epoch, place.batch))  # the masks of this batch
    data_train.resume_at(place.epoch, place.batch)
    if args.stateful and place.batch:
        carried = checkpoint.load_carried(args.prefix, place.epoch, args.rnn_backend)
        for state, saved in zip(data_train.states, carried or []):
            state[:] = saved


def record_run(args, vocab, start):
    """The vocabulary and the run record of a run that starts or resumes: its options, model, place."""
    checkpoint.save_vocab(args.prefix, vocab)
    run_options = {k: v for k, v in vars(args).items() if k not in options.COMMAND_OPTIONS}
    run_options.update(data=args.data and os.path.abspath(args.data),  # a bare --resume may run from elsewhere
                       init_from=args.init_from and os.path.abspath(args.init_from))
    checkpoint.save_run(args.prefix, options=run_options, backend=args.rnn_backend,
                        model=dict(num_lstm_layer=args.num_lstm_layer, num_hidden=args.num_hidden,
                                   num_embed=args.num_embed, num_label=len(vocab) + 1),
                        epoch=start.place.epoch, batch=start.place.batch, best_val_loss=start.best_loss)


def run_writer(args, symbol, optimizer, data_train):
    """What writes the run's files: the weights in the tutorial's names, the optimizer, the carried states."""
    to_tutorial = functools.partial(lstm.tutorial_params, num_lstm_layer=args.num_lstm_layer,
                                    num_hidden=args.num_hidden, num_embed=args.num_embed)
    return checkpoint.RunWriter(args.prefix, symbol, to_tutorial, args.rnn_backend, optimizer.writer(),
                                data_train.states if args.stateful else None)


def initializer(embed_init):
    """The tutorial's initialiser, with the embedding drawn from N(0, 1) for --embed-init normal."""
    if embed_init == "xavier":
        return INITIALIZER
    return mx.init.Mixed(["embed_weight", ".*"], [mx.init.Normal(1.0), INITIALIZER])


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        args = options.parse_args(argv)
        contexts = device.contexts_for(args.gpus, args.cpu)
        if args.bf16 and device.lstm_kernel(contexts) != "onednn":
            raise device.DeviceError("--bf16 runs the LSTM on oneDNN 3 on the CPU: add --cpu, and install "
                                     "requirements.txt (onednn-cpu-gomp)")
        train(args, contexts)
    except cli.Refused as err:
        return cli.fail("train_obama.py", err)
    except MemoryError:
        return cli.fail("train_obama.py", "out of memory: give smaller sizes (--num-hidden, --batch-size, --seq-len)", 1)
    except MXNetError as err:  # what the checks above could not foresee, in MXNet's words
        return cli.fail("train_obama.py", "MXNet failed: %s" % cli.mxnet_message(err), 1)
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
