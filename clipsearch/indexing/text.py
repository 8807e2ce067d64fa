"""The pass that reads text in images, after the vectors: a run's images are searchable by
what they show at once, and by the words written in them as this pass gets to them.

Each file's lines commit with the record that it was read (a file without text is read
once too), a batch at a time, so a run killed half way leaves the rest for the next run
and loses nothing it read.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core import faults
from ..core.versions import TEXT_READ
from ..images.decode import ImageError
from ..images.ocr import TextReader
from ..storage.catalog import Catalog
from ..storage.database import chunks
from .overtaken import still_there
from .report import Progress

BATCH = 16  # files per commit: an image reads in about a second


def read_texts(
    catalog: Catalog,
    roots: Sequence[str],
    reader: TextReader,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Read the text in the files under the roots that no reading (or an older one) has
    read; (files read, files whose image could not be decoded: left unread)."""
    rows = catalog.files.unread(roots, "text_read", TEXT_READ)
    done = unreadable = 0
    for batch in chunks(rows, BATCH):
        found = []
        for file_id, path in batch:
            faults.hit("text-read", path)
            try:
                found.append((file_id, [line.to_row() for line in reader.read(path)]))
            except ImageError:
                unreadable += 1
        with catalog.write() as s:
            there = still_there(s, catalog, batch)
            for file_id, lines in found:
                if file_id in there:
                    catalog.words.put_text(s, file_id, lines, TEXT_READ)
        done += len(found)
        if progress is not None:
            progress(done + unreadable, len(rows))
    return done, unreadable
