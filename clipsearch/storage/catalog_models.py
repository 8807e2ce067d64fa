"""The catalog's models: one row per set of weights (and preprocessing) that made vectors
here, found by the digest that ties each vector to the model that made it."""

from __future__ import annotations

from sqlalchemy import func, select

from .database import Database
from .schema import Model, Vector


class ModelRecords:
    def __init__(self, db: Database):
        self.db = db

    def register(self, name: str, architecture: str, digest: str, dim: int) -> Model:
        """The row for these weights, created on first use."""
        with self.db.write() as s:
            row = s.scalar(select(Model).where(Model.digest == digest))
            if row is None:
                row = Model(name=name, architecture=architecture, digest=digest, dim=dim)
                s.add(row)
                s.flush()
            return row

    def counted(self) -> list[tuple[Model, int]]:
        """Every model with the number of vectors it has here."""
        with self.db.read() as s:
            counts = dict(
                s.execute(select(Vector.model_id, func.count()).group_by(Vector.model_id)).all()
            )
            return [(m, counts.get(m.id, 0)) for m in s.scalars(select(Model).order_by(Model.id))]

    def with_vectors(self) -> list[tuple[Model, int]]:
        """The models that have vectors here, with how many."""
        return [(m, n) for m, n in self.counted() if n > 0]

    def get(self, model_id: int) -> Model:
        with self.db.read() as s:
            return s.get_one(Model, model_id)

    def find(self, digest: str) -> Model | None:
        with self.db.read() as s:
            return s.scalar(select(Model).where(Model.digest == digest))

    def has_vectors(self, model_id: int) -> bool:
        with self.db.read() as s:
            q = select(Vector.file_id).where(Vector.model_id == model_id).limit(1)
            return s.scalar(q) is not None
