"""Starts MXNet's parameter server on this machine for trying distributed training: a scheduler,
S servers and N workers on 127.0.0.1, configured by the DMLC_* variables, each worker running
train_obama.py with the training flags given here.

    python dist_launch.py --num-workers 2 --num-servers 1 --kv-store dist_sync [training flags]

Each process's lines are printed with its role and number in front. When a worker fails, all
the others are stopped; the exit status is the worst of the workers'. No process is left behind.
"""

import cli

if __name__ == "__main__":
    cli.exit_quietly_on_interrupt()  # from the first import on, also while MXNet loads

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

TRAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_obama.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay(name, stream):
    for line in iter(stream.readline, ""):
        sys.stdout.write("[%s] %s" % (name, line))
        sys.stdout.flush()


def launch_local(worker_command, num_workers, num_servers, timeout=None):
    """Runs `worker_command` as `num_workers` workers beside a scheduler and `num_servers`
    servers; returns the worst exit status of the workers."""
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(free_port()),
               DMLC_NUM_SERVER=str(num_servers), DMLC_NUM_WORKER=str(num_workers),
               DMLC_NODE_HOST="127.0.0.1", DMLC_INTERFACE="lo")
    server_command = [sys.executable, "-c", "import mxnet"]  # MXNet serves when DMLC_ROLE says so
    roles = [("scheduler", server_command)] + [("server %d" % i, server_command) for i in range(num_servers)]
    roles += [("worker %d" % i, worker_command) for i in range(num_workers)]
    procs, threads = [], []
    try:
        for name, command in roles:
            role = name.split()[0]
            proc = subprocess.Popen(command, env=dict(env, DMLC_ROLE=role), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            procs.append((name, proc))
            thread = threading.Thread(target=_relay, args=(name, proc.stdout), daemon=True)
            thread.start()
            threads.append(thread)
        workers = [proc for name, proc in procs if name.startswith("worker")]
        deadline = None if timeout is None else time.time() + timeout
        while any(p.poll() is None for p in workers):
            if any(p.poll() not in (None, 0) for p in workers):
                break  # one worker failed: the others would wait for it for ever
            if deadline is not None and time.time() > deadline:
                print("[launcher] timed out after %d s: stopping everything" % timeout, flush=True)
                break
            time.sleep(0.2)
        statuses = [p.poll() for p in workers]
        statuses = [1 if s is None else 128 - s if s < 0 else s for s in statuses]  # -N: killed by signal N
        if all(s == 0 for s in statuses):  # servers and scheduler end once the workers are done
            for _, proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        return max(statuses, default=0)
    except KeyboardInterrupt:
        return 130
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for thread in threads:
            thread.join(timeout=5)


def parse_args(argv=None):
    """The launcher's own flags, and the training flags that go on to every worker."""
    p = argparse.ArgumentParser(description="Train on MXNet's parameter server, every process on this machine. "
                                            "Flags not listed here go to train_obama.py.")
    p.add_argument("--num-workers", type=cli.positive_int, default=2, help="training processes (default 2)")
    p.add_argument("--num-servers", type=cli.positive_int, default=1, help="parameter servers (default 1)")
    p.add_argument("--kv-store", choices=["dist_sync", "dist_async"], default="dist_sync",
                   help="dist_sync sums every worker's gradients each step; dist_async applies them as they come")
    p.add_argument("--timeout", type=cli.positive_int, help="stop everything after this many seconds")
    return p.parse_known_args(argv)


def main(argv=None):
    args, training_flags = parse_args(argv)
    worker = [sys.executable, TRAIN_SCRIPT] + training_flags + ["--kv-store", args.kv_store]
    return launch_local(worker, args.num_workers, args.num_servers, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
