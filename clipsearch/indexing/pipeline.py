"""Decode, embed and commit the planned files a batch at a time: decoded by the local
processes (pool.py) and embedded by this process's model, or both on Ray
(ray_pipeline.py). Each batch commits in one transaction (file rows, vectors and their log
entries, or nothing), so a crash or kill -9 loses at most the batch in flight.

A batch commits on a writer thread while the next one is embedded, so the model (a GPU
above all) does not stand still for it; at most one commit is in flight, and a stop (an
error, Ctrl-C) waits for it to end first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager as ContextManager
from contextlib import closing, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..core import faults
from ..core.config import IndexOptions
from ..core.heap import reusing_freed_memory
from ..core.versions import EXIF_READ
from ..images.decode import ImageInfo
from ..images.formats import skipped_for_heif, skipped_for_raw
from ..storage.catalog import Catalog
from .cores import CoreShare
from .overtaken import stamp, still_planned
from .plan import Task
from .pool import DecodePool, default_workers
from .report import IndexReport, Progress, Stopwatch

if TYPE_CHECKING:  # torch: not imported by `status`, `forget` or decoding workers
    from ..models.encoder import Encoder
    from .ray_pipeline import Embedding


class Outcome(NamedTuple):
    """What became of one planned file: what decoding learned of it, or why it failed, and
    its vector."""

    info: ImageInfo | None
    error: str | None
    vector: np.ndarray | None


class Pipeline:
    """One run's decoding, embedding and commits for one model (see Indexer for `pool`
    and `ray`)."""

    def __init__(
        self,
        catalog: Catalog,
        encoder: Encoder,
        model_id: int,
        options: IndexOptions,
        report: IndexReport,
        pool: DecodePool | None = None,
        ray: Embedding | None = None,
    ):
        self.catalog = catalog
        self.encoder = encoder
        self.model_id = model_id
        self.options = options
        self.report = report
        self.watch = Stopwatch(report.profile)
        self.pool = pool
        self.ray = ray
        self.commit_cpu = 0.0  # seconds the writer thread has spent committing

    def run(self, tasks: list[Task], progress: Progress | None) -> None:
        if not tasks:
            return
        batches = self._on_ray(tasks) if self.ray is not None else self._local_batches(tasks)
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

    def _commit(self, chunk: list[Task], outcomes: list[Outcome]) -> None:
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

    def _local_batches(self, tasks: list[Task]) -> Iterator[tuple[list[Task], list[Outcome]]]:
        """Batches decoded by the local processes and embedded by this process's model."""
        batch = max(1, self.options.batch_size)
        chunks = [tasks[i : i + batch] for i in range(0, len(tasks), batch)]
        items = [[t.item for t in c] for c in chunks]
        with self._pool() as pool, self._cores(pool) as measuring, reusing_freed_memory():
            batches = pool.decode(items, self.encoder.preprocessing)
            for number, chunk in enumerate(chunks, 1):
                with self.watch("first batch decoded" if number == 1 else "waiting for decoding"):
                    decoded = next(batches)
                with measuring(len(decoded)):
                    vectors = self.vectors(decoded)
                yield (
                    chunk,
                    [Outcome(info, e, vectors.get(i)) for i, (_, info, e) in enumerate(decoded)],
                )

    @contextmanager
    def _cores(self, pool: DecodePool) -> Iterator[Callable[[int], ContextManager]]:
        """What measures the model's batches: on a CPU, its threads then follow its share
        of an image's CPU time (cores.py), so that decoding big photos gets the cores it
        needs; elsewhere nothing."""
        if self.encoder.device.type != "cpu":
            yield lambda images: nullcontext()
            return
        share = CoreShare(pool.cpu_per_image, lambda: self.commit_cpu)
        try:
            yield share.measuring
        finally:
            share.close()

    def _on_ray(self, tasks: list[Task]) -> Iterator[tuple[list[Task], list[Outcome]]]:
        """Batches decoded and embedded on Ray, in the order they come back."""
        from . import ray_pipeline

        items = [t.item for t in tasks]
        batch = max(1, self.options.batch_size)
        for results in ray_pipeline.run(items, self.encoder.preprocessing, self.ray, batch):
            chunk = [tasks[r.position] for r in results]
            yield chunk, [Outcome(r.info, r.error, r.vector) for r in results]

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

    def write(self, s, chunk: list[Task], outcomes: list[Outcome]) -> None:
        """A batch's outcomes in a few statements whatever its size (one writer feeds a
        whole cluster: bench/catalog_write_rate.py). Rows that a task replaces go first,
        so a changed file's new row can take its path. Work another writer overtook is
        left out (overtaken.py)."""
        planned = {t.found.path: stamp(t.existing or t.replaces) for t in chunk}
        held = still_planned(s, self.catalog, planned)
        pairs = [(t, o) for t, o in zip(chunk, outcomes) if t.found.path in held]
        completed = [(t.existing.id, o.vector) for t, o in pairs if _completes(t, o)]
        self.report.added += len(completed)
        rest = [(t, o) for t, o in pairs if not _completes(t, o)]
        gone = [t.replaces.id for t, _ in rest if t.replaces is not None]
        gone += [t.existing.id for t, _ in rest if t.existing is not None]  # now unreadable
        self.catalog.files.remove(s, gone)
        rows = [self._row(t, info, error) for t, (info, error, _) in rest]
        ids = self.catalog.files.add_many(s, rows)
        completed += [(i, o.vector) for i, (_, o) in zip(ids, rest) if o.error is None]
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
            self.report.skipped_raw += skipped_for_raw(error)
            self.report.failures.append((f.path, error))
            return {**row, "state": "failed", "error": error}
        if task.replaces is not None:
            self.report.updated += 1
        else:
            self.report.added += 1
        meta = json.dumps(f.meta, ensure_ascii=False, default=str) if f.meta else None
        return {**row, "meta": meta, **_file_fields(info)}


def _completes(task: Task, outcome: Outcome) -> bool:
    """An unchanged file that only lacked this model's vector, and now has it."""
    return task.existing is not None and outcome.vector is not None


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
        lens=info.lens,
        latitude=info.latitude,
        longitude=info.longitude,
        exif_read=EXIF_READ,
    )
