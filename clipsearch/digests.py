"""Weights digests remembered by file, so that loading a model need not hash it again."""

from __future__ import annotations

from pathlib import Path

from .memo import MemoFile


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
