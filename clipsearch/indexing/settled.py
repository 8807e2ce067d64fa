"""Re-runs that find nothing to do, told from a walk alone.

A run of `index` that found its roots and the catalog in agreement (nothing to embed,
remove or read again, the vector index unchanged, nothing it could not read) leaves a
note in the store: the fingerprint of its walk (each file's path, size and mtime), the
catalog's generation (raised by every write transaction: storage/database.py), and what
else its answer rested on: the roots and options, the model's digest, the vector index's
files. A later run that finds all of it the same has nothing to do either, and says so
after its walk without reading a row of the catalog; the command line asks before it has
imported SQLAlchemy, numpy or FAISS (BENCHMARKS.md, Unchanged re-runs).

The note is a shortcut, never an authority: anything different or unreadable means the
full run, which leaves a new note when it too finds nothing to do. Only for the store's
own catalog (SQLite, read here with Python's own sqlite3) and a store this process may
write (elsewhere the full run says what stands in the way).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from array import array
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core import versions
from ..core.config import IndexOptions
from ..core.memo import MemoFile, ModelDigests, stamps
from ..storage.layout import (
    CATALOG_FILE,
    INDEX_DIR,
    MODEL_DIGESTS_FILE,
    QUERY_LOG_DIR,
    SETTINGS_FILE,
    SETTLED_FILE,
    has_sidecars,
    read_only_uri,
)
from .report import IndexReport
from .scan import Found, Walker, collector_paused

KEPT = 16  # notes, one per set of roots, model and options; the most recent are kept


@dataclass
class QuietRun:
    """What a run that found nothing to do rested on, besides its roots and options."""

    found: list[Found]  # its walk
    generation: int  # the catalog's, read before the walk
    spec: str  # the model it ran (the store's default resolved)
    digest: str
    preset: str  # the vector index's
    tunes: bool  # whether that preset is tuned on the query log (vector_indexes.py)
    reads_text: bool  # whether the store reads the text in images (Store.reads_text)


class SettledRuns(MemoFile):
    """The notes of a store's runs that found nothing to do."""

    def __init__(self, store: Path):
        super().__init__(store / SETTLED_FILE)
        self.store = store

    def check(
        self, roots: list[str], spec: str | None, options: IndexOptions
    ) -> IndexReport | None:
        """The report of a run over these (absolute) roots with nothing to do, where the
        last such run's note still holds; else None: run in full."""
        started = time.perf_counter()
        note = self.read().get(_key(roots, spec, options))
        if not (isinstance(note, dict) and self._holds(note, options)):
            return None
        found = self._walk(roots, options)
        if found is None or fingerprint(found) != note["walk"]:
            return None
        seconds = time.perf_counter() - started
        return IndexReport(
            unchanged=len(found),
            index_action="unchanged",
            preset=note["preset"],
            seconds=seconds,
            profile={"settled": seconds},
        )

    def _holds(self, note: dict, options: IndexOptions) -> bool:
        """Whether all the note rests on but the walk is as it was."""
        try:
            return (
                os.access(self.store, os.W_OK)
                and generation(self.store / CATALOG_FILE) == note["generation"]
                and self._reads_text(options) == note["reads_text"]
                and ModelDigests(self.store / MODEL_DIGESTS_FILE).get(note["spec"])
                == note["digest"]
                and stamps(list(note["stamps"])) == note["stamps"]
            )
        except (KeyError, TypeError):  # a note from elsewhere, or damaged
            return False

    def _reads_text(self, options: IndexOptions) -> bool | None:
        """Whether the run would read the text in images; None where the choice changes
        (the full run records it) or the engine has gone."""
        chosen = MemoFile(self.store / SETTINGS_FILE).read().get("ocr", False)
        if options.ocr is not None and options.ocr != chosen:
            return None
        if chosen:
            from ..images import ocr

            try:
                ocr.require()
            except ocr.ReaderMissing:
                return None
        return bool(chosen)

    def _walk(self, roots: list[str], options: IndexOptions) -> list[Found] | None:
        """The walk the full run would make, or None where it meets a problem (which the
        full run reports). List files and tar shards need no look: a note is only left by
        a run that had none, and any that appears since changes the walk."""
        walker = Walker.of(options, skip=[os.path.abspath(self.store)])
        with collector_paused():
            found = [f for root in roots for f in walker.walk(root)]
        return None if walker.problems else found

    def record(
        self, roots: list[str], spec: str | None, options: IndexOptions, run: QuietRun
    ) -> None:
        """Leave the note of a run that found nothing to do."""
        index_files = self.store / INDEX_DIR
        kept = [str(p) for p in sorted(index_files.iterdir())] if index_files.is_dir() else []
        if run.tunes:
            kept.append(str(self.store / QUERY_LOG_DIR / f"{run.digest}.f32"))
        note = {
            "generation": run.generation,
            "walk": fingerprint(run.found),
            "spec": run.spec,
            "digest": run.digest,
            "preset": run.preset,
            "reads_text": run.reads_text,
            "stamps": stamps(kept),
        }
        key = _key(roots, spec, options)
        notes = {k: v for k, v in self.read().items() if k != key}
        self.write({**dict(list(notes.items())[-(KEPT - 1) :]), key: note})


def _key(roots: list[str], spec: str | None, options: IndexOptions) -> str:
    """A run's roots, model and the options a run with nothing to do depends on."""
    asked = [
        __version__,
        versions.SCHEMA_HEAD,
        versions.EXIF_READ,
        versions.TEXT_READ,
        roots,
        spec,
        options.include_hidden,
        options.follow_symlinks,
        list(options.exclude),
        options.preset,
        options.memory_budget,
    ]
    return hashlib.blake2b(json.dumps(asked).encode(), digest_size=16).hexdigest()


def fingerprint(found: list[Found]) -> str:
    """Every file's path, size and mtime, in the walk's order, as one digest (paths apart
    by NUL, which no path holds; the numbers as 64-bit integers)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\0".join([f.path for f in found]).encode("utf-8", "surrogateescape"))
    digest.update(array("q", [f.size for f in found]))
    digest.update(array("q", [f.mtime_ns for f in found]))
    return digest.hexdigest()


def generation(catalog: Path) -> int | None:
    """The catalog's generation (schema.Generation), read without changing the file or
    leaving SQLite's -wal and -shm beside it where there were none; None where there is
    none to read."""
    try:
        uri = read_only_uri(catalog, immutable=not has_sidecars(catalog))
        with closing(sqlite3.connect(uri, uri=True)) as db:
            return db.execute("SELECT number FROM generation").fetchone()[0]
    except (sqlite3.Error, TypeError):
        return None
