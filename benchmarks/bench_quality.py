"""Time to quality (a benchmark script, not a test): trains our recipe with train_obama.py and,
where torch is installed, the same model in PyTorch under the same protocol, one after the other,
each for --minutes. Prints both curves (minutes, epoch, held-out nats a character) and the minutes
each took to reach 1.30 and 1.20 nats. With --bf16 both sides train in bfloat16: ours with --bf16,
PyTorch under torch.autocast("cpu", dtype=torch.bfloat16).

The protocol, for both: obama.txt as one running text (its wrap newlines joined), the last 5% of
its lines held out; --batch-size contiguous streams, --seq-len steps a batch, the LSTM states
carried from batch to batch without gradient and zeroed at each epoch; a 3x512 LSTM over a
256-wide embedding, dropout 0.2; Adam. The held-out loss counts every held-out character but the
first of each stream, in nats; the minutes include evaluation.

    python benchmarks/bench_quality.py --minutes 40
    python benchmarks/bench_quality.py --minutes 40 --skip-torch --ours "--batch-size 64 --learning-rate 0.003"
    python benchmarks/bench_quality.py --minutes 22 --skip-torch --seq-len 64 --ours "--lr-schedule cosine --num-epoch 3"
    python benchmarks/bench_quality.py --minutes 20 --bf16

Another --lr-schedule in --ours takes the place of the recipe's plateau (the flags after win).
"""
import argparse
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RECIPE = ["--stateful", "--rnn-backend", "fused", "--optimizer", "adam", "--learning-rate", "0.002", "--wd", "0",
          "--clip-gradient", "5", "--lr-schedule", "plateau", "--dropout", "0.2", "--num-epoch", "1000", "--log-every", "50"]


def ours(minutes, seq_len, batch_size, extra, prefix=None):
    """Runs train_obama.py until `minutes` are up; returns [(minutes, epoch, held-out nats)]."""
    prefix = prefix or os.path.join(tempfile.mkdtemp(), "obama")
    recipe = list(RECIPE)
    command = [sys.executable, os.path.join(REPO, "train_obama.py"), "--prefix", prefix, "--seq-len", str(seq_len),
               "--batch-size", str(batch_size)] + recipe + extra
    print("ours:", " ".join(command[1:]), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    start, curve = time.time(), []
    stop = threading.Timer(minutes * 60, proc.send_signal, [signal.SIGTERM])  # a checkpoint, then it ends
    stop.start()
    last = ""
    try:
        for line in proc.stdout:
            last = line
            found = re.search(r"Epoch\[(\d+)\] Validation-perplexity=([\d.]+)", line)
            if found:
                curve.append(((time.time() - start) / 60, int(found.group(1)) + 1, math.log(float(found.group(2)))))
                print("  ours   %6.1f min  epoch %2d  %.3f nats" % curve[-1], flush=True)
    finally:
        stop.cancel()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    if not curve:
        print("  ours stopped before its first evaluation:", last.strip(), flush=True)
    return curve


def torch_batches(text_ids, batch_size, seq_len, pad_last):
    import bucket_io
    it = bucket_io.StreamIter(text_ids, batch_size, seq_len, [], pad_last=pad_last)
    return [(batch.data[0].asnumpy().astype("int64"), batch.label[0].asnumpy().astype("int64")) for batch in it]


def pytorch(minutes, seq_len, batch_size, bf16=False):
    """The same model and protocol in PyTorch (its products in bf16 with `bf16`); returns
    [(minutes, epoch, held-out nats)]."""
    import torch
    import bucket_io
    torch.manual_seed(0)
    content = bucket_io.read_content(bucket_io.find_corpus())
    vocab = bucket_io.vocab_from_text(content)
    train_text, val_text = bucket_io.stream_texts(content, 0.05)
    train = torch_batches(bucket_io.text2id(train_text, vocab), batch_size, seq_len, False)
    val = torch_batches(bucket_io.text2id(val_text, vocab), batch_size, seq_len, True)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(len(vocab) + 1, 256)
            self.lstm = torch.nn.LSTM(256, 512, 3, dropout=0.2, batch_first=True)
            self.drop = torch.nn.Dropout(0.2)
            self.cls = torch.nn.Linear(512, len(vocab) + 1)

        def forward(self, x, state):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out, state = self.lstm(self.embed(x), state)
                logits = self.cls(self.drop(out))
            return logits.float(), tuple(s.float() for s in state)

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0, reduction="sum")
    start, curve, epoch = time.time(), [], 0
    while time.time() - start < minutes * 60:
        model.train()
        state = None
        for data, label in train:
            logits, state = model(torch.from_numpy(data), state)
            state = tuple(s.detach() for s in state)
            labels = torch.from_numpy(label)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)) / (labels > 0).sum()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            if time.time() - start > minutes * 60:
                break
        else:
            epoch += 1
            curve.append(((time.time() - start) / 60, epoch, evaluate(model, val, loss_fn)))
            print("  torch  %6.1f min  epoch %2d  %.3f nats" % curve[-1], flush=True)
    return curve


def evaluate(model, batches, loss_fn):
    import torch
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for data, label in batches:
            logits, state = model(torch.from_numpy(data), state)
            labels = torch.from_numpy(label)
            total += float(loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)))
            count += int((labels > 0).sum())
    return total / count


def reached(curve, nats):
    """(the first evaluation at or below `nats`, when the curve crossed it read linearly from the
    evaluation before), in minutes; None where it was not reached."""
    for i, (minutes, _, loss) in enumerate(curve):
        if loss <= nats:
            if i == 0:
                return minutes, minutes
            before, before_loss = curve[i - 1][0], curve[i - 1][2]
            return minutes, before + (minutes - before) * (before_loss - nats) / (before_loss - loss)
    return None


def minutes_to(curve, nats):
    found = reached(curve, nats)
    return "%.1f min (crossed at about %.1f)" % found if found else "not reached"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=40, help="training time for each contender")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ours", default="", help="more flags for train_obama.py")
    p.add_argument("--prefix", help="keep our checkpoints under this prefix (default: a temporary folder)")
    p.add_argument("--bf16", action="store_true", help="both sides in bfloat16 (ours: --bf16; PyTorch: autocast)")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-ours", action="store_true")
    args = p.parse_args()
    cpu = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")][0]
    print("%s, %d cores, %s, %s" % (cpu, os.cpu_count(), platform.python_version(), time.strftime("%Y-%m-%d %H:%M")))
    curves = {}
    if not args.skip_ours:
        curves["ours"] = ours(args.minutes, args.seq_len, args.batch_size, args.ours.split() + ["--bf16"] * args.bf16,
                                 args.prefix)
    if not args.skip_torch:
        try:
            import torch
            torch.set_num_threads(os.cpu_count())
            curves["PyTorch %s" % torch.__version__] = pytorch(args.minutes, args.seq_len, args.batch_size, args.bf16)
        except ImportError:
            print("torch is not installed: pip install torch==2.13.0 to compare")
    for name, curve in curves.items():
        print("%s: 1.30 nats after %s, 1.20 after %s; best %.3f" % (
            name, minutes_to(curve, 1.30), minutes_to(curve, 1.20), min((c[2] for c in curve), default=math.inf)))
    if len(curves) == 2:
        for nats in (1.30, 1.20):
            ours_time, torch_time = (reached(curve, nats) for curve in curves.values())
            if ours_time and torch_time:
                print("ours / PyTorch to %.2f nats: %.2fx at the evaluations, %.2fx where the curves cross" % (
                    nats, ours_time[0] / torch_time[0], ours_time[1] / torch_time[1]))


if __name__ == "__main__":
    main()
