"""What C and C++ libraries print to the process's standard error, collected instead of
reaching the terminal (FAISS's k-means warnings come by the hundred)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """What C++ code (FAISS) prints to file descriptor 2 meanwhile, collected instead of
    reaching the terminal: its k-means warnings come by the hundred."""
    printed: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield printed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed.extend(capture.read().decode(errors="replace").splitlines())
