"""Small JSON files in which a store remembers costly answers (weights digests, int8 checks),
and the user's cache folder, where weights digests are also kept for every store and
command.

No torch here: the store owns these files, and commands like `status` never import torch.
A memo is only ever a shortcut, so it is written best effort and read forgivingly: a
read-only store or a damaged file means the answer is worked out again, never an error.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .files import write_atomic

DIGESTS_FILE = "weights-digests.json"  # a DigestCache: in a store, and in user_cache()


def user_cache() -> Path:
    """CLIPSEARCH_CACHE, else the platform's per-user cache folder (~/.cache/clipsearch)."""
    env = os.environ.get("CLIPSEARCH_CACHE")
    if env:
        with contextlib.suppress(RuntimeError):  # ~user of no such user: taken as written
            return Path(env).expanduser()
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("clipsearch"))


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
    photos). Hashing costs half a second for ViT-B/32 (three for ViT-L/14), and a text
    query should not have to read the image tower to learn which vectors its weights made.
    A store's cache asks the user's (`shared`) for what it has not seen: a new store, or
    `embed` and `eval`, which have none, hash a model once per user."""

    def __init__(self, path: Path, shared: DigestCache | None = None, own_folder: bool = False):
        """own_folder: the cache makes its folder (the user's); a store's is made by the
        store's first write."""
        super().__init__(path)
        self.shared = shared
        self.own_folder = own_folder

    @classmethod
    def of_user(cls) -> DigestCache:
        return cls(user_cache() / DIGESTS_FILE, own_folder=True)

    @staticmethod
    def _key(source: Path) -> tuple[str, list[int]]:
        st = source.stat()
        return str(source.resolve()), [st.st_size, st.st_mtime_ns]

    def get(self, source: Path | None) -> str | None:
        if source is None:
            return None
        key, stamp = self._key(source)
        entry = self.read().get(key)
        if entry and entry[0] == stamp:
            return entry[1]
        return self.shared.get(source) if self.shared is not None else None

    def put(self, source: Path | None, digest: str) -> None:
        if source is None:
            return
        key, stamp = self._key(source)
        entries = {k: v for k, v in self.read().items() if os.path.exists(k)}  # none gone
        entries[key] = [stamp, digest]
        if self.own_folder:
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.write(entries)
        if self.shared is not None:
            self.shared.put(source, digest)


class ModelDigests(MemoFile):
    """The digest each model spec loaded to, with the files it was read from then. A run
    that finds nothing to embed learns from it which vectors are its model's without
    loading the model; once any of those files changes (a model folder saved over, a hub
    model updated), the model is loaded again."""

    def get(self, spec: str) -> str | None:
        entry = self.read().get(spec_key(spec))
        if not (isinstance(entry, dict) and isinstance(entry.get("files"), dict)):
            return None
        files = entry["files"]
        return entry.get("digest") if stamps(list(files)) == files else None

    def put(self, spec: str, source: Path | None, digest: str) -> None:
        entries = self.read()
        entries[spec_key(spec)] = {"digest": digest, "files": stamps(_read_with(source))}
        self.write(entries)


def spec_key(spec: str) -> str:
    """A model spec that names a file or folder stands for its absolute path."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if ":" not in spec and path.exists() else spec


def _read_with(source: Path | None) -> list[str]:
    """The files a model's weights file comes with: its folder's (configs, preprocessing),
    and, in a Hugging Face cache, the refs that say which snapshot a name resolves to.
    Random weights come from no file: their spec (config and seed) is all there is."""
    if source is None:
        return []
    folders = [source.parent]
    if source.parent.parent.name == "snapshots":
        folders.append(source.parent.parent.parent / "refs")
    return [str(p) for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())]


def stamps(paths: list[str]) -> dict[str, list[int] | None]:
    """Each file's [size, mtime_ns], or None where it is missing: the same stamps, the
    same files."""
    stamps: dict[str, list[int] | None] = {}
    for path in paths:
        try:
            st = Path(path).stat()
        except OSError:
            stamps[path] = None
            continue
        stamps[path] = [st.st_size, st.st_mtime_ns]
    return stamps
