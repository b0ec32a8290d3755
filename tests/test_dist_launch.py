"""dist_launch.py: training on MXNet's parameter server, a scheduler, one server and two workers
on 127.0.0.1, against one worker doing the same sums."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import checkpoint

import dist_launch
from conftest import REPO, TINY, run_command

# in order, without dropout or held-out lines, so that one worker can do the same sums as two
EXACT = ["--dropout", "0", "--val-frac", "0", "--no-shuffle", "--learning-rate", "0.1"]
B = 8  # TINY's batch size


def train(*argv, timeout=300):
    return run_command("train_obama.py", *TINY, *EXACT, *argv, timeout=timeout)


def launch(*argv, timeout=300):
    return run_command("dist_launch.py", *argv, *TINY, *EXACT, timeout=timeout)


def test_two_workers_match_one_worker_on_both_shares(small_corpus, tmp_path):
    lines = open(small_corpus, encoding="utf-8").read().split("\n")[:240]
    # a first line holding every character makes the vocabulary the same for any order of the rest
    first = "".join(sorted(set("".join(lines))))
    lines = [first] + lines[:239]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    prefix = str(tmp_path / "dist" / "m")
    dist = launch("--num-workers", "2", "--num-servers", "1", "--timeout", "240", "--kv-store", "dist_sync",
                  "--data", str(corpus), "--prefix", prefix, "--num-epoch", "2")
    assert dist.returncode == 0, dist.stdout[-3000:]
    assert "[worker 0]" in dist.stdout and "[worker 1]" in dist.stdout
    assert "Worker 1 of 2: 120 sentences, 15 batches of 8 an epoch" in dist.stdout
    # exactly one set of files, written by the first worker
    assert sorted(os.listdir(tmp_path / "dist")) == ["m-0001.params", "m-0002.params", "m-metrics.csv",
                                                     "m-run.json", "m-symbol.json", "m-vocab.json"]
    rows = open(prefix + "-metrics.csv").read().splitlines()
    assert len(rows) == 3
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert losses[1] < losses[0]

    # one worker, batches of 2B: batch i is worker 0's batch i followed by worker 1's
    share0, share1 = lines[:120], lines[120:]
    merged = []
    for i in range(15):
        merged += share0[i * B:(i + 1) * B] + share1[i * B:(i + 1) * B]
    merged_corpus = tmp_path / "merged.txt"
    merged_corpus.write_text("\n".join(merged) + "\n", encoding="utf-8")
    single_prefix = str(tmp_path / "single" / "m")
    single = train("--data", str(merged_corpus), "--prefix", single_prefix, "--batch-size", str(2 * B),
                   "--num-epoch", "2")
    assert single.returncode == 0, single.stderr[-3000:]
    assert checkpoint.load_vocab(single_prefix) == checkpoint.load_vocab(prefix)
    dist_params, _ = checkpoint.load_params(prefix, 2)
    single_params, _ = checkpoint.load_params(single_prefix, 2)
    # The same sums of the same gradients, added in another order (the server adds the workers'
    # gradients, the single worker sums inside one product): float32 rounding that 30 steps of
    # recurrent training amplify to ~1e-4 (measured: 1.2e-4 at most). A worker's gradient
    # missing or a batch out of place moves the parameters by ~1e-2 or more (the control below).
    for name, value in single_params.items():
        np.testing.assert_allclose(dist_params[name].asnumpy(), value.asnumpy(), atol=5e-4, rtol=0, err_msg=name)

    control_corpus = tmp_path / "share0.txt"
    control_corpus.write_text("\n".join(share0) + "\n", encoding="utf-8")
    control_prefix = str(tmp_path / "control" / "m")
    assert train("--data", str(control_corpus), "--prefix", control_prefix, "--batch-size", str(B),
                 "--num-epoch", "2").returncode == 0
    control, _ = checkpoint.load_params(control_prefix, 2)
    assert max(np.abs(control[k].asnumpy() - dist_params[k].asnumpy()).max() for k in control) > 1e-2

def test_a_failing_worker_stops_them_all(tmp_path):
    result = launch("--num-workers", "2", "--timeout", "100", "--data", str(tmp_path / "missing.txt"),
                    "--prefix", str(tmp_path / "m"), timeout=120)
    assert result.returncode == 2
    assert "corpus file not found" in result.stdout
    leftover = subprocess.run(["pgrep", "-f", "DMLC_ROLE|import mxnet"], capture_output=True, text=True).stdout
    assert leftover.strip() == ""


def test_the_launchers_flags_and_the_training_flags_go_their_ways():
    args, training = dist_launch.parse_args(["--num-workers", "3", "--data", "x.txt", "--kv-store=dist_async",
                                             "--timeout", "9", "--seed", "3"])
    assert (args.num_workers, args.num_servers, args.kv_store, args.timeout) == (3, 1, "dist_async", 9)
    assert training == ["--data", "x.txt", "--seed", "3"]


def test_timeout_stops_every_process(tmp_path):
    marker = tmp_path / "started"
    sleeper = [sys.executable, "-c", "import pathlib, time; pathlib.Path(%r).touch(); time.sleep(600)" % str(marker)]
    status = dist_launch.launch_local(sleeper, 2, 1, timeout=5)
    assert status != 0 and marker.exists()
    leftover = subprocess.run(["pgrep", "-f", "time.sleep\\(600\\)|import mxnet"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_stateful_training_gives_each_worker_its_own_streams(small_corpus, tmp_path):
    prefix = str(tmp_path / "m")
    dist = launch("--num-workers", "2", "--timeout", "200", "--data", small_corpus, "--prefix", prefix, "--stateful")
    assert dist.returncode == 0, dist.stdout[-3000:]
    # 38,700 characters in two parts, each in 8 streams of 2,418: 18 batches of 129 steps
    assert "[worker 0]" in dist.stdout and dist.stdout.count("Streams: 8 of 2418 characters, 18 batches") == 2
    assert checkpoint.epochs(prefix) == [1]


def left_running(*patterns):
    """The command lines of processes still running that match any of the patterns."""
    found = subprocess.run(["pgrep", "-af", "|".join(patterns)], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def wait_gone(*patterns, timeout=30):
    deadline = time.time() + timeout
    while left_running(*patterns) and time.time() < deadline:
        time.sleep(0.2)
    return left_running(*patterns)


def start_launcher(small_corpus, prefix):
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "dist_launch.py"), "--num-workers", "2", *TINY,
                             "--data", small_corpus, "--prefix", prefix, "--num-epoch", "50"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(r"\[worker 0\] .*Epoch\[0\] Batch \[0-5\]", line):
            return proc
    raise AssertionError("the workers did not train:\n" + "".join(lines[-40:]))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_launcher_keeps_worker_0s_checkpoint_and_leaves_nothing_running(small_corpus, tmp_path,
                                                                                      signum):
    prefix = str(tmp_path / "m")
    proc = start_launcher(small_corpus, prefix)
    proc.send_signal(signum)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, out[-3000:]
    assert wait_gone(str(tmp_path), "import mxnet") == []
    record = checkpoint.load_run(prefix)
    assert record["batch"] > 0 and os.path.exists(checkpoint.path("partial", prefix, record["epoch"])), out[-3000:]
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


def test_kill_9_to_the_launcher_leaves_nothing_running(small_corpus, tmp_path):
    proc = start_launcher(small_corpus, str(tmp_path / "m"))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert wait_gone(str(tmp_path), "import mxnet") == []


def test_a_scheduler_that_cannot_bind_its_port_ends_the_launch(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        marker = "sleep-%s" % tmp_path.name
        launch = ("import sys, dist_launch; dist_launch.free_port = lambda: %d; "
                  "sys.exit(dist_launch.launch_local([sys.executable, '-c', 'import time; time.sleep(600)', %r], 1, 1))"
                  % (taken.getsockname()[1], marker))
        result = subprocess.run([sys.executable, "-c", launch], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "the scheduler ended with status 1 before the workers were done" in result.stdout
    assert "bind failed" in result.stdout
    assert wait_gone(marker, "import mxnet") == []


def test_a_server_that_dies_ends_the_launch(small_corpus, tmp_path):
    proc = start_launcher(small_corpus, str(tmp_path / "m"))
    servers = [pid for pid in os.listdir("/proc") if pid.isdigit() and b"DMLC_ROLE=server" in environ(pid)
               and ("DMLC_PS_ROOT_PORT=" in environ(pid).decode(errors="replace"))
               and os.getsid(int(pid)) != os.getsid(0)]
    assert servers
    os.kill(int(servers[0]), signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "the server 0 ended with status 137 before the workers were done" in out, out[-2000:]
    assert wait_gone(str(tmp_path), "import mxnet") == []


def environ(pid):
    try:
        with open("/proc/%s/environ" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""
