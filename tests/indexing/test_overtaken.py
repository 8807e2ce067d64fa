"""What a commit keeps of a plan another writer overtook, on a real catalog."""

from __future__ import annotations

from clipsearch.indexing.overtaken import stamp, still_planned, still_there
from clipsearch.storage.store import Store


def test_only_rows_still_as_planned_are_kept(tmp_path):
    store = Store(tmp_path / "store")
    files = store.catalog.files
    with store.writing(), store.catalog.write() as s:
        kept, removed, replaced = (files.add(s, f"/p/{n}.jpg", 10, 1) for n in "abc")
    planned = {row.path: stamp(row) for row in (kept, removed, replaced)}
    planned |= {"/p/new.jpg": None, "/p/taken.jpg": None}
    with store.catalog.write() as s:  # another writer, between the plan and the commit
        files.remove(s, [removed.id, replaced.id])
        files.add(s, "/p/c.jpg", 11, 2)
        files.add(s, "/p/taken.jpg", 10, 1)
    with store.catalog.write() as s:
        assert still_planned(s, store.catalog, planned) == {"/p/a.jpg", "/p/new.jpg"}
        rows = [(kept.id, kept.path), (removed.id, removed.path), (replaced.id, replaced.path)]
        assert still_there(s, store.catalog, rows) == {kept.id}
    store.close()
