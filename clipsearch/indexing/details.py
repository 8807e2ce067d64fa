"""Rows catalogued by an older reading of EXIF get what the new one reads, on the next run:
lens and GPS position for photos indexed before those were read. Only the file's header is
read again; nothing is decoded or embedded, and each batch commits on its own, so an
interrupted run leaves the rest for the next."""

from __future__ import annotations

from collections.abc import Sequence

from ..core import faults
from ..core.versions import EXIF_READ
from ..images.decode import read_exif
from ..storage.catalog import Catalog
from ..storage.database import chunks
from .overtaken import still_there

FIELDS = ("lens", "latitude", "longitude")  # what readings before EXIF_READ did not fill
BATCH = 500


def fill_exif(catalog: Catalog, roots: Sequence[str]) -> int:
    """Read again the EXIF of the files under the roots that an older reading filled; how
    many."""
    rows = catalog.files.unread(roots, "exif_read", EXIF_READ)
    for batch in chunks(rows, BATCH):
        fields = []
        for file_id, path in batch:
            faults.hit("exif-read", path)
            found = read_exif(path)
            fields.append(
                {"id": file_id, "exif_read": EXIF_READ, **{k: found.get(k) for k in FIELDS}}
            )
        with catalog.write() as s:
            there = still_there(s, catalog, batch)
            catalog.files.set_fields(s, [f for f in fields if f["id"] in there])
    return len(rows)
