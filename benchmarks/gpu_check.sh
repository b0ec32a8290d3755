#!/usr/bin/env bash
# The GPU path on a machine with an NVIDIA GPU (a script to run by hand, not a test):
# a fresh environment from requirements-gpu.txt, MXNet's view of the GPU, the device choice,
# and 20 training batches of the tutorial's model on whatever was chosen.
#   bash benchmarks/gpu_check.sh [CORPUS]        (default: the corpus look-up, data/obama.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-$(mktemp -d)/venv}"
work="$(mktemp -d)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r requirements-gpu.txt
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not available"
"$venv/bin/python" - "${1:-}" "$work/slice.txt" <<'PY'
import sys, time
import device, bucket_io
import mxnet as mx
print("mxnet", mx.__version__, "| CUDA build:", mx.runtime.Features().is_enabled("CUDA"),
      "| cuDNN:", mx.runtime.Features().is_enabled("CUDNN"), "| GPUs seen:", mx.context.num_gpus())
contexts, why = device.choose_contexts()
print("device choice:", contexts, "-", why)
if contexts[0].device_type == "gpu":
    tic = time.time()
    x = mx.nd.ones((4096, 4096), ctx=contexts[0])
    print("4096^2 matmul on the GPU:", float(mx.nd.dot(x, x)[0, 0].asscalar()), "in %.2f s" % (time.time() - tic))
corpus = bucket_io.find_corpus(sys.argv[1] or None)
lines = open(corpus, encoding="utf-8").read().split("\n")[:640]   # 20 batches of 32
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
"$venv/bin/python" train_obama.py --data "$work/slice.txt" --prefix "$work/ck/obama" --log-every 5 --val-frac 0
echo "gpu_check: done"
