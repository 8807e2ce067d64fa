"""The catalog's database: opened without changing it, created or upgraded by the first
write in one transaction that a crash undoes whole, read and written in sessions.

SQLite by default (a file in the store, WAL mode, writers taking the write lock when they
begin), any SQLAlchemy URL otherwise (PostgreSQL is tested).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from enum import Enum
from importlib import resources
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, select, text, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from ..core import faults
from ..core.errors import ClipsearchError
from ..core.versions import SCHEMA_HEAD
from .layout import has_sidecars, read_only_uri
from .schema import Generation

IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's and PostgreSQL's parameter limits


def chunks(items: Sequence, size: int = IN_CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class CatalogError(ClipsearchError):
    """The catalog cannot be opened or used as asked."""


class ReadOnly(CatalogError):
    """A store or catalog this process cannot write: searched, never changed."""

    def __init__(self, what: str, why: str):
        super().__init__(
            f"{what} cannot be written here ({why}); it can be searched, but to change it, "
            "run on a copy or where it is writable"
        )


class DatabaseBusy(CatalogError):
    """Another process, perhaps on another machine, holds a shared catalog's writer lock."""


WRITER_LOCK_KEY = 0x636C697073656172  # "clipsear": PostgreSQL advisory lock of the writer


class CatalogMissing(CatalogError):
    """A command that reads found no catalog to read."""


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


def read_only_engine(path: Path, immutable: bool) -> Engine:
    """An engine that cannot change the file (layout.read_only_uri)."""
    uri = read_only_uri(path, immutable)
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


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


def _revision(conn, tables: list[str]) -> str | None:
    """The schema revision Alembic recorded, read as a row: alembic (and the template
    engine it brings) is imported only to migrate."""
    if "alembic_version" not in tables:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


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


class Database:
    """One SQL database holding a catalog.

    Opening changes nothing: a database that is not a clipsearch catalog, or one from a
    newer clipsearch, is refused untouched, and reading needs a catalog at the current
    schema. The first write creates or upgrades the schema, in one transaction.
    """

    def __init__(self, url: str | URL):
        self.url = url
        self.engine = make_engine(url)
        self.shown = self.engine.url.render_as_string(hide_password=True)
        self.read_only = False
        # What each write transaction is entered in: the store's writer lock, when a
        # writer shares it (Store.sharing); nothing more by default.
        self.write_guard: Callable[[], AbstractContextManager] = nullcontext
        try:
            self._state = self._inspect()
        except CatalogError:
            self.engine.dispose()  # a refused database keeps no connection (nor WAL files)
            raise
        path = self.sqlite_file
        if self.state is not State.MISSING and path and not self._writable():
            self.engine.dispose()  # no writer can make -shm in an unwritable folder
            immutable = not os.access(path.parent, os.W_OK) and not has_sidecars(path)
            self.engine, self.read_only = read_only_engine(path, immutable), True

    @property
    def state(self) -> State:
        """What the database holds. Until it holds a current catalog, looked at again on
        each use: another process may have made or upgraded one since (an `index` or a
        watcher beside a server that started on an empty store)."""
        if self._state is not State.CURRENT:
            self._state = self._inspect()
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        self._state = state

    def _writable(self) -> bool:
        """Whether this process may change the SQLite file (and make its -wal and -shm)."""
        path = self.sqlite_file
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)

    @property
    def sqlite_file(self) -> Path | None:
        db = self.engine.url.database
        return Path(db) if self.engine.dialect.name == "sqlite" and db else None

    def _inspect(self) -> State:
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            return State.MISSING
        if self.sqlite_file is not None and not self.sqlite_file.is_file():
            raise CatalogError(f"{self.sqlite_file} is not a file; point --store at a folder")
        # Read-only until it is known to be a catalog: another program's database with a
        # hot journal or an unmerged WAL is left exactly as it was.
        path = self.sqlite_file
        looker = read_only_engine(path, not has_sidecars(path)) if path else self.engine
        try:
            with looker.connect() as conn:
                tables = inspect(conn).get_table_names()
                revision = _revision(conn, tables)
        except DBAPIError as e:
            raise CatalogError(self._cannot_open(e)) from None
        finally:
            if looker is not self.engine:
                looker.dispose()
        if revision is None:
            if tables:
                raise CatalogError(
                    f"{self.shown} is not a clipsearch catalog (it holds tables "
                    f"{', '.join(sorted(tables)[:5])}); nothing was changed. Use another "
                    "--store or --db"
                )
            return State.EMPTY
        if revision != SCHEMA_HEAD and revision not in known_revisions():
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
        if self.read_only:
            raise ReadOnly(
                f"the catalog {self.sqlite_file}", "a read-only folder or volume, or another user's"
            )
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
                revision = _revision(conn, inspect(conn).get_table_names())
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
        everything in it commits together, or nothing does. It raises the generation
        first, in the same transaction: a reader that finds the generation it saw last
        knows that nothing was written since (indexing/settled.py)."""
        with self.write_guard():
            self.prepare()
            engine = self.engine.execution_options(write=True)
            with Session(engine, expire_on_commit=False) as s, s.begin():
                s.execute(update(Generation).values(number=Generation.number + 1))
                yield s

    def generation(self) -> int | None:
        """How many write transactions the catalog has had; None before it has this
        clipsearch's schema."""
        if self.state is not State.CURRENT:
            return None
        with self.read() as s:
            return s.execute(select(Generation.number)).scalar_one()

    @contextmanager
    def writer_lock(self, wait: bool, on_wait=None) -> Iterator[None]:
        """The store's writer lock where the database is shared by machines: on
        PostgreSQL, an advisory lock held by a connection of its own for the block (a
        file lock serialises the writers of one machine only). Nothing on SQLite, whose
        file is the lock. Raises DatabaseBusy when another holds it and wait is False."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as conn:
            taken = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({WRITER_LOCK_KEY})")
            if not taken.scalar():
                if not wait:
                    raise DatabaseBusy(
                        f"another clipsearch process is writing the catalog {self.shown} "
                        "(from this machine or another); run again when it has finished, "
                        "or pass --wait"
                    )
                if on_wait:
                    on_wait("on another machine")
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({WRITER_LOCK_KEY})")
            conn.commit()
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({WRITER_LOCK_KEY})")
                conn.commit()

    def close(self) -> None:
        self.engine.dispose()
