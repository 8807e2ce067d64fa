"""The catalog's vectors: one float32 BLOB per file and model, L2-normalised, and the log
of every change to them.

Every change is appended to `vector_log` in the same transaction, so a FAISS index built
at log position N is brought up to date by replaying the log after N, and a crash between
a commit and an index write never loses or duplicates anything. A file's vector never
changes under its id: changed content gets a new file row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from .database import IN_CHUNK, CatalogError, Database, chunks
from .schema import Vector, VectorIndex, VectorLog


def log_changes(s: Session, model_id: int, file_ids: Iterable[int], op: str) -> None:
    """Log vectors added (+) or removed (-), in the caller's transaction."""
    rows = [{"model_id": model_id, "file_id": fid, "op": op} for fid in file_ids]
    if rows:
        s.execute(insert(VectorLog), rows)


class VectorRecords:
    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def add(s: Session, model_id: int, file_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store (and log) the model's vectors of these files, in the caller's transaction."""
        rows = [
            {"file_id": fid, "model_id": model_id, "vector": np.asarray(v, np.float32).tobytes()}
            for fid, v in zip(file_ids, vectors)
        ]
        if rows:
            s.execute(insert(Vector), rows)
            log_changes(s, model_id, file_ids, "+")

    def present(self, model_id: int | None, file_ids: Sequence[int]) -> set[int]:
        """Those of the files that have a vector from the model."""
        out: set[int] = set()
        if model_id is None:
            return out
        if len(file_ids) > IN_CHUNK and len(file_ids) * 3 > self.count(model_id):
            return set(self.ids(model_id).tolist()).intersection(file_ids)  # one pass
        with self.db.read() as s:
            for chunk in chunks(file_ids):
                q = select(Vector.file_id).where(
                    Vector.model_id == model_id, Vector.file_id.in_(chunk)
                )
                out.update(s.scalars(q))
        return out

    def count(self, model_id: int) -> int:
        """How many files have the model's vector."""
        with self.db.read() as s:
            q = select(func.count()).select_from(Vector).where(Vector.model_id == model_id)
            return s.scalar(q)

    def ids(self, model_id: int) -> np.ndarray:
        """The ids of the files that have the model's vector."""
        with self.db.read() as s:  # Core, not the ORM: a whole model's ids, fast
            q = select(Vector.file_id).where(Vector.model_id == model_id)
            rows = s.connection().execute(q).scalars().all()
        return np.array(rows, dtype=np.int64)

    def get(
        self, model_id: int, file_ids: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, vectors float32 (n, dim)) for a model, optionally only some files."""
        with self.db.read() as s:
            q = select(Vector.file_id, Vector.vector).where(Vector.model_id == model_id)
            if file_ids is None:
                rows = s.execute(q.order_by(Vector.file_id)).all()
            else:
                rows = []
                for chunk in chunks(file_ids):
                    rows += s.execute(q.where(Vector.file_id.in_(chunk))).all()
        return _decode(rows)

    def batches(
        self, model_id: int, batch: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All of a model's vectors in id order, a batch at a time (bounded memory)."""
        last = -1
        while True:
            with self.db.read() as s:
                rows = s.execute(
                    select(Vector.file_id, Vector.vector)
                    .where(Vector.model_id == model_id, Vector.file_id > last)
                    .order_by(Vector.file_id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            last = rows[-1][0]
            yield _decode(rows)

    def log_position(self, model_id: int) -> int:
        """The latest change to the model's vectors (the log is trimmed once indexed)."""
        with self.db.read() as s:
            logged = s.scalar(select(func.max(VectorLog.seq)).where(VectorLog.model_id == model_id))
            indexed = s.scalar(select(VectorIndex.log_seq).where(VectorIndex.model_id == model_id))
        return max(logged or 0, indexed or 0)

    def log_since(self, model_id: int, seq: int) -> list[tuple[int, int, str]]:
        """(position, file id, op) of the model's changes after a position, in order."""
        with self.db.read() as s:
            return [
                tuple(r)
                for r in s.execute(
                    select(VectorLog.seq, VectorLog.file_id, VectorLog.op)
                    .where(VectorLog.model_id == model_id, VectorLog.seq > seq)
                    .order_by(VectorLog.seq)
                )
            ]


def _decode(rows) -> tuple[np.ndarray, np.ndarray]:
    """(file id, float32 BLOB) rows -> (ids, vectors (n, dim))."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), np.float32)
    blobs = [r[1] for r in rows]
    lengths = list(map(len, blobs))  # at C speed: index builds decode every vector
    if len(set(lengths)) > 1 or lengths[0] % 4:
        size = Counter(lengths).most_common(1)[0][0]  # the others'
        odd = next((i for i, n in enumerate(lengths) if n != size or n % 4), 0)
        raise CatalogError(
            f"the catalog is damaged: the vector of file #{rows[odd][0]} has {lengths[odd]} "
            f"bytes, others {size}; `clipsearch forget` that file and index it again, or "
            "restore catalog.db from a backup"
        )
    return ids, np.frombuffer(b"".join(blobs), np.float32).reshape(len(rows), -1)
