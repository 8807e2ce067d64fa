"""Images that are not files in a folder: the members of WebDataset tar shards, and the
rows of list files (CSV, TSV, JSONL, Parquet) that name paths or URLs.

Each item has a key, which the catalog keeps where a file keeps its path: `SHARD::MEMBER`
for a member of a shard (as training data names it), the URL for a URL, the absolute
path for a listed file. A shard's members carry the shard's size and mtime, so a shard
that has not changed is known from one stat, never opened.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import ClipsearchError
from .preprocess import BytesSource, is_image_name
from .training_data import CAPTION_KEYS, IMAGE_KEYS, pick_column, read_records

SHARD_SEP = "::"
LIST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
URL_KEYS = ("url", "image_url", *IMAGE_KEYS)
SIDECARS = {".txt": "caption", ".caption": "caption", ".json": "json"}
URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
READ_TIMEOUT = 30  # seconds for one remote image


class SourceError(ClipsearchError):
    """A shard or list file that cannot be read; the message names it."""


@dataclass(frozen=True)
class Item:
    """One image of a shard or list file: its key, and what its sidecar or row says."""

    key: str
    meta: dict


def is_shard_name(name: str) -> bool:
    return name.lower().endswith(".tar")


def is_list_name(name: str) -> bool:
    return name.lower().endswith(LIST_SUFFIXES)


def is_url(key: str) -> bool:
    return bool(URL.match(key))


def member_key(shard: str, member: str) -> str:
    return f"{shard}{SHARD_SEP}{member}"


def split_member(key: str) -> tuple[str, str] | None:
    """(shard, member) for a shard member's key, else None: split at the first `::` that
    follows a `.tar` (a folder or a member may have `::` in its name)."""
    at = key.find(SHARD_SEP)
    while at != -1:
        if is_shard_name(key[:at]) and at + len(SHARD_SEP) < len(key):
            return key[:at], key[at + len(SHARD_SEP) :]
        at = key.find(SHARD_SEP, at + 1)
    return None


def is_plain_file(key: str) -> bool:
    """A key that is a path on this machine (not a shard's member, not a URL)."""
    return split_member(key) is None and not is_url(key)


def shard_items(shard: str) -> list[Item]:
    """A shard's images with their sidecars (WebDataset: members that share a name up to
    the first dot belong together: `0001.jpg` with `0001.txt` and `0001.json`)."""
    try:
        with tarfile.open(shard) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            sidecars: dict[str, dict] = {}
            for m in members:
                stem, ext = _sample_name(m.name)
                if ext in SIDECARS:
                    data = tar.extractfile(m).read()
                    sidecars.setdefault(stem, {})[SIDECARS[ext]] = _sidecar(data, ext)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SourceError(f"{shard}: cannot read as a tar shard: {e}") from None
    return [
        Item(member_key(shard, m.name), sidecars.get(_sample_name(m.name)[0], {}))
        for m in sorted(members, key=lambda m: m.name)
        if is_image_name(m.name)
    ]


def _sample_name(member: str) -> tuple[str, str]:
    folder, base = os.path.split(member)
    stem, dot, ext = base.partition(".")
    return os.path.join(folder, stem), f".{ext.lower()}" if dot else ""


def _sidecar(data: bytes, ext: str):
    text = data.decode("utf-8", errors="replace").strip()
    if SIDECARS[ext] != "json":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def list_items(path: str, column: str | None = None) -> list[Item]:
    """The images a list file names, relative paths taken from the list's folder; the
    row's other columns are the item's metadata."""
    records, keys = read_records(Path(path))
    where = pick_column(keys, column, URL_KEYS, "image", path)
    folder = os.path.dirname(path)
    items = []
    for record in records:
        value = str(record.get(where) or "").strip()
        if not value:
            continue
        key = value if is_url(value) else os.path.normpath(os.path.join(folder, value))
        meta = {_meta_name(k): v for k, v in record.items() if k != where and v not in (None, "")}
        items.append(Item(key, meta))
    return items


def _meta_name(column: str) -> str:
    return "caption" if column in CAPTION_KEYS else column


def read_bytes(key: str) -> bytes:
    """An item's bytes: a file's, a shard member's, or a URL's (http(s) with the standard
    library; s3://, gs:// and the rest through fsspec and its filesystem packages)."""
    member = split_member(key)
    if member is not None:
        return _read_member(*member)
    if is_url(key):
        return _read_url(key)
    with open(key, "rb") as f:
        return f.read()


def item_source(key: str) -> str | BytesSource:
    """What `open_image` takes for an item: a file's path, or the bytes of anything else."""
    return key if is_plain_file(key) else BytesSource(key, read_bytes(key))


def _read_member(shard: str, name: str) -> bytes:
    st = os.stat(shard)
    with _SHARD_LOCK:  # one open file shared by the server's threads: seek, then read
        tar, members = _open_shard(shard, st.st_size, st.st_mtime_ns)
        info = members.get(name)
        if info is None:
            raise FileNotFoundError(f"no member {name} in {shard}")
        return tar.extractfile(info).read()


_SHARD_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _open_shard(shard: str, size: int, mtime_ns: int):
    """An open shard and its members by name, kept while its items are read in turn (a
    changed shard has another size or mtime, so it is opened again)."""
    tar = tarfile.open(shard)  # noqa: SIM115 (kept open for the shard's next items)
    return tar, {m.name: m for m in tar.getmembers() if m.isfile()}


def _read_url(url: str) -> bytes:
    if url.lower().startswith("file:"):  # a list from elsewhere must not reach local files
        raise OSError("file:// URLs are not read: list the file's path instead")
    if url.lower().startswith(("http://", "https://")):
        from urllib.request import urlopen

        with urlopen(url, timeout=READ_TIMEOUT) as response:
            return response.read()
    scheme = url.split("://", 1)[0]
    try:
        import fsspec

        with fsspec.open(url, "rb") as f:
            return f.read()
    except ImportError as e:
        need = f"reading {scheme}:// needs fsspec and its {scheme} filesystem"
        raise OSError(f"{need} ({e})") from None
    except ValueError as e:  # fsspec's word for a scheme it does not know
        raise OSError(f"cannot read {scheme}:// URLs: {e}") from None


def source_stat(key: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of what holds the item (the file, or its shard); None for a URL,
    which has none to compare."""
    if is_url(key):
        return None
    member = split_member(key)
    st = os.stat(member[0] if member else key)
    return st.st_size, st.st_mtime_ns
