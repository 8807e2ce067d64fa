"""The vectors of the queries people run against a store, kept so that its vector index
is tuned for them.

Generic prompts and the store's own image vectors say little about where the queries of
a domain land (text and image vectors sit in different regions of CLIP's space, and a
fine-tuned model moves both), so the index tuner also uses the last queries actually run.
Only vectors are kept, never the text: a ring of the last KEEP per model, in
`STORE/query-log/DIGEST.f32`. CLIPSEARCH_QUERY_LOG=0 (or `--no-query-log`) turns it off.
Like the store's memos it is written best effort: a read-only store just keeps no log.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.files import write_atomic
from .layout import QUERY_LOG_DIR

KEEP = 256


def enabled_by_default() -> bool:
    return os.environ.get("CLIPSEARCH_QUERY_LOG", "1") != "0"


class QueryLog:
    def __init__(self, store: Path):
        self.folder = store / QUERY_LOG_DIR

    def _file(self, digest: str) -> Path:
        return self.folder / f"{digest}.f32"

    def add(self, digest: str, vector: np.ndarray) -> None:
        """Append one query vector; past twice KEEP, the file is cut to the last KEEP."""
        data = np.asarray(vector, np.float32).reshape(-1).tobytes()
        path = self._file(digest)
        with contextlib.suppress(OSError):
            self.folder.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)  # one write: appends from two processes never interleave
            finally:
                os.close(fd)
            if path.stat().st_size > 2 * KEEP * len(data):
                write_atomic(path, path.read_bytes()[-KEEP * len(data) :])

    def recent(self, digest: str, dim: int) -> np.ndarray:
        """The last KEEP query vectors (fewer if fewer were logged), oldest first."""
        try:
            raw = self._file(digest).read_bytes()
        except OSError:
            return np.zeros((0, dim), np.float32)
        whole = len(raw) // (4 * dim) * 4 * dim  # a torn last record is left out
        vectors = np.frombuffer(raw[:whole], np.float32).reshape(-1, dim)
        return vectors[-KEEP:]

    def last_logged(self, digest: str) -> str | None:
        """When the last query was logged (ISO 8601, UTC), or None if none was."""
        try:
            mtime = self._file(digest).stat().st_mtime
        except OSError:
            return None
        return datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds")

    def clear(self, digest: str) -> None:
        self._file(digest).unlink(missing_ok=True)
