"""The catalog: the source of truth for files, models and vectors (SQLAlchemy 2).

Every change to vectors is appended to `vector_log` in the same transaction, so a FAISS
index built at log position N can be brought up to date by replaying the log after N,
and a crash between a commit and an index write never loses or duplicates anything.
A file's vector never changes under its id: changed content gets a new file row.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .errors import ClipsearchError

SCHEMA_HEAD = "0002"


class CatalogError(ClipsearchError):
    """The catalog cannot be opened or used as asked."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


RAW_PATH = "raw:"  # stored paths are absolute, so no real one starts with this


class FsPath(TypeDecorator):
    """A file-system path. Text as usual; a name that is not valid UTF-8 (undecodable
    bytes on Linux) is stored as its raw bytes, which SQLite keeps exactly, and elsewhere
    (text must be UTF-8) as RAW_PATH + base64 of the bytes. Compared bytewise (collation
    C), so that a folder's files are one range of paths."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":  # BINARY, SQLite's default, is bytewise already
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Text(collation="C"))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            raw = os.fsencode(value)
            return raw if dialect.name == "sqlite" else RAW_PATH + base64.b64encode(raw).decode()

    def process_result_value(self, value, dialect):
        if isinstance(value, str) and value.startswith(RAW_PATH):
            return os.fsdecode(base64.b64decode(value[len(RAW_PATH) :]))
        return os.fsdecode(value) if isinstance(value, bytes) else value


class Base(DeclarativeBase):
    pass


class File(Base):
    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    fingerprint: Mapped[str | None] = mapped_column(String(40), index=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    camera_make: Mapped[str | None] = mapped_column(Text)
    camera_model: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8), default="ok")  # ok | failed
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    dim: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Vector(Base):
    __tablename__ = "vectors"
    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised


class VectorLog(Base):
    """Append-only: +file_id added, -file_id removed, per model."""

    __tablename__ = "vector_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    file_id: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(String(1))  # + | -
    # AUTOINCREMENT: positions are never reused after the log is trimmed.
    __table_args__ = (
        Index("ix_vector_log_model_seq", "model_id", "seq"),
        {"sqlite_autoincrement": True},
    )


class VectorIndex(Base):
    """A built FAISS index: which file holds it and up to which log position."""

    __tablename__ = "vector_indexes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), unique=True)
    preset: Mapped[str] = mapped_column(String(32))
    factory: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON search parameters
    filename: Mapped[str] = mapped_column(Text)
    log_seq: Mapped[int] = mapped_column(Integer)
    count: Mapped[int]
    tombstones: Mapped[int] = mapped_column(Integer, default=0)  # removed, not yet purged
    built_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # queries read while indexing writes
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(engine: Engine, connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("clipsearch.migrations")))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; refuse a catalog from a newer clipsearch."""
    from alembic import command
    from alembic.script import ScriptDirectory

    with engine.begin() as conn:
        cfg = _alembic_config(engine, conn)
        current = current_revision(engine)
        known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
        if current is not None and current not in known:
            raise CatalogError(
                f"this catalog has schema revision {current}, written by a newer clipsearch; "
                "upgrade clipsearch to use it (nothing was changed)"
            )
        command.upgrade(cfg, revision)


def _backup_sqlite(engine: Engine, path: Path, revision: str | None) -> None:
    """Copy the database with SQLite's online backup before a migration touches it."""
    target = path.with_name(f"{path.name}.before-{revision or 'none'}.bak")
    raw = engine.raw_connection()
    try:
        dest = sqlite3.connect(target)
        raw.driver_connection.backup(dest)
        dest.close()
    finally:
        raw.close()


class Catalog:
    """Files, models and vectors in one SQL database, migrated to the current schema."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        revision = current_revision(self.engine)
        if revision != SCHEMA_HEAD:
            db = self.engine.url.database
            if self.engine.dialect.name == "sqlite" and revision is not None and db:
                _backup_sqlite(self.engine, Path(db), revision)
            migrate(self.engine)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # ---- models ---------------------------------------------------------------------

    def model_row(self, name: str, architecture: str, digest: str, dim: int) -> Model:
        """The row for these weights, created on first use."""
        with self.session() as s, s.begin():
            row = s.scalar(select(Model).where(Model.digest == digest))
            if row is None:
                row = Model(name=name, architecture=architecture, digest=digest, dim=dim)
                s.add(row)
                s.flush()
            return row

    def models(self) -> list[tuple[Model, int]]:
        """Every model with the number of vectors it has here."""
        with self.session() as s:
            counts = dict(
                s.execute(select(Vector.model_id, func.count()).group_by(Vector.model_id)).all()
            )
            return [(m, counts.get(m.id, 0)) for m in s.scalars(select(Model).order_by(Model.id))]

    def model(self, model_id: int) -> Model:
        with self.session() as s:
            return s.get_one(Model, model_id)

    def has_vectors(self, model_id: int) -> bool:
        with self.session() as s:
            q = select(Vector.file_id).where(Vector.model_id == model_id).limit(1)
            return s.scalar(q) is not None

    def find_model(self, digest: str) -> Model | None:
        with self.session() as s:
            return s.scalar(select(Model).where(Model.digest == digest))

    # ---- files ----------------------------------------------------------------------

    def raw_paths(self):
        """Rows whose name is not UTF-8. They sort apart from text paths (BLOBs after all
        text in SQLite, RAW_PATH elsewhere), so path ranges miss them: match in Python."""
        if self.engine.dialect.name == "sqlite":  # every BLOB >= the empty one > all text
            return File.path >= literal_column("x''")
        return File.path.startswith(RAW_PATH, autoescape=True)

    def files_under(self, roots: Sequence[str]) -> dict[str, File]:
        """Catalog rows whose path lies under any of the roots (or is one)."""
        out: dict[str, File] = {}
        with self.session() as s:
            for root in roots:
                prefix = root.rstrip(os.sep) + os.sep
                after = prefix[:-1] + chr(ord(os.sep) + 1)  # first string past the prefix
                q = select(File).where(
                    (File.path == root) | ((File.path >= prefix) & (File.path < after))
                )
                out.update((f.path, f) for f in s.scalars(q))
            for f in s.scalars(select(File).where(self.raw_paths())):
                if any(f.path == r or f.path.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
                    out[f.path] = f
        return out

    def files_by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, File]:
        fps = list(set(fingerprints))
        out: dict[str, File] = {}
        with self.session() as s:
            for i in range(0, len(fps), 500):
                q = select(File).where(File.fingerprint.in_(fps[i : i + 500]), File.state == "ok")
                for f in s.scalars(q):
                    out.setdefault(f.fingerprint, f)
        return out

    def count_files(self) -> dict[str, int]:
        with self.session() as s:
            return dict(s.execute(select(File.state, func.count()).group_by(File.state)).all())

    def failed_files(self) -> list[File]:
        with self.session() as s:
            return list(s.scalars(select(File).where(File.state == "failed").order_by(File.path)))

    def file_rows(self, ids: Sequence[int]) -> dict[int, File]:
        out: dict[int, File] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                out.update(
                    (f.id, f) for f in s.scalars(select(File).where(File.id.in_(ids[i : i + 500])))
                )
        return out

    # ---- vectors --------------------------------------------------------------------

    @staticmethod
    def log(s: Session, model_id: int, file_ids: Iterable[int], op: str) -> None:
        rows = [{"model_id": model_id, "file_id": fid, "op": op} for fid in file_ids]
        if rows:
            s.execute(insert(VectorLog), rows)

    @staticmethod
    def remove_files(s: Session, file_ids: Sequence[int]) -> None:
        """Delete file rows and their vectors, logging each removed vector per model."""
        for i in range(0, len(file_ids), 500):
            chunk = list(file_ids[i : i + 500])
            pairs = s.execute(
                select(Vector.model_id, Vector.file_id).where(Vector.file_id.in_(chunk))
            ).all()
            by_model: dict[int, list[int]] = {}
            for model_id, fid in pairs:
                by_model.setdefault(model_id, []).append(fid)
            for model_id, fids in by_model.items():
                Catalog.log(s, model_id, fids, "-")
            s.execute(delete(Vector).where(Vector.file_id.in_(chunk)))
            s.execute(delete(File).where(File.id.in_(chunk)))

    @staticmethod
    def add_vectors(
        s: Session, model_id: int, file_ids: Sequence[int], vectors: np.ndarray
    ) -> None:
        rows = [
            {"file_id": fid, "model_id": model_id, "vector": np.asarray(v, np.float32).tobytes()}
            for fid, v in zip(file_ids, vectors)
        ]
        if rows:
            s.execute(insert(Vector), rows)
            Catalog.log(s, model_id, file_ids, "+")

    def vectors(
        self, model_id: int, file_ids: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, vectors float32 (n, dim)) for a model, optionally only some files."""
        with self.session() as s:
            q = select(Vector.file_id, Vector.vector).where(Vector.model_id == model_id)
            if file_ids is None:
                rows = s.execute(q.order_by(Vector.file_id)).all()
            else:
                rows = []
                for i in range(0, len(file_ids), 900):
                    rows += s.execute(q.where(Vector.file_id.in_(file_ids[i : i + 900]))).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), np.float32)
        return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
            len(rows), -1
        )

    def iter_vector_batches(
        self, model_id: int, batch: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All of a model's vectors in id order, a batch at a time (bounded memory)."""
        last = -1
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(Vector.file_id, Vector.vector)
                    .where(Vector.model_id == model_id, Vector.file_id > last)
                    .order_by(Vector.file_id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            last = rows[-1][0]
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield (
                ids,
                np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1),
            )

    def log_position(self, model_id: int) -> int:
        """The latest change to the model's vectors (the log is trimmed once indexed)."""
        with self.session() as s:
            logged = s.scalar(select(func.max(VectorLog.seq)).where(VectorLog.model_id == model_id))
            indexed = s.scalar(select(VectorIndex.log_seq).where(VectorIndex.model_id == model_id))
        return max(logged or 0, indexed or 0)

    def log_since(self, model_id: int, seq: int) -> list[tuple[int, int, str]]:
        with self.session() as s:
            return [
                tuple(r)
                for r in s.execute(
                    select(VectorLog.seq, VectorLog.file_id, VectorLog.op)
                    .where(VectorLog.model_id == model_id, VectorLog.seq > seq)
                    .order_by(VectorLog.seq)
                )
            ]

    # ---- vector index bookkeeping ----------------------------------------------------

    def index_row(self, model_id: int) -> VectorIndex | None:
        with self.session() as s:
            return s.scalar(select(VectorIndex).where(VectorIndex.model_id == model_id))

    def index_rows(self) -> list[VectorIndex]:
        with self.session() as s:
            return list(s.scalars(select(VectorIndex)))

    def record_index(self, model_id: int, **fields) -> None:
        """Point the model at a newly written index file and trim the log it has absorbed."""
        with self.session() as s, s.begin():
            row = s.scalar(select(VectorIndex).where(VectorIndex.model_id == model_id))
            if row is None:
                s.add(VectorIndex(model_id=model_id, **fields))
            else:
                s.execute(update(VectorIndex).where(VectorIndex.id == row.id).values(**fields))
            s.execute(
                delete(VectorLog).where(
                    VectorLog.model_id == model_id, VectorLog.seq <= fields["log_seq"]
                )
            )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
