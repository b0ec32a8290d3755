"""How the gradient's scale meets clipping (a measurement script, not a test): for a few
consecutive stateful training batches of a checkpoint, the share of gradient elements that
`--clip-gradient C` cuts, and the gradient's global norm in our scale and in PyTorch's.

SoftmaxOutput sums the loss over the --seq-len steps of a sample and FeedForward divides by the
batch size; PyTorch's cross entropy averages over every character, so its gradient is ours
divided by --seq-len. Adam's step does not depend on that scale (its moments scale with it), so the
two differ only where a clip acts: per element here, on the global norm in PyTorch.

    python benchmarks/bench_gradients.py --prefix checkpoints/obama --epoch 1 [--batches 5] [--clip 5]
    python benchmarks/bench_gradients.py --prefix unused --epoch 0      # the recipe's initial weights
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import bucket_io  # noqa: E402
import checkpoint  # noqa: E402
import lstm  # noqa: E402
import mxnet as mx  # noqa: E402
import options  # noqa: E402
import train_obama  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefix", required=True)
    p.add_argument("--epoch", type=int, required=True, help="0: the recipe's initial weights (no checkpoint)")
    p.add_argument("--data", help="the corpus (default: obama.txt through the corpus look-up)")
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--clip", type=float, default=5.0, help="the per-element clip (ours) and global-norm clip (PyTorch)")
    args = p.parse_args()
    measure(args)


def measure(args):
    """Prints, batch by batch, how much of the gradient the clip cuts and its global norm."""
    corpus = bucket_io.find_corpus(args.data)
    vocab = bucket_io.build_vocab(corpus)
    if args.epoch == 0:  # the recipe's starting point: train_obama.py's default sizes, embedding from N(0, 1)
        sizes = options.parse_args([])
        layers, hidden, embed, labels = sizes.num_lstm_layer, sizes.num_hidden, sizes.num_embed, len(vocab) + 1
        arg_params = None
    else:
        _, arg_params, _ = mx.model.load_checkpoint(args.prefix, args.epoch)
        shape = checkpoint.model_shape(arg_params)
        layers, hidden, embed, labels = (shape[k] for k in ("num_lstm_layer", "num_hidden", "num_embed", "num_label"))
    train_text, _ = bucket_io.stream_texts(bucket_io.read_content(corpus), 0.05)
    states = lstm.init_states(layers, args.batch_size, hidden)
    batches = bucket_io.StreamIter(bucket_io.text2id(train_text, vocab), args.batch_size, args.seq_len, states)
    batches.reset()

    symbol = lstm.lstm_unroll(layers, args.seq_len, labels, hidden, embed, labels, args.dropout, state_outputs=True)
    inputs = dict(states, data=(args.batch_size, args.seq_len), softmax_label=(args.batch_size, args.seq_len))
    grad_req = {name: "null" if name in inputs else "write" for name in symbol.list_arguments()}
    executor = symbol.simple_bind(mx.cpu(), grad_req=grad_req, **inputs)
    if arg_params is None:
        init = train_obama.initializer("normal")
        for name in symbol.list_arguments():
            if name not in inputs:
                init(mx.init.InitDesc(name), executor.arg_dict[name])
    else:
        for name, value in arg_params.items():
            executor.arg_dict[name][:] = value
    names = [n for n in symbol.list_arguments() if n not in inputs]
    report(args, batches, executor, names)


def report(args, batches, executor, names):
    print("%-6s %14s %18s %22s" % ("batch", "cut by clip", "global norm (ours)", "global norm (PyTorch's)"))
    for i, batch in enumerate(batches):
        if i == args.batches:
            break
        for name, array in zip(batches.provide_data, batch.data):
            executor.arg_dict[name[0]][:] = array
        executor.arg_dict["softmax_label"][:] = batch.label[0]
        executor.forward(is_train=True)
        executor.backward()
        grads = [executor.grad_dict[n].asnumpy() / args.batch_size for n in names]
        cut = sum(int((np.abs(g) > args.clip).sum()) for g in grads) / sum(g.size for g in grads)
        norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads)))
        print("%-6d %13.3f%% %18.1f %22.2f" % (i, 100 * cut, norm, norm / args.seq_len))
        for state, final in zip(batches.states, executor.outputs[1:]):  # carried, as in training
            state[:] = final


if __name__ == "__main__":
    main()
