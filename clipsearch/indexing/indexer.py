"""`clipsearch index`: plan the run (plan.py), reuse the vectors of moved and copied files
(reuse.py), decode, embed and commit the rest a batch at a time (pipeline.py), drop the
rows of files that are gone, and bring the vector index up to date.

Each batch commits atomically, so a crash or kill -9 loses at most the batch in flight
and the next run goes on from there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core.config import IndexOptions
from ..core.prompts import SEARCH_PROMPTS
from ..core.sizes import parse_size
from ..storage.catalog import Catalog
from ..storage.database import State
from ..storage.presets import preset_named
from ..storage.store import Store
from ..storage.vector_indexes import IndexWriteError
from .pipeline import Pipeline
from .plan import Planner, absolute_roots
from .pool import DecodePool
from .report import IndexReport, Progress, Stopwatch
from .reuse import reuse_moved_and_copied
from .scan import ScanResult

if TYPE_CHECKING:  # torch: not imported by `status`, `forget` or decoding workers
    from ..models.encoder import Encoder
    from .ray_pipeline import Embedding


class Indexer:
    """One run of `clipsearch index` over some roots for one model. A pool of decoding
    processes may be handed in, started earlier (while the model loaded, say); with `ray`,
    Ray Data decodes and embeds instead (ray_pipeline.py) and this process only writes."""

    pipeline = Pipeline  # what decodes, embeds and commits the planned files

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
        self.planner = Planner(self.catalog, self.options)
        self.report.problems = self.planner.problems
        self.pool = pool
        self.ray = ray
        self.memory_budget: int | None = None
        self.watch = Stopwatch(self.report.profile)

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
        self.report.unchanged = self.planner.unchanged
        self.report.seconds = time.perf_counter() - start
        return self.report

    def dry_run(self, roots: list[str]) -> None:
        stored = self.catalog.state in (State.CURRENT, State.OLDER)
        scan = self.planner.scan(roots, known=stored)
        known = self.catalog.models.find(self.encoder.digest) if stored else None
        tasks = self.planner.tasks(scan, known.id if known else None)
        self.report.planned = {
            "embed": len(tasks),
            "remove": len(scan.missing),
            "unchanged": len(scan.unchanged),
        }

    def index(self, roots: list[str], progress: Progress | None) -> None:
        with self.watch("scan"):
            scan = self.planner.scan(roots)
        e = self.encoder
        with self.watch("plan"):
            model_id = self.catalog.models.register(e.name, e.architecture, e.digest, e.dim).id
            tasks = self.planner.tasks(scan, model_id)
            tasks = reuse_moved_and_copied(self.catalog, model_id, tasks, scan, self.report)
        pipeline = self.pipeline(
            self.catalog, e, model_id, self.options, self.report, self.pool, self.ray
        )
        pipeline.run(tasks, progress)
        with self.watch("remove missing"):
            self.remove_missing(scan)
        if self.planner.shards_read:  # every member has its row now: next time, not opened
            with self.catalog.write() as s:
                self.catalog.files.mark_shards_complete(s, self.planner.shards_read)
        with self.watch("vector index"):
            self.update_index(model_id)

    def remove_missing(self, scan: ScanResult) -> None:
        ids = [row.id for row in scan.missing]
        if ids:
            with self.catalog.write() as s:
                self.catalog.files.remove(s, ids)
        self.report.removed = len(ids)

    def update_index(self, model_id: int) -> None:
        try:
            prompts = self.encoder.encode_text(SEARCH_PROMPTS)
            loaded, action = self.store.indexes.sync(
                model_id, self.options.preset, prompts, self.memory_budget
            )
            self.report.index_action, self.report.preset = action, loaded.preset.name
            self.report.index_note = loaded.note
        except IndexWriteError as e:
            self.report.index_error = (
                f"{e}; the catalog is complete and the index will be rebuilt from it"
            )
