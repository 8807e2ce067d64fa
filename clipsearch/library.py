"""`clipsearch.Library`: the Python API behind every command that touches a store.

The command line and the server are thin faces over it; nothing here prints or exits.
It indexes (indexing/), searches (query/searcher.py) with the models it has loaded
(query/encoders.py), and reports on the store (status.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import status
from .core.config import IndexOptions
from .core.prompts import SEARCH_PROMPTS
from .images.items import absolute_roots
from .query import duplicates
from .query.calibration import CalibrationMemo, Thresholds, thresholds_for
from .query.duplicates import Duplicates
from .query.encoders import Encoders
from .query.search import Filters, QueryError, Term, parse_query
from .query.searcher import Answer, Searcher
from .status import StatusReport
from .storage.catalog import Catalog
from .storage.presets import preset_named
from .storage.query_log import enabled_by_default
from .storage.recall import Recall
from .storage.schema import Model
from .storage.store import OnWait, Store

THRESHOLDS_FILE = "duplicate-thresholds.json"  # query/calibration.py: by model digest

if TYPE_CHECKING:  # torch loads with the first model, not with `status` or `forget`;
    # and indexing/ with the first `index`, not with a query
    from .indexing.report import IndexReport, Progress
    from .models.encoder import Encoder
    from .models.onnx_text import OnnxTextTower


@dataclass
class Rebuilt:
    """One model's rebuilt vector index."""

    model: str
    preset: str
    count: int
    params: dict  # the tuned search parameters; empty for exact search
    note: str | None = None  # why the preset is not the one asked for


@dataclass
class RecallCheck:
    """A vector index's measured recall, and what tuning again would reach where low."""

    model: str
    preset: str
    recall: Recall | None  # None for exact search, which is exact
    retuned: Recall | None = None


class Library:
    """A store of indexed images, searchable by text and image.

    Library(store=None) opens the default store (CLIPSEARCH_HOME or the user data folder);
    a read-only use (search, status) of a folder with no store raises StoreNotFound.
    """

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        db_url: str | None = None,
        create: bool = False,
        device: str | None = None,
        precision: str = "auto",
        wait: bool = True,
        on_wait: OnWait | None = None,
        query_log: bool | None = None,
        text_model: str | None = None,
    ):
        """create: a folder without a store may be indexed into (nothing is written until
        then). wait / on_wait: what a writing call does when another process is writing
        the store: wait for it (telling on_wait first: its pid, or "on another machine"
        for a PostgreSQL catalog's writer elsewhere), or raise StoreBusy or DatabaseBusy.
        query_log: keep the vectors (never the text) of text queries, so that the vector index is
        tuned for them (default: on, unless CLIPSEARCH_QUERY_LOG=0). text_model: a text
        tower aligned to the store's model (`train --distill-text`) that reads the text of
        queries, e.g. in other languages; the store remembers it for that model, so later
        Libraries use it unasked ("none" forgets it)."""
        self.store = Store(store, db_url=db_url, create=create, wait=wait, on_wait=on_wait)
        self.catalog: Catalog = self.store.catalog
        self.encoders = Encoders(
            self.store, lambda e: self.searcher.top_ids(e), device, precision, text_model
        )
        log = enabled_by_default() if query_log is None else query_log
        self.searcher = Searcher(self.store, self.encoders, log)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # The models: loaded once each (query/encoders.py).

    @property
    def loads(self) -> list[tuple[str, str, bool]]:
        """(spec, precision, text only) of every model loaded, in order."""
        return self.encoders.loads

    def default_model(self) -> str:
        return self.encoders.default_model()

    def encoder(self, spec: str | None = None, text_only: bool = False) -> Encoder:
        return self.encoders.get(spec, text_only)

    def query_encoder(self, spec: str | None = None, text_only: bool = False) -> Encoder:
        return self.encoders.for_query(spec, text_only)

    def text_reader(self, model: str | None = None) -> Encoder | OnnxTextTower:
        return self.encoders.text_reader(model)

    def export_text_tower(
        self,
        model: str | None = None,
        load: bool = True,
        on_start: Callable[[], None] | None = None,
    ) -> Path | None:
        return self.encoders.export_text_tower(model, load, on_start)

    def model_with_vectors(self, encoder: Encoder) -> Model:
        return self.encoders.model_row(encoder)

    # Indexing and the vector indexes.

    def index(
        self,
        paths: Sequence[str | os.PathLike],
        model: str | None = None,
        options: IndexOptions | None = None,
        progress: Progress | None = None,
        share_lock: bool = False,
        quick: bool = True,
    ) -> IndexReport:
        """Index files and folders for a model. The store is locked and ready before
        anything else: a store that cannot be written fails at once. The model loads only
        if there is something to embed (and the decoding processes start while it does).
        share_lock: take the writer lock for each commit only, so that others writing the
        store wait a moment rather than the whole run (a watcher's runs). quick: where the
        last run over these roots found nothing to do and nothing has changed since, say
        so from a walk alone (indexing/settled.py; the CLI, which asked first, passes
        False)."""
        from .indexing.indexer import Indexer, RunModel
        from .indexing.pool import DecodePool, default_workers
        from .indexing.settled import SettledRuns

        options = options or IndexOptions()
        if options.ray:
            return self._index_on_ray(paths, model, options, progress)
        settled = SettledRuns(self.store.path) if self.store.own_catalog else None
        roots = absolute_roots(paths)
        if quick and settled and not options.dry_run:
            report = settled.check(roots, model, options)
            if report is not None:
                return report
        spec = self.encoders.spec(model)
        run_model = RunModel(lambda: self.encoder(spec), self.encoders.known_digest(spec))
        if options.dry_run:
            return Indexer(self.store, run_model, options).run(paths, progress)
        hold = self.store.sharing() if share_lock else self.store.writing()
        with hold, DecodePool(options.workers or default_workers()) as pool:
            generation = self.catalog.generation()  # before the walk: writes since show
            indexer = Indexer(self.store, run_model, options, pool, share_lock=share_lock)
            report = indexer.run(paths, progress)
        quiet = indexer.quiet(generation, spec)
        if settled and quiet:
            settled.record(roots, model, options, quiet)
        return report

    def _index_on_ray(
        self,
        paths: Sequence[str | os.PathLike],
        model: str | None,
        options: IndexOptions,
        progress: Progress | None,
    ) -> IndexReport:
        """Decoding and embedding on Ray; planning and every write stay here. The actors
        load the same model and must arrive at the same digest."""
        from .indexing import ray_pipeline
        from .indexing.indexer import Indexer

        with self.store.writing():
            ray_pipeline.connect(options.ray_address)
            encoder = self.encoder(model)
            gpus = options.ray_gpus
            if gpus is None:
                gpus = 1.0 if ray_pipeline.cluster_gpus() else 0.0
            spec = self.encoders.spec(model)
            spec = os.path.abspath(spec) if os.path.exists(spec) else spec  # actors' cwd
            embedding = ray_pipeline.Embedding(
                spec, "auto" if gpus else encoder.precision, encoder.digest, gpus
            )
            return Indexer(self.store, encoder, options, ray=embedding).run(paths, progress)

    def forget(self, paths: Sequence[str | os.PathLike]) -> int:
        """Remove files or whole folders from the catalog and the vector indexes."""
        with self.store.writing():
            ids = [row.id for row in self.catalog.files.under(absolute_roots(paths)).values()]
            if ids:
                with self.catalog.write() as s:
                    self.catalog.files.remove(s, ids)
                self.store.indexes.sync_all()
        return len(ids)

    def rebuild(
        self, preset: str = "auto", model: str | None = None, memory_budget: int | None = None
    ) -> list[Rebuilt]:
        """Rebuild vector indexes from the catalog (every model, or one), within a memory
        budget in bytes (default: half the memory free now)."""
        if preset != "auto":
            preset_named(preset)
        done = []
        with self.store.writing():
            for row in self._models_to_rebuild(model):
                loaded = self.store.indexes.build(
                    row.id, preset, self._tuning_queries(row), memory_budget
                )
                self.store.indexes.save(loaded)
                done.append(
                    Rebuilt(row.name, loaded.preset.name, loaded.count, loaded.params, loaded.note)
                )
        return done

    def _models_to_rebuild(self, model: str | None) -> list[Model]:
        """The model named, or every model with vectors here."""
        if model is not None:
            return [self.encoders.model_row(self.encoder(model))]
        return [m for m, _ in self.catalog.models.with_vectors()]

    def check_recall(self, model: str | None = None) -> list[RecallCheck]:
        """Measure each vector index's recall@10 against exact search on every query set
        (tuning.py), record it, and say what a rebuild would choose where it is below."""
        done = []
        with self.store.writing():
            for row in self._models_to_rebuild(model):
                loaded, _ = self.store.indexes.get(row.id)
                if not loaded.preset.tune:
                    done.append(RecallCheck(row.name, loaded.preset.name, None, None))
                    continue
                prompts = self._tuning_queries(row)
                found = self.store.indexes.check(loaded, prompts)
                self.catalog.indexes.record_recall(row.id, json.dumps(found.to_dict()))
                better = self.store.indexes.retune(loaded, prompts).recall if found.below else None
                done.append(RecallCheck(row.name, loaded.preset.name, found, better))
        return done

    def _tuning_queries(self, row: Model) -> np.ndarray | None:
        """Text prompts from the model itself when it can be loaded without a download."""
        try:
            return self.encoder(row.name, text_only=True).encode_text(SEARCH_PROMPTS)
        except Exception:  # model not available here: tune with image vectors instead
            return None

    def status(self) -> StatusReport:
        """Files, models, their vector indexes and precision checks, failures."""
        verdicts = self.encoders.text_towers.checks.verdicts()
        return status.report(self.catalog, self.store.indexes, str(self.store.path), verdicts)

    # Search (query/searcher.py).

    def search(
        self,
        query: str | Sequence[str],
        k: int = 10,
        model: str | None = None,
        filters: Filters = Filters(),
        images: Sequence[str] = (),
        min_score: float | None = None,
        exclude_self: bool = False,
        sort: str = "score",
        mode: str = "hybrid",
    ) -> Answer:
        """Best matches for a query: a string, argv-style terms (`["beach", "+", "sunset"]`),
        and/or image paths. exclude_self drops the query images themselves from results;
        sort "date" or "-date" orders the best matches by date; mode "hybrid" (vectors and
        the words files carry), "vector" or "text" (Searcher.search)."""
        terms = parse_query([query] if isinstance(query, str) else list(query), images)
        return self.search_terms(
            terms, k, model, filters, min_score, exclude_self, sort=sort, mode=mode
        )

    def search_terms(
        self,
        terms: Sequence[Term],
        k: int = 10,
        model: str | None = None,
        filters: Filters = Filters(),
        min_score: float | None = None,
        exclude_self: bool = False,
        offset: int = 0,
        sort: str = "score",
        mode: str = "hybrid",
    ) -> Answer:
        """Results offset+1 .. offset+k for parsed terms (the same order page after page).
        exclude_self drops images given as terms (by path or id) from the results."""
        return self.searcher.search(
            terms, k, model, filters, min_score, exclude_self, offset, sort, mode
        )

    def similar(self, path: str, k: int = 10, **kwargs) -> Answer:
        """Images nearest to one image, itself excluded."""
        return self.search([], k=k, images=[path], exclude_self=True, **kwargs)

    def duplicates(
        self,
        kind: str = "near",
        of: Sequence[str | os.PathLike] = (),
        filters: Filters = Filters(),
        threshold: float | None = None,
        model: str | None = None,
    ) -> Duplicates:
        """Groups of duplicates (query/duplicates.py) among the files that pass the
        filters; with `of`, only groups holding one of those files or folders' files.
        Without a threshold, near and similar use the model's measured ones, measured at
        the first call for a model (loading it; query/calibration.py)."""
        duplicates.check_kind(kind)
        if threshold is not None and not -1 <= threshold <= 1:
            raise QueryError(f"the threshold is a similarity, from -1 to 1, not {threshold}")
        self.encoders.require_vectors()
        row = self.encoders.stored_row(model)
        measured = None
        if kind != "exact" and threshold is None:
            measured = self._thresholds(row, model)
            threshold = measured.of(kind)
        groups = duplicates.find(self.catalog, row.id, kind, threshold, filters, absolute_roots(of))
        return Duplicates(kind, row.name, threshold, groups, measured)

    def thresholds(self, model: str | None = None) -> Thresholds:
        """The model's near and similar thresholds, measured on this store's photos the
        first time (query/calibration.py) and kept."""
        return self._thresholds(self.encoders.stored_row(model), model)

    def _thresholds(self, row: Model, model: str | None) -> Thresholds:
        memo = CalibrationMemo(self.store.path / THRESHOLDS_FILE)
        found = thresholds_for(memo, self.catalog, row, lambda: self.encoder(model))
        if found is None:
            raise QueryError(
                f"cannot measure where duplicates begin for {row.name}: fewer than two of its "
                "photos can be read here; give a threshold (--threshold 0.95)"
            )
        return found
