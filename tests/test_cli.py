"""cli.py: the argument types refuse what makes no sense; every command ends quietly on Ctrl-C from its first import on."""
import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

import cli
from conftest import REPO


@pytest.mark.parametrize("convert, text, message", [
    (cli.positive_int, "0", "at least 1"),
    (cli.positive_int, "two", "expected a whole number"),
    (cli.finite_float, "nan", "finite"),
    (cli.finite_float, "-inf", "finite"),
    (cli.positive_float, "1e300", "within float32's range"),
    (cli.non_negative_float, "1e-300", "within float32's range"),
    (cli.positive_float, "0", "positive"),
    (cli.non_negative_float, "-1e-9", "not be negative"),
    (cli.fraction, "1", r"\[0, 1\)"),
    (cli.random_seed, "4294967296", "between 0 and 4294967295"),
    (cli.epoch_number, "0", "count from 1"),
    (cli.epoch_number, "last", 'epoch number or "best"'),
    (cli.int_list, "10,x", "separated by commas"),
    (cli.prefix_path, "  ", "must name a path"),
])
def test_types_refuse_nonsense(convert, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        convert(text)


def test_types_accept_sense():
    assert cli.int_list("10, 20 30") == [10, 20, 30]
    assert cli.random_seed("4294967295") == 2 ** 32 - 1
    assert cli.epoch_number("best") == "best" and cli.epoch_number("7") == 7
    assert cli.fraction("0") == 0.0 and cli.positive_float("1e-3") == 0.001


@pytest.mark.parametrize("script", ["train_obama.py", "generate.py", "visualize.py", "plot_curves.py",
                                    "dist_launch.py"])
def test_ctrl_c_from_the_first_import_on_is_quiet(script):
    """Sent at moments after cli.py has loaded (Python's -X importtime says when), through the loading
    of argparse, numpy and MXNet: status 130 and not a word, never a traceback or a broken-install message."""
    for delay in (0.002, 0.01, 0.03, 0.1, 0.3):
        proc = subprocess.Popen([sys.executable, "-X", "importtime", os.path.join(REPO, script), "--help"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if line.rstrip().endswith("| cli"):
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        said = [line for line in err.splitlines() if not line.startswith("import time:")]
        assert said == [], "%s after %s s: %s" % (script, delay, err[-2000:])
        if not out.startswith("usage:"):  # else it printed its help and was ending when the signal came
            assert proc.returncode == 130, "%s after %s s: %s" % (script, delay, proc.returncode)


SCRIPT_INTERRUPTED_MIDWAY = """
import sys
sys.path.insert(0, %r)
import cli

class HalfMade:  # as an MXNet array whose constructor an interrupt cut off: its finaliser fails
    def __del__(self):
        sys.stderr.write("Traceback: finalised at exit\\n")

def main():
    global kept
    kept = HalfMade()
    raise SystemExit(cli.INTERRUPTED)  # what the Ctrl-C handler raises

cli.run(main)
"""


def test_an_interrupted_script_ends_without_finalising_what_the_interrupt_cut_off():
    done = subprocess.run([sys.executable, "-c", SCRIPT_INTERRUPTED_MIDWAY % REPO], capture_output=True, text=True)
    assert done.returncode == cli.INTERRUPTED and done.stderr == "", done.stderr


def test_run_exits_with_mains_status():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import cli; cli.run(lambda: 3)"
                           % REPO], capture_output=True, text=True)
    assert done.returncode == 3
