"""Small JSON files in which a store remembers costly answers (weights digests, int8 checks).

No torch here: the store owns these files, and commands like `status` never import torch.
A memo is only ever a shortcut, so it is written best effort and read forgivingly: a
read-only store or a damaged file means the answer is worked out again, never an error.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .files import write_atomic


class MemoFile:
    """A JSON object in one file, replaced atomically on each write."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def write(self, entries: dict) -> None:
        with contextlib.suppress(OSError):
            write_atomic(self.path, json.dumps(entries, indent=1).encode())


class DigestCache(MemoFile):
    """Digests of weights files, by path, size and mtime (as the indexer tells unchanged
    photos). Hashing costs a second for ViT-B/32, and a text query should not have to read
    the image tower to learn which vectors its weights made."""

    @staticmethod
    def _key(source: Path) -> tuple[str, list[int]]:
        st = source.stat()
        return str(source.resolve()), [st.st_size, st.st_mtime_ns]

    def get(self, source: Path | None) -> str | None:
        if source is None:
            return None
        key, stamp = self._key(source)
        entry = self.read().get(key)
        return entry[1] if entry and entry[0] == stamp else None

    def put(self, source: Path | None, digest: str) -> None:
        if source is None:
            return
        key, stamp = self._key(source)
        entries = self.read()
        entries[key] = [stamp, digest]
        self.write(entries)
