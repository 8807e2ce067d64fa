"""`clipsearch index`: scan, decode in worker processes, embed in batches, commit, update
the vector index.

Each batch commits atomically (file rows, vectors and their log entries, or nothing), so
a crash or kill -9 loses at most the batch in flight and the next run goes on from there.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select, update

from .catalog import Catalog, File, Vector
from .preprocess import NO_HEIF, ImageInfo, decode_many, heif_support
from .prompts import SEARCH_PROMPTS
from .scan import Found, ScanProblem, ScanResult, Walker, compare, fingerprint
from .store import Store
from .vectors import IndexWriteError

if TYPE_CHECKING:  # torch: not imported by `status`, `forget` or decoding workers
    from .encoder import Encoder


@dataclass
class IndexOptions:
    batch_size: int = 32
    workers: int | None = None  # decode processes; default: one per core
    preset: str = "auto"
    include_hidden: bool = False
    follow_symlinks: bool = False
    exclude: Sequence[str] = ()
    dry_run: bool = False


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    moved: int = 0
    copied: int = 0
    removed: int = 0
    failed: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    skipped_heif: int = 0
    index_action: str = ""
    preset: str = ""
    index_error: str | None = None
    planned: dict[str, int] = field(default_factory=dict)  # for --dry-run

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "problems")}
        d["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        d["problems"] = [{"path": p.path, "reason": p.reason} for p in self.problems]
        return d


@dataclass
class Task:
    """One file to embed, and the row it replaces or completes."""

    found: Found
    replaces: File | None = None  # changed file: old row goes in the same transaction
    existing: File | None = None  # unchanged file that lacks this model's vector


Progress = Callable[[int, int], None]  # (done, total)


def default_workers() -> int:
    """One decoding process per core. Workers only decode a few batches ahead and then
    wait, so on CPU they take the cores the model leaves; measured 2 > 1 on 2 cores."""
    return os.cpu_count() or 2


def _absolute_roots(roots: Sequence[str]) -> list[str]:
    return [os.path.abspath(os.path.expanduser(str(r))) for r in roots]


def _file_fields(info: ImageInfo) -> dict:
    taken = None
    if info.taken_at:
        try:
            taken = datetime.strptime(info.taken_at[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            taken = None
    return dict(
        width=info.width,
        height=info.height,
        format=info.format,
        taken_at=taken,
        camera_make=info.camera_make,
        camera_model=info.camera_model,
    )


IMAGE_FIELDS = ("width", "height", "format", "taken_at", "camera_make", "camera_model")


def _ok_row(s, found: Found, fp: str | None, image_fields: dict) -> File:
    """Insert an indexed file's row and return it with its id."""
    row = File(
        path=found.path,
        size=found.size,
        mtime_ns=found.mtime_ns,
        fingerprint=fp,
        state="ok",
        **image_fields,
    )
    s.add(row)
    s.flush()
    return row


class Indexer:
    """One run of `clipsearch index` over some roots for one model."""

    def __init__(self, store: Store, encoder: Encoder, options: IndexOptions | None = None):
        self.store = store
        self.catalog: Catalog = store.catalog
        self.encoder = encoder
        self.options = options or IndexOptions()
        self.report = IndexReport()

    def run(self, roots: Sequence[str], progress: Progress | None = None) -> IndexReport:
        start = time.perf_counter()
        scan = self.scan(_absolute_roots(roots))
        e = self.encoder
        if self.options.dry_run:  # nothing written, not even the model's row
            known = self.catalog.find_model(e.digest)
            self.model_id = known.id if known else None
        else:
            self.model_id = self.catalog.model_row(e.name, e.architecture, e.digest, e.dim).id
        tasks = self.plan(scan)
        if self.options.dry_run:
            self.report.planned = {
                "embed": len(tasks),
                "remove": len(scan.missing),
                "unchanged": len(scan.unchanged),
            }
        else:
            tasks = self.reuse_moved_and_copied(tasks, scan)
            self.embed(tasks, progress)
            self.remove_missing(scan)
            self.update_index()
        self.report.seconds = time.perf_counter() - start
        return self.report

    # ---- scan and plan ----------------------------------------------------------------

    def scan(self, roots: list[str]) -> ScanResult:
        walker = Walker(
            include_hidden=self.options.include_hidden,
            follow_symlinks=self.options.follow_symlinks,
            exclude=self.options.exclude,
        )
        found: list[Found] = []
        existing_roots = []
        for root in roots:
            if not os.path.exists(root):
                walker.problems.append(
                    ScanProblem(root, "does not exist; nothing under it was changed")
                )
                continue
            existing_roots.append(root)
            found.extend(walker.walk(root))
        scan = compare(found, self.catalog.files_under(existing_roots))
        self.report.problems = walker.problems
        return scan

    def plan(self, scan: ScanResult) -> list[Task]:
        """Files to embed: new, changed, and unchanged ones without this model's vector.
        Unchanged failures wait until the file changes, except HEIF files skipped for lack
        of pillow-heif, retried once it is installed."""
        have = self._files_with_vector([f.id for f in scan.unchanged])
        tasks = [Task(f) for f in scan.new] + [Task(f, replaces=row) for f, row in scan.changed]
        for row in scan.unchanged:
            found = Found(row.path, row.size, row.mtime_ns)
            if row.state == "ok" and row.id not in have:
                tasks.append(Task(found, existing=row))
            elif row.state == "failed" and row.error == NO_HEIF and heif_support():
                tasks.append(Task(found, replaces=row))
            else:
                self.report.unchanged += 1
        return tasks

    def _files_with_vector(self, ids: list[int]) -> set[int]:
        out: set[int] = set()
        if self.model_id is None:
            return out
        with self.catalog.session() as s:
            for i in range(0, len(ids), 900):
                q = select(Vector.file_id).where(
                    Vector.model_id == self.model_id, Vector.file_id.in_(ids[i : i + 900])
                )
                out.update(s.scalars(q))
        return out

    # ---- moves and copies ---------------------------------------------------------------

    def reuse_moved_and_copied(self, tasks: list[Task], scan: ScanResult) -> list[Task]:
        """New files whose fingerprint matches a catalogued file take its vectors: a file
        that vanished from its old path moved (same row, new path); otherwise a copy."""
        fresh = [t for t in tasks if t.replaces is None and t.existing is None]
        prints: dict[str, str] = {}
        for t in fresh:
            try:
                prints[t.found.path] = fingerprint(t.found.path, t.found.size)
            except OSError:
                continue  # decoding will record why
        sources = self.catalog.files_by_fingerprint(prints.values())
        missing = {row.id: row for row in scan.missing}
        with_vector = self._files_with_vector([r.id for r in sources.values()])
        remaining = []
        with self.catalog.session() as s, s.begin():
            for t in tasks:
                src = sources.get(prints.get(t.found.path, ""))
                is_new = t.replaces is None and t.existing is None
                if src is None or src.id not in with_vector or not is_new:
                    remaining.append(t)
                    continue
                if src.id in missing:
                    del missing[src.id]
                    s.execute(
                        update(File)
                        .where(File.id == src.id)
                        .values(path=t.found.path, size=t.found.size, mtime_ns=t.found.mtime_ns)
                    )
                    self.report.moved += 1
                else:
                    self._copy_row(s, src, t.found, prints[t.found.path])
                    self.report.copied += 1
        scan.missing = list(missing.values())
        return remaining

    def _copy_row(self, s, src: File, found: Found, fp: str) -> None:
        row = _ok_row(s, found, fp, {c: getattr(src, c) for c in IMAGE_FIELDS})
        for model_id, blob in s.execute(
            select(Vector.model_id, Vector.vector).where(Vector.file_id == src.id)
        ):
            s.add(Vector(file_id=row.id, model_id=model_id, vector=blob))
            Catalog.log(s, model_id, [row.id], "+")

    # ---- decode, embed, commit ------------------------------------------------------------

    def embed(self, tasks: list[Task], progress: Progress | None) -> None:
        if not tasks:
            return
        size, batch = self.encoder.image_size, max(1, self.options.batch_size)
        chunks = [tasks[i : i + batch] for i in range(0, len(tasks), batch)]
        workers = self.options.workers or default_workers()
        done = 0
        # spawn: workers import only PIL and numpy, never the parent's torch threads.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:

            def submit(chunk: list[Task]):
                items = [(t.found.path, (t.found.size, t.found.mtime_ns)) for t in chunk]
                return chunk, pool.submit(decode_many, items, size)

            # A few chunks decode ahead of the model: overlap without unbounded memory.
            queue = iter(chunks)
            pending = deque(submit(c) for c in islice(queue, workers + 2))
            while pending:
                chunk, future = pending.popleft()
                if (nxt := next(queue, None)) is not None:
                    pending.append(submit(nxt))
                self.commit(chunk, future.result())
                done += len(chunk)
                if progress:
                    progress(done, len(tasks))

    def commit(self, chunk: list[Task], decoded: list) -> None:
        good = [i for i, (pixels, _, _) in enumerate(decoded) if pixels is not None]
        vectors = (
            self.encoder.encode_pixels(np.stack([decoded[i][0] for i in good])) if good else []
        )
        by_index = dict(zip(good, vectors))
        with self.catalog.session() as s, s.begin():
            for i, (task, (_, info, error)) in enumerate(zip(chunk, decoded)):
                self._commit_one(s, task, info, error, by_index.get(i))

    def _commit_one(self, s, task: Task, info: ImageInfo | None, error: str | None, vector) -> None:
        f = task.found
        if task.existing is not None and vector is not None:
            Catalog.add_vectors(s, self.model_id, [task.existing.id], vector[None])
            self.report.added += 1
            return
        if task.replaces is not None:
            Catalog.remove_files(s, [task.replaces.id])
        if task.existing is not None:  # was fine with other models, now unreadable
            Catalog.remove_files(s, [task.existing.id])
        if error is not None:
            s.add(File(path=f.path, size=f.size, mtime_ns=f.mtime_ns, state="failed", error=error))
            self.report.failed += 1
            self.report.skipped_heif += error == NO_HEIF
            self.report.failures.append((f.path, error))
            return
        try:
            fp = fingerprint(f.path, f.size)
        except OSError:
            fp = None
        row = _ok_row(s, f, fp, _file_fields(info))
        Catalog.add_vectors(s, self.model_id, [row.id], vector[None])
        if task.replaces is not None:
            self.report.updated += 1
        else:
            self.report.added += 1

    # ---- removals and the vector index ----------------------------------------------------

    def remove_missing(self, scan: ScanResult) -> None:
        ids = [row.id for row in scan.missing]
        if ids:
            with self.catalog.session() as s, s.begin():
                Catalog.remove_files(s, ids)
        self.report.removed = len(ids)

    def update_index(self) -> None:
        try:
            queries = self.encoder.encode_text(SEARCH_PROMPTS)
            loaded, action = self.store.indexes.sync(self.model_id, self.options.preset, queries)
            self.report.index_action, self.report.preset = action, loaded.preset.name
        except IndexWriteError as e:
            self.report.index_error = (
                f"{e}; the catalog is complete and the index will be rebuilt from it"
            )
