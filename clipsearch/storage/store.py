"""Where an index lives: one folder with the catalog database and the vector index files.

Writers (index, forget, rebuild) take the store's lock, one at a time; readers never wait
for it. A watcher's runs share it: they take it for each commit only. The lock is an flock
on a file in the store, which the operating system releases when its holder ends, however
it ends: a kill -9 never leaves a store locked.
"""

from __future__ import annotations

import errno
import fcntl
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ClipsearchError
from ..core.memo import DigestCache, MemoFile, ModelDigests
from .catalog import Catalog
from .database import CatalogMissing, ReadOnly, sqlite_url
from .layout import (
    CATALOG_FILE,
    DIGESTS_FILE,
    INDEX_DIR,
    LOCK_FILE,
    MODEL_DIGESTS_FILE,
    SETTINGS_FILE,
    default_store,
)
from .query_log import QueryLog
from .vector_indexes import VectorIndexes


class StoreNotFound(CatalogMissing):
    """A command that reads a store found none."""


class StoreBusy(ClipsearchError):
    """Another process is writing the store and this one was asked not to wait."""


OnWait = Callable[[str], None]  # told who holds the lock, before this process waits


class Store:
    """A catalog (the source of truth) and the FAISS indexes derived from it.

    Opening a store changes nothing on disk; the folder and the catalog are created by
    the first write. create=False refuses a folder without a catalog (a read needs one).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        db_url: str | None = None,
        create: bool = True,
        wait: bool = True,
        on_wait: OnWait | None = None,
    ):
        self.path = Path(path).expanduser() if path else default_store()
        if self.path.exists() and not self.path.is_dir():
            raise ClipsearchError(f"{self.path} is a file; --store takes a folder")
        if not db_url and not (self.path / CATALOG_FILE).exists() and not create:
            raise StoreNotFound(
                f"no clipsearch index at {self.path}; run `clipsearch index PATH` first "
                "(or pass --store DIR / set CLIPSEARCH_HOME)"
            )
        self.own_catalog = not db_url  # the store's catalog.db, not a --db elsewhere
        self.db_url = db_url or sqlite_url(self.path / CATALOG_FILE)
        self.catalog = Catalog(self.db_url)
        self.query_log = QueryLog(self.path)
        self.indexes = VectorIndexes(self.catalog, self.path / INDEX_DIR, self.query_log)
        self.digests = DigestCache(self.path / DIGESTS_FILE, shared=DigestCache.of_user())
        self.model_digests = ModelDigests(self.path / MODEL_DIGESTS_FILE)
        self.settings = MemoFile(self.path / SETTINGS_FILE)
        self.wait = wait
        self.on_wait = on_wait
        self._holder: int | None = None  # the thread holding the writer lock, if one of ours
        self._threads = threading.Lock()  # one thread of this process at a time takes it
        self._sharing = False
        self.catalog.write_guard = self._committing

    def reads_text(self, choice: bool | None = None) -> bool:
        """Whether indexing reads the text in images here: `choice` (index --ocr or
        --no-ocr), kept for every later run and `watch`; else what was chosen last."""
        settings = self.settings.read()
        if choice is not None and settings.get("ocr") != choice:
            self.settings.write({**settings, "ocr": choice})
            return choice
        return bool(settings.get("ocr", False))

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's writer lock (re-entrant), with the catalog ready to write."""
        if self._holder == threading.get_ident():
            yield
            return
        if getattr(mp.current_process(), "_inheriting", False):
            raise StoreBusy(  # else it would wait for the lock its own parent holds
                "a process that is still starting (a decoding worker importing the main "
                "script) tried to write the store; put the script's work under "
                '`if __name__ == "__main__":`'
            )
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._threads:
            fd = self._lock()
            self._holder = threading.get_ident()
            try:
                with self.catalog.writer_lock(self.wait, self.on_wait):
                    self.catalog.prepare()
                    yield
                    self.indexes.remove_strays()
            finally:
                self._holder = None
                os.close(fd)  # closing releases the flock

    @contextmanager
    def sharing(self) -> Iterator[None]:
        """A long write that holds the writer lock only while it commits (a watcher's
        catch-up run): a `forget`, `rebuild` or `index` by hand then waits a moment, not
        the whole run. What it planned may be overtaken between its commits, so each
        commit keeps only what still holds (indexing/overtaken.py)."""
        if self._sharing:
            yield
            return
        with self.writing():  # a store that cannot be written fails here, at once
            pass
        self._sharing = True
        try:
            yield
        finally:
            self._sharing = False

    @contextmanager
    def _committing(self) -> Iterator[None]:
        """Around each of the catalog's write transactions: the writer lock, while sharing
        and not already held; else nothing more."""
        if self._sharing:
            with self.writing():
                yield
        else:
            yield

    def _lock(self) -> int:
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise ReadOnly(f"the store {self.path}", e.strerror) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not self.wait:
                os.close(fd)
                raise StoreBusy(
                    f"another clipsearch process (pid {holder}) is writing {self.path}; "
                    "run again when it has finished, or pass --wait"
                ) from None
            if self.on_wait:
                self.on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
