"""Weights digests remembered by file, so that loading a model need not hash it again.

No torch here: the store owns this file, and commands like `status` never import torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class DigestCache:
    """Digests of weights files, by path, size and mtime (as the indexer tells unchanged
    photos). Hashing costs a second for ViT-B/32, and a text query should not have to read
    the image tower to learn which vectors its weights made."""

    def __init__(self, path: Path):
        self.path = path

    def _entries(self) -> dict[str, list]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _key(source: Path) -> tuple[str, list[int]]:
        st = source.stat()
        return str(source.resolve()), [st.st_size, st.st_mtime_ns]

    def get(self, source: Path | None) -> str | None:
        if source is None:
            return None
        key, stamp = self._key(source)
        entry = self._entries().get(key)
        return entry[1] if entry and entry[0] == stamp else None

    def put(self, source: Path | None, digest: str) -> None:
        """Best effort: a read-only store only means the digest is computed again."""
        if source is None:
            return
        key, stamp = self._key(source)
        entries = self._entries()
        entries[key] = [stamp, digest]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(entries, indent=1))
            os.replace(tmp, self.path)
        except OSError:
            pass
