"""Reading and writing files safely, without MXNet: a bounded read of a regular UTF-8 file, and the
checked write under a temporary name that every file of this project goes through, so that neither
a crash nor a full disk leaves a half file under the final name, nor harms the file it replaces.

Light on purpose (no numpy, no MXNet): generation from an exported ONNX file uses it where MXNet is
not installed.
"""
import errno
import os
import stat

import cli


class FileError(cli.Refused, ValueError):
    """A file cannot be read as asked, or cannot be written."""


def check_regular(path, what, wanted):
    """Fails unless `path` is a regular file: a device or a pipe could be endless (/dev/zero) or block
    for ever (a FIFO). `what` names the file in errors, `wanted` what to give instead."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise FileError("cannot read the %s %s: %s" % (what, path, err.strerror))
    if not stat.S_ISREG(mode):
        raise FileError("the %s %s is not a regular file (a device, a pipe or a folder): give %s" % (what, path, wanted))


def read_text(path, what, limit):
    """The whole text of a regular UTF-8 file of at most `limit` bytes."""
    check_regular(path, what, "a text file")
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as err:
        raise FileError("cannot read the %s %s: %s" % (what, path, err.strerror))
    if len(raw) > limit:
        raise FileError("the %s %s is larger than the %d MB this reads" % (what, path, limit >> 20))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileError("the %s %s is not UTF-8 text: byte offset %d" % (what, path, err.start))


def vocab_problem(vocab):
    """What keeps `vocab` from being a character vocabulary as training numbers it (None if nothing):
    a map from single characters to the ids 1 to N, 0 being the padding."""
    if not isinstance(vocab, dict) or not all(isinstance(k, str) and len(k) == 1 and isinstance(v, int)
                                              and not isinstance(v, bool) for k, v in vocab.items()):
        return "is not a map from single characters to ids"
    if sorted(vocab.values()) != list(range(1, len(vocab) + 1)):
        return "numbers its %d characters otherwise than 1 to %d, as training numbers them" % (len(vocab), len(vocab))
    return None


def temporary_path(target):
    """The name a file is written under before it is renamed to `target`."""
    return "%s.tmp%d" % (target, os.getpid())


def atomic_write(target, write, verify=None):
    """Calls write(tmp_path), checks the result with verify(tmp_path) when given, then renames the
    temporary file to `target`. Any failure is a FileError; the earlier file stays as it was.

    MXNet's own writers do not report a full disk, so what they write is read back (`verify`).
    """
    tmp = temporary_path(target)
    try:
        directory = os.path.dirname(target)
        if directory:
            os.makedirs(directory, exist_ok=True)
        write(tmp)
        if verify is not None and not verify(tmp):
            raise FileError("writing %s failed: the file does not read back as written (disk full?); "
                            "the files written before stay as they were" % target)
        os.replace(tmp, target)
    except OSError as err:
        raise FileError("cannot write %s: %s" % (target, err.strerror or err))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _holds_text(text):
    def verify(written):
        with open(written, encoding="utf-8", newline="") as f:
            return f.read() == text
    return verify


def save_text(target, text):
    """Writes a UTF-8 text file, checked, unless it already holds `text`."""
    if os.path.exists(target) and _holds_text(text)(target):
        return

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    atomic_write(target, write, _holds_text(text))


def save_bytes(target, content):
    """Writes a binary file, checked."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(content)

    def verify(written):
        with open(written, "rb") as f:
            return f.read() == content
    atomic_write(target, write, verify)


def check_writable(target):
    """Fails now, before any long work, when `target` cannot be written."""
    try:
        if os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        probe = temporary_path(target)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.remove(probe)
    except OSError as err:
        raise FileError("cannot write the output %s: %s" % (target, err.strerror or err))


def check_not_same(output, source, what):
    """Refuses an `output` that is the file `source` (`what` names it), which writing would destroy."""
    if os.path.exists(output) and os.path.exists(source) and os.path.samefile(output, source):
        raise FileError("--output %s is %s: give another path" % (output, what))
