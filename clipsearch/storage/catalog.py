"""The catalog: the source of truth for files, models and vectors (SQLAlchemy 2).

Every change to vectors is appended to `vector_log` in the same transaction, so a FAISS
index built at log position N can be brought up to date by replaying the log after N,
and a crash between a commit and an index write never loses or duplicates anything.
A file's vector never changes under its id: changed content gets a new file row.
"""

from __future__ import annotations

import base64
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
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
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..core import faults
from ..core.errors import ClipsearchError
from ..images.items import SHARD_SEP, is_shard_name, split_member

SCHEMA_HEAD = "0005"


class CatalogError(ClipsearchError):
    """The catalog cannot be opened or used as asked."""


class CatalogMissing(CatalogError):
    """A command that reads found no catalog to read."""


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
    fingerprint: Mapped[str | None] = mapped_column(String(40), index=True)  # cheap: candidates
    content: Mapped[str | None] = mapped_column(String(64))  # hash of every byte: proof
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    camera_make: Mapped[str | None] = mapped_column(Text)
    camera_model: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[str | None] = mapped_column(Text)  # JSON: a shard's sidecars, a list's row
    state: Mapped[str] = mapped_column(String(8), default="ok")  # ok | failed
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Shard(Base):
    """A tar shard whose every image member is in the catalog, as it was then: while its
    size and mtime match, a run knows its members from here without opening it. Removing
    any member's row removes this mark too, so a shard left half done is read again."""

    __tablename__ = "shards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)


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
    recall: Mapped[str | None] = mapped_column(Text)  # JSON: tuning.Recall, when measured
    built_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's and PostgreSQL's parameter limits


def chunks(items: Sequence, size: int = IN_CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def under(column, folder: str):
    """Paths inside a folder, or the members of a tar shard (`SHARD::MEMBER`), as a range
    of the bytewise collation (index-friendly)."""
    (prefix,) = prefixes_of([folder])
    return (column >= prefix) & (column < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def prefixes_of(roots: Sequence[str]) -> tuple[str, ...]:
    """What the paths inside each root start with: `ROOT/`, or `SHARD::` for a shard."""
    return tuple(r + SHARD_SEP if is_shard_name(r) else r.rstrip(os.sep) + os.sep for r in roots)


def sqlite_url(path: Path) -> URL:
    """A file's SQLite URL. Built, never formatted: `?`, `#` or `%20` in a folder name
    would otherwise be read as URL syntax and put the catalog somewhere else."""
    return URL.create("sqlite", database=str(path))


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Transactions are begun explicitly (see _sqlite_begin): pysqlite's own handling
    # commits DDL as it runs, so a crash in the first migration left half a schema.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:
    """Writers take SQLite's write lock when they begin: a read transaction that later
    writes fails at once, without waiting, when another process has written meanwhile."""
    writes = conn.get_execution_options().get("write")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def make_engine(url: str | URL) -> Engine:
    """An engine for a catalog URL; every way a URL can be unusable is one clear line."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CatalogError(
            f"--db {url!s}: not a database URL; use e.g. sqlite:////path/catalog.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise CatalogError(
            f"{shown}: an in-memory catalog would vanish when the command ends; give a file "
            "(--store DIR, or --db sqlite:////path/catalog.db)"
        )
    try:
        engine = create_engine(parsed)
    except NoSuchModuleError:
        raise CatalogError(
            f"{shown}: SQLAlchemy knows no database {parsed.drivername!r}; "
            "use sqlite:// or postgresql+psycopg://"
        ) from None
    except ImportError as e:
        raise CatalogError(
            f"{shown}: the database driver is not installed ({e.name or e}); for PostgreSQL: "
            "pip install 'clipsearch[postgres]'"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _alembic_config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("clipsearch.migrations")))
    cfg.attributes["connection"] = connection
    return cfg


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_alembic_config(None)).walk_revisions()}


def _revision(conn) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _backup_sqlite(engine: Engine, path: Path, revision: str) -> None:
    """Copy the database with SQLite's online backup before a migration touches it."""
    target = path.with_name(f"{path.name}.before-{revision}.bak")
    private_file(target)
    raw = engine.raw_connection()
    try:
        dest = sqlite3.connect(target)
        raw.driver_connection.backup(dest)
        dest.close()
    finally:
        raw.close()


def private_file(path: Path) -> None:
    """Create an empty file only its owner can read: file names of photos are private."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to `revision` in one transaction that holds the database's write
    lock from the start (an advisory lock on PostgreSQL): a crash undoes it whole, and a
    second process migrating at the same time waits, then finds nothing left to do."""
    from alembic import command

    with engine.execution_options(write=True).begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(2026112801)")
        command.upgrade(_alembic_config(conn), revision)
        faults.hit("migration")


class State(Enum):
    """What a catalog database holds, found without changing it."""

    MISSING = "no database file yet"
    EMPTY = "a database without tables"
    OLDER = "a catalog from an older clipsearch"
    CURRENT = "a catalog at this clipsearch's schema"


class Catalog:
    """Files, models and vectors in one SQL database.

    Opening changes nothing: a database that is not a clipsearch catalog, or one from a
    newer clipsearch, is refused untouched, and reading needs a catalog at the current
    schema. The first write creates or upgrades the schema, in one transaction.
    """

    def __init__(self, url: str | URL):
        self.url = url
        self.engine = make_engine(url)
        self.shown = self.engine.url.render_as_string(hide_password=True)
        try:
            self.state = self._inspect()
        except CatalogError:
            self.engine.dispose()  # a refused database keeps no connection (nor WAL files)
            raise

    @property
    def sqlite_file(self) -> Path | None:
        db = self.engine.url.database
        return Path(db) if self.engine.dialect.name == "sqlite" and db else None

    def _inspect(self) -> State:
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            return State.MISSING
        if self.sqlite_file is not None and not self.sqlite_file.is_file():
            raise CatalogError(f"{self.sqlite_file} is not a file; point --store at a folder")
        try:
            with self.engine.connect() as conn:
                revision = _revision(conn)
                tables = inspect(conn).get_table_names()
        except DBAPIError as e:
            raise CatalogError(self._cannot_open(e)) from None
        if revision is None:
            if tables:
                raise CatalogError(
                    f"{self.shown} is not a clipsearch catalog (it holds tables "
                    f"{', '.join(sorted(tables)[:5])}); nothing was changed. Use another "
                    "--store or --db"
                )
            return State.EMPTY
        if revision not in known_revisions():
            raise CatalogError(
                f"this catalog has schema revision {revision}, written by a newer clipsearch; "
                "upgrade clipsearch to use it (nothing was changed)"
            )
        return State.CURRENT if revision == SCHEMA_HEAD else State.OLDER

    def _cannot_open(self, e: DBAPIError) -> str:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        if "not a database" in reason:
            return f"{self.shown} is not a clipsearch catalog ({reason}); nothing was changed"
        return f"cannot open the catalog {self.shown}: {reason}"

    def prepare(self) -> None:
        """Create or upgrade the schema: in one transaction that a crash undoes whole, and
        that a second process doing the same waits for and then finds done."""
        if self.state is State.CURRENT:
            return
        if self.state is State.MISSING:
            if not self.sqlite_file.parent.is_dir():
                raise CatalogError(
                    f"the folder {self.sqlite_file.parent} does not exist; create it or give "
                    "another --db"
                )
            private_file(self.sqlite_file)
        elif self.state is State.OLDER and self.sqlite_file is not None:
            with self.engine.connect() as conn:
                revision = _revision(conn)
            _backup_sqlite(self.engine, self.sqlite_file, revision)
        migrate(self.engine)
        if self.engine.dialect.name == "sqlite":  # persistent; queries read while indexing writes
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
        self.state = State.CURRENT

    def _readable(self) -> None:
        if self.state is State.CURRENT:
            return
        if self.state is State.OLDER:
            raise CatalogError(
                f"the catalog {self.shown} was written by an older clipsearch; any command "
                "that writes (e.g. `clipsearch index PATH`) upgrades it, keeping a backup"
            )
        raise CatalogMissing(
            f"no clipsearch catalog at {self.shown} yet; run `clipsearch index PATH` first"
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing is written through it."""
        self._readable()
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction holding the database's write lock from its first statement:
        everything in it commits together, or nothing does."""
        self.prepare()
        engine = self.engine.execution_options(write=True)
        with Session(engine, expire_on_commit=False) as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # ---- models ---------------------------------------------------------------------

    def register_model(self, name: str, architecture: str, digest: str, dim: int) -> Model:
        """The row for these weights, created on first use."""
        with self.write() as s:
            row = s.scalar(select(Model).where(Model.digest == digest))
            if row is None:
                row = Model(name=name, architecture=architecture, digest=digest, dim=dim)
                s.add(row)
                s.flush()
            return row

    def models(self) -> list[tuple[Model, int]]:
        """Every model with the number of vectors it has here."""
        with self.read() as s:
            counts = dict(
                s.execute(select(Vector.model_id, func.count()).group_by(Vector.model_id)).all()
            )
            return [(m, counts.get(m.id, 0)) for m in s.scalars(select(Model).order_by(Model.id))]

    def model(self, model_id: int) -> Model:
        with self.read() as s:
            return s.get_one(Model, model_id)

    def has_vectors(self, model_id: int) -> bool:
        with self.read() as s:
            q = select(Vector.file_id).where(Vector.model_id == model_id).limit(1)
            return s.scalar(q) is not None

    def find_model(self, digest: str) -> Model | None:
        with self.read() as s:
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
        with self.read() as s:
            for root in roots:
                q = select(File).where((File.path == root) | under(File.path, root))
                out.update((f.path, f) for f in s.scalars(q))
            for f in s.scalars(select(File).where(self.raw_paths())):
                if f.path in roots or f.path.startswith(prefixes_of(roots)):
                    out[f.path] = f
        return out

    def files_named(self, paths: Sequence[str]) -> dict[str, File]:
        """Catalog rows of exactly these paths (the items of a list file)."""
        return {f.path: f for f in self._files_where(File.path, paths)}

    def _files_where(self, column, values: Sequence) -> list[File]:
        """File rows whose column holds one of the values, a bounded IN (...) at a time."""
        with self.read() as s:
            return [
                f
                for chunk in chunks(values)
                for f in s.scalars(select(File).where(column.in_(chunk)))
            ]

    def files_by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, list[File]]:
        """Indexed files by their cheap fingerprint: candidates for a moved or copied file."""
        out: dict[str, list[File]] = {}
        with self.read() as s:
            for chunk in chunks(sorted(set(fingerprints))):
                q = select(File).where(File.fingerprint.in_(chunk), File.state == "ok")
                for f in s.scalars(q.order_by(File.id)):
                    out.setdefault(f.fingerprint, []).append(f)
        return out

    def count_files(self) -> dict[str, int]:
        with self.read() as s:
            return dict(s.execute(select(File.state, func.count()).group_by(File.state)).all())

    def failed_files(self) -> list[File]:
        with self.read() as s:
            return list(s.scalars(select(File).where(File.state == "failed").order_by(File.path)))

    def file_rows(self, ids: Sequence[int]) -> dict[int, File]:
        return {f.id: f for f in self._files_where(File.id, ids)}

    def ids_matching(
        self,
        model_id: int,
        folders: Sequence[str] = (),
        extensions: Sequence[str] = (),
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> np.ndarray:
        """Sorted ids of files with this model's vector under any of the folders, with any
        of the extensions (lower-case, with the dot), taken within [after, before). Dates
        are the EXIF capture time, else the file's modification time (both UTC)."""
        conds = [Vector.model_id == model_id, File.state == "ok"]
        if after is not None:
            conds.append(_taken(operator.ge, after))
        if before is not None:
            conds.append(_taken(operator.lt, before))
        prefixes = prefixes_of(folders)
        by_name = []
        if folders:
            by_name.append(or_(*(under(File.path, f) for f in folders)))
        if extensions:
            lower = func.lower(File.path)
            by_name.append(or_(*(lower.endswith(e, autoescape=True) for e in extensions)))
        joined = select(File.id).join(Vector, Vector.file_id == File.id).where(*conds)
        with self.read() as s:
            ids = set(s.scalars(joined.where(*by_name)))
            if by_name:  # names SQL cannot compare (not UTF-8): the same filters in Python
                raw = joined.add_columns(File.path).where(self.raw_paths())
                ids.update(
                    i
                    for i, path in s.execute(raw)
                    if (not prefixes or path.startswith(prefixes))
                    and (not extensions or path.lower().endswith(tuple(extensions)))
                )
        return np.array(sorted(ids), dtype=np.int64)

    @staticmethod
    def add_file(s: Session, path: str, size: int, mtime_ns: int, **fields) -> File:
        """Insert a file's row (state ok unless the fields say otherwise); with its id."""
        row = File(path=path, size=size, mtime_ns=mtime_ns, **{"state": "ok", **fields})
        s.add(row)
        s.flush()
        return row

    @staticmethod
    def add_files(s: Session, rows: Sequence[dict]) -> list[int]:
        """Insert file rows (path, size, mtime_ns and any other columns; state ok unless
        a row says otherwise) in one statement; their ids, in the rows' order."""
        if not rows:
            return []
        rows = [{"state": "ok", **row} for row in rows]
        if not s.bind.dialect.insert_returning:  # an SQLite older than 3.35
            return [Catalog.add_file(s, **row).id for row in rows]
        q = insert(File).returning(File.id, sort_by_parameter_order=True)
        return list(s.scalars(q, rows))

    @staticmethod
    def move_file(s: Session, file_id: int, path: str, size: int, mtime_ns: int) -> None:
        """The same content under a new name keeps its row, id and vectors."""
        s.execute(
            update(File).where(File.id == file_id).values(path=path, size=size, mtime_ns=mtime_ns)
        )

    @staticmethod
    def copy_file(s: Session, source: File, path: str, size: int, mtime_ns: int) -> File:
        """A new row for a copy of an indexed file, with the source's vectors for every
        model (logged, so the vector indexes add them)."""
        fields = {c: getattr(source, c) for c in COPIED_FIELDS}
        row = Catalog.add_file(s, path, size, mtime_ns, **fields)
        for model_id, blob in s.execute(
            select(Vector.model_id, Vector.vector).where(Vector.file_id == source.id)
        ):
            s.add(Vector(file_id=row.id, model_id=model_id, vector=blob))
            Catalog.log(s, model_id, [row.id], "+")
        return row

    # ---- vectors --------------------------------------------------------------------

    @staticmethod
    def log(s: Session, model_id: int, file_ids: Iterable[int], op: str) -> None:
        rows = [{"model_id": model_id, "file_id": fid, "op": op} for fid in file_ids]
        if rows:
            s.execute(insert(VectorLog), rows)

    def shards_complete(self, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of those shards that were read whole, as they were then."""
        out: dict[str, tuple[int, int]] = {}
        with self.read() as s:
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

    @staticmethod
    def remove_files(s: Session, file_ids: Sequence[int]) -> None:
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

    def with_vector(self, model_id: int | None, file_ids: Sequence[int]) -> set[int]:
        """Those of the files that have a vector from the model."""
        out: set[int] = set()
        if model_id is None:
            return out
        with self.read() as s:
            for chunk in chunks(file_ids):
                q = select(Vector.file_id).where(
                    Vector.model_id == model_id, Vector.file_id.in_(chunk)
                )
                out.update(s.scalars(q))
        return out

    def vector_ids(self, model_id: int) -> np.ndarray:
        with self.read() as s:
            rows = s.scalars(select(Vector.file_id).where(Vector.model_id == model_id)).all()
        return np.array(rows, dtype=np.int64)

    def vectors(
        self, model_id: int, file_ids: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, vectors float32 (n, dim)) for a model, optionally only some files."""
        with self.read() as s:
            q = select(Vector.file_id, Vector.vector).where(Vector.model_id == model_id)
            if file_ids is None:
                rows = s.execute(q.order_by(Vector.file_id)).all()
            else:
                rows = []
                for chunk in chunks(file_ids):
                    rows += s.execute(q.where(Vector.file_id.in_(chunk))).all()
        return _decode(rows)

    def iter_vector_batches(
        self, model_id: int, batch: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All of a model's vectors in id order, a batch at a time (bounded memory)."""
        last = -1
        while True:
            with self.read() as s:
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
        with self.read() as s:
            logged = s.scalar(select(func.max(VectorLog.seq)).where(VectorLog.model_id == model_id))
            indexed = s.scalar(select(VectorIndex.log_seq).where(VectorIndex.model_id == model_id))
        return max(logged or 0, indexed or 0)

    def log_since(self, model_id: int, seq: int) -> list[tuple[int, int, str]]:
        with self.read() as s:
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
        with self.read() as s:
            return s.scalar(select(VectorIndex).where(VectorIndex.model_id == model_id))

    def index_rows(self) -> list[VectorIndex]:
        with self.read() as s:
            return list(s.scalars(select(VectorIndex)))

    def record_recall(self, model_id: int, recall: str) -> None:
        """What a check of the model's index measured (tuning.Recall as JSON)."""
        with self.write() as s:
            s.execute(
                update(VectorIndex).where(VectorIndex.model_id == model_id).values(recall=recall)
            )

    def record_index(self, model_id: int, **fields) -> bool:
        """Point the model at a newly written index file and trim the log it has absorbed;
        False, changing nothing, where the catalog already points at a later one: the log
        position never moves back, so no change logged since is ever lost."""
        with self.write() as s:
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


COPIED_FIELDS = (
    "fingerprint",
    "content",
    "width",
    "height",
    "format",
    "taken_at",
    "camera_make",
    "camera_model",
    "meta",
)


def _decode(rows) -> tuple[np.ndarray, np.ndarray]:
    """(file id, float32 BLOB) rows -> (ids, vectors (n, dim))."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), np.float32)
    return ids, np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)


def _taken(compare, when: datetime):
    """Capture time against `when`, or the file time where there is no capture time."""
    ns = int(when.replace(tzinfo=timezone.utc).timestamp() * 1e9)
    return or_(
        compare(File.taken_at, when), and_(File.taken_at.is_(None), compare(File.mtime_ns, ns))
    )
