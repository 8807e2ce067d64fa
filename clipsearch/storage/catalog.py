"""The catalog: the source of truth for files, models and vectors (SQLAlchemy 2).

A database (database.py, tables in schema.py) and what is kept in it, each part with its
own name: `catalog.files`, `catalog.models`, `catalog.vectors` (with the log of their
changes), `catalog.indexes` (the record of each model's vector index), `catalog.words`
(what each file carries in words, for search by them). Everything else in
a store (the FAISS index files, the memos) is derived from it and can be rebuilt from it.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from .catalog_files import FileRecords
from .catalog_indexes import IndexRecords
from .catalog_models import ModelRecords
from .catalog_vectors import VectorRecords
from .catalog_words import WordRecords
from .database import Database


class Catalog(Database):
    """Files, models and vectors in one SQL database; see Database for opening, reading
    and writing it."""

    def __init__(self, url: str | URL):
        super().__init__(url)
        self.files = FileRecords(self)
        self.models = ModelRecords(self)
        self.vectors = VectorRecords(self)
        self.indexes = IndexRecords(self)
        self.words = WordRecords(self)
