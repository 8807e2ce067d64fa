"""Where an index lives: one folder with the catalog database and the vector index files."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .catalog import Catalog, sqlite_url
from .digests import DigestCache
from .errors import ClipsearchError
from .query_precision import PrecisionChecks
from .vectors import VectorIndexes

CATALOG_FILE = "catalog.db"
INDEX_DIR = "indexes"
DIGESTS_FILE = "weights-digests.json"
PRECISION_CHECKS_FILE = "precision-checks.json"


class StoreNotFound(ClipsearchError):
    """A command that reads a store found none."""


def default_store() -> Path:
    """CLIPSEARCH_HOME, else the platform's per-user data folder."""
    env = os.environ.get("CLIPSEARCH_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("clipsearch"))


class Store:
    """A catalog (the source of truth) and the FAISS indexes derived from it."""

    def __init__(
        self, path: str | os.PathLike | None = None, db_url: str | None = None, create: bool = True
    ):
        self.path = Path(path).expanduser() if path else default_store()
        if not db_url and not (self.path / CATALOG_FILE).exists() and not create:
            raise StoreNotFound(
                f"no clipsearch index at {self.path}; run `clipsearch index PATH` first "
                "(or pass --store DIR / set CLIPSEARCH_HOME)"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or sqlite_url(self.path / CATALOG_FILE)
        self.catalog = Catalog(self.db_url)
        self.indexes = VectorIndexes(self.catalog, self.path / INDEX_DIR)
        self.digests = DigestCache(self.path / DIGESTS_FILE)
        self.precision_checks = PrecisionChecks(self.path / PRECISION_CHECKS_FILE)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
