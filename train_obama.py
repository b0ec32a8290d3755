"""Trains the tutorial's character-level LSTM on a corpus with mx.model.FeedForward.

    python train_obama.py                      # the tutorial: 3x512 LSTM, one epoch of obama.txt
    python train_obama.py --num-epoch 75 --prefix checkpoints/obama
"""
import argparse
import logging
import math
import sys
import warnings

import numpy as np

import device
import mxnet as mx

import bucket_io
import checkpoint
from lstm import FUSED_PARAMS, fuse_lstm_params, fused_lstm_unroll, lstm_unroll, unfuse_lstm_params

class CharPerplexity(mx.metric.Perplexity):
    """Perplexity of the time-major predictions, padding (id 0) excluded, with bits per character."""

    def __init__(self):
        super().__init__(ignore_label=0, name="perplexity")

    def update(self, labels, preds):
        # labels come (batch, seq_len); the graph predicts time-major, (seq_len * batch, num_label)
        super().update([label.T for label in labels], preds)

    @staticmethod
    def _with_bits(name_value):
        name, perplexity = name_value
        return [name, "bits-per-char"], [perplexity, math.log2(perplexity)]

    def get(self):
        return self._with_bits(super().get())

    def get_global(self):
        return self._with_bits(super().get_global())


def parse_int_list(text):
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, got %r" % text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers, got %r" % text)
    return values


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %s" % text)
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the tutorial's character-level LSTM.")
    p.add_argument("--data", help="corpus file (default: data/obama.txt, found by the corpus look-up)")
    p.add_argument("--data-mirror", default=bucket_io.DEFAULT_MIRROR,
                   help="folder holding obama.txt to copy from when data/obama.txt is missing")
    p.add_argument("--prefix", default=checkpoint.DEFAULT_PREFIX, help="checkpoint prefix (default: checkpoints/obama)")
    p.add_argument("--seq-len", type=positive_int, default=129, help="longest sentence; the bucket when --buckets is not given")
    p.add_argument("--buckets", type=parse_int_list, help="bucket lengths, such as 32,64,129 (default: --seq-len)")
    p.add_argument("--split-long-lines", action="store_true", help="cut lines longer than the largest bucket instead of failing")
    p.add_argument("--num-embed", type=positive_int, default=256)
    p.add_argument("--num-lstm-layer", type=positive_int, default=3)
    p.add_argument("--num-hidden", type=positive_int, default=512)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--num-epoch", type=positive_int, default=1)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--wd", type=float, default=0.0001)
    p.add_argument("--rnn-backend", choices=["unrolled", "fused"], default="unrolled",
                   help="unrolled: the tutorial's graph of LSTM cells; fused: the same model on mx.sym.RNN "
                        "(oneDNN on the CPU, cuDNN on a GPU), about twice as fast. Checkpoints are the same")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, dropout and batch order")
    p.add_argument("--log-every", type=positive_int, default=20, help="batches between progress lines")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpus", help="train on these GPUs, such as 0 or 0,1 (default: gpu(0) if MXNet can use it)")
    where.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is usable")
    args = p.parse_args(argv)
    if not 0 <= args.dropout < 1:
        p.error("--dropout must be in [0, 1), got %s" % args.dropout)
    if args.learning_rate <= 0:
        p.error("--learning-rate must be positive, got %s" % args.learning_rate)
    return args


def init_states(num_lstm_layer, batch_size, num_hidden, backend="unrolled"):
    """The names and shapes of the zero initial LSTM states, fed as data."""
    if backend == "fused":
        return [("lstm_init_c", (num_lstm_layer, batch_size, num_hidden)),
                ("lstm_init_h", (num_lstm_layer, batch_size, num_hidden))]
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


def initial_fused_params(initializer, num_lstm_layer, num_hidden, num_embed):
    """The fused LSTM vector, initialised layer by layer exactly as the unrolled graph's parameters are."""
    arrays = {}
    for i in range(num_lstm_layer):
        fan_in = num_embed if i == 0 else num_hidden
        for name, shape in (("l%d_i2h_weight" % i, (4 * num_hidden, fan_in)), ("l%d_i2h_bias" % i, (4 * num_hidden,)),
                            ("l%d_h2h_weight" % i, (4 * num_hidden, num_hidden)), ("l%d_h2h_bias" % i, (4 * num_hidden,))):
            arrays[name] = mx.nd.zeros(shape)
            initializer(mx.init.InitDesc(name), arrays[name])
    return {FUSED_PARAMS: mx.nd.array(fuse_lstm_params(arrays, num_lstm_layer, num_hidden))}


def epoch_end_checkpoint(prefix, metric, symbol, to_tutorial):
    """The epoch-end callback: logs the epoch's training figures and writes the checkpoint,
    always with the tutorial's symbol and parameter names."""
    def callback(epoch, _symbol, arg_params, aux_params):
        names, values = metric.get_global()
        logging.info("Epoch[%d] Train-%s=%f Train-%s=%f", epoch, names[0], values[0], names[1], values[1])
        checkpoint.save_checkpoint(prefix, epoch + 1, symbol, to_tutorial(arg_params), aux_params)
        logging.info('Saved checkpoint to "%s"', checkpoint.params_path(prefix, epoch + 1))
    return callback


def train(args, contexts):
    """Trains as the tutorial does and returns the FeedForward model."""
    corpus = bucket_io.find_corpus(args.data, mirror=args.data_mirror)
    vocab = bucket_io.build_vocab(corpus)
    logging.info("Corpus %s: vocab size = %d", corpus, len(vocab))
    buckets = args.buckets or [args.seq_len]
    data_train = bucket_io.BucketSentenceIter(
        corpus, vocab, buckets, args.batch_size,
        init_states(args.num_lstm_layer, args.batch_size, args.num_hidden, args.rnn_backend),
        seed=args.seed, split_long_lines=args.split_long_lines)
    if data_train.num_batches == 0:
        raise bucket_io.CorpusError("%s has fewer sentences than one batch (%d) in any bucket" % (corpus, args.batch_size))

    num_label = len(vocab) + 1
    unroll = fused_lstm_unroll if args.rnn_backend == "fused" else lstm_unroll

    def sym_gen(seq_len):
        return unroll(args.num_lstm_layer, seq_len, num_label, num_hidden=args.num_hidden,
                      num_embed=args.num_embed, num_label=num_label, dropout=args.dropout)

    np.random.seed(args.seed)
    mx.random.seed(args.seed)
    initializer = mx.init.Xavier(factor_type="in", magnitude=2.34)
    arg_params = None
    if args.rnn_backend == "fused":
        arg_params = initial_fused_params(initializer, args.num_lstm_layer, args.num_hidden, args.num_embed)
    checkpoint.save_vocab(args.prefix, vocab)
    saved_symbol = lstm_unroll(args.num_lstm_layer, data_train.default_bucket_key, num_label, args.num_hidden,
                               args.num_embed, num_label, args.dropout)
    with warnings.catch_warnings():
        # FeedForward is deprecated in MXNet 1.x in favour of Module; we keep the tutorial's API.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = mx.model.FeedForward(
            ctx=contexts, symbol=sym_gen, num_epoch=args.num_epoch, learning_rate=args.learning_rate,
            momentum=args.momentum, wd=args.wd, initializer=initializer, arg_params=arg_params)
    metric = CharPerplexity()
    model.fit(X=data_train, eval_metric=metric,
              batch_end_callback=mx.callback.Speedometer(args.batch_size, args.log_every),
              epoch_end_callback=epoch_end_checkpoint(
                  args.prefix, metric, saved_symbol,
                  lambda params: tutorial_params(params, args.num_lstm_layer, args.num_hidden, args.num_embed)))
    return model


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        gpus = device.parse_gpu_list(args.gpus) if args.gpus else None
        contexts, why = device.choose_contexts(gpus=gpus, cpu=args.cpu)
        logging.info("Device: %s", why)
        train(args, contexts)
    except (bucket_io.CorpusError, checkpoint.CheckpointError, device.DeviceError) as err:
        print("train_obama.py: error: %s" % err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
