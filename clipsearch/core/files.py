"""Files replaced whole or not at all: index files, memos, model weights, query output.

A crash, a kill -9 or a full disk part-way through leaves the old file as it was and, at
worst, a temporary file beside it (named `NAME.PID.tmp`, so whoever cleans a folder can
tell them). New files are readable by their owner only: they hold names of private photos.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_regular(mode: int) -> None:
    """Refuse what is not a regular file (by its st_mode): reading a FIFO waits for a
    writer for ever, a device such as /dev/zero never ends."""
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    if not stat.S_ISREG(mode):
        raise OSError("not a regular file: a FIFO, device or socket")


def open_regular(path: str | os.PathLike) -> io.BufferedReader:
    """A regular file opened to read; anything else refused without waiting (a FIFO is
    opened non-blocking, so no writer is waited for)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        check_regular(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    return open(fd, "rb")  # noqa: SIM115 (the caller's to close)


def temporary_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


@contextmanager
def replacing(path: Path, mode: int = 0o600) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to. When the block ends without an
    error the content is flushed to disk and renamed over `path`; otherwise it is removed
    and `path` is untouched."""
    tmp = temporary_name(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    with replacing(path, mode) as tmp:
        tmp.write_bytes(data)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform lets a folder be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_output(path: Path, data: bytes) -> None:
    """A command's output file: replaced whole when it is a regular file or nothing (a
    full disk leaves the old one as it was); written through when it is anything else,
    as a shell's `>` would: renaming over /dev/null, a FIFO or a symlink would replace
    the device, the pipe or the link itself."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = stat.S_IFREG
    if stat.S_ISREG(mode):
        write_atomic(path, data, mode=0o666)
        return
    with open(path, "wb") as f:
        f.write(data)
