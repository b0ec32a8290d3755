"""Generates text from a trained checkpoint, or from a file export_onnx.py wrote, starting from a prime text.

    python generate.py "The United States"                  # greedy, as in the tutorial
    python generate.py "The United States" --sample --temperature 0.8 --top-k 10 --seed 1
    python generate.py --prime-file speech.txt --num-samples 4 --sample --length 300
    python generate.py "The United States" --beam 8 --length 100
    python generate.py "The United States" --onnx short.onnx   # numpy and onnxruntime only

The functions below generate from any one-step model with LSTMInferenceModel's methods (forward,
get_states, set_states, restart_streams); ONNXInferenceModel has them too. MXNet is imported only
to load a checkpoint, so that generating from an exported file needs no MXNet.
"""

import os

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # from the first import on, also while MXNet loads
    # Generation is one small step after another, which MXNet's synchronous engine runs faster
    # than the threaded one (tests/bench_generate.py). It must be chosen before MXNet loads.
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import files  # noqa: E402

PAD = 0  # the id the iterator pads with; the model may emit it at the end of a line
# streams run together in one batch at most: more are generated in parts, so that any
# --num-samples fits in memory
MAX_STREAMS = 256


class PrimeError(cli.Refused, ValueError):
    """The prime text cannot be fed to the model."""


def unknown_characters(text, vocab):
    """The characters of `text` that the vocabulary lacks, named for an error message ('' if none)."""
    return ", ".join(repr(c) for c in sorted(set(text) - set(vocab)))


def check_prime(prime, vocab, skip_unknown=False):
    """The prime, or an error naming its characters that the vocabulary lacks (dropped, with a
    warning, under `skip_unknown`)."""
    names = unknown_characters(prime, vocab)
    if names:
        if not skip_unknown:
            raise PrimeError("the prime text has characters that are not in the vocabulary: %s "
                            "(--skip-unknown drops them)" % names)
        logging.warning("dropping prime-text characters that are not in the vocabulary: %s", names)
        prime = "".join(c for c in prime if c in vocab)
    if not prime:
        raise PrimeError("the prime text is empty; give at least one character the model knows")
    return prime


def next_ids(probs, sample=False, temperature=1.0, top_k=0, rng=np.random):
    """The next character id of each row of `probs`: the most likely one, or one drawn at
    `temperature` (probabilities clipped as in the tutorial) among the `top_k` most likely (0: all)."""
    if not sample:
        return probs.argmax(axis=1)
    logits = np.log(np.clip(probs.astype(np.float64), 1e-6, 1 - 1e-6)) / temperature
    if 0 < top_k < probs.shape[1]:
        kth = np.partition(logits, -top_k, axis=1)[:, -top_k][:, None]
        logits = np.where(logits >= kth, logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    draws = rng.random_sample(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= draws).sum(axis=1), probs.shape[1] - 1)


def feed_prime(model, vocab, prime):
    """Runs the prime through the model (all streams alike); returns the last probabilities."""
    streams = model.batch_size
    prob = None
    for position, char in enumerate(prime):
        prob = model.forward(np.full(streams, vocab[char]), new_seq=position == 0)
    return prob


def iter_steps(model, vocab, prime, length=600, sample=False, temperature=1.0, top_k=0, rng=None, stop_at=None):
    """Yields, step by step, each stream's new character ('' when it produced none).

    Every stream runs independently from the same prime. When a stream emits the padding id, its
    state restarts from zero on its last character, as in the tutorial; padding again straight
    after a restart would only repeat, so that stream ends. A stream also ends after `length`
    characters or once its text ends with `stop_at`.
    """
    rng = rng or np.random.RandomState()
    id_to_char = np.array([""] + [c for c, _ in sorted(vocab.items(), key=lambda kv: kv[1])], dtype=object)
    if length <= 0:
        return
    streams = model.batch_size
    prob = feed_prime(model, vocab, prime)
    inputs = np.full(streams, vocab[prime[-1]])
    produced = np.zeros(streams, dtype=int)
    done = np.zeros(streams, dtype=bool)
    restarted = np.zeros(streams, dtype=bool)
    tails = [""] * streams
    while not done.all():
        ids = next_ids(prob, sample, temperature, top_k, rng)
        ids[ids >= len(id_to_char)] = PAD
        pad = (ids == PAD) & ~done
        done |= pad & restarted
        restart = pad & ~done
        emit = ~pad & ~done
        chars = np.where(emit, id_to_char[ids], "")
        produced += emit
        inputs = np.where(emit, ids, inputs)
        restarted = restart
        if stop_at:
            for s in np.flatnonzero(emit):
                tails[s] = (tails[s] + chars[s])[-len(stop_at):]
                done[s] |= tails[s] == stop_at
        done |= produced >= length
        yield list(chars)
        if done.all():
            break
        if restart.any():
            model.restart_streams(np.flatnonzero(restart))
        prob = model.forward(inputs)


def generate_texts(model, vocab, prime, length=600, **options):
    """The prime followed by up to `length` new characters, for each of the model's streams."""
    check_prime(prime, vocab)
    pieces = [[prime] for _ in range(model.batch_size)]
    for chars in iter_steps(model, vocab, prime, length, **options):
        for piece, char in zip(pieces, chars):
            piece.append(char)
    if any(len("".join(p)) < len(prime) + length for p in pieces) and not options.get("stop_at"):
        logging.warning("the model kept emitting padding; some samples ended early")
    return ["".join(piece) for piece in pieces]


def generate_text(model, vocab, prime, length=600, **options):
    """The prime followed by up to `length` new characters (the first stream)."""
    return generate_texts(model, vocab, prime, length, **options)[0]


def stream_text(model, vocab, prime, length=600, **options):
    """Yields the first stream's new characters one at a time, as they are generated."""
    check_prime(prime, vocab)
    for chars in iter_steps(model, vocab, prime, length, **options):
        if chars[0]:
            yield chars[0]


def beam_search(model, vocab, prime, length=100):
    """The continuation of `length` characters that the model finds most likely, by beam search
    with as many beams as the model has streams. Returns (text, log-likelihood in nats)."""
    check_prime(prime, vocab)
    beams = model.batch_size
    id_to_char = {i: c for c, i in vocab.items()}
    log_prob = np.log(np.maximum(feed_prime(model, vocab, prime), 1e-30))
    scores = np.zeros(beams)
    scores[1:] = -np.inf  # all beams start identical: expand the first only
    texts = [""] * beams
    for step in range(length):
        candidates = scores[:, None] + log_prob
        candidates[:, PAD] = -np.inf
        candidates[:, len(vocab) + 1:] = -np.inf
        best = np.argsort(candidates, axis=None)[::-1][:beams]
        parents, ids = np.unravel_index(best, candidates.shape)
        scores = candidates[parents, ids]
        texts = [texts[p] + id_to_char.get(i, "") for p, i in zip(parents, ids)]  # "" only for -inf beams
        if step + 1 == length:
            break
        h, c = model.get_states()
        model.set_states(h[:, parents], c[:, parents])
        log_prob = np.log(np.maximum(model.forward(ids), 1e-30))
    return prime + texts[0], float(scores[0])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Generate text from a trained character-level LSTM.")
    p.add_argument("prime_text", metavar="PRIME", nargs="?", help='the text to start from, such as "The United States"')
    p.add_argument("--prime-file", help="read the prime text from this UTF-8 file instead (long or multi-line ones)")
    p.add_argument("--skip-unknown", action="store_true", help="drop prime-text characters the vocabulary lacks, with a warning")
    model = p.add_mutually_exclusive_group()
    cli.add_checkpoint_options(model)
    model.add_argument("--onnx", metavar="FILE", help="generate from this file, written by export_onnx.py, "
                       "without MXNet (numpy and onnxruntime only; on the CPU)")
    p.add_argument("--epoch", type=cli.epoch_number, help='epoch to load, or "best" (default: the newest)')
    p.add_argument("--length", type=cli.non_negative_int, default=600, help="how many new characters (default 600)")
    p.add_argument("--sample", action="store_true", help="draw from the distribution instead of taking the most likely")
    p.add_argument("--temperature", type=cli.positive_float, default=1.0,
                   help="with --sample: below 1 is more conservative")
    p.add_argument("--top-k", type=cli.non_negative_int, default=0, help="with --sample: draw among the K most likely only")
    p.add_argument("--seed", type=cli.random_seed, help="seeds the random numbers, for repeatable samples")
    p.add_argument("--num-samples", type=cli.positive_int, default=1,
                   help="independent continuations, generated %d at a time" % MAX_STREAMS)
    p.add_argument("--beam", type=cli.positive_int, help="beam search with K beams (at most %d) for the most likely "
                   "continuation" % MAX_STREAMS)
    p.add_argument("--stop-at", help="end a sample once it has produced this string")
    p.add_argument("--stream", action="store_true", help="print characters as they are generated")
    p.add_argument("--output", help="write the text to this file instead of standard output")
    cli.add_corpus_option(p, "corpus to build the vocabulary from when the checkpoint has no -vocab.json")
    cli.add_device_options(p, "run on this GPU, such as 0 (default: gpu(0) if MXNet can use it)")
    args = p.parse_args(argv)
    if (args.prime_text is None) == (args.prime_file is None):
        p.error("give either a PRIME text or --prime-file FILE")
    if args.onnx and (args.epoch is not None or args.data or args.gpus or args.cpu):
        p.error("--onnx generates from the exported file alone, on the CPU: not with --epoch, --data, --gpus or --cpu")
    if args.beam and args.beam > MAX_STREAMS:
        p.error("--beam takes at most %d beams, got %d" % (MAX_STREAMS, args.beam))
    if args.beam and (args.sample or args.num_samples > 1 or args.stop_at):
        p.error("--beam finds the one most likely text: it does not take --sample, --num-samples or --stop-at")
    if args.stream and (args.num_samples > 1 or args.beam or args.output):
        p.error("--stream prints one sample to standard output: not with --num-samples, --beam or --output")
    return args


# a prime text is fed one character a step: a longer one would take hours before the first new character
MAX_PRIME_BYTES = 1 << 20


def read_prime_file(path):
    return files.read_text(path, "prime file", MAX_PRIME_BYTES)


def load_checkpoint(args, streams):
    """The checkpoint's LSTMInferenceModel for `streams` streams, and its vocabulary. MXNet loads
    here, and only here."""
    import checkpoint
    import device
    from rnn_model import load_inference_model
    if args.output and checkpoint.is_run_file(args.prefix, args.output):
        raise files.FileError("--output %s is one of the files of the checkpoint it reads (--prefix %s): give "
                              "another path" % (args.output, args.prefix))
    if args.gpus and len(device.parse_gpu_list(args.gpus)) > 1:
        raise device.DeviceError("generation runs on one GPU: give one id to --gpus, got %s" % args.gpus)
    contexts = device.contexts_for(args.gpus, args.cpu)
    epoch = checkpoint.latest_epoch(args.prefix) if args.epoch is None else args.epoch
    vocab = checkpoint.load_vocab_or_build(args.prefix, args.data)
    model, epoch = load_inference_model(args.prefix, epoch, ctx=contexts[0], batch_size=streams)
    checkpoint.check_vocab(args.prefix, vocab, model.num_label)
    logging.info("Loaded %s", checkpoint.params_path(args.prefix, epoch))
    return model, vocab


def load_exported(args, streams):
    """The exported file's ONNXInferenceModel for `streams` streams, and its vocabulary."""
    from onnx_inference import ONNXInferenceModel
    if args.output:
        files.check_not_same(args.output, args.onnx, "the ONNX file it reads")
    model = ONNXInferenceModel(args.onnx, batch_size=streams)
    logging.info("Loaded %s", args.onnx)
    return model, model.vocab


def run(args):
    """Loads the model and produces the text that main prints or writes."""
    if args.output:
        files.check_writable(args.output)
    prime = args.prime_text if args.prime_file is None else read_prime_file(args.prime_file)
    streams = args.beam or min(args.num_samples, MAX_STREAMS)
    model, vocab = (load_exported if args.onnx else load_checkpoint)(args, streams)
    prime = check_prime(prime, vocab, args.skip_unknown)
    options = dict(sample=args.sample, temperature=args.temperature, top_k=args.top_k,
                   rng=np.random.RandomState(args.seed), stop_at=args.stop_at)
    if args.stream:
        sys.stdout.write(prime)
        for char in stream_text(model, vocab, prime, args.length, **options):
            sys.stdout.write(char)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return None
    if args.beam:
        text, log_likelihood = beam_search(model, vocab, prime, args.length)
        logging.info("Beam search: log-likelihood %.3f nats over %d characters", log_likelihood, args.length)
        return text + "\n"
    texts = []
    while len(texts) < args.num_samples:
        texts += generate_texts(model, vocab, prime, args.length, **options)[:args.num_samples - len(texts)]
    if len(texts) == 1:
        return texts[0] + "\n"
    return "".join("=== sample %d ===\n%s\n" % (i + 1, text) for i, text in enumerate(texts))


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        text = run(args)
        if text is not None and args.output:
            files.save_text(args.output, text)  # whole or not at all
            logging.info("Wrote %s", args.output)
        elif text is not None:
            sys.stdout.write(text)
    except (cli.Refused, OSError) as err:
        return cli.fail("generate.py", err)
    except KeyboardInterrupt:
        return cli.fail("generate.py", "interrupted", cli.INTERRUPTED)
    return 0


if __name__ == "__main__":
    cli.run(main)
