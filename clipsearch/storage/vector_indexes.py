"""FAISS vector indexes, derived from the catalog and never trusted over it.

An index file holds the FAISS index and its tombstones and is written atomically under a
name that carries the catalog log position it reflects; the catalog row points at it.
Loading replays the catalog's vector log after that position, so a stale index answers
with everything committed, and a missing or corrupt file is rebuilt from the catalog.

Memory: a build streams vectors from the catalog in chunks (trained on a sample), so the
index, not the build, bounds it; `auto` picks a compressed preset when the full vectors
would not fit the budget; the IVF presets' files are memory-mapped, so a query reads only
the inverted lists it probes.

The parts: presets.py (which index), loaded_index.py (an index with its bookkeeping),
index_files.py (its file), tuning.py (its search parameter).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from ..core import faults
from ..core.errors import ClipsearchError
from ..core.stderr import native_stderr
from . import tuning
from .catalog import Catalog
from .catalog_indexes import stored_params, stored_recall
from .database import CatalogError
from .index_files import SAFE_NAME, index_file_name, read_index_file, write_index_file
from .loaded_index import LoadedIndex, set_params
from .presets import choose_preset, preset_named, presets, training_sample
from .query_log import QueryLog
from .recall import Recall

TOMBSTONE_REBUILD_FRACTION = 0.1


# Text prompts the caller's model encodes, or what encodes them when they are needed.
Prompts = np.ndarray | Callable[[], np.ndarray] | None


def encoded(prompts: Prompts) -> np.ndarray | None:
    return prompts() if callable(prompts) else prompts


class IndexWriteError(ClipsearchError):
    """The index file could not be written (disk full, permissions); the catalog is intact."""


def _training_note(printed: list[str], points: int) -> str | None:
    """FAISS's training complaints, in one line."""
    if any("WARNING clustering" in line for line in printed):
        return (
            f"FAISS trained on {points:,} points, fewer than it asks for; recall is measured "
            "and the search parameter tuned regardless"
        )
    return None


class VectorIndexes:
    """Builds, loads, updates and saves the FAISS index of each model in a store."""

    chunk = 50_000  # vectors read from the catalog and added to the index at a time

    def __init__(self, catalog: Catalog, directory: Path, query_log: QueryLog | None = None):
        self.catalog = catalog
        self.directory = Path(directory)
        self.query_log = query_log

    def build(
        self,
        model_id: int,
        preset: str = "auto",
        prompts: Prompts = None,
        memory_budget: int | None = None,
    ) -> LoadedIndex:
        """A fresh index from every vector of the model in the catalog, its search
        parameter tuned (tuning.py) on the prompts the caller's model encoded, if any
        (asked for only by a preset that is tuned)."""
        log_seq = self.catalog.vectors.log_position(model_id)
        all_ids = self.catalog.vectors.ids(model_id)
        n = len(all_ids)
        dim = self.catalog.models.get(model_id).dim
        chosen = choose_preset(n, dim, memory_budget) if preset == "auto" else preset_named(preset)
        note = None
        if n < chosen.min_train:
            stand_in = choose_preset(n, dim, memory_budget)
            note = (
                f"{chosen.name} needs at least {chosen.min_train:,} vectors to train and there "
                f"are {n:,}; {stand_in.name} stands in until there are enough"
            )
            chosen = stand_in
        factory = chosen.factory_for(n, dim)
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        set_params(index, chosen.build)
        set_training_effort(index, chosen.train)
        if not index.is_trained:
            _, train = self.catalog.vectors.get(
                model_id, training_sample(all_ids, factory).tolist()
            )
            with native_stderr() as printed:
                index.train(train)
            note = note or _training_note(printed, len(train))
        read = [np.zeros(0, np.int64)]
        for ids, vecs in self.catalog.vectors.batches(model_id, self.chunk):
            if vecs.shape[1] != dim:
                raise CatalogError(
                    f"the catalog is damaged: model #{model_id} is recorded with {dim} "
                    f"dimensions, its vectors have {vecs.shape[1]}; index into a new store, or "
                    "restore catalog.db from a backup"
                )
            index.add_with_ids(vecs, ids)
            read.append(ids)
        loaded = LoadedIndex(
            model_id, chosen, factory, index, dict(chosen.search), log_seq, set(), dim, note=note
        )
        # Vectors committed while the batches were read are in already: replay the rest.
        later = self.catalog.vectors.log_since(model_id, log_seq)
        adds = np.array([fid for _, fid, op in later if op == "+"], dtype=np.int64)
        already = set(adds[np.isin(adds, np.concatenate(read))].tolist())
        loaded.apply_log([e for e in later if not (e[2] == "+" and e[1] in already)], self.catalog)
        loaded.log_seq = later[-1][0] if later else log_seq
        if chosen.tune and n > 0:
            text = encoded(prompts)
            loaded.recall = tuning.tune(self.catalog, loaded, self.query_sets(model_id, text))
            loaded.params = loaded.recall.params
        return loaded

    def query_sets(self, model_id: int, prompts: np.ndarray | None) -> dict[str, np.ndarray]:
        """The sets the index is tuned and checked on (tuning.py), with this store's
        logged queries."""
        model = self.catalog.models.get(model_id)
        logged = self.query_log.recent(model.digest, model.dim) if self.query_log else None
        return tuning.query_sets(self.catalog, model_id, prompts, logged)

    def check(self, loaded: LoadedIndex, prompts: np.ndarray | None) -> Recall:
        """Recall of the index as it is searched now, on every query set."""
        return tuning.check(self.catalog, loaded, self.query_sets(loaded.model_id, prompts))

    def retune(self, loaded: LoadedIndex, prompts: np.ndarray | None) -> LoadedIndex:
        """The index with its search parameter chosen again (no rebuild)."""
        if not loaded.preset.tune:
            return loaded
        found = tuning.tune(self.catalog, loaded, self.query_sets(loaded.model_id, prompts))
        return replace(loaded, params=found.params, recall=found, gpu=None)

    def file_for(self, row) -> Path | None:
        """Where a catalog row's index lives; None for a preset this clipsearch lacks."""
        if row is None or not SAFE_NAME.fullmatch(row.preset):
            return None
        return self.directory / index_file_name(row.model_id, row.preset, row.log_seq)

    def save(self, loaded: LoadedIndex) -> Path | None:
        """Write under a new name, point the catalog at it, then remove every other index
        file of the model (an earlier one, or one a crash left unrecorded). None if the
        catalog already points at a later index (written meanwhile by another process)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = index_file_name(loaded.model_id, loaded.preset.name, loaded.log_seq)
        path = self.directory / name
        try:
            write_index_file(path, loaded.index, loaded.tombstones)
        except OSError as e:
            raise IndexWriteError(f"could not write {name}: {e.strerror or e}") from None
        faults.hit("index-written")
        recorded = self.catalog.indexes.record(
            loaded.model_id,
            preset=loaded.preset.name,
            factory=loaded.factory,
            params=json.dumps(loaded.params),
            filename=name,
            log_seq=loaded.log_seq,
            count=loaded.count,
            tombstones=len(loaded.tombstones),
            recall=json.dumps(loaded.recall.to_dict()) if loaded.recall else None,
        )
        current = self.file_for(self.catalog.indexes.row(loaded.model_id))
        self.remove_others(loaded.model_id, current)
        return path if recorded else None

    def remove_strays(self) -> None:
        """Every index file that no catalog record points at (one a crash left while being
        written or before being recorded) goes: called by each writer, under the store's
        lock, so no other writer's file is half written meanwhile."""
        if not self.directory.is_dir():
            return
        current = {self.file_for(row) for row in self.catalog.indexes.rows()}
        for path in self.directory.glob("model*-*.faiss*"):
            if path not in current:
                path.unlink(missing_ok=True)

    def remove_others(self, model_id: int, keep: Path | None) -> None:
        """Index files of the model other than `keep`, and temporary files, go."""
        for stray in self.directory.glob(f"model{int(model_id)}-*.faiss*"):
            if stray != keep:
                stray.unlink(missing_ok=True)

    def load(self, model_id: int) -> LoadedIndex | None:
        """The saved index brought up to the catalog's present, or None if there is no
        usable file (missing, unreadable or corrupt). The row is read again after the
        file and the log: a writer that replaced both meanwhile (and trimmed the log the
        old file needed) makes this read them again."""
        for _ in range(5):
            row = self.catalog.indexes.row(model_id)
            path = self.file_for(row)
            preset = presets().get(row.preset) if row is not None else None
            if path is None or preset is None or stored_params(row) is None:
                return None
            try:
                index, tombstones = read_index_file(path, preset.mapped)
            except Exception:  # missing, truncated, garbage: the catalog rebuilds it
                return None
            dim = self.catalog.models.get(model_id).dim
            if index.d != dim:  # a file that belongs to something else
                return None
            later = self.catalog.vectors.log_since(model_id, row.log_seq)
            again = self.catalog.indexes.row(model_id)
            if again is not None and again.log_seq == row.log_seq:
                break
        else:
            return None
        loaded = LoadedIndex(
            model_id,
            preset,
            row.factory,
            index,
            stored_params(row),
            row.log_seq,
            tombstones,
            dim,
            recall=stored_recall(row),
            mapped=preset.mapped,
        )
        loaded.apply_log(later, self.catalog)
        return loaded

    def get(self, model_id: int) -> tuple[LoadedIndex, str]:
        """An index answering for everything committed, and what had to be done:
        'loaded', 'updated' (log replayed in memory) or 'rebuilt'."""
        row = self.catalog.indexes.row(model_id)
        loaded = self.load(model_id)
        if loaded is None:
            preset = row.preset if row is not None and row.preset in presets() else "auto"
            return self.build(model_id, preset), "rebuilt"
        return loaded, "updated" if row is not None and loaded.log_seq != row.log_seq else "loaded"

    def sync(
        self,
        model_id: int,
        preset: str = "auto",
        prompts: Prompts = None,
        memory_budget: int | None = None,
    ) -> tuple[LoadedIndex, str]:
        """After indexing: update and save the index, rebuilding when the preset changes,
        the file is unusable, or tombstones pass 10% of the vectors, and tuning it again
        when queries logged since it was measured find it below target. `prompts` are
        asked for only where the index is built or checked (they need the model)."""
        row = self.catalog.indexes.row(model_id)
        loaded = (
            None if preset not in ("auto", getattr(row, "preset", None)) else self.load(model_id)
        )
        action = "updated"
        too_dead = loaded is not None and len(loaded.tombstones) > TOMBSTONE_REBUILD_FRACTION * max(
            1, loaded.index.ntotal
        )
        if loaded is None or too_dead or self._outgrown(loaded, preset, memory_budget):
            loaded = self.build(model_id, preset, prompts, memory_budget)
            action = "rebuilt"
        elif self._queries_since(loaded):
            text = encoded(prompts)
            drifted = self.check(loaded, text)
            loaded = replace(loaded, recall=drifted)
            if drifted.below:
                loaded, action = self.retune(loaded, text), "retuned"
        elif row is not None and loaded.log_seq == row.log_seq:
            return loaded, "unchanged"
        self.save(loaded)
        return loaded, action

    def _queries_since(self, loaded: LoadedIndex) -> bool:
        """Queries were logged after the index's recall was last measured."""
        if not (loaded.preset.tune and self.query_log):
            return False
        logged = self.query_log.last_logged(self.catalog.models.get(loaded.model_id).digest)
        measured = loaded.recall.measured_at if loaded.recall else ""
        return logged is not None and logged > measured

    def refresh(self, loaded: LoadedIndex) -> LoadedIndex:
        """An index loaded earlier, brought up to the catalog: the log replayed since, or
        the saved index reloaded where a writer has saved a later one (and trimmed the log
        this one would need)."""
        row = self.catalog.indexes.row(loaded.model_id)
        if row is not None and row.log_seq > loaded.log_seq:
            return self.load(loaded.model_id) or self.build(loaded.model_id, row.preset)
        loaded.apply_log(
            self.catalog.vectors.log_since(loaded.model_id, loaded.log_seq), self.catalog
        )
        return loaded

    def sync_all(self) -> None:
        """Bring every saved index up to the catalog (after files were forgotten, say)."""
        for row in self.catalog.indexes.rows():
            self.sync(row.model_id)

    def _outgrown(self, loaded: LoadedIndex, preset: str, memory_budget: int | None) -> bool:
        """With preset auto, a collection that grew past its preset's range is rebuilt."""
        if preset != "auto":
            return False
        chosen = choose_preset(loaded.count, loaded.dim, memory_budget)
        return chosen.name != loaded.preset.name and (
            loaded.count > loaded.preset.max_vectors or loaded.count < loaded.preset.min_vectors
        )


def set_training_effort(index: faiss.Index, train: dict) -> None:
    """OPQ's rotation (50 rounds on 65k points by default) and the PQ codebooks dominate an
    IVF-PQ build on a small CPU; exact re-ranking makes rougher ones enough."""
    if not train or not isinstance(index, faiss.IndexPreTransform):
        return
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    if isinstance(opq, faiss.OPQMatrix):
        opq.niter = train.get("opq_niter", opq.niter)
        opq.max_train_points = train.get("opq_max_points", opq.max_train_points)
    ivf = faiss.downcast_index(index.index)
    if isinstance(ivf, faiss.IndexIVFPQ) and "pq_points_per_centroid" in train:
        ivf.pq.cp.max_points_per_centroid = train["pq_points_per_centroid"]
