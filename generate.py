"""Generates text from a trained checkpoint, starting from a seed string.

    python generate.py "The United States"                  # greedy, as in the tutorial
    python generate.py "The United States" --sample --temperature 0.8 --seed 1
"""
import argparse
import logging
import sys

import numpy as np

import device
import mxnet as mx

import bucket_io
import checkpoint
from rnn_model import load_inference_model


class SeedError(ValueError):
    """The seed string cannot be fed to the model."""


def check_seed(seed, vocab):
    if not seed:
        raise SeedError("the seed string is empty; give at least one character")
    unknown = sorted(set(seed) - set(vocab))
    if unknown:
        raise SeedError("the seed has characters that are not in the vocabulary: %s"
                        % ", ".join(repr(c) for c in unknown))


def next_id(prob, sample=False, temperature=1.0, rng=np.random):
    """The next character id: the most likely one, or one drawn at `temperature` as the tutorial does."""
    if not sample:
        return int(np.argmax(prob))
    scaled = np.exp(np.log(np.clip(prob.astype(np.float64), 1e-6, 1 - 1e-6)) / temperature)
    return int(rng.choice(len(scaled), p=scaled / scaled.sum()))


def generate_text(model, vocab, seed, length=600, sample=False, temperature=1.0, rng=None):
    """The seed followed by `length` new characters.

    When the model emits the padding id the LSTM state restarts from zero, as in the tutorial;
    if it emits padding again straight after a restart it would only repeat, so generation ends there.
    """
    check_seed(seed, vocab)
    rng = rng or np.random.RandomState()
    id_to_char = {i: c for c, i in vocab.items()}
    input_id = mx.nd.zeros((1,))
    prob = None
    for position, char in enumerate(seed):
        input_id[:] = vocab[char]
        prob = model.forward(input_id, new_seq=position == 0)
    out = []
    restarted = False
    while len(out) < length:
        idx = next_id(prob[0], sample, temperature, rng)
        if idx == 0 or idx not in id_to_char:
            if restarted:
                logging.warning("the model keeps emitting padding; stopping after %d characters", len(out))
                break
            restarted = True
            prob = model.forward(input_id, new_seq=True)
            continue
        restarted = False
        out.append(id_to_char[idx])
        if len(out) < length:
            input_id[:] = idx
            prob = model.forward(input_id)
    return seed + "".join(out)


def load_vocab_for(prefix, corpus=None, mirror=bucket_io.DEFAULT_MIRROR):
    """The checkpoint's saved vocabulary, or (for the tutorial's bare .params) the corpus's."""
    vocab = checkpoint.load_vocab(prefix)
    if vocab is None:
        corpus = bucket_io.find_corpus(corpus, mirror=mirror)
        logging.info("No %s-vocab.json; building the vocabulary from %s", prefix, corpus)
        vocab = bucket_io.build_vocab(corpus)
    return vocab


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Generate text from a trained character-level LSTM.")
    p.add_argument("seed_text", metavar="SEED", help='the text to start from, such as "The United States"')
    p.add_argument("--prefix", default=checkpoint.DEFAULT_PREFIX, help="checkpoint prefix (default: checkpoints/obama)")
    p.add_argument("--epoch", type=int, help="epoch to load (default: the newest)")
    p.add_argument("--length", type=int, default=600, help="how many new characters (default 600)")
    p.add_argument("--sample", action="store_true", help="draw from the distribution instead of taking the most likely")
    p.add_argument("--temperature", type=float, default=1.0, help="with --sample: below 1 is more conservative")
    p.add_argument("--seed", type=int, help="random seed, for repeatable samples")
    p.add_argument("--data", help="corpus to build the vocabulary from when the checkpoint has no -vocab.json")
    p.add_argument("--data-mirror", default=bucket_io.DEFAULT_MIRROR, help=argparse.SUPPRESS)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--gpu", type=int, help="run on this GPU")
    where.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is usable")
    args = p.parse_args(argv)
    if args.temperature <= 0:
        p.error("--temperature must be positive, got %s" % args.temperature)
    if args.length < 0:
        p.error("--length must not be negative, got %s" % args.length)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        contexts, why = device.choose_contexts(gpus=None if args.gpu is None else [args.gpu], cpu=args.cpu)
        logging.info("Device: %s", why)
        epoch = checkpoint.latest_epoch(args.prefix) if args.epoch is None else args.epoch
        vocab = load_vocab_for(args.prefix, args.data, args.data_mirror)
        check_seed(args.seed_text, vocab)
        model, epoch = load_inference_model(args.prefix, epoch, ctx=contexts[0])
        if model.num_label != len(vocab) + 1:
            raise checkpoint.CheckpointError("the checkpoint predicts %d labels but the vocabulary has %d characters"
                                             % (model.num_label - 1, len(vocab)))
        logging.info("Loaded %s", checkpoint.params_path(args.prefix, epoch))
        text = generate_text(model, vocab, args.seed_text, args.length, args.sample, args.temperature,
                             np.random.RandomState(args.seed))
    except (SeedError, bucket_io.CorpusError, checkpoint.CheckpointError, device.DeviceError) as err:
        print("generate.py: error: %s" % err, file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
