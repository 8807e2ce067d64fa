"""Work overtaken between a run's plan and its commit. A run that shares the store's writer
lock (a watcher's: Store.sharing) plans from the catalog, then commits a batch at a time
with the lock taken for each commit only; a `forget`, `rebuild` or `index` by hand may come
between, removing rows or adding and replacing them. Each commit keeps only the work whose
plan still holds, read in its own transaction: the row the scan saw at a path is still
there and unchanged, or there is still none. The rest is left to the next run, which plans
again from what is there then. In a run that holds the lock throughout, every plan holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from ..storage.catalog import Catalog

Stamp = tuple[int, int, int]  # a row's id, size and mtime_ns


def stamp(row) -> Stamp | None:
    """What a plan saw of a row (a File or a plain row), or None for no row."""
    return None if row is None else (row.id, row.size, row.mtime_ns)


def still_planned(s: Session, catalog: Catalog, planned: Mapping[str, Stamp | None]) -> set[str]:
    """The paths whose row is, in this transaction, what the plan saw."""
    now = catalog.files.stamps_at(s, list(planned))
    return {path for path, seen in planned.items() if now.get(path) == seen}


def still_there(s: Session, catalog: Catalog, rows: Sequence[tuple[int, str]]) -> set[int]:
    """The ids of those (id, path) rows that are still at their path."""
    now = catalog.files.stamps_at(s, [path for _, path in rows])
    return {file_id for file_id, path in rows if now.get(path, (None,))[0] == file_id}
