"""Moved and copied files take the vectors of the file they equal, instead of being
embedded again: a file that vanished from its old path moved (same row, new path);
otherwise the new file is a copy (a new row sharing the vectors). Equal means the same
hash of every byte; the cheap fingerprint (content.py) only says which files to hash.
"""

from __future__ import annotations

from ..images.items import is_plain_file
from ..storage.catalog import Catalog
from ..storage.schema import File
from .content import file_content_hash, file_fingerprint
from .overtaken import stamp, still_planned
from .plan import Task
from .report import IndexReport
from .scan import ScanResult


def reuse_moved_and_copied(
    catalog: Catalog, model_id: int, tasks: list[Task], scan: ScanResult, report: IndexReport
) -> list[Task]:
    """The tasks still to embed; moves and copies are committed here, and the rows that
    moved leave `scan.missing`."""
    if not any(t.is_new for t in tasks):
        return tasks
    missing = {row.id: row for row in scan.missing}
    remaining = []
    reused = {t.found.path: src for t, src in equal_files(catalog, model_id, tasks, set(missing))}
    with catalog.write() as s:
        planned = {src.path: stamp(src) for src in reused.values()}
        held = still_planned(s, catalog, {**dict.fromkeys(reused), **planned})
        for t in tasks:
            src, f = reused.get(t.found.path), t.found
            if src is None:
                remaining.append(t)
            elif not {f.path, src.path} <= held:
                continue  # overtaken: the next run plans it again
            elif missing.pop(src.id, None) is not None:
                catalog.files.move(s, src.id, f.path, f.size, f.mtime_ns)
                report.moved += 1
            else:
                catalog.files.copy(s, src, f.path, f.size, f.mtime_ns)
                report.copied += 1
    scan.missing = list(missing.values())
    return remaining


def equal_files(
    catalog: Catalog, model_id: int, tasks: list[Task], gone: set[int]
) -> list[tuple[Task, File]]:
    """(new file, catalogued file with this model's vector and the same content): one
    that is gone first (a move), else the oldest (a copy)."""
    fresh = [t for t in tasks if t.is_new and is_plain_file(t.found.path)]
    prints: dict[str, str] = {}
    for t in fresh:
        try:
            prints[t.found.path] = file_fingerprint(t.found.path, t.found.size)
        except OSError:
            continue  # decoding will record why
    candidates = catalog.files.by_fingerprint(prints.values())
    with_vector = catalog.vectors.present(
        model_id, [f.id for rows in candidates.values() for f in rows]
    )
    out = []
    for t in fresh:
        rows = [f for f in candidates.get(prints.get(t.found.path, ""), []) if f.content]
        rows = sorted((f for f in rows if f.id in with_vector), key=lambda f: f.id not in gone)
        if not rows:
            continue
        try:
            content = file_content_hash(t.found.path)
        except OSError:
            continue
        same = next((f for f in rows if f.content == content), None)
        if same is not None:
            out.append((t, same))
    return out
