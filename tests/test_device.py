"""The device choice for each case, with MXNet's and the driver's answers replaced."""
import os
import shutil
import subprocess
import sys

import mxnet as mx
import pytest

import device
from device import DeviceError, choose_contexts


class FakeProbe:
    def __init__(self, cuda=True, gpus=1, capability=(8, 6), missing_driver=None):
        self.cuda, self.gpus, self.capability = cuda, gpus, capability
        self.missing = missing_driver

    def missing_driver(self):
        return self.missing

    def cuda_build(self):
        return self.cuda

    def num_gpus(self):
        return self.gpus

    def compute_capability(self, index):
        if isinstance(self.capability, Exception):
            raise self.capability
        return self.capability


def test_cpu_wheel_uses_the_cpu_and_says_why():
    contexts, why = choose_contexts(probe=FakeProbe(cuda=False))
    assert contexts == [mx.cpu()] and "CPU build" in why


def test_no_gpu_uses_the_cpu():
    contexts, why = choose_contexts(probe=FakeProbe(gpus=0))
    assert contexts == [mx.cpu()] and "sees no GPU" in why


@pytest.mark.parametrize("capability", [(5, 2), (6, 1), (7, 5), (8, 0), (8, 9)])
def test_supported_gpu_is_the_default(capability):
    contexts, why = choose_contexts(probe=FakeProbe(capability=capability))
    assert contexts == [mx.gpu(0)] and why == "using gpu(0)"


@pytest.mark.parametrize("capability", [(9, 0), (10, 0), (3, 7)])
def test_unsupported_gpu_falls_back_to_the_cpu(capability):
    contexts, why = choose_contexts(probe=FakeProbe(capability=capability))
    assert contexts == [mx.cpu()]
    assert "compute capability %d.%d" % capability in why and "no kernels" in why


def test_driver_failure_falls_back_to_the_cpu():
    contexts, why = choose_contexts(probe=FakeProbe(capability=OSError("libcuda.so.1: cannot open")))
    assert contexts == [mx.cpu()] and "libcuda.so.1" in why


def test_missing_driver_falls_back_to_the_cpu():
    contexts, why = choose_contexts(probe=FakeProbe(gpus=0, missing_driver="there is no NVIDIA driver"))
    assert contexts == [mx.cpu()] and "no NVIDIA driver" in why
    with pytest.raises(DeviceError, match="no NVIDIA driver"):
        choose_contexts(gpus=[0], probe=FakeProbe(gpus=0, missing_driver="there is no NVIDIA driver"))


def test_explicit_gpus_are_used_or_refused():
    contexts, _ = choose_contexts(gpus=[0, 1], probe=FakeProbe(gpus=2))
    assert contexts == [mx.gpu(0), mx.gpu(1)]
    with pytest.raises(DeviceError, match="no GPU 1"):
        choose_contexts(gpus=[0, 1], probe=FakeProbe(gpus=1))
    with pytest.raises(DeviceError, match="compute capability 9.0"):
        choose_contexts(gpus=[0], probe=FakeProbe(capability=(9, 0)))
    with pytest.raises(DeviceError, match="CPU build"):
        choose_contexts(gpus=[0], probe=FakeProbe(cuda=False))


def test_cpu_flag_wins():
    assert choose_contexts(cpu=True, probe=FakeProbe())[0] == [mx.cpu()]


def test_parse_gpu_list():
    assert device.parse_gpu_list("0,1") == [0, 1]
    for bad in ("a", "", "-1", "0;1"):
        with pytest.raises(DeviceError):
            device.parse_gpu_list(bad)


def test_real_probe_on_this_machine():
    """Whatever this machine has, the choice is made without an exception."""
    contexts, why = choose_contexts()
    assert len(contexts) == 1 and why


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_nvidia_package_libraries_become_visible_by_soname(tmp_path):
    """A fake site-packages/nvidia/*/lib: after loading, the library is found by its soname alone."""
    lib_dir = tmp_path / "site" / "nvidia" / "fake_runtime" / "lib"
    lib_dir.mkdir(parents=True)
    source = tmp_path / "fake.c"
    source.write_text("int fake_cuda_version(void) { return 11020; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libfakecudart.so.11.0", "-o",
                    str(lib_dir / "libfakecudart.so.11.0"), str(source)], check=True)
    (lib_dir / "README").write_text("not a library")
    script = (
        "import ctypes, sys\n"
        "sys.path.insert(0, %r)\n"
        "import device\n"
        "try:\n"
        "    ctypes.CDLL('libfakecudart.so.11.0')\n"
        "    print('visible before')\n"
        "except OSError:\n"
        "    pass\n"
        "loaded = device.load_cuda_libraries([%r])\n"
        "print(len(loaded), ctypes.CDLL('libfakecudart.so.11.0').fake_cuda_version())\n"
    ) % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), str(tmp_path / "site"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "11020"]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_driver_stub_reports_no_device(tmp_path):
    """The libcuda.so.1 stand-in: a driver of version 0 that finds no device."""
    path = device.build_driver_stub(str(tmp_path))
    assert device.build_driver_stub(str(tmp_path)) == path  # built once
    script = (
        "import ctypes\n"
        "lib = ctypes.CDLL(%r)\n"
        "version = ctypes.c_int(7)\n"
        "print(lib.cuDriverGetVersion(ctypes.byref(version)), version.value, lib.cuInit(0))\n"
    ) % path
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["0", "0", "100"], result.stderr
    assert os.listdir(tmp_path) == ["libcuda.so.1"]


def test_bf16_needs_avx512_bf16_among_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\n")
    assert device.cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2", "avx512f"}
    assert "no AVX-512 bf16" in device.bf16_unavailable_reason({"avx2", "avx512f"})
    assert device.bf16_unavailable_reason({"avx512f", "avx512_bf16"}) is None
    assert device.cpu_flags(str(tmp_path / "missing")) == set()


def test_bf16_on_a_cpu_without_it_is_refused_before_anything_is_written(monkeypatch, tmp_path, capsys):
    import train_obama
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "fma"})
    prefix = tmp_path / "run" / "m"
    with pytest.raises(SystemExit) as stop:
        train_obama.main(["--bf16", "--rnn-backend", "fused", "--prefix", str(prefix), "--num-hidden", "16"])
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--bf16 needs a CPU with AVX-512 bf16" in errors[0]
    assert not (tmp_path / "run").exists()


def test_the_fused_backend_runs_on_onednn_3_on_the_cpu_only(monkeypatch):
    import onednn
    assert device.lstm_kernel([mx.cpu(0), mx.cpu(1)]) == "onednn"
    assert device.lstm_kernel([mx.gpu(0)]) == "mxnet"  # cuDNN
    monkeypatch.setattr(onednn, "library_path", lambda: None)  # the wheel missing: MXNet's own RNN
    assert device.lstm_kernel([mx.cpu()]) == "mxnet"
