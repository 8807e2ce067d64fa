"""`clipsearch index`: plan the run (plan.py), reuse the vectors of moved and copied files
(reuse.py), decode, embed and commit the rest a batch at a time (pipeline.py), drop the
rows of files that are gone, and bring the vector index up to date. The model loads and the
decoding processes start only once the plan holds work: an unchanged re-run is a scan.

Each batch commits atomically, so a crash or kill -9 loses at most the batch in flight
and the next run goes on from there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..core.config import IndexOptions
from ..core.prompts import SEARCH_PROMPTS
from ..core.sizes import parse_size
from ..images import ocr
from ..images.items import absolute_roots
from ..storage.catalog import Catalog
from ..storage.database import State
from ..storage.presets import preset_named
from ..storage.schema import Model
from ..storage.store import Store
from ..storage.vector_indexes import IndexWriteError
from .details import fill_exif
from .overtaken import stamp, still_planned
from .pipeline import Pipeline
from .plan import Planner, Task
from .pool import DecodePool
from .report import IndexReport, Progress, Stopwatch
from .reuse import reuse_moved_and_copied
from .scan import ScanResult
from .settled import QuietRun
from .text import read_texts

if TYPE_CHECKING:  # torch: not imported by `status`, `forget` or decoding workers
    from ..models.encoder import Encoder
    from .ray_pipeline import Embedding


class RunModel:
    """A run's model, loaded when first needed. Its digest may be known before (the store
    remembers what each spec loaded to), which finds its vectors in the catalog."""

    def __init__(self, load: Callable[[], Encoder], digest: str | None = None):
        self._load = load
        self.digest = digest
        self.loaded: Encoder | None = None
        self.seconds = 0.0  # spent loading it

    @classmethod
    def of(cls, encoder: Encoder) -> RunModel:
        model = cls(lambda: encoder, encoder.digest)
        model.loaded = encoder
        return model

    def get(self) -> Encoder:
        if self.loaded is None:
            started = time.perf_counter()
            self.loaded = self._load()
            self.seconds = time.perf_counter() - started
            self.digest = self.loaded.digest
        return self.loaded


class Indexer:
    """One run of `clipsearch index` over some roots for one model (loaded, or a RunModel
    to load if there is work). A pool of decoding processes may be handed in, started here
    when there is work; with `ray`, Ray Data decodes and embeds instead (ray_pipeline.py)
    and this process only writes."""

    pipeline = Pipeline  # what decodes, embeds and commits the planned files

    def __init__(
        self,
        store: Store,
        model: Encoder | RunModel,
        options: IndexOptions | None = None,
        pool: DecodePool | None = None,
        ray: Embedding | None = None,
        share_lock: bool = False,
    ):
        """share_lock: hold the store's writer lock only while committing (Store.sharing),
        as a watcher's runs do; else for the whole run."""
        self.store = store
        self.share_lock = share_lock
        self.catalog: Catalog = store.catalog
        self.model = model if isinstance(model, RunModel) else RunModel.of(model)
        self.options = options or IndexOptions()
        self.report = IndexReport()
        self.planner = Planner(self.catalog, self.options, skip=[os.path.abspath(store.path)])
        self.report.problems = self.planner.problems
        self.pool = pool
        self.ray = ray
        self.memory_budget: int | None = None
        self.watch = Stopwatch(self.report.profile)
        self.planned = 0  # files to embed or remove
        self.unreadable_text = 0  # images whose text could not be read: tried each run

    def run(self, roots: Sequence[str], progress: Progress | None = None) -> IndexReport:
        """Index under the store's writer lock (or sharing it); a dry run takes none and
        writes nothing."""
        start = time.perf_counter()
        if self.options.preset != "auto":
            preset_named(self.options.preset)  # an unknown name fails before any work
        budget = self.options.memory_budget
        self.memory_budget = parse_size(budget) if budget is not None else None
        if self.options.ocr:
            ocr.require()  # before any work: one line where the engine is missing
        if self.options.dry_run:
            self.dry_run(absolute_roots(roots))
        else:
            with self.store.sharing() if self.share_lock else self.store.writing():
                self.index(absolute_roots(roots), progress)
        self.report.unchanged = self.planner.unchanged
        self.report.seconds = time.perf_counter() - start
        return self.report

    def dry_run(self, roots: list[str]) -> None:
        stored = self.catalog.state in (State.CURRENT, State.OLDER)
        scan = self.planner.scan(roots, known=stored)
        known = self._known_model() if stored else None
        if stored and known is None:
            known = self.catalog.models.find(self.model.get().digest)
        tasks = self.planner.tasks(scan, known.id if known else None)
        self.report.planned = {
            "embed": len(tasks),
            "remove": len(scan.missing),
            "unchanged": len(scan.unchanged),
        }

    def index(self, roots: list[str], progress: Progress | None) -> None:
        with self.watch("scan"):
            scan = self.planner.scan(roots)
        with self.watch("plan"):
            known = self._known_model()
            model_id = known.id if known is not None else self._register()
            tasks = self._tasks(scan, model_id)
        self.planned = len(tasks) + len(scan.missing)
        if tasks:
            encoder = self._load()
            if encoder.digest != self.catalog.models.get(model_id).digest:  # changed meanwhile
                model_id = self._register()
                tasks = self._tasks(scan, model_id)
            pipeline = self.pipeline(
                self.catalog, encoder, model_id, self.options, self.report, self.pool, self.ray
            )
            pipeline.run(tasks, progress)
        with self.watch("remove missing"):
            self.remove_missing(scan)
        with self.watch("exif read again"):
            self.report.exif_read_again = fill_exif(self.catalog, roots)
        if self.store.reads_text(self.options.ocr):
            with self.watch("read text"):
                self.report.text_read, self.unreadable_text = read_texts(
                    self.catalog, roots, ocr.TextReader(), progress
                )
        if self.planner.shards_read:  # every member has its row now: next time, not opened
            with self.catalog.write() as s:
                self.catalog.files.mark_shards_complete(s, self.planner.shards_read)
        with self.watch("vector index"), self.store.writing():
            self.update_index(model_id)

    def quiet(self, generation: int | None, spec: str) -> QuietRun | None:
        """What a run that found nothing to do and nothing in its way rested on (a note of
        it lets the next run answer from its walk: settled.py); None for any other run.
        generation: the catalog's, read before the run; spec: the model it ran."""
        r = self.report
        did = (r.exif_read_again, r.text_read, self.unreadable_text, self.planner.awaiting)
        walked = self.planner.walked
        if self.planned or any(did) or r.problems or self.planner.shards_read or walked is None:
            return None
        if generation is None or r.index_action != "unchanged" or self.model.digest is None:
            return None
        tunes = bool(preset_named(r.preset).tune)
        reads_text = self.store.reads_text()
        return QuietRun(walked, generation, spec, self.model.digest, r.preset, tunes, reads_text)

    def _known_model(self) -> Model | None:
        """The catalog's row for the model, found by the digest it is known to have."""
        return self.catalog.models.find(self.model.digest) if self.model.digest else None

    def _register(self) -> int:
        e = self._load()
        return self.catalog.models.register(e.name, e.architecture, e.digest, e.dim).id

    def _tasks(self, scan: ScanResult, model_id: int) -> list[Task]:
        tasks = self.planner.tasks(scan, model_id)
        return reuse_moved_and_copied(self.catalog, model_id, tasks, scan, self.report)

    def _load(self) -> Encoder:
        """The model, loaded while the decoding processes start."""
        if self.pool is not None and self.model.loaded is None:
            self.pool.start()
        encoder = self.model.get()
        self.report.profile["model load"] = self.model.seconds
        return encoder

    def remove_missing(self, scan: ScanResult) -> None:
        if not scan.missing:
            return
        with self.catalog.write() as s:
            held = still_planned(s, self.catalog, {row.path: stamp(row) for row in scan.missing})
            ids = [row.id for row in scan.missing if row.path in held]
            self.catalog.files.remove(s, ids)
        self.report.removed = len(ids)

    def update_index(self, model_id: int) -> None:
        try:
            loaded, action = self.store.indexes.sync(
                model_id,
                self.options.preset,
                lambda: self._load().encode_text(SEARCH_PROMPTS),
                self.memory_budget,
            )
            self.report.index_action, self.report.preset = action, loaded.preset.name
            self.report.index_note = loaded.note
        except IndexWriteError as e:
            self.report.index_error = (
                f"{e}; the catalog is complete and the index will be rebuilt from it"
            )
