"""Images that are not files in a folder: the members of WebDataset tar shards, and the
rows of list files (CSV, TSV, JSONL, Parquet) that name paths or URLs, each with what
its sidecars or its row say of it. Their keys and bytes: items.py.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ClipsearchError
from ..training.data import CAPTION_KEYS, IMAGE_KEYS, pick_column, read_records
from .items import is_plain_file, is_url, member_key, read_bytes
from .pixels import BytesSource, is_image_name

URL_KEYS = ("url", "image_url", *IMAGE_KEYS)
SIDECARS = {".txt": "caption", ".caption": "caption", ".json": "json"}


class SourceError(ClipsearchError):
    """A shard or list file that cannot be read; the message names it."""


@dataclass(frozen=True)
class Item:
    """One image of a shard or list file: its key, and what its sidecar or row says."""

    key: str
    meta: dict


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


def item_source(key: str) -> str | BytesSource:
    """What `open_image` takes for an item: a file's path, or the bytes of anything else."""
    return key if is_plain_file(key) else BytesSource(key, read_bytes(key))
