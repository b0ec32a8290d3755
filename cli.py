"""The command-line pieces that train_obama.py and generate.py share: argument types that refuse
numbers which make no sense, the common options, and a quiet end on Ctrl-C.

Light on purpose: the scripts import it first, before anything slow (argparse, numpy, MXNet), so
that a Ctrl-C from the first moments on ends quietly. It imports argparse only once it parses.
"""
import math
import os
import signal
import sys

# numpy's RandomState and MXNet's generators both take seeds below 2**32
MAX_SEED = 2 ** 32 - 1
INTERRUPTED = 128 + signal.SIGINT
# where a run's files go unless --prefix says otherwise
DEFAULT_PREFIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "obama")


class Refused(Exception):
    """What a user gave that cannot be used (a file, a device, a prime text): every script says it in
    one line and exits with status 2. The modules' own errors derive from it."""


def exit_quietly_on_interrupt():
    """Makes Ctrl-C end the process with status 130 and no traceback. Scripts call it before their
    other imports. Inside an import it exits at once (no file is written while a module loads, and
    an exception there would read as a broken install); elsewhere it raises SystemExit, so that
    `finally` blocks still run and temporary files are removed. A Ctrl-C ignored when the process
    started (a background job's) stays ignored."""
    def handler(_signum, frame):
        while frame is not None:
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                os._exit(INTERRUPTED)
            frame = frame.f_back
        raise SystemExit(INTERRUPTED)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, handler)


def run(main, end_at_once=False):
    """Runs a script's `main` and exits with its status. An interrupt ends the process at once, once
    `finally` blocks have run: Python's clean-up at exit would finalize objects the interrupt left
    half made (an MXNet array cut off in its constructor prints a traceback then). `end_at_once`
    does the same for any failure (a distributed worker, which MXNet would keep waiting at exit)."""
    try:
        status = main()
    except SystemExit as stop:
        if stop.code != INTERRUPTED:
            raise
        status = INTERRUPTED
    if status == INTERRUPTED or (status and end_at_once):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _invalid(message):
    """The error an argument type raises: argparse prints it as one line naming the option."""
    import argparse
    return argparse.ArgumentTypeError(message)


def _number(text, convert, kind):
    try:
        return convert(text)
    except ValueError:
        raise _invalid("expected %s, got %r" % (kind, text))


def positive_int(text):
    value = _number(text, int, "a whole number")
    if value < 1:
        raise _invalid("must be at least 1, got %s" % text)
    return value


def non_negative_int(text):
    value = _number(text, int, "a whole number")
    if value < 0:
        raise _invalid("must not be negative, got %s" % text)
    return value


def int_list(text):
    """'10,20' or '10 20' -> [10, 20]: positive numbers."""
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise _invalid("expected numbers separated by commas, got %r" % text)
    if not values or min(values) < 1:
        raise _invalid("expected positive numbers, got %r" % text)
    return values


# MXNet computes in float32: a number outside its range would become infinite, or a positive one 0
FLOAT32_MAX, FLOAT32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38


def finite_float(text):
    value = _number(text, float, "a number")
    if not math.isfinite(value):
        raise _invalid("must be a finite number, got %s" % text)
    if abs(value) > FLOAT32_MAX or 0 < abs(value) < FLOAT32_TINY:
        raise _invalid("must be within float32's range (1.2e-38 to 3.4e38 in size, or 0), which MXNet computes "
                       "in, got %s" % text)
    return value


def non_negative_float(text):
    value = finite_float(text)
    if value < 0:
        raise _invalid("must not be negative, got %s" % text)
    return value


def positive_float(text):
    value = finite_float(text)
    if value <= 0:
        raise _invalid("must be positive, got %s" % text)
    return value


def fraction(text):
    """A number in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise _invalid("must be in [0, 1), got %s" % text)
    return value


def random_seed(text):
    value = _number(text, int, "a whole number")
    if not 0 <= value <= MAX_SEED:
        raise _invalid("must be between 0 and %d, got %s" % (MAX_SEED, text))
    return value


def epoch_number(text):
    """An epoch number, or "best"."""
    if text == "best":
        return text
    value = _number(text, int, 'an epoch number or "best"')
    if value < 1:
        raise _invalid("epochs count from 1, got %s" % text)
    return value


def prefix_path(text):
    if not text.strip():
        raise _invalid("must name a path, such as checkpoints/obama")
    return text


def add_checkpoint_options(parser):
    parser.add_argument("--prefix", type=prefix_path, default=DEFAULT_PREFIX,
                        help="checkpoint prefix (default: checkpoints/obama)")


def add_corpus_option(parser, help_text):
    parser.add_argument("--data", help=help_text)


def add_device_options(parser, gpus_help):
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", help=gpus_help)
    where.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is usable")


def mxnet_message(err):
    """The line of an MXNetError that says what went wrong (MXNet adds a stack trace)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = [line for line in lines if "Check failed" in line or "Error" in line] or lines or ["(no message)"]
    return said[0][:300]


def fail(script, message, status=2):
    """Prints one error line, as argparse does, and returns the exit status."""
    print("%s: error: %s" % (script, message), file=sys.stderr)
    return status
