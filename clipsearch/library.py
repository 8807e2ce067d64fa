"""`clipsearch.Library`: the Python API behind every command that touches a store."""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from . import status
from .core.memo import MemoFile
from .core.prompts import SEARCH_PROMPTS
from .images.decode import BytesSource, ImageError
from .indexing.indexer import Indexer, IndexOptions
from .indexing.plan import absolute_roots
from .indexing.pool import DecodePool, default_workers
from .indexing.report import IndexReport, Progress
from .models.pretrained import DEFAULT_MODEL
from .query.precision import PrecisionChecks, TextTowers
from .query.search import (
    Filters,
    QueryError,
    Result,
    Term,
    combine,
    describe,
    hydrate,
    nearest,
    parse_query,
)
from .status import StatusReport
from .storage.catalog import Catalog
from .storage.database import State
from .storage.loaded_index import LoadedIndex
from .storage.presets import preset_named
from .storage.query_log import enabled_by_default
from .storage.recall import Recall
from .storage.schema import Model
from .storage.store import PRECISION_CHECKS_FILE, TEXT_MODELS_FILE, OnWait, Store

if TYPE_CHECKING:  # torch loads with the first model, not with `status` or `forget`
    from .models.encoder import Encoder

TEXT_CACHE_SIZE = 512  # recent query texts kept as vectors: paging and re-filtering are free


class UnknownFile(QueryError):
    """A catalog id that names no indexed image."""


class UnusableImage(QueryError):
    """An image given as a query that cannot be decoded (the reason says why)."""

    def __init__(self, error: ImageError):
        super().__init__(f"cannot use the image query {error.path}: {error.reason}")
        self.reason = error.reason


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


@dataclass
class Answer:
    """What a query returned and how it was understood."""

    query: str
    model: str
    results: list[Result]
    index_action: str  # loaded | updated | rebuilt
    timings_ms: dict[str, float] = field(default_factory=dict)  # embed, search, hydrate


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
        the store: wait for it (telling on_wait first), or raise StoreBusy. query_log:
        keep the vectors (never the text) of text queries, so that the vector index is
        tuned for them (default: on, unless CLIPSEARCH_QUERY_LOG=0). text_model: a text
        tower aligned to the store's model (`train --distill-text`) that reads the text of
        queries, e.g. in other languages; the store remembers it for that model, so later
        Libraries use it unasked ("none" forgets it)."""
        self.store = Store(store, db_url=db_url, create=create, wait=wait, on_wait=on_wait)
        self.catalog: Catalog = self.store.catalog
        self.device = device
        self.precision = precision
        self.log_queries = enabled_by_default() if query_log is None else query_log
        self.text_model = text_model
        self.text_models = MemoFile(self.store.path / TEXT_MODELS_FILE)
        self._text_model_remembered = False
        self._encoders: dict[str, Encoder] = {}
        self._indexes: dict[int, tuple[LoadedIndex, str]] = {}
        self._model_rows: dict[str, Model] = {}
        self._default: str | None = None
        self._text_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.loads: list[tuple[str, str, bool]] = []  # (spec, precision, text only), in order
        self.text_towers = TextTowers(
            PrecisionChecks(self.store.path / PRECISION_CHECKS_FILE),
            lambda spec, precision: self._load(spec, precision, text_only=True),
        )

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- models -------------------------------------------------------------------

    def default_model(self) -> str:
        """The store's only model if it has one, clipsearch's default if the store has
        none or has it among several; with several others, the caller must choose (and
        no model is looked for on the network in the meantime)."""
        have = (
            [(m, n) for m, n in self.catalog.models.counted() if n > 0]
            if self._has_catalog()
            else []
        )
        names = [m.name for m, _ in have]
        if len(have) == 1:
            return names[0]
        if not have or DEFAULT_MODEL in names:
            return DEFAULT_MODEL
        listing = ", ".join(f"{m.name} ({n} vectors)" for m, n in have)
        raise QueryError(
            f"this store has vectors from several models: {listing}; pick one with --model"
        )

    def _has_catalog(self) -> bool:
        return self.catalog.state in (State.CURRENT, State.OLDER)

    def encoder(self, spec: str | None = None, text_only: bool = False) -> Encoder:
        """The model for a spec, loaded once; text_only (for text queries) leaves out the
        image tower until something needs it."""
        spec = self._spec(spec)
        loaded = self._encoders.get(spec)
        if loaded is None or (loaded.text_only and not text_only):
            self._encoders[spec] = self._load(spec, self.precision, text_only)
        return self._encoders[spec]

    def query_encoder(self, spec: str | None = None, text_only: bool = False) -> Encoder:
        """The model for a query. Under precision "auto" on a CPU, text queries start in
        fp32 and move to a faster tower where this store shows that it finds what fp32
        finds (query_precision.TextTowers)."""
        spec = self._spec(spec)
        if not (text_only and self._chooses_text_precision()):
            return self.encoder(spec, text_only)
        encoder = self._encoders.get(spec)
        if encoder is None:
            encoder = self._encoders[spec] = self._load(spec, "fp32", text_only=True)
        if not encoder.text_only or encoder.precision != "fp32":
            return encoder  # a whole model loaded for an image term, or the chosen tower
        faster = self.text_towers.after_query(spec, encoder, lambda: self._searcher(encoder))
        if faster is not None:
            self._encoders[spec] = encoder = faster
        return encoder

    def _chooses_text_precision(self) -> bool:
        from .models.encoder import resolve_device

        return self.precision == "auto" and resolve_device(self.device).type == "cpu"

    def _searcher(self, encoder: Encoder):
        """(top-10 file ids of a query vector, vectors searched) in this store's index."""
        loaded, _ = self._index_for(self.model_with_vectors(encoder).id)

        def top_ids(vector: np.ndarray) -> list[int]:
            return [i for i, _ in nearest(self.catalog, loaded, vector, 10)]

        return top_ids, loaded.count

    def _spec(self, spec: str | None) -> str:
        if spec is None:
            self._default = self._default or self.default_model()
            spec = self._default
        return spec

    def _load(self, spec: str, precision: str, text_only: bool) -> Encoder:
        from .models.encoder import load_model

        self.loads.append((spec, precision, text_only))
        return load_model(
            spec,
            device=self.device,
            precision=precision,
            text_only=text_only,
            digests=self.store.digests,
        )

    def model_with_vectors(self, encoder: Encoder) -> Model:
        """The catalog's row for the encoder's weights; an error naming the models that
        do have vectors here if it has none."""
        if encoder.digest in self._model_rows:
            return self._model_rows[encoder.digest]
        row = self.catalog.models.find(encoder.digest)
        if row is None or not self.catalog.models.has_vectors(row.id):
            have = [(m, n) for m, n in self.catalog.models.counted() if n > 0]
            listing = ", ".join(f"{m.name} ({n} vectors)" for m, n in have) or "none yet"
            raise QueryError(
                f"this store has no vectors from model {encoder.name} (weights {encoder.digest}). "
                f"Models here: {listing}. Use --model with one of them, or index with this "
                f"one: clipsearch index PATH --model {encoder.name}"
            )
        self._model_rows[encoder.digest] = row
        return row

    # ---- indexing -------------------------------------------------------------------

    def index(
        self,
        paths: Sequence[str | os.PathLike],
        model: str | None = None,
        options: IndexOptions | None = None,
        progress: Progress | None = None,
    ) -> IndexReport:
        """Index files and folders for a model. The store is locked and ready before the
        model loads: a store that cannot be written fails at once, not after the load."""
        options = options or IndexOptions()
        if options.dry_run:
            return Indexer(self.store, self.encoder(model), options).run(paths, progress)
        if options.ray:
            return self._index_on_ray(paths, model, options, progress)
        with self.store.writing(), DecodePool(options.workers or default_workers()) as pool:
            pool.start()  # the decoding processes start while the model loads
            started = time.perf_counter()
            encoder = self.encoder(model)
            loaded = time.perf_counter() - started
            report = Indexer(self.store, encoder, options, pool).run(paths, progress)
        report.profile["model load"] = loaded
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

        with self.store.writing():
            ray_pipeline.connect(options.ray_address)
            encoder = self.encoder(model)
            gpus = options.ray_gpus
            if gpus is None:
                gpus = 1.0 if ray_pipeline.cluster_gpus() else 0.0
            spec = self._spec(model)
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
            return [self.model_with_vectors(self.encoder(model))]
        return [m for m, n in self.catalog.models.counted() if n > 0]

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

    # ---- status -----------------------------------------------------------------------

    def status(self) -> StatusReport:
        """Files, models, their vector indexes and precision checks, failures."""
        verdicts = self.text_towers.checks.verdicts()
        return status.report(self.catalog, self.store.indexes, str(self.store.path), verdicts)

    # ---- search -----------------------------------------------------------------------

    def _index_for(self, model_id: int) -> tuple[LoadedIndex, str]:
        """The model's index, brought up to what other processes have committed since it
        was loaded (a long-lived Library, such as the server's, sees new and forgotten
        files without a restart)."""
        if model_id not in self._indexes:
            self._indexes[model_id] = self.store.indexes.get(model_id)
        else:
            loaded, action = self._indexes[model_id]
            self._indexes[model_id] = (self.store.indexes.refresh(loaded), action)
        return self._indexes[model_id]

    def text_reader(self, model: str | None = None) -> Encoder:
        """The encoder for a query's words: a text tower aligned to the model where one is
        given or remembered for it, else the model's own (query_encoder)."""
        spec = self._spec(model)
        digest = self._digest_of(spec)
        remembered = self.text_models.read().get(digest) if digest else None
        tower = remembered if self.text_model is None else self.text_model
        if tower in (None, "none"):
            self._remember_text_model(digest, None)
            return self.query_encoder(spec, text_only=True)
        reader = self.query_encoder(tower, text_only=True)
        if digest and reader.digest != digest:
            raise QueryError(
                f"the text tower {tower} reads for the model with digest {reader.digest}, not "
                f"for {spec} ({digest}): give --text-model one made from it (train "
                f"--distill-text --from {spec}), or none"
            )
        self._remember_text_model(digest, tower)
        return reader

    def _remember_text_model(self, digest: str | None, tower: str | None) -> None:
        """A text model given to this Library is remembered for the model (once)."""
        if self.text_model is None or not digest or self._text_model_remembered:
            return
        entries = {k: v for k, v in self.text_models.read().items() if k != digest}
        self.text_models.write({**entries, **({digest: os.path.abspath(tower)} if tower else {})})
        self._text_model_remembered = True

    def _digest_of(self, spec: str) -> str | None:
        """The digest of the store's model of that name, without loading it."""
        if not self._has_catalog():
            return None
        return next(
            (m.digest for m, n in self.catalog.models.counted() if m.name == spec and n), None
        )

    def query_vector(
        self, terms: Sequence[Term], encoder: Encoder, reader: Encoder | None = None
    ) -> np.ndarray:
        """The query's vector: its images through `encoder`, its words through `reader`
        (a text tower, where one reads for the model; else the encoder itself)."""
        vectors = []
        for t in terms:
            if t.file_id is not None:
                vectors.append(self._stored_vector(t.file_id, encoder))
            elif t.image is not None:
                vectors.append(self._image_vector(t.image, encoder))
            else:
                vectors.append(self._text_vector(t.text, reader or encoder))
        return combine(np.stack(vectors), [t.weight for t in terms])

    def _text_vector(self, text: str, encoder: Encoder) -> np.ndarray:
        key = (encoder.text_key, text)
        if key in self._text_vectors:
            self._text_vectors.move_to_end(key)
        else:
            self._text_vectors[key] = encoder.encode_text([text])[0]
            if len(self._text_vectors) > TEXT_CACHE_SIZE:
                self._text_vectors.popitem(last=False)
        return self._text_vectors[key]

    def _stored_vector(self, file_id: int, encoder: Encoder) -> np.ndarray:
        ids, vecs = self.catalog.vectors.get(self.model_with_vectors(encoder).id, [file_id])
        if not len(ids):
            raise UnknownFile(f"no indexed image #{file_id} for model {encoder.name}")
        return vecs[0]

    def _image_vector(self, image: str | BytesSource, encoder: Encoder) -> np.ndarray:
        """An indexed image's stored vector, or a fresh embedding of an outside image."""
        if isinstance(image, BytesSource):
            return encoder.encode_images([image])[0]
        path = os.path.abspath(image)
        model = self.catalog.models.find(encoder.digest)
        row = self.catalog.files.under([path]).get(path)
        if model is not None and row is not None and row.state == "ok":
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
                ids, vecs = self.catalog.vectors.get(model.id, [row.id])
                if len(ids):
                    return vecs[0]
        return encoder.encode_images([image])[0]

    def search(
        self,
        query: str | Sequence[str],
        k: int = 10,
        model: str | None = None,
        filters: Filters = Filters(),
        images: Sequence[str] = (),
        min_score: float | None = None,
        exclude_self: bool = False,
    ) -> Answer:
        """Best matches for a query: a string, argv-style terms (`["beach", "+", "sunset"]`),
        and/or image paths. exclude_self drops the query images themselves from results."""
        terms = parse_query([query] if isinstance(query, str) else list(query), images)
        return self.search_terms(terms, k, model, filters, min_score, exclude_self)

    def search_terms(
        self,
        terms: Sequence[Term],
        k: int = 10,
        model: str | None = None,
        filters: Filters = Filters(),
        min_score: float | None = None,
        exclude_self: bool = False,
        offset: int = 0,
    ) -> Answer:
        """Results offset+1 .. offset+k for parsed terms (the same order page after page).
        exclude_self drops images given as terms (by path or id) from the results."""
        if k < 1 or offset < 0:
            raise QueryError("k must be at least 1 and the offset at least 0")
        started = time.perf_counter()
        text_only = all(t.image is None and t.file_id is None for t in terms)
        reader = self.text_reader(model)
        encoder = reader if text_only else self.query_encoder(model)
        row = self.model_with_vectors(encoder)
        try:
            vector = self.query_vector(terms, encoder, reader)
        except ImageError as e:
            raise UnusableImage(e) from None
        if self.log_queries and any(t.text is not None for t in terms):
            self.store.query_log.add(encoder.digest, vector)
        embedded = time.perf_counter()
        loaded, action = self._index_for(row.id)
        want = min(k + offset, max(1, loaded.count))  # no more than there are, whatever is asked
        exclude = self._self_ids(terms) if exclude_self else []
        hits = nearest(self.catalog, loaded, vector, want, filters, exclude)[offset:]
        searched = time.perf_counter()
        results = hydrate(self.catalog, hits, min_score)
        timings = {
            "embed": (embedded - started) * 1000,
            "search": (searched - embedded) * 1000,
            "hydrate": (time.perf_counter() - searched) * 1000,
        }
        return Answer(describe(terms), encoder.name, results, action, timings)

    def similar(self, path: str, k: int = 10, **kwargs) -> Answer:
        """Images nearest to one image, itself excluded."""
        return self.search([], k=k, images=[path], exclude_self=True, **kwargs)

    def _self_ids(self, terms: Sequence[Term]) -> list[int]:
        paths = [os.path.abspath(t.image) for t in terms if isinstance(t.image, str)]
        rows = self.catalog.files.under(paths)
        return [rows[p].id for p in paths if p in rows] + [
            t.file_id for t in terms if t.file_id is not None
        ]


def parse_date(text: str) -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or a full ISO timestamp."""
    for fmt in ("%Y", "%Y-%m", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            f"not a date: {text!r} (use YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)"
        ) from None
    return when.astimezone(timezone.utc).replace(tzinfo=None) if when.tzinfo else when
