"""What an item's key names, and where its bytes come from: a file's path, a member of a
WebDataset tar shard (`SHARD::MEMBER`, as training data names it), or a URL.

The catalog keeps an item's key where a file keeps its path. A shard's members carry the
shard's size and mtime, so a shard that has not changed is known from one stat.
"""

from __future__ import annotations

import os
import re
import tarfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from ..core.files import open_regular

SHARD_SEP = "::"
LIST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
READ_TIMEOUT = 30  # seconds for one remote image: for each wait, and for the whole read
MAX_ITEM_MB_VARIABLE = "CLIPSEARCH_MAX_ITEM_MB"
MAX_ITEM_MB = 512  # an item larger than this is refused unread (RAW and 100-MP TIFFs fit)


def max_item_bytes() -> int:
    """The most bytes one item may have: CLIPSEARCH_MAX_ITEM_MB, else MAX_ITEM_MB."""
    value = os.environ.get(MAX_ITEM_MB_VARIABLE, "")
    return (int(value) if value.isdigit() and int(value) > 0 else MAX_ITEM_MB) * 2**20


class TooLarge(OSError):
    """An item over the byte limit, refused before it is read whole."""

    def __init__(self, size: str):
        super().__init__(
            f"{size} is more than the {max_item_bytes() // 2**20} MB an item may have "
            f"(set {MAX_ITEM_MB_VARIABLE} to allow more)"
        )


@dataclass(frozen=True)
class Item:
    """One image of a shard or a list file: its key, what its sidecars or its row say of
    it, and the sidecars that could not be read (not UTF-8)."""

    key: str
    meta: dict
    unreadable: tuple[str, ...] = field(default=(), compare=False)


def is_shard_name(name: str) -> bool:
    return name.lower().endswith(".tar")


def is_list_name(name: str) -> bool:
    return name.lower().endswith(LIST_SUFFIXES)


def is_url(key: str) -> bool:
    return bool(URL.match(key))


def absolute_roots(roots: Sequence[str]) -> list[str]:
    """Absolute, user-expanded roots, each once, none inside another: `index A A/` or
    `index A A/x.png` index every file once."""
    paths = sorted({_absolute(str(r)) for r in roots})
    kept: list[str] = []
    for path in paths:  # sorted: a folder comes before everything inside it
        inside = any(path.startswith(k.rstrip(os.sep) + os.sep) for k in kept)
        if not inside or is_list_name(path):  # a walk reads no list files
            kept.append(path)
    return kept


def _absolute(root: str) -> str:
    return root if is_url(root) else os.path.abspath(os.path.expanduser(root))


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


def read_bytes(key: str) -> bytes:
    """An item's bytes: a file's, a shard member's, or a URL's (http(s) with the standard
    library; s3://, gs:// and the rest through fsspec and its filesystem packages). At
    most max_item_bytes(), whatever the item claims: /dev/zero in a list, or a URL that
    streams for ever, is refused, not read until memory runs out."""
    member = split_member(key)
    if member is not None:
        return _read_member(*member)
    if is_url(key):
        return _read_url(key)
    return read_file(key)


def read_file(path: str) -> bytes:
    """A regular file's bytes. A FIFO, a device or a socket is refused unread (opening a
    FIFO to read would wait for a writer for ever, so it is opened without waiting)."""
    with open_regular(path) as f:
        return _read_capped(f, os.fstat(f.fileno()).st_size)


def _read_capped(f, claimed: int | None = None, deadline: float | None = None) -> bytes:
    """At most max_item_bytes() from a file object, refused early when its claimed size
    is already over, or when `deadline` (time.monotonic) passes."""
    limit = max_item_bytes()
    if claimed is not None and claimed > limit:
        raise TooLarge(f"{claimed / 2**20:,.0f} MB")
    chunks, total = [], 0
    while chunk := f.read(min(2**20, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise TooLarge("the item")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"not read whole within {READ_TIMEOUT} s")
    return b"".join(chunks)


def _read_member(shard: str, name: str) -> bytes:
    st = os.stat(shard)
    with _SHARD_LOCK:  # one open file shared by the server's threads: seek, then read
        tar, members = _open_shard(shard, st.st_size, st.st_mtime_ns)
        info = members.get(name)
        if info is None:
            raise FileNotFoundError(f"no member {name} in {shard}")
        return _read_capped(tar.extractfile(info), info.size)


_SHARD_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _open_shard(shard: str, size: int, mtime_ns: int):
    """An open shard and its members by name, kept while its items are read in turn (a
    changed shard has another size or mtime, so it is opened again)."""
    tar = tarfile.open(shard)  # noqa: SIM115 (kept open for the shard's next items)
    return tar, {m.name: m for m in tar.getmembers() if m.isfile()}


def _read_url(url: str) -> bytes:
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith(("file", "local")) or "::" in scheme:  # fsspec's local file systems
        raise OSError(f"{scheme}:// URLs are not read: list the file's path instead")
    if url.lower().startswith(("http://", "https://")):
        from urllib.request import urlopen

        with urlopen(url, timeout=READ_TIMEOUT) as response:
            claimed = response.headers.get("Content-Length", "")
            deadline = time.monotonic() + READ_TIMEOUT
            return _read_capped(response, int(claimed) if claimed.isdigit() else None, deadline)
    try:
        import fsspec

        with fsspec.open(url, "rb") as f:
            return _read_capped(f, getattr(f, "size", None))
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
