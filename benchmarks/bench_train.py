"""Training speed (a benchmark script, not a test): samples per second of one training batch of
the tutorial's configuration (3x512 LSTM, embed 256, seq 129, batch 32, 84 labels, dropout 0.2,
SGD), side by side: the unrolled graph, the fused one on mx.sym.RNN ("fused", MXNet's oneDNN 2.4)
and on oneDNN 3 ("onednn", "onednn-bf16": the kernel of onednn.py, as train_obama.py runs the fused
backend on the CPU), and PyTorch's nn.LSTM in float32 and under torch.autocast("cpu",
dtype=torch.bfloat16) when torch is installed (pip install torch==2.13.0). The CPU's model and
bf16 flags are printed with the figures.

Each contender runs in its own process (for its peak memory), warms up, then times --batches
batches; rounds alternate the contenders. It also times what surrounds a batch in training: the
iterator, the perplexity metric and a checkpoint.

    python benchmarks/bench_train.py [--rounds 2] [--batches 3] [--batch-size 32] [--seq-len 129] [--dropout 0.2]
                                [--weight-drop 0] [--only fused pytorch]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # reference.py

import device  # noqa: E402

LAYERS, HIDDEN, EMBED, LABELS, SEQ, BATCH, DROPOUT, WEIGHT_DROP = 3, 512, 256, 84, 129, 32, 0.2, 0.
CONTENDERS = ["tutorial", "unrolled", "fused", "onednn", "onednn-bf16", "pytorch", "pytorch-bf16"]


def batch_data(rng):
    data = rng.randint(1, LABELS, size=(BATCH, SEQ))
    label = np.zeros_like(data)
    label[:, :-1] = data[:, 1:]
    return data, label


def tutorial_graph():
    """The tutorial's own graph, step by step with one i2h product per step (for comparison)."""
    import mxnet as mx
    import lstm
    params, states = lstm._layer_params_and_states(LAYERS)
    embed = lstm._embed(mx.sym.Variable("data"), LABELS, EMBED)
    wordvec = mx.sym.SliceChannel(data=embed, num_outputs=SEQ, squeeze_axis=1)
    hidden = [lstm._stack_step(wordvec[t], states, params, HIDDEN, t, DROPOUT) for t in range(SEQ)]
    pred = lstm._classify(mx.sym.Concat(*hidden, dim=0), LABELS)
    label = mx.sym.Reshape(data=mx.sym.transpose(data=mx.sym.Variable("softmax_label")), shape=(-1,))
    return mx.sym.SoftmaxOutput(data=pred, label=label, name="softmax")


def mxnet_step(backend):
    import mxnet as mx
    import lstm
    if backend == "tutorial":
        symbol = tutorial_graph()
    elif backend == "unrolled":
        symbol = lstm.lstm_unroll(LAYERS, SEQ, LABELS, HIDDEN, EMBED, LABELS, DROPOUT, weight_drop=WEIGHT_DROP)
    else:
        symbol = lstm.fused_lstm_unroll(LAYERS, SEQ, LABELS, HIDDEN, EMBED, LABELS, DROPOUT, weight_drop=WEIGHT_DROP,
                                        kernel="mxnet" if backend == "fused" else "onednn", bf16=backend.endswith("bf16"))
    shapes = dict(lstm.init_states(LAYERS, BATCH, HIDDEN, "unrolled" if backend in ("tutorial", "unrolled") else "fused"),
                  data=(BATCH, SEQ), softmax_label=(BATCH, SEQ))
    inputs = set(shapes)
    grad_req = {name: "null" if name in inputs else "write" for name in symbol.list_arguments()}
    executor = symbol.simple_bind(mx.cpu(), grad_req=grad_req, **shapes)
    init = mx.init.Xavier(factor_type="in", magnitude=2.34)
    for name, array in executor.arg_dict.items():
        if name in inputs:
            continue
        if name == lstm.FUSED_PARAMS:
            array[:] = mx.nd.random.uniform(-0.05, 0.05, array.shape)
        else:
            init(mx.init.InitDesc(name), array)
    params = [n for n in symbol.list_arguments() if n not in inputs]
    rng = np.random.RandomState(0)

    def step():
        data, label = batch_data(rng)
        executor.arg_dict["data"][:] = data
        executor.arg_dict["softmax_label"][:] = label
        executor.forward(is_train=True)
        executor.backward()
        for name in params:
            mx.nd.sgd_update(executor.arg_dict[name], executor.grad_dict[name], lr=0.01, wd=1e-4,
                             rescale_grad=1.0 / BATCH, out=executor.arg_dict[name])
        mx.nd.waitall()
    return step


def torch_step(bf16=False):
    import contextlib
    import torch
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(LABELS, EMBED)
            self.lstm = torch.nn.LSTM(EMBED, HIDDEN, LAYERS, dropout=DROPOUT)
            self.drop = torch.nn.Dropout(DROPOUT)
            self.cls = torch.nn.Linear(HIDDEN, LABELS)

        def forward(self, x):
            out, _ = self.lstm(self.embed(x))
            return self.cls(self.drop(out))

    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, weight_decay=1e-4)
    rng = np.random.RandomState(0)

    def step():
        data, label = batch_data(rng)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            logits = model(torch.as_tensor(data.T))
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, LABELS).float(),
                                                     torch.as_tensor(label.T).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def worker(name, batches):
    step = torch_step(name.endswith("bf16")) if name.startswith("pytorch") else mxnet_step(name)
    step()  # warm-up: graph binding, oneDNN primitive creation
    step()
    tic = time.perf_counter()
    for _ in range(batches):
        step()
    seconds = (time.perf_counter() - tic) / batches
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"samples_per_s": BATCH / seconds, "seconds_per_batch": seconds, "peak_mb": peak_mb}))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown CPU"


def overheads():
    """Seconds per batch spent on the iterator, the metric, and (per epoch) a checkpoint."""
    import mxnet as mx
    import bucket_io
    import checkpoint
    import reference
    import callbacks
    import lstm
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "text.txt")
        rng = np.random.RandomState(0)
        chars = np.array(list("abcdefghijklmnopqrstuvwxyz ,.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
        with open(corpus, "w") as f:
            for _ in range(2000):
                f.write("".join(rng.choice(chars, SEQ)) + "\n")
        vocab = bucket_io.build_vocab(corpus)
        it = bucket_io.BucketSentenceIter(corpus, vocab, [SEQ], BATCH, lstm.init_states(LAYERS, BATCH, HIDDEN))
        tic = time.perf_counter()
        batches = list(it)
        iterator = (time.perf_counter() - tic) / len(batches)
        metric = callbacks.CharPerplexity()
        pred = mx.nd.array(rng.dirichlet(np.ones(LABELS), size=SEQ * BATCH))
        tic = time.perf_counter()
        for batch in batches[:20]:
            metric.update(batch.label, [pred])
        metric_cost = (time.perf_counter() - tic) / 20
        params = {k: mx.nd.array(v) for k, v in reference.random_params(LAYERS, LABELS, HIDDEN, EMBED, LABELS).items()}
        tic = time.perf_counter()
        checkpoint.save_checkpoint(os.path.join(tmp, "ck"), 1, None, params, {})
        save = time.perf_counter() - tic
    return iterator, metric_cost, save


def main():
    global BATCH, SEQ, DROPOUT, WEIGHT_DROP
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=BATCH, help="streams a batch (the tutorial's: 32)")
    p.add_argument("--seq-len", type=int, default=SEQ, help="steps a sample (the tutorial's: 129)")
    p.add_argument("--dropout", type=float, default=DROPOUT, help="0: the fused backend runs all layers as one RNN")
    p.add_argument("--weight-drop", type=float, default=WEIGHT_DROP, help="train_obama's --weight-drop (MXNet's graphs)")
    p.add_argument("--only", nargs="+", choices=CONTENDERS, help="time only these contenders")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    BATCH, SEQ, DROPOUT, WEIGHT_DROP = args.batch_size, args.seq_len, args.dropout, args.weight_drop
    if args.worker:
        return worker(args.worker, args.batches)
    contenders = list(args.only or CONTENDERS)
    if any(name.startswith("pytorch") for name in contenders):
        try:
            import torch  # noqa: F401
        except ImportError:
            print("(torch is not installed: no PyTorch figures; pip install torch==2.13.0)")
            contenders = [name for name in contenders if not name.startswith("pytorch")]
    if device.bf16_unavailable_reason():
        print("(no bf16 figures: %s)" % device.bf16_unavailable_reason())
        contenders = [name for name in contenders if not name.endswith("bf16")]
    best = {name: None for name in contenders}
    for _ in range(args.rounds):
        for name in contenders:
            out = subprocess.run([sys.executable, __file__, "--worker", name, "--batches", str(args.batches),
                                  "--batch-size", str(BATCH), "--seq-len", str(SEQ), "--dropout", str(DROPOUT),
                                  "--weight-drop", str(WEIGHT_DROP)],
                                 capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            if best[name] is None or result["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = result
    import mxnet as mx
    print("%s, %d cores, %s, %s, mxnet %s" % (time.strftime("%Y-%m-%d"), os.cpu_count(), platform.machine(),
                                              cpu_model(), mx.__version__))
    print("CPU flags: %s" % " ".join(sorted(f for f in device.cpu_flags() if "bf16" in f or "amx" in f or f == "avx512f")))
    print("batches of %d samples of %d steps, dropout %g, weight drop %g" % (BATCH, SEQ, DROPOUT, WEIGHT_DROP))
    print("%-12s %10s %9s %9s %11s %9s" % ("backend", "samples/s", "s/batch", "peak MB", "vs pytorch", "vs fused"))
    for name, r in best.items():
        ratios = ["%.2fx" % (r["samples_per_s"] / best[other]["samples_per_s"]) if other in best else "-"
                  for other in ("pytorch", "fused")]
        print("%-12s %10.1f %9.2f %9.0f %11s %9s" % (name, r["samples_per_s"], r["seconds_per_batch"], r["peak_mb"],
                                                   *ratios))
    if "fused" not in best:
        return
    iterator, metric_cost, save = overheads()
    batch = best["fused"]["seconds_per_batch"]
    print("around a batch: iterator %.1f ms (%.2f%%), metric %.1f ms (%.2f%%), checkpoint %.0f ms once an epoch"
          % (iterator * 1e3, 100 * iterator / batch, metric_cost * 1e3, 100 * metric_cost / batch, save * 1e3))


if __name__ == "__main__":
    main()
