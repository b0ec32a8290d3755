"""Where MXNet runs: the CUDA libraries it needs, and the choice between the CPU and GPUs.

Import this module before `mxnet`: with `mxnet-cu112` installed from requirements-gpu.txt,
MXNet looks up the CUDA 11 libraries by soname, and they live in the `nvidia-*-cu11` packages
under site-packages/nvidia/*/lib, which the dynamic loader does not search. Loading them here
first (RTLD_GLOBAL) makes them visible. With the CPU wheel this does nothing.
"""
import ctypes
import glob
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile

import cli

# MXNet's GPU kernels (mxnet-cu112 1.9.1) are built for sm_50, 60, 70, 80 and 86 with no PTX;
# a cubin runs on any later minor revision of its major, so majors 5 to 8 (Maxwell to Ada) work.
SUPPORTED_CC_MAJORS = (5, 6, 7, 8)


class DeviceError(cli.Refused, RuntimeError):
    """The asked-for device cannot be used."""


def _gpu_wheel_installed():
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("mxnet-cu"):
            return True
    return False


def cuda_library_dirs(roots=None):
    """The lib folders of the pip-installed NVIDIA packages under `roots` (default: sys.path)."""
    dirs = []
    for root in roots if roots is not None else sys.path:
        dirs += sorted(glob.glob(os.path.join(root or ".", "nvidia", "*", "lib")))
    return dirs


def load_cuda_libraries(roots=None):
    """Loads every shared library in the NVIDIA packages' lib folders, globally.

    Libraries that need one not loaded yet fail at first; they are retried until no more load.
    Returns the paths loaded.
    """
    pending = [path for d in cuda_library_dirs(roots) for path in sorted(glob.glob(os.path.join(d, "*.so*")))]
    loaded = []
    while pending:
        failed = []
        for path in pending:
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                loaded.append(path)
            except OSError:
                failed.append(path)
        if len(failed) == len(pending):
            break
        pending = failed
    return loaded


# Stands in for the NVIDIA driver's libcuda.so.1 where there is none, so that mxnet-cu112 can load
# and run on the CPU: the CUDA runtime sees a driver of version 0 and reports no GPU.
DRIVER_STUB_SOURCE = r"""
#define NO_DEVICE 100
int cuDriverGetVersion(int *version) { *version = 0; return 0; }
int cuInit(unsigned int flags) { return NO_DEVICE; }
int cuDeviceGetCount(int *count) { *count = 0; return NO_DEVICE; }
int cuDeviceGet(void *device, int ordinal) { return NO_DEVICE; }
int cuDeviceGetAttribute(int *value, int attribute, int device) { return NO_DEVICE; }
int cuDevicePrimaryCtxRetain(void *ctx, int device) { return NO_DEVICE; }
int cuGetErrorString(int error, const char **text) { *text = "no NVIDIA driver"; return 0; }
int cuGraphKernelNodeGetParams(void *node, void *params) { return NO_DEVICE; }
int cuGraphNodeGetType(void *node, void *type) { return NO_DEVICE; }
int cuLaunchKernel(void) { return NO_DEVICE; }
int cuModuleGetFunction(void *function, void *module, const char *name) { return NO_DEVICE; }
int cuModuleLoadData(void *module, const void *image) { return NO_DEVICE; }
int cuModuleLoadDataEx(void *module, const void *image, unsigned n, void *options, void **values) { return NO_DEVICE; }
int cuModuleUnload(void *module) { return NO_DEVICE; }
"""


def driver_available():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def build_driver_stub(cache_dir=None):
    """Compiles the driver stand-in once (with the system's C compiler) and returns its path."""
    cache_dir = cache_dir or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                          "char-rnn-mxnet")
    target = os.path.join(cache_dir, "libcuda.so.1")
    if os.path.exists(target):
        return target
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise DeviceError("mxnet-cu112 is installed but there is no NVIDIA driver (libcuda.so.1), and no C compiler "
                          "to build its stand-in for the CPU; install requirements.txt (the CPU build) instead")
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        source = os.path.join(tmp, "libcuda_stub.c")
        with open(source, "w") as f:
            f.write(DRIVER_STUB_SOURCE)
        built = os.path.join(tmp, "libcuda.so.1")
        result = subprocess.run([compiler, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", built, source],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise DeviceError("cannot build the stand-in for libcuda.so.1: %s" % result.stderr.strip()[:200])
        os.replace(built, target)
    return target


NO_DRIVER_REASON = None  # set when the stand-in replaces a missing driver
if _gpu_wheel_installed():
    load_cuda_libraries()
    if not driver_available():
        try:
            ctypes.CDLL(build_driver_stub(), mode=ctypes.RTLD_GLOBAL)
        except DeviceError as err:
            raise SystemExit("error: %s" % err)
        NO_DRIVER_REASON = "there is no NVIDIA driver (libcuda.so.1 not found)"


class MXNetProbe:
    """What the installed MXNet and the NVIDIA driver say; tests replace it."""

    def missing_driver(self):
        return NO_DRIVER_REASON

    def cuda_build(self):
        import mxnet as mx
        return mx.runtime.Features().is_enabled("CUDA")

    def num_gpus(self):
        import mxnet as mx
        return mx.context.num_gpus()

    def compute_capability(self, index):
        cuda = ctypes.CDLL("libcuda.so.1")
        handle, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(handle), index) != 0:
            raise DeviceError("the NVIDIA driver cannot open GPU %d" % index)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, handle)  # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, handle)  # COMPUTE_CAPABILITY_MINOR
        return major.value, minor.value


def _unusable_reason(probe, gpu_ids):
    """Why MXNet cannot run on these GPUs, or None when it can."""
    if not probe.cuda_build():
        return "the installed MXNet is a CPU build (install requirements-gpu.txt for the GPU)"
    if probe.missing_driver():
        return probe.missing_driver()
    count = probe.num_gpus()
    if count == 0:
        return "MXNet sees no GPU"
    for index in gpu_ids:
        if index >= count:
            return "there is no GPU %d (MXNet sees %d)" % (index, count)
        major, minor = probe.compute_capability(index)
        if major not in SUPPORTED_CC_MAJORS:
            return ("GPU %d has compute capability %d.%d, for which mxnet-cu112 1.9.1 has no kernels "
                    "(it runs on 5.x to 8.x, Maxwell to Ada)" % (index, major, minor))
    return None


def choose_contexts(gpus=None, cpu=False, probe=None):
    """The MXNet contexts to train on, and one line saying why.

    `gpus` is a list of GPU ids asked for explicitly (an error when unusable); with neither
    `gpus` nor `cpu`, gpu(0) is used when MXNet can run on it, else the CPU.
    """
    import mxnet as mx
    from mxnet.base import MXNetError
    if cpu:
        return [mx.cpu()], "using the CPU (--cpu)"
    probe = probe or MXNetProbe()
    try:
        reason = _unusable_reason(probe, gpus or [0])
    except (OSError, DeviceError, MXNetError) as err:
        reason = "the GPU cannot be queried: %s" % err
    if gpus:
        if reason:
            raise DeviceError("cannot use GPU %s: %s" % (",".join(map(str, gpus)), reason))
        return [mx.gpu(i) for i in gpus], "using GPU %s" % ",".join(map(str, gpus))
    if reason:
        return [mx.cpu()], "using the CPU: %s" % reason
    return [mx.gpu(0)], "using gpu(0)"


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The feature flags of the CPU, as the kernel lists them (empty where it cannot be read)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def bf16_unavailable_reason(flags=None):
    """Why the CPU cannot run oneDNN's bfloat16 LSTM, or None when it can: oneDNN builds bfloat16
    primitives only on CPUs with AVX-512 bf16 (and AMX)."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_bf16" not in flags:
        return "this CPU has no AVX-512 bf16 (avx512_bf16 is not among its flags in /proc/cpuinfo)"
    return None


def lstm_kernel(contexts):
    """What runs the LSTM on these contexts, in training's fused backend and in generation's step
    (rnn_model.LSTMInferenceModel): oneDNN 3 (onednn.py, from the onednn-cpu-gomp wheel) on the CPU,
    where it is faster than mx.sym.RNN (BENCHMARKS.md: in training, and in generation at 1, 8 and 32
    streams) and is installed; mx.sym.RNN elsewhere (cuDNN on a GPU)."""
    import onednn
    if all(ctx.device_type == "cpu" for ctx in contexts) and onednn.library_path() is not None:
        return "onednn"
    return "mxnet"


def memory_bytes():
    """The machine's memory (what the CPU trains in)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def contexts_for(gpus_text=None, cpu=False):
    """The contexts for the commands' --gpus and --cpu flags, the choice logged in one line."""
    contexts, why = choose_contexts(gpus=parse_gpu_list(gpus_text) if gpus_text else None, cpu=cpu)
    logging.info("Device: %s", why)
    return contexts


def parse_gpu_list(text):
    """'0,1' -> [0, 1]."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DeviceError("--gpus takes GPU ids separated by commas, such as 0,1; got %r" % text)
    if not ids or min(ids) < 0:
        raise DeviceError("--gpus takes GPU ids separated by commas, such as 0,1; got %r" % text)
    return ids
