"""`clipsearch index`: scan, decode in worker processes, embed in batches, commit, update
the vector index.

Each batch commits atomically (file rows, vectors and their log entries, or nothing), so
a crash or kill -9 loses at most the batch in flight and the next run goes on from there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from ..core import faults
from ..core.config import IndexOptions, default_workers, model_threads
from ..core.errors import ClipsearchError
from ..core.prompts import SEARCH_PROMPTS
from ..core.sizes import parse_size
from ..images.decode import ImageInfo
from ..images.formats import heif_support, skipped_for_heif
from ..images.items import (
    is_list_name,
    is_plain_file,
    is_shard_name,
    is_url,
    source_stat,
    split_member,
)
from ..images.records import DataError, list_items
from ..images.shards import shard_items
from ..storage.catalog import Catalog
from ..storage.database import State
from ..storage.presets import preset_named
from ..storage.schema import File
from ..storage.store import Store
from ..storage.vector_indexes import IndexWriteError
from .content import file_content_hash, file_fingerprint
from .pool import DecodePool
from .scan import Found, ScanProblem, ScanResult, Walker, compare

if TYPE_CHECKING:  # torch: not imported by `status`, `forget` or decoding workers
    from ..models.encoder import Encoder
    from .ray_pipeline import Embedding


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
    index_note: str | None = None  # why the preset is not the one asked for
    profile: dict[str, float] = field(default_factory=dict)  # seconds per part (Stopwatch)
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

    @property
    def item(self) -> tuple[str, tuple[int, int]]:
        """What decoding takes: the key, and the (size, mtime_ns) the scan saw."""
        return self.found.path, (self.found.size, self.found.mtime_ns)


Progress = Callable[[int, int], None]  # (done, total)


def absolute_roots(roots: Sequence[str]) -> list[str]:
    """Absolute, user-expanded roots, each once, none inside another: `index A A/` or
    `index A A/x.png` index every file once."""
    paths = sorted({_absolute(str(r)) for r in roots})
    kept: list[str] = []
    for path in paths:  # sorted: a folder comes before everything inside it
        inside = any(path.startswith(k.rstrip(os.sep) + os.sep) for k in kept)
        if not inside or is_list_name(path):  # a walk reads no list files
            kept.append(path)
    return kept


def _absolute(root: str) -> str:
    return root if is_url(root) else os.path.abspath(os.path.expanduser(root))


def _completes(task: Task, outcome: tuple) -> bool:
    """An unchanged file that only lacked this model's vector, and now has it."""
    return task.existing is not None and outcome[2] is not None


def _file_fields(info: ImageInfo) -> dict:
    taken = None
    if info.taken_at:
        try:
            taken = datetime.strptime(info.taken_at[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            taken = None
    return dict(
        fingerprint=info.fingerprint,
        content=info.content,
        width=info.width,
        height=info.height,
        format=info.format,
        taken_at=taken,
        camera_make=info.camera_make,
        camera_model=info.camera_model,
    )


class Stopwatch:
    """Seconds spent in each named part of a run, summed: where the time goes."""

    def __init__(self, spent: dict[str, float]):
        self.spent = spent

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[part] = self.spent.get(part, 0.0) + time.perf_counter() - start


class Indexer:
    """One run of `clipsearch index` over some roots for one model. A pool of decoding
    processes may be handed in, started earlier (while the model loaded, say); with `ray`,
    Ray Data decodes and embeds instead (ray_pipeline.py) and this process only writes."""

    def __init__(
        self,
        store: Store,
        encoder: Encoder,
        options: IndexOptions | None = None,
        pool: DecodePool | None = None,
        ray: Embedding | None = None,
    ):
        self.store = store
        self.catalog: Catalog = store.catalog
        self.encoder = encoder
        self.options = options or IndexOptions()
        self.report = IndexReport()
        self.model_id: int | None = None
        self.pool = pool
        self.ray = ray
        self.memory_budget: int | None = None
        self.shards_read: list[tuple[str, int, int]] = []  # (path, size, mtime_ns)
        self.watch = Stopwatch(self.report.profile)
        self.commit_cpu = 0.0  # seconds the writer thread has spent committing

    def run(self, roots: Sequence[str], progress: Progress | None = None) -> IndexReport:
        """Index under the store's writer lock; a dry run takes none and writes nothing."""
        start = time.perf_counter()
        if self.options.preset != "auto":
            preset_named(self.options.preset)  # an unknown name fails before any work
        budget = self.options.memory_budget
        self.memory_budget = parse_size(budget) if budget is not None else None
        if self.options.dry_run:
            self.dry_run(absolute_roots(roots))
        else:
            with self.store.writing():
                self.index(absolute_roots(roots), progress)
        self.report.seconds = time.perf_counter() - start
        return self.report

    def dry_run(self, roots: list[str]) -> None:
        stored = self.catalog.state in (State.CURRENT, State.OLDER)
        scan = self.scan(roots, known=stored)
        known = self.catalog.models.find(self.encoder.digest) if stored else None
        self.model_id = known.id if known else None
        tasks = self.plan(scan)
        self.report.planned = {
            "embed": len(tasks),
            "remove": len(scan.missing),
            "unchanged": len(scan.unchanged),
        }

    def index(self, roots: list[str], progress: Progress | None) -> None:
        with self.watch("scan"):
            scan = self.scan(roots)
        e = self.encoder
        with self.watch("plan"):
            self.model_id = self.catalog.models.register(e.name, e.architecture, e.digest, e.dim).id
            tasks = self.reuse_moved_and_copied(self.plan(scan), scan)
        self.embed(tasks, progress)
        with self.watch("remove missing"):
            self.remove_missing(scan)
        if self.shards_read:  # every member has its row now: next time, no need to open them
            with self.catalog.write() as s:
                self.catalog.files.mark_shards_complete(s, self.shards_read)
        with self.watch("vector index"):
            self.update_index()

    # ---- scan and plan ----------------------------------------------------------------

    def scan(self, roots: list[str], known: bool = True) -> ScanResult:
        walker = Walker(
            include_hidden=self.options.include_hidden,
            follow_symlinks=self.options.follow_symlinks,
            exclude=self.options.exclude,
        )
        found: dict[str, Found] = {}
        existing_roots, listed = [], []
        for root in roots:
            if not os.path.lexists(root):
                walker.problems.append(
                    ScanProblem(root, "does not exist; nothing under it was changed")
                )
            elif is_list_name(root) and os.path.isfile(root):
                listed += self.listed(root, walker.problems)
            else:
                existing_roots.append(root)
                found.update((f.path, f) for f in walker.walk(root))
        found.update((f.path, f) for f in listed)
        shards = [f for f in found.values() if is_shard_name(f.path)]
        rows = self.catalog.files.under(existing_roots) if known else {}
        if known:
            rows.update(self.catalog.files.named([f.path for f in listed]))
            named = {f.path for f in listed}
            rows.update(self.catalog.files.under([f.path for f in shards if f.path in named]))
        complete = self.catalog.files.shards_complete([f.path for f in shards]) if known else {}
        by_shard: dict[str, list[File]] = {}
        for path, row in rows.items():
            if (member := split_member(path)) is not None:
                by_shard.setdefault(member[0], []).append(row)
        for shard in shards:
            del found[shard.path]
            members = self.members(shard, by_shard.get(shard.path, []), complete, walker.problems)
            found.update((f.path, f) for f in members)
        self.report.problems = walker.problems
        return compare(list(found.values()), rows)

    def members(
        self, shard: Found, rows: list[File], complete: dict, problems: list
    ) -> list[Found]:
        """A shard's images, each with the shard's size and mtime. A shard read whole and
        unchanged since has them in the catalog, and is not opened; an unreadable one
        keeps what it had."""
        known = [Found(r.path, r.size, r.mtime_ns) for r in rows]
        if complete.get(shard.path) == (shard.size, shard.mtime_ns):
            return known
        try:
            items = shard_items(shard.path)
        except DataError as e:
            problems.append(ScanProblem(shard.path, f"{e}; its items were left as they were"))
            return known
        self.shards_read.append((shard.path, shard.size, shard.mtime_ns))
        return [Found(i.key, shard.size, shard.mtime_ns, i.meta) for i in items]

    @staticmethod
    def listed(path: str, problems: list) -> list[Found]:
        """A list file's items: files with their size and mtime (a missing one is recorded
        as failed when decoded), URLs with none: a URL in the catalog is not fetched
        again, unless it failed (`plan`)."""
        try:
            items = list_items(path)
        except ClipsearchError as e:
            problems.append(ScanProblem(path, str(e)))
            return []
        out = []
        for item in items:
            try:
                size, mtime_ns = source_stat(item.key) or (0, 0)
            except OSError:
                size, mtime_ns = 0, 0
            out.append(Found(item.key, size, mtime_ns, item.meta))
        return out

    def plan(self, scan: ScanResult) -> list[Task]:
        """Files to embed: new, changed, and unchanged ones without this model's vector.
        Unchanged failures wait until the file changes, except HEIF files skipped for lack
        of pillow-heif, retried once it is installed, and URLs, which cannot say they
        changed."""
        have = self.catalog.vectors.present(self.model_id, [f.id for f in scan.unchanged])
        tasks = [Task(f) for f in scan.new] + [Task(f, replaces=row) for f, row in scan.changed]
        for row in scan.unchanged:
            found = Found(row.path, row.size, row.mtime_ns)
            if row.state == "ok" and row.id not in have:
                tasks.append(Task(found, existing=row))
            elif row.state == "failed" and (
                (skipped_for_heif(row.error) and heif_support()) or is_url(row.path)
            ):  # a URL cannot say it changed: a failed one (404, timeout) is tried again
                tasks.append(Task(found, replaces=row))
            else:
                self.report.unchanged += 1
        return tasks

    # ---- moves and copies ---------------------------------------------------------------

    def reuse_moved_and_copied(self, tasks: list[Task], scan: ScanResult) -> list[Task]:
        """New files equal to a catalogued file take its vectors: a file that vanished
        from its old path moved (same row, new path); otherwise it is a copy. Equal means
        the same hash of every byte; the cheap fingerprint only says which files to hash."""
        missing = {row.id: row for row in scan.missing}
        remaining = []
        reused = {t.found.path: src for t, src in self._equal_files(tasks)}
        with self.catalog.write() as s:
            for t in tasks:
                src = reused.get(t.found.path)
                if src is None:
                    remaining.append(t)
                elif missing.pop(src.id, None) is not None:
                    self.catalog.files.move(s, src.id, t.found.path, t.found.size, t.found.mtime_ns)
                    self.report.moved += 1
                else:
                    self.catalog.files.copy(s, src, t.found.path, t.found.size, t.found.mtime_ns)
                    self.report.copied += 1
        scan.missing = list(missing.values())
        return remaining

    def _equal_files(self, tasks: list[Task]) -> list[tuple[Task, File]]:
        """(new file, catalogued file with this model's vector and the same content)."""
        fresh = [
            t
            for t in tasks
            if t.replaces is None and t.existing is None and is_plain_file(t.found.path)
        ]
        prints: dict[str, str] = {}
        for t in fresh:
            try:
                prints[t.found.path] = file_fingerprint(t.found.path, t.found.size)
            except OSError:
                continue  # decoding will record why
        candidates = self.catalog.files.by_fingerprint(prints.values())
        with_vector = self.catalog.vectors.present(
            self.model_id, [f.id for rows in candidates.values() for f in rows]
        )
        out = []
        for t in fresh:
            rows = [f for f in candidates.get(prints.get(t.found.path, ""), []) if f.content]
            rows = [f for f in rows if f.id in with_vector]
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

    # ---- decode, embed, commit ------------------------------------------------------------

    def embed(self, tasks: list[Task], progress: Progress | None) -> None:
        """Decode, embed and commit the tasks a batch at a time: here, or on Ray. A batch
        commits, in one transaction, on a writer thread while the next one is embedded, so
        the model (a GPU above all) does not stand still for it; at most one commit is in
        flight, and a stop (an error, Ctrl-C) waits for it to end first."""
        if not tasks:
            return
        batches = self._on_ray(tasks) if self.ray is not None else self._here(tasks)
        done = 0
        writer = ThreadPoolExecutor(1, thread_name_prefix="clipsearch-commit")
        with closing(batches), writer:
            committing: tuple[Future, int, int] | None = None  # (commit, batch number, size)
            for number, (chunk, outcomes) in enumerate(batches, 1):
                if committing is not None:
                    done = self._committed(committing, done, len(tasks), progress)
                committing = (writer.submit(self._commit, chunk, outcomes), number, len(chunk))
            if committing is not None:
                self._committed(committing, done, len(tasks), progress)

    def _commit(self, chunk: list[Task], outcomes: list) -> None:
        """On the writer thread; its CPU time is counted apart from the model's."""
        started = time.thread_time()
        with self.watch("commit"), self.catalog.write() as s:
            self.write(s, chunk, outcomes)
        self.commit_cpu += time.thread_time() - started

    def _committed(
        self, committing: tuple[Future, int, int], done: int, total: int, progress: Progress | None
    ) -> int:
        """Wait for a batch's commit (its error, if any, is raised here); the files done."""
        commit, number, size = committing
        with self.watch("waiting for the commit"):
            commit.result()
        faults.hit("batch-committed", f"batch {number}.")
        if progress:
            progress(done + size, total)
        return done + size

    def _here(self, tasks: list[Task]) -> Iterator[tuple[list[Task], list]]:
        """Batches decoded by the local processes and embedded by this process's model:
        (tasks, [(info, error, vector)...])."""
        batch = max(1, self.options.batch_size)
        chunks = [tasks[i : i + batch] for i in range(0, len(tasks), batch)]
        items = [[t.item for t in c] for c in chunks]
        with self._pool() as pool, self._sharing_cores(pool) as share:
            batches = pool.decode(items, self.encoder.preprocessing)
            for number, chunk in enumerate(chunks, 1):
                with self.watch("first batch decoded" if number == 1 else "waiting for decoding"):
                    decoded = next(batches)
                with share(len(decoded)):
                    vectors = self.vectors(decoded)
                yield (
                    chunk,
                    [(info, error, vectors.get(i)) for i, (_, info, error) in enumerate(decoded)],
                )

    @contextmanager
    def _sharing_cores(self, pool: DecodePool) -> Iterator[Callable]:
        """On a CPU, the model's threads follow its share of the CPU time an image costs
        (config.model_threads), measured as the run goes, so that decoding big photos
        gets the cores it needs; torch's thread count is given back at the end. Never
        more threads than the run started with (--threads, OMP_NUM_THREADS)."""
        import torch

        started_with = torch.get_num_threads()
        on_cpu = self.encoder.device.type == "cpu"
        spent = {"batches": 0, "cpu": 0.0, "images": 0}

        @contextmanager
        def share(images: int) -> Iterator[None]:
            before, committing = time.process_time(), self.commit_cpu
            yield
            spent["batches"] += 1
            if not on_cpu or spent["batches"] == 1:
                return  # the first batch's time is mostly the model warming up
            spent["cpu"] += time.process_time() - before - (self.commit_cpu - committing)
            spent["images"] += images
            decode = pool.cpu_seconds / max(1, pool.images)
            threads = model_threads(decode, spent["cpu"] / spent["images"], started_with)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)

        try:
            yield share
        finally:
            torch.set_num_threads(started_with)

    def _on_ray(self, tasks: list[Task]) -> Iterator[tuple[list[Task], list]]:
        """Batches decoded and embedded on Ray, in the order they come back."""
        from . import ray_pipeline

        items = [t.item for t in tasks]
        batch = max(1, self.options.batch_size)
        for results in ray_pipeline.run(items, self.encoder.preprocessing, self.ray, batch):
            chunk = [tasks[r.position] for r in results]
            yield chunk, [(r.info, r.error, r.vector) for r in results]

    @contextmanager
    def _pool(self) -> Iterator[DecodePool]:
        """The pool handed in (its owner stops it), or one of this run's own."""
        if self.pool is not None:
            yield self.pool
            return
        pool = DecodePool(self.options.workers or default_workers())
        pool.start()
        with pool:
            yield pool

    def vectors(self, decoded: list) -> dict[int, np.ndarray]:
        """The model's vectors of a decoded batch, by position; failures have none."""
        good = [i for i, (pixels, _, _) in enumerate(decoded) if pixels is not None]
        if not good:
            return {}
        with self.watch("stacking pixels"):
            pixels = np.stack([decoded[i][0] for i in good])
        with self.watch("model"):
            return dict(zip(good, self.encoder.encode_pixels(pixels)))

    def write(self, s, chunk: list[Task], outcomes: list) -> None:
        """A batch's outcomes, (info, error, vector) per task, in a few statements whatever
        its size (one writer feeds a whole cluster: bench/catalog_write_rate.py). Rows
        that a task replaces go first, so a changed file's new row can take its path."""
        completed = [(t.existing.id, o[2]) for t, o in zip(chunk, outcomes) if _completes(t, o)]
        self.report.added += len(completed)
        rest = [(t, o) for t, o in zip(chunk, outcomes) if not _completes(t, o)]
        gone = [t.replaces.id for t, _ in rest if t.replaces is not None]
        gone += [t.existing.id for t, _ in rest if t.existing is not None]  # now unreadable
        self.catalog.files.remove(s, gone)
        ids = self.catalog.files.add_many(
            s, [self._row(t, info, error) for t, (info, error, _) in rest]
        )
        completed += [(i, o[2]) for i, (_, o) in zip(ids, rest) if o[1] is None]
        if completed:
            file_ids, vectors = zip(*completed)
            self.catalog.vectors.add(s, self.model_id, file_ids, np.stack(vectors))

    def _row(self, task: Task, info: ImageInfo | None, error: str | None) -> dict:
        """A task's new file row, counted in the report."""
        f = task.found
        row = {"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns}
        if error is not None:
            self.report.failed += 1
            self.report.skipped_heif += skipped_for_heif(error)
            self.report.failures.append((f.path, error))
            return {**row, "state": "failed", "error": error}
        if task.replaces is not None:
            self.report.updated += 1
        else:
            self.report.added += 1
        meta = json.dumps(f.meta, ensure_ascii=False, default=str) if f.meta else None
        return {**row, "meta": meta, **_file_fields(info)}

    # ---- removals and the vector index ----------------------------------------------------

    def remove_missing(self, scan: ScanResult) -> None:
        ids = [row.id for row in scan.missing]
        if ids:
            with self.catalog.write() as s:
                self.catalog.files.remove(s, ids)
        self.report.removed = len(ids)

    def update_index(self) -> None:
        try:
            prompts = self.encoder.encode_text(SEARCH_PROMPTS)
            loaded, action = self.store.indexes.sync(
                self.model_id, self.options.preset, prompts, self.memory_budget
            )
            self.report.index_action, self.report.preset = action, loaded.preset.name
            self.report.index_note = loaded.note
        except IndexWriteError as e:
            self.report.index_error = (
                f"{e}; the catalog is complete and the index will be rebuilt from it"
            )
