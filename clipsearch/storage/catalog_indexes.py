"""The catalog's record of each model's vector index: the file that holds it, its preset
and search parameters, the log position it reflects, and its measured recall. The record
only moves forward, so no change logged after an index was written is ever lost.
"""

from __future__ import annotations

import json

from sqlalchemy import delete, select, update

from ..core import faults
from .database import Database
from .recall import Recall
from .schema import VectorIndex, VectorLog


def stored_params(row: VectorIndex) -> dict | None:
    """The record's search parameters; None where they are damaged (not a JSON object),
    so that the index is made again rather than searched with garbage."""
    try:
        params = json.loads(row.params)
    except (TypeError, ValueError, RecursionError):
        return None
    return params if isinstance(params, dict) else None


def stored_recall(row: VectorIndex) -> Recall | None:
    """The record's measured recall; None where none was measured or it is damaged."""
    try:
        return Recall.from_dict(json.loads(row.recall)) if row.recall else None
    except (TypeError, ValueError, RecursionError):
        return None


class IndexRecords:
    def __init__(self, db: Database):
        self.db = db

    def row(self, model_id: int) -> VectorIndex | None:
        with self.db.read() as s:
            return s.scalar(select(VectorIndex).where(VectorIndex.model_id == model_id))

    def rows(self) -> list[VectorIndex]:
        with self.db.read() as s:
            return list(s.scalars(select(VectorIndex)))

    def record_recall(self, model_id: int, recall: str) -> None:
        """What a check of the model's index measured (recall.Recall as JSON)."""
        with self.db.write() as s:
            s.execute(
                update(VectorIndex).where(VectorIndex.model_id == model_id).values(recall=recall)
            )

    def record(self, model_id: int, **fields) -> bool:
        """Point the model at a newly written index file and trim the log it has absorbed;
        False, changing nothing, where the catalog already points at a later one: the log
        position never moves back, so no change logged since is ever lost."""
        with self.db.write() as s:
            row = s.scalar(select(VectorIndex).where(VectorIndex.model_id == model_id))
            if row is not None and row.log_seq > fields["log_seq"]:
                return False
            if row is None:
                s.add(VectorIndex(model_id=model_id, **fields))
            else:
                s.execute(update(VectorIndex).where(VectorIndex.id == row.id).values(**fields))
            s.execute(
                delete(VectorLog).where(
                    VectorLog.model_id == model_id, VectorLog.seq <= fields["log_seq"]
                )
            )
            faults.hit("record-index")
            return True
