"""Generation speed (a benchmark script, not a test): characters per second of the tutorial's
model (3x512 LSTM, embed 256, 84 labels, random weights) stepped one character at a time.

Contenders, each in its own process (one's threads left spinning slow the next in the same
process), alternated round by round in the same run:
  tutorial  the tutorial's one-step graph of ~40 operators (lstm_inference_symbol)
  fused     LSTMInferenceModel on MXNet: one fused mx.sym.RNN per layer
  onednn    LSTMInferenceModel on oneDNN 3, the weights kept in its layout (generate.py's default on the CPU)
  onnx      ONNXInferenceModel: the file export_onnx.py writes, on onnxruntime (generate.py --onnx)
  pytorch   nn.LSTM stepped the same way (only when torch is installed)
It also times `generate.py`, with a checkpoint and with --onnx, from process start to its first
generated character.

    python benchmarks/bench_generate.py [--rounds 3] [--steps 300]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")  # as generate.py runs
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))  # reference.py

import mxnet as mx  # noqa: E402

import checkpoint  # noqa: E402
import export_onnx  # noqa: E402
import reference  # noqa: E402
from lstm import lstm_inference_symbol  # noqa: E402
from onnx_inference import ONNXInferenceModel  # noqa: E402
from rnn_model import LSTMInferenceModel  # noqa: E402

LAYERS, HIDDEN, EMBED, LABELS = 3, 512, 256, 84


class TutorialStep:
    """The tutorial's inference loop: the unrolled one-step graph, states copied back each step."""

    def __init__(self, params, streams):
        self.sym = lstm_inference_symbol(LAYERS, LABELS, HIDDEN, EMBED, LABELS)
        shapes = {"data": (streams,)}
        self.names = []
        for i in range(LAYERS):
            self.names += ["l%d_init_c" % i, "l%d_init_h" % i]
            shapes["l%d_init_c" % i] = shapes["l%d_init_h" % i] = (streams, HIDDEN)
        self.ex = self.sym.simple_bind(mx.cpu(), grad_req="null", **shapes)
        for name, value in params.items():
            self.ex.arg_dict[name][:] = value

    def forward(self, ids):
        self.ex.arg_dict["data"][:] = ids
        self.ex.forward(is_train=False)
        for name, out in zip(self.names, self.ex.outputs[1:]):
            out.copyto(self.ex.arg_dict[name])
        return self.ex.outputs[0].asnumpy()


def model_step(kernel):
    """LSTMInferenceModel's step on `kernel` ("mxnet" or "onednn")."""
    def make(params, streams):
        return LSTMInferenceModel(LAYERS, LABELS, HIDDEN, EMBED, LABELS, batch_size=streams, kernel=kernel,
                                  arg_params={k: mx.nd.array(v) for k, v in params.items()})
    return make


class TorchStep:
    def __init__(self, params, streams):
        import torch
        self.torch = torch
        self.embed = torch.nn.Embedding(LABELS, EMBED)
        self.lstm = torch.nn.LSTM(EMBED, HIDDEN, LAYERS)
        self.cls = torch.nn.Linear(HIDDEN, LABELS)
        self.state = None

    def forward(self, ids):
        torch = self.torch
        with torch.inference_mode():
            x = self.embed(torch.as_tensor(ids, dtype=torch.long)).unsqueeze(0)
            out, self.state = self.lstm(x, self.state)
            return torch.softmax(self.cls(out[0]), dim=-1).numpy()


def chars_per_second(step, streams, steps):
    ids = np.random.RandomState(0).randint(1, LABELS, size=streams)
    for _ in range(10):
        step.forward(ids)
    tic = time.perf_counter()
    for _ in range(steps):
        prob = step.forward(ids)
        ids = prob.argmax(axis=1)
    return steps * streams / (time.perf_counter() - tic)


def time_to_first_character(*model):
    """Seconds from starting `generate.py` on `model` (its options) to its first generated character."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "generate.py")
    tic = time.perf_counter()
    proc = subprocess.Popen([sys.executable, script, "The United States", "--stream", "--length", "50"] + list(model),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(len("The United States") + 1)
    first = time.perf_counter() - tic
    proc.communicate()
    return first


CONTENDERS = {"tutorial": TutorialStep, "fused": model_step("mxnet"), "onednn": model_step("onednn"),
              "onnx": None, "pytorch": TorchStep}


def worker(name, streams, steps, onnx_file):
    """Prints the chars/s of one contender, in this process of its own."""
    if name == "pytorch":
        import torch
        torch.set_num_threads(os.cpu_count())
    if name == "onnx":
        step = ONNXInferenceModel(onnx_file, batch_size=streams)
    else:
        step = CONTENDERS[name](reference.random_params(LAYERS, LABELS, HIDDEN, EMBED, LABELS, scale=0.05), streams)
    print(json.dumps(chars_per_second(step, streams, steps)))


def write_model(folder):
    """A checkpoint of the tutorial's size (random weights) and its ONNX export: (prefix, onnx file)."""
    prefix, onnx_file = os.path.join(folder, "bench"), os.path.join(folder, "bench.onnx")
    params = reference.random_params(LAYERS, LABELS, HIDDEN, EMBED, LABELS, scale=0.05)
    checkpoint.save_checkpoint(prefix, 1, None, {k: mx.nd.array(v) for k, v in params.items()}, {})
    checkpoint.save_vocab(prefix, {chr(32 + i): i + 1 for i in range(LABELS - 1)})
    export_onnx.export(prefix, 1, onnx_file)
    return prefix, onnx_file


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), args.steps, args.worker[2])
    with tempfile.TemporaryDirectory() as folder:
        compare(args, *write_model(folder))


def compare(args, prefix, onnx_file):
    """Prints each contender's speed at 1 and 32 streams, then generate.py's start-up."""
    contenders = list(CONTENDERS)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("(torch is not installed: no PyTorch figures)")
        contenders.remove("pytorch")
    print("%s, %d cores, %s, mxnet %s, %s" % (time.strftime("%Y-%m-%d"), os.cpu_count(), platform.processor()
                                              or platform.machine(), mx.__version__, "MXNET_ENGINE_TYPE=%s"
                                              % os.environ.get("MXNET_ENGINE_TYPE", "default")))
    print("%-9s %8s %14s %10s %10s %10s" % ("contender", "streams", "chars/s (best)", "vs fused", "vs onednn",
                                            "vs pytorch"))
    for streams in (1, 32):
        steps = args.steps if streams == 1 else max(args.steps // 4, 20)
        best = {name: 0.0 for name in contenders}
        for _ in range(args.rounds):
            for name in contenders:
                out = subprocess.run([sys.executable, __file__, "--worker", name, str(streams), onnx_file,
                                      "--steps", str(steps)],
                                     capture_output=True, text=True, check=True).stdout
                best[name] = max(best[name], json.loads(out.strip().splitlines()[-1]))
        for name, speed in best.items():
            ratio = "%.2fx" % (speed / best["pytorch"]) if "pytorch" in best else "-"
            print("%-9s %8d %14.0f %9.2fx %9.2fx %10s" % (name, streams, speed, speed / best["fused"],
                                                          speed / best["onednn"], ratio))
    for name, model in [("a checkpoint", ["--prefix", prefix]), ("--onnx", ["--onnx", onnx_file])]:
        print("generate.py, %s: first generated character after %.2f s" % (
            name, min(time_to_first_character(*model) for _ in range(args.rounds))))


if __name__ == "__main__":
    main()
