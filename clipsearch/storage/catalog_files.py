"""The catalog's files: rows by path, folder, fingerprint or id, the filters search asks
for, and the changes an indexing run writes (new rows, moves, copies, removals), each
inside the caller's transaction.

Paths compare bytewise, so a folder's files are one range of paths; names that are not
UTF-8 sort apart and are matched in Python (schema.FsPath).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np
from sqlalchemy import (
    Text,
    and_,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from ..images.items import SHARD_SEP, is_shard_name, split_member
from .catalog_vectors import log_changes
from .catalog_words import WordRecords
from .database import Database, chunks
from .schema import RAW_PATH, File, Shard, Vector

COPIED_FIELDS = (  # what a copy of a file shares with it
    "fingerprint",
    "content",
    "width",
    "height",
    "format",
    "taken_at",
    "camera_make",
    "camera_model",
    "lens",
    "latitude",
    "longitude",
    "exif_read",
    "meta",
)


def path_range(column, folder: str):
    """Paths inside a folder, or the members of a tar shard (`SHARD::MEMBER`), as a range
    of the bytewise collation (index-friendly)."""
    (prefix,) = prefixes_of([folder])
    return (column >= prefix) & (column < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def camera_named():
    """SQL for a file's camera as "make model" (either may be missing)."""
    return func.coalesce(File.camera_make, "") + " " + func.coalesce(File.camera_model, "")


def prefixes_of(roots: Sequence[str]) -> tuple[str, ...]:
    """What the paths inside each root start with: `ROOT/`, or `SHARD::` for a shard."""
    return tuple(r + SHARD_SEP if is_shard_name(r) else r.rstrip(os.sep) + os.sep for r in roots)


class Stamped(NamedTuple):
    """A file's row as a scan compares it with what is on disk."""

    id: int
    path: str
    size: int
    mtime_ns: int
    state: str
    error: str | None


class FileRecords:
    def __init__(self, db: Database):
        self.db = db

    def raw_paths(self):
        """Rows whose name is not UTF-8. They sort apart from text paths (BLOBs after all
        text in SQLite, RAW_PATH elsewhere), so path ranges miss them: match in Python."""
        if self.db.engine.dialect.name == "sqlite":  # every BLOB >= the empty one > all text
            return File.path >= literal_column("x''")
        return File.path.startswith(RAW_PATH, autoescape=True)

    def under(self, roots: Sequence[str]) -> dict[str, File]:
        """Rows whose path lies under any of the roots (or is one)."""
        with self.db.read() as s:
            return self._under(roots, lambda q: s.scalars(select(File).where(q)))

    def stamps_under(self, roots: Sequence[str]) -> dict[str, Stamped]:
        """What a scan compares of those rows (Stamped): a re-run of 100k files would
        spend most of its time making ORM objects, or reading fields of SQLAlchemy rows
        by name. Paths in a text range are text as stored: FsPath reads the raw ones."""
        columns = (File.id, File.path, File.size, File.mtime_ns, File.state, File.error)
        as_text = (File.id, type_coerce(File.path, Text), *columns[2:])
        with self.db.read() as s:  # Core, not the ORM: a whole tree's rows
            run = s.connection().execute
            return self._under(
                roots,
                lambda q: map(Stamped._make, run(select(*columns).where(q)).all()),
                lambda q: map(Stamped._make, run(select(*as_text).where(q)).all()),
            )

    def _under(self, roots: Sequence[str], rows_where: Callable, text_rows_where=None) -> dict:
        out = {}
        for root in roots:
            inside = (File.path == root) | path_range(File.path, root)
            out.update((f.path, f) for f in (text_rows_where or rows_where)(inside))
        prefixes = prefixes_of(roots)
        for f in rows_where(self.raw_paths()):
            if f.path in roots or f.path.startswith(prefixes):
                out[f.path] = f
        return out

    def named(self, paths: Sequence[str]) -> dict[str, File]:
        """Rows of exactly these paths (the items of a list file)."""
        return {f.path: f for f in self._where(File.path, paths)}

    def rows(self, ids: Sequence[int]) -> dict[int, File]:
        return {f.id: f for f in self._where(File.id, ids)}

    def _where(self, column, values: Sequence) -> list[File]:
        """Rows whose column holds one of the values, a bounded IN (...) at a time."""
        with self.db.read() as s:
            return [
                f
                for chunk in chunks(values)
                for f in s.scalars(select(File).where(column.in_(chunk)))
            ]

    def by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, list[File]]:
        """Indexed files by their cheap fingerprint: candidates for a moved or copied file."""
        out: dict[str, list[File]] = {}
        with self.db.read() as s:
            for chunk in chunks(sorted(set(fingerprints))):
                q = select(File).where(File.fingerprint.in_(chunk), File.state == "ok")
                for f in s.scalars(q.order_by(File.id)):
                    out.setdefault(f.fingerprint, []).append(f)
        return out

    def shared_contents(self) -> list[tuple[int, str]]:
        """(id, content hash) of every indexed file whose bytes another file has too."""
        shared = (
            select(File.content)
            .where(File.content.is_not(None), File.state == "ok")
            .group_by(File.content)
            .having(func.count() > 1)
        )
        q = select(File.id, File.content).where(File.content.in_(shared), File.state == "ok")
        with self.db.read() as s:
            return [tuple(r) for r in s.execute(q.order_by(File.id))]

    def unread(self, roots: Sequence[str], column: str, reading: int) -> list[tuple[int, str]]:
        """(id, path) of indexed files under the roots that an older reading of their EXIF
        or text (`column`: exif_read, text_read) filled, or none did."""
        done = getattr(File, column)
        stale = or_(done.is_(None), done < reading)
        with self.db.read() as s:
            found = self._under(
                roots,
                lambda q: s.execute(select(File.id, File.path).where(q, File.state == "ok", stale)),
            )
        return [(r.id, r.path) for r in found.values()]

    @staticmethod
    def set_fields(s: Session, rows: Sequence[dict]) -> None:
        """Columns of existing rows: each dict an "id" and the columns to set."""
        if rows:
            s.execute(update(File), list(rows))
            WordRecords.refresh(s, [row["id"] for row in rows])

    def counts(self) -> dict[str, int]:
        """Rows by state: ok, failed."""
        with self.db.read() as s:
            return dict(s.execute(select(File.state, func.count()).group_by(File.state)).all())

    def cameras(self, top: int = 10) -> list[tuple[str, int]]:
        """The cameras that took the most indexed photos ("make model"), with how many."""
        named = func.trim(camera_named())
        q = (
            select(named, func.count())
            .where(
                File.state == "ok",
                or_(File.camera_make.is_not(None), File.camera_model.is_not(None)),
            )
            .group_by(named)
            .order_by(func.count().desc(), named)
            .limit(top)
        )
        with self.db.read() as s:
            return [(name, n) for name, n in s.execute(q)]

    def placed(self) -> int:
        """How many indexed photos carry a GPS position."""
        with self.db.read() as s:
            q = select(func.count()).where(File.state == "ok", File.latitude.is_not(None))
            return s.scalar(q) or 0

    def failed(self) -> list[File]:
        with self.db.read() as s:
            return list(s.scalars(select(File).where(File.state == "failed").order_by(File.path)))

    def matching(
        self,
        model_id: int,
        folders: Sequence[str] = (),
        extensions: Sequence[str] = (),
        after: datetime | None = None,
        before: datetime | None = None,
        camera: str | None = None,
        near: tuple[float, float, float] | None = None,
    ) -> np.ndarray:
        """Sorted ids of files with this model's vector under any of the folders, with any
        of the extensions (lower-case, with the dot), taken within [after, before), by a
        camera whose "make model" holds `camera` (lower-case), within `near` (latitude,
        longitude, km) of a place. Dates are the EXIF capture time, else the file's
        modification time (both UTC)."""
        conds = [Vector.model_id == model_id, File.state == "ok", *_around(near)]
        if camera is not None:
            conds.append(func.lower(camera_named()).contains(camera, autoescape=True))
        if after is not None:
            conds.append(_capture_time(operator.ge, after))
        if before is not None:
            conds.append(_capture_time(operator.lt, before))
        prefixes = prefixes_of(folders)
        by_name = []
        if folders:
            by_name.append(or_(*(path_range(File.path, f) for f in folders)))
        if extensions:
            lower = func.lower(File.path)
            by_name.append(or_(*(lower.endswith(e, autoescape=True) for e in extensions)))
        joined = select(File.id).join(Vector, Vector.file_id == File.id).where(*conds)
        with self.db.read() as s:
            ids = set(s.scalars(joined.where(*by_name)))
            if by_name:  # names SQL cannot compare (not UTF-8): the same filters in Python
                raw = joined.add_columns(File.path).where(self.raw_paths())
                ids.update(
                    i
                    for i, path in s.execute(raw)
                    if (not prefixes or path.startswith(prefixes))
                    and (not extensions or path.lower().endswith(tuple(extensions)))
                )
            if near is not None:
                ids = _within(s, ids, near)
        return np.array(sorted(ids), dtype=np.int64)

    @staticmethod
    def stamps_at(s: Session, paths: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """(id, size, mtime_ns) of the rows at these paths, read in the caller's
        transaction: what a commit compares with what its run planned from."""
        columns = (File.path, File.id, File.size, File.mtime_ns)
        return {
            path: (file_id, size, mtime_ns)
            for chunk in chunks(paths)
            for path, file_id, size, mtime_ns in s.execute(
                select(*columns).where(File.path.in_(chunk))
            )
        }

    # Changes, each inside the caller's transaction (Database.write).

    @staticmethod
    def add(s: Session, path: str, size: int, mtime_ns: int, **fields) -> File:
        """Insert a file's row (state ok unless the fields say otherwise); with its id."""
        row = File(path=path, size=size, mtime_ns=mtime_ns, **{"state": "ok", **fields})
        s.add(row)
        s.flush()
        WordRecords.refresh(s, [row.id])
        return row

    @staticmethod
    def add_many(s: Session, rows: Sequence[dict]) -> list[int]:
        """Insert file rows (path, size, mtime_ns and any other columns; state ok unless
        a row says otherwise) in one statement; their ids, in the rows' order."""
        if not rows:
            return []
        rows = [{"state": "ok", **row} for row in rows]
        if not s.bind.dialect.insert_returning:  # an SQLite older than 3.35
            return [FileRecords.add(s, **row).id for row in rows]
        q = insert(File).returning(File.id, sort_by_parameter_order=True)
        ids = list(s.scalars(q, rows))
        WordRecords.refresh(s, ids)
        return ids

    @staticmethod
    def move(s: Session, file_id: int, path: str, size: int, mtime_ns: int) -> None:
        """The same content under a new name keeps its row, id and vectors."""
        s.execute(
            update(File).where(File.id == file_id).values(path=path, size=size, mtime_ns=mtime_ns)
        )
        WordRecords.refresh(s, [file_id])

    @staticmethod
    def copy(s: Session, source: File, path: str, size: int, mtime_ns: int) -> File:
        """A new row for a copy of an indexed file, with the source's vectors for every
        model (logged, so the vector indexes add them)."""
        fields = {c: getattr(source, c) for c in COPIED_FIELDS}
        row = FileRecords.add(s, path, size, mtime_ns, **fields)
        for model_id, blob in s.execute(
            select(Vector.model_id, Vector.vector).where(Vector.file_id == source.id)
        ):
            s.add(Vector(file_id=row.id, model_id=model_id, vector=blob))
            log_changes(s, model_id, [row.id], "+")
        return row

    @staticmethod
    def remove(s: Session, file_ids: Sequence[int]) -> None:
        """Delete file rows and their vectors, logging each removed vector per model; a
        shard that loses a member is no longer complete."""
        for chunk in chunks(file_ids):
            paths = s.scalars(select(File.path).where(File.id.in_(chunk), File.path.contains("::")))
            shards = {m[0] for m in map(split_member, paths) if m is not None}
            if shards:
                s.execute(delete(Shard).where(Shard.path.in_(sorted(shards))))
            pairs = s.execute(
                select(Vector.model_id, Vector.file_id).where(Vector.file_id.in_(chunk))
            ).all()
            by_model: dict[int, list[int]] = {}
            for model_id, fid in pairs:
                by_model.setdefault(model_id, []).append(fid)
            for model_id, fids in by_model.items():
                log_changes(s, model_id, fids, "-")
            s.execute(delete(Vector).where(Vector.file_id.in_(chunk)))
            WordRecords.forget(s, chunk)
            s.execute(delete(File).where(File.id.in_(chunk)))

    # Tar shards read whole: while unchanged, a run knows their members from the rows.

    def shards_complete(self, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of those shards that were read whole, as they were then."""
        out: dict[str, tuple[int, int]] = {}
        with self.db.read() as s:
            for chunk in chunks(paths):
                q = select(Shard.path, Shard.size, Shard.mtime_ns).where(Shard.path.in_(chunk))
                out.update((path, (size, mtime)) for path, size, mtime in s.execute(q))
        return out

    @staticmethod
    def mark_shards_complete(s: Session, shards: Sequence[tuple[str, int, int]]) -> None:
        """(path, size, mtime_ns) of shards whose every member now has its row."""
        for chunk in chunks(shards):
            s.execute(delete(Shard).where(Shard.path.in_([path for path, _, _ in chunk])))
            rows = [{"path": p, "size": size, "mtime_ns": mtime} for p, size, mtime in chunk]
            s.execute(insert(Shard), rows)


EARTH_KM = 6371.0088  # the mean radius


def _around(near: tuple[float, float, float] | None) -> list:
    """SQL for the box around a circle on the globe (an index range on latitude): what
    _within then measures exactly. A box across the 180th meridian or a pole keeps every
    longitude."""
    if near is None:
        return []
    lat, lon, km = near
    span = math.degrees(km / EARTH_KM)
    conds = [File.latitude.between(lat - span, lat + span), File.longitude.is_not(None)]
    widest = math.cos(math.radians(min(90.0, abs(lat) + span)))
    if widest > 1e-9 and abs(lon) + span / widest <= 180:
        conds.append(File.longitude.between(lon - span / widest, lon + span / widest))
    return conds


def _within(s: Session, ids: set[int], near: tuple[float, float, float]) -> set[int]:
    """The ids whose place is within near's km of its point (great-circle distance)."""
    rows = [
        r
        for chunk in chunks(sorted(ids))
        for r in s.execute(select(File.id, File.latitude, File.longitude).where(File.id.in_(chunk)))
    ]
    if not rows:
        return set()
    found, lat, lon = (np.array(x, dtype=np.float64) for x in zip(*rows))
    return {int(i) for i in found[distance_km(lat, lon, near[0], near[1]) <= near[2]]}


def distance_km(lat, lon, lat0: float, lon0: float):
    """Great-circle distance (haversine) from one point, in km."""
    p, p0 = np.radians(lat), math.radians(lat0)
    a = (
        np.sin((p - p0) / 2) ** 2
        + np.cos(p) * math.cos(p0) * np.sin(np.radians(lon - lon0) / 2) ** 2
    )
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def _capture_time(compare, when: datetime):
    """Capture time against `when`, or the file time where there is no capture time."""
    ns = int(when.replace(tzinfo=timezone.utc).timestamp() * 1e9)
    ns = max(-(2**63), min(ns, 2**63 - 1))  # year 1 and 9999 are past int64 nanoseconds
    return or_(
        compare(File.taken_at, when), and_(File.taken_at.is_(None), compare(File.mtime_ns, ns))
    )
