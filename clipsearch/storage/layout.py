"""A store's folder, file by file: where each part lives, known without opening the store
(an unchanged re-run looks at some of them before SQLAlchemy is imported:
indexing/settled.py)."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import ClipsearchError
from ..core.memo import DIGESTS_FILE as DIGESTS_FILE  # named where the cache is

CATALOG_FILE = "catalog.db"
INDEX_DIR = "indexes"
LOCK_FILE = "writer.lock"
MODEL_DIGESTS_FILE = "model-digests.json"  # by spec: a no-op run loads no model
PRECISION_CHECKS_FILE = "precision-checks.json"  # query/precision.py: PrecisionChecks
TEXT_MODELS_FILE = "text-models.json"  # the text tower each image model's queries use
SETTINGS_FILE = "settings.json"  # what `index` was told once and keeps doing (--ocr)
SETTLED_FILE = "settled-runs.json"  # indexing/settled.py: re-runs that found nothing to do
QUERY_LOG_DIR = "query-log"  # query_log.py


def default_store() -> Path:
    """CLIPSEARCH_HOME, else the platform's per-user data folder."""
    env = os.environ.get("CLIPSEARCH_HOME")
    if not env:
        import platformdirs

        return Path(platformdirs.user_data_dir("clipsearch"))
    try:
        return Path(env).expanduser()
    except RuntimeError:  # ~user of no such user
        raise ClipsearchError(
            f"CLIPSEARCH_HOME={env!r}: no such user's home folder; give a folder that exists"
        ) from None


def read_only_uri(path: Path, immutable: bool) -> str:
    """SQLite's URI for reading a database file without changing it; `immutable` where no
    -wal, -shm or -journal file can matter (SQLite then reads the file alone and makes
    none of them)."""
    from urllib.parse import quote

    return f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")


def has_sidecars(path: Path) -> bool:
    """Whether SQLite's -wal, -shm or -journal file is beside the database."""
    return any(path.with_name(path.name + end).exists() for end in ("-wal", "-shm", "-journal"))
