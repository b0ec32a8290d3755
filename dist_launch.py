"""Starts MXNet's parameter server on this machine for trying distributed training: a scheduler,
S servers and N workers on 127.0.0.1, configured by the DMLC_* variables, each worker running
train_obama.py with the training flags given here.

    python dist_launch.py --num-workers 2 --num-servers 1 --kv-store dist_sync [training flags]

Each process's lines are printed with its role and number in front. When a worker fails, or the
scheduler or a server ends before the workers are done, all the others are stopped; the exit
status is the worst of the workers'. Ctrl-C, SIGTERM or SIGHUP stops the workers first (worker 0
writes its partial checkpoint, as a run of its own does), then the servers; a second one stops
everything at once. No process outlives the launcher, however it ends: the kernel kills each one
when the launcher goes, kill -9 included.
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


def say(message):
    print("[launcher] %s" % message, flush=True)


# MXNet serves when DMLC_ROLE says so
SERVER_COMMAND = [sys.executable, "-c", "import mxnet"]
# Every process starts through this: it asks the kernel to kill it when the launcher ends, however
# the launcher ends, then becomes its command (the request outlives exec).
ORPHAN_GUARD = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
                "os.getppid() == int(sys.argv[1]) or os._exit(1)  # the launcher already ended\n"
                "os.execv(sys.argv[2], sys.argv[2:])")
# how long the workers have, once asked to stop, to finish their batch and write the partial checkpoint
GRACE_SECONDS = 60


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class SignalsTo:
    """Holds `handler` on Ctrl-C, SIGTERM and SIGHUP (those not ignored) while in use."""

    def __init__(self, handler):
        self.handler, self.previous = handler, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _interrupt(signum, _frame):
    raise Interrupted(signum)


def launch_local(worker_command, num_workers, num_servers, timeout=None):
    """Runs `worker_command` as `num_workers` workers beside a scheduler and `num_servers`
    servers; returns the worst exit status of the workers (128 + N when signal N stopped the launcher)."""
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(free_port()),
               DMLC_NUM_SERVER=str(num_servers), DMLC_NUM_WORKER=str(num_workers),
               DMLC_NODE_HOST="127.0.0.1", DMLC_INTERFACE="lo")
    roles = [("scheduler", SERVER_COMMAND)] + [("server %d" % i, SERVER_COMMAND) for i in range(num_servers)]
    roles += [("worker %d" % i, worker_command) for i in range(num_workers)]
    procs, threads = [], []
    grace = GRACE_SECONDS  # how long the workers may take to stop, where they still run at the end
    with SignalsTo(_interrupt):
        try:
            for name, command in roles:
                proc = subprocess.Popen([sys.executable, "-c", ORPHAN_GUARD, str(os.getpid())] + list(command),
                                        env=dict(env, DMLC_ROLE=name.split()[0]), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
                procs.append((name, proc))
                threads.append(threading.Thread(target=_relay, args=(name, proc.stdout), daemon=True))
                threads[-1].start()
            status, grace = watch(procs, None if timeout is None else time.time() + timeout)
            return status
        except Interrupted as stop:
            say("signal %d: stopping the workers (worker 0 writes a checkpoint of where it got), then the servers"
                % stop.signum)
            return 128 + stop.signum
        finally:
            shut_down(procs, grace)
            for thread in threads:
                thread.join(timeout=5)


def status_of(proc):
    """A process's exit status as a shell reports it (128 + N when signal N killed it), None while it runs."""
    code = proc.poll()
    return None if code is None else 128 - code if code < 0 else code


def watch(procs, deadline):
    """Waits for the workers to end; stops waiting when one fails, when the scheduler or a server fails
    (the workers would wait for it for ever), or at the deadline. Returns the worst worker's status, and
    how long the workers still running may take to stop: a worker's batch cannot end where a
    process it needs has failed."""
    workers = [proc for name, proc in procs if name.startswith("worker")]
    others = [(name, proc) for name, proc in procs if not name.startswith("worker")]
    while any(proc.poll() is None for proc in workers):
        failed = [status_of(proc) for proc in workers if status_of(proc) not in (None, 0)]
        ended = [(name, status_of(proc)) for name, proc in others if status_of(proc) not in (None, 0)]
        if failed:
            say("a worker ended with status %d: stopping everything" % failed[0])
            return max(failed), 0
        if ended:
            say("the %s ended with status %d before the workers were done (its lines above say why): stopping "
                "everything" % ended[0])
            return ended[0][1], 0
        if deadline is not None and time.time() > deadline:
            say("timed out: stopping everything")
            return 1, GRACE_SECONDS
        time.sleep(0.2)
    statuses = [status_of(proc) for proc in workers]
    if max(statuses) == 0:
        for _, proc in others:  # the servers and the scheduler end once the workers are done
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    return max(statuses), 0


def shut_down(procs, grace):
    """Stops what still runs. The workers are asked first: the one that writes finishes its batch,
    writes its checkpoint and ends, while the others train on so that its batch completes (they
    would block it otherwise); it has `grace` seconds. Once a worker has ended, the others, the
    servers and the scheduler are stopped. A signal meanwhile stops everything at once."""
    hurry = []

    def kill_now(_signum, _frame):
        hurry.append(True)
        say("stopping everything at once")

    def wait(done, seconds):
        deadline = time.time() + seconds
        while not done() and time.time() < deadline and not hurry:
            time.sleep(0.1)
    with SignalsTo(kill_now):
        running = [proc for name, proc in procs if name.startswith("worker") and proc.poll() is None]
        for proc in running:
            os.killpg(proc.pid, signal.SIGTERM)
        wait(lambda: any(proc.poll() is not None for proc in running), grace)
        for _, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        wait(lambda: all(proc.poll() is not None for _, proc in procs), 5)
        for _, proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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
    cli.run(main)
