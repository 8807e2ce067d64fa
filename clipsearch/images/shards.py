"""WebDataset tar shards: the images they hold, and what each one's sidecars say of it.

Members that share a name up to the first dot of the file name are one sample
(WebDataset's rule): `0001.jpg` with `0001.txt` and `0001.json`. `.txt` and `.caption`
sidecars hold the caption, `.json` more metadata. Text must be UTF-8: a sidecar that is
not is left out and named in the item's `unreadable`, so that indexing keeps the image and
training counts the row as unusable. `index` and `train` read shards through this alone.
"""

from __future__ import annotations

import json
import os
import tarfile

from .formats import is_image_name
from .items import Item, member_key
from .records import DataError

SIDECARS = {".txt": "caption", ".caption": "caption", ".json": "json"}


def shard_items(shard: str) -> list[Item]:
    """A shard's images in name order, each with its sample's sidecars as metadata."""
    try:
        with tarfile.open(shard) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            sidecars: dict[str, dict] = {}
            unreadable: dict[str, list[str]] = {}
            for m in members:
                stem, ext = _sample_name(m.name)
                if ext not in SIDECARS:
                    continue
                try:
                    value = _sidecar(tar.extractfile(m).read(), ext)
                except UnicodeDecodeError:
                    unreadable.setdefault(stem, []).append(m.name)
                    continue
                sidecars.setdefault(stem, {})[SIDECARS[ext]] = value
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{shard}: cannot read as a tar shard: {e}") from None
    return [
        Item(member_key(shard, m.name), sidecars.get(stem, {}), tuple(unreadable.get(stem, ())))
        for m in sorted(members, key=lambda m: m.name)
        if is_image_name(m.name)
        for stem in [_sample_name(m.name)[0]]
    ]


def caption_unreadable(item: Item) -> bool:
    """Whether the item's caption sidecar is there but not UTF-8."""
    return any(SIDECARS.get(_sample_name(m)[1]) == "caption" for m in item.unreadable)


def _sample_name(member: str) -> tuple[str, str]:
    folder, base = os.path.split(member)
    stem, dot, ext = base.partition(".")
    return os.path.join(folder, stem), f".{ext.lower()}" if dot else ""


def _sidecar(data: bytes, ext: str):
    """A sidecar's text, or for .json its value (the text itself if it is not JSON)."""
    text = data.decode("utf-8").strip()
    if SIDECARS[ext] != "json":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
