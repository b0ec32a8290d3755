"""Where MXNet runs: the CUDA libraries it needs, and the choice between the CPU and GPUs.

Import this module before `mxnet`: with `mxnet-cu112` installed from requirements-gpu.txt,
MXNet looks up the CUDA 11 libraries by soname, and they live in the `nvidia-*-cu11` packages
under site-packages/nvidia/*/lib, which the dynamic loader does not search. Loading them here
first (RTLD_GLOBAL) makes them visible. With the CPU wheel this does nothing.
"""
import ctypes
import glob
import importlib.metadata
import os
import sys

# MXNet's GPU kernels (mxnet-cu112 1.9.1) are built for sm_50, 60, 70, 80 and 86 with no PTX;
# a cubin runs on any later minor revision of its major, so majors 5 to 8 (Maxwell to Ada) work.
SUPPORTED_CC_MAJORS = (5, 6, 7, 8)


class DeviceError(RuntimeError):
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


if _gpu_wheel_installed():
    load_cuda_libraries()


class MXNetProbe:
    """What the installed MXNet and the NVIDIA driver say; tests replace it."""

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
    if cpu:
        return [mx.cpu()], "using the CPU (--cpu)"
    probe = probe or MXNetProbe()
    try:
        reason = _unusable_reason(probe, gpus or [0])
    except (OSError, DeviceError) as err:
        reason = "the GPU cannot be queried: %s" % err
    if gpus:
        if reason:
            raise DeviceError("cannot train on GPU %s: %s" % (",".join(map(str, gpus)), reason))
        return [mx.gpu(i) for i in gpus], "using GPU %s" % ",".join(map(str, gpus))
    if reason:
        return [mx.cpu()], "using the CPU: %s" % reason
    return [mx.gpu(0)], "using gpu(0)"


def parse_gpu_list(text):
    """'0,1' -> [0, 1]."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DeviceError("--gpus takes GPU ids separated by commas, such as 0,1; got %r" % text)
    if not ids or min(ids) < 0:
        raise DeviceError("--gpus takes GPU ids separated by commas, such as 0,1; got %r" % text)
    return ids
