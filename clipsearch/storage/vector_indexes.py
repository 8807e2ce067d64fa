"""FAISS vector indexes, derived from the catalog and never trusted over it.

An index file holds the FAISS index and its tombstones and is written atomically under a
name that carries the catalog log position it reflects; the catalog row points at it.
Loading replays the catalog's vector log after that position, so a stale index answers
with everything committed, and a missing or corrupt file is rebuilt from the catalog.

Memory: a build streams vectors from the catalog in chunks (trained on a sample), so the
index, not the build, bounds it; `auto` picks a compressed preset when the full vectors
would not fit the budget; the IVF presets' files are memory-mapped, so a query reads only
the inverted lists it probes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

import faiss
import numpy as np

from ..core import faults
from ..core.errors import ClipsearchError
from ..core.files import replacing
from . import tuning
from .catalog import Catalog
from .query_log import QueryLog

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOMBSTONE_REBUILD_FRACTION = 0.1


class IndexWriteError(ClipsearchError):
    """The index file could not be written (disk full, permissions); the catalog is intact."""


@dataclass(frozen=True)
class Preset:
    """One declarative file in indexes/."""

    name: str
    description: str
    factory: str
    min_vectors: int
    max_vectors: int
    bytes_per_vector: dict
    gpu: bool
    removes: bool
    build: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    tune: str | None = None
    rerank: int = 1
    train: dict = field(default_factory=dict)  # OPQ training effort: opq_niter, opq_max_points
    min_train: int = 0  # fewer vectors than this cannot train it: another preset stands in
    mapped: bool = False  # its file is memory-mapped rather than read into memory

    def memory(self, n: int, dim: int) -> int:
        b = self.bytes_per_vector
        return n * (b["per_dim"] * dim + b["fixed"])

    def factory_for(self, n: int, dim: int) -> str:
        """The factory string for n vectors of dim: {nlist} lists, {m} PQ bytes of {nbits}
        bits, and {opq} (an OPQ rotation) where there are enough points to train them. Every
        k-means here gets at least POINTS_PER_CENTROID points, as FAISS asks."""
        nlist = int(min(65536, max(16, 4 * math.sqrt(max(n, 1)))))
        nlist = max(1, min(nlist, n // POINTS_PER_CENTROID or 1))
        m = 64 if dim >= 256 and dim % 64 == 0 else max(1, dim // 4)
        nbits = int(min(8, max(1, math.log2(max(n, 2) / POINTS_PER_CENTROID))))
        opq = f"OPQ{m}," if nbits == 8 else ""  # OPQ trains 8-bit codebooks of its own
        return self.factory.format(nlist=nlist, m=m, nbits=nbits, opq=opq)


POINTS_PER_CENTROID = 40  # FAISS warns below 39 training points per k-means centroid


def train_size(factory: str) -> int:
    """Training points for a factory: ~64 per centroid of its largest k-means, which
    gains little past that."""
    nlist, nbits = 1, 0
    for part in factory.split(","):
        if m := re.fullmatch(r"IVF(\d+)", part):
            nlist = int(m[1])
        elif m := re.fullmatch(r"PQ\d+(?:x(\d+))?(?:np)?", part):
            nbits = int(m[1] or 8)
    return max(256, 64 * nlist, 64 * 2**nbits)


def training_sample(ids: np.ndarray, factory: str) -> np.ndarray:
    """The ids whose vectors train an index: the same for the same collection, in id
    order (the catalog reads them that way)."""
    return np.sort(np.random.default_rng(0).permutation(ids)[: train_size(factory)])


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """What C++ code (FAISS) prints to file descriptor 2 meanwhile, collected instead of
    reaching the terminal: its k-means warnings come by the hundred."""
    printed: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield printed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed.extend(capture.read().decode(errors="replace").splitlines())


def _training_note(printed: list[str], points: int) -> str | None:
    """FAISS's training complaints, in one line."""
    if any("WARNING clustering" in line for line in printed):
        return (
            f"FAISS trained on {points:,} points, fewer than it asks for; recall is measured "
            "and the search parameter tuned regardless"
        )
    return None


class PresetError(ClipsearchError):
    """A preset name or preset file that cannot be used; the message names it."""


def read_preset(name: str, text: str) -> Preset:
    """One preset file, checked: its keys, and that FAISS can build its factory."""
    where = f"preset file indexes/{name}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{where}: not valid TOML ({e})") from None
    known = {f.name for f in fields(Preset)}
    required = {
        f.name for f in fields(Preset) if f.default is MISSING and f.default_factory is MISSING
    }
    if unknown := sorted(set(data) - known):
        raise PresetError(f"{where}: unknown keys {', '.join(unknown)}")
    if missing := sorted(required - set(data)):
        raise PresetError(f"{where}: missing keys {', '.join(missing)}")
    preset = Preset(**data)
    try:
        faiss.index_factory(64, preset.factory_for(10_000, 64), faiss.METRIC_INNER_PRODUCT)
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError) as e:
        raise PresetError(f"{where}: FAISS cannot build factory {preset.factory!r} ({e})") from None
    return preset


@functools.cache
def presets() -> dict[str, Preset]:
    """The presets shipped in indexes/, read on first use (a broken file is then an error
    naming it, and commands that need no preset, like `status`, never read them)."""
    folder = resources.files("clipsearch.indexes")
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            preset = read_preset(entry.name, entry.read_text())
            out[preset.name] = preset
    return out


def preset_named(name: str) -> Preset:
    known = presets()
    if name not in known:
        raise PresetError(f"unknown preset {name!r}; presets: auto, {', '.join(known)}")
    return known[name]


AUTO_ORDER = ("exact", "hnsw", "ivf-flat", "ivf-pq")


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from '800M', '4GB', '1.5GiB' or a plain number of bytes (powers of 1024 either
    way: memory is counted in them)."""
    m = SIZE.fullmatch(text.strip())
    if not m:
        raise ClipsearchError(f"not a size: {text!r}; write it as 800M, 4G or 1.5GB")
    return int(float(m[1]) * 1024 ** " kmgt".index((m[2] or " ").lower()))


def choose_preset(n: int, dim: int, memory_budget: int | None = None) -> Preset:
    """The first preset, from exact to most compressed, that suits n and fits the budget
    (default: half the memory available now)."""
    budget = memory_budget if memory_budget is not None else available_memory() // 2
    for name in AUTO_ORDER:
        p = presets()[name]
        if p.min_vectors <= n <= p.max_vectors and p.memory(n, dim) <= budget:
            return p
    return presets()["ivf-pq"]


def _set_params(index: faiss.Index, params: dict, gpu: bool = False) -> None:
    faiss_params = {k: v for k, v in params.items() if k != "rerank"}
    if faiss_params:
        space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
        space.set_index_parameters(index, ",".join(f"{k}={v}" for k, v in faiss_params.items()))


@dataclass
class LoadedIndex:
    """A FAISS index with the bookkeeping that search needs."""

    model_id: int
    preset: Preset
    factory: str
    index: faiss.Index
    params: dict
    log_seq: int
    tombstones: set[int]
    dim: int
    gpu: faiss.Index | None = field(default=None, repr=False, compare=False)
    note: str | None = None  # why the preset is not the one asked for
    recall: tuning.Recall | None = None  # what its parameters reached when last measured
    mapped: bool = False  # its lists are read from the file, which FAISS cannot change

    def with_params(self, params: dict) -> LoadedIndex:
        """The same index searched with other parameters (for trying them)."""
        return replace(self, params=params, gpu=None)

    @property
    def count(self) -> int:
        return self.index.ntotal - len(self.tombstones)

    @property
    def rerank(self) -> int:
        """Candidates fetched per result for the exact re-rank (1: none)."""
        return int(self.params.get("rerank", self.preset.rerank))

    def apply_log(self, entries: list[tuple[int, int, str]], catalog: Catalog) -> None:
        """Replay catalog changes: adds in one batch, removes in place or as tombstones."""
        if not entries:
            return
        added, removed = [], []
        for _, fid, op in entries:
            (added if op == "+" else removed).append(fid)
        gone, new = set(removed), set(added)
        fresh = [f for f in added if f not in gone]  # added then removed: never indexed
        stale = [f for f in removed if f not in new]
        if self.mapped and (fresh or stale):  # copied out of the file to be changed
            self.index = faiss.deserialize_index(faiss.serialize_index(self.index))
            self.mapped = False
        if stale:
            if self.preset.removes:
                self.index.remove_ids(np.array(stale, dtype=np.int64))
            else:
                self.tombstones.update(stale)
        if fresh:
            ids, vecs = catalog.vectors(self.model_id, fresh)
            if len(ids):
                self.index.add_with_ids(vecs, ids)
        self.log_seq = entries[-1][0]
        self.gpu = None  # the GPU copy is stale

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
        """Raw FAISS search: (scores, ids) with -1 past the end; tombstones excluded.

        With `allowed`, only those ids are candidates (a FAISS ID selector). A graph search
        explores efSearch nodes whether they pass the selector or not, so efSearch grows
        with the fraction filtered out."""
        k = max(1, k)
        if allowed is None and not self.tombstones:
            gpu = self._on_gpu()
            _set_params(gpu or self.index, self.params, gpu=gpu is not None)
            return (gpu or self.index).search(queries, k)
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            fraction = len(allowed) / max(1, self.count)
        else:
            dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, dtype=np.int64))
            sel, fraction = faiss.IDSelectorNot(dead), 1.0
        return self.index.search(queries, k, params=self._search_parameters(sel, fraction))

    def _on_gpu(self) -> faiss.Index | None:
        """A GPU copy for unfiltered search when faiss-gpu sees GPUs and the preset runs
        there; filtered and tombstoned searches stay on the CPU copy (same results)."""
        if self.gpu is None and self.preset.gpu and gpu_count() > 0:
            try:
                self.gpu = faiss.index_cpu_to_all_gpus(self.index)
            except (RuntimeError, AttributeError):  # an index type the GPU build cannot hold
                self.preset = replace(self.preset, gpu=False)
        return self.gpu

    def _search_parameters(self, sel, fraction: float):
        if "efSearch" in self.params:
            p = faiss.SearchParametersHNSW()
            p.efSearch = int(min(4096, self.params["efSearch"] / max(fraction, 1e-3)))
        elif "nprobe" in self.params:
            p = faiss.SearchParametersIVF()
            p.nprobe = int(self.params["nprobe"])
        else:
            p = faiss.SearchParameters()
        p.sel = sel
        if "OPQ" in self.factory:  # parameters pass through the OPQ transform
            outer = faiss.SearchParametersPreTransform()
            outer.index_params = p
            outer.sel = sel
            return outer
        return p


MAGIC = b"clipsix2"  # ends every index file: FAISS's own bytes, tombstones, their count


def write_index_file(path: Path, index: faiss.Index, tombstones: set[int]) -> None:
    """FAISS writes the file itself (no copy of the index in memory), then the tombstones
    follow, so a memory-mapped read finds FAISS's bytes where it expects them."""
    dead = np.fromiter(sorted(tombstones), dtype=np.int64, count=len(tombstones))
    with replacing(path) as tmp:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as e:  # FAISS's word for a full disk or a failed write
            raise OSError(str(e).strip().splitlines()[-1]) from None
        with open(tmp, "ab") as f:
            f.write(dead.tobytes())
            f.write(np.int64(len(dead)).tobytes())
            f.write(MAGIC)


def read_index_file(path: Path, mapped: bool) -> tuple[faiss.Index, set[int]]:
    """An index file's index and tombstones; raises on a file that is not one."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 16)
        count, magic = np.frombuffer(f.read(8), np.int64)[0], f.read(8)
        if magic != MAGIC or not 0 <= count <= (size - 16) // 8:
            raise ValueError(f"{path.name} is not a clipsearch index file")
        f.seek(size - 16 - 8 * int(count))
        tombstones = set(np.frombuffer(f.read(8 * int(count)), np.int64).tolist())
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
    return index, tombstones


SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # a preset name as it may appear in a file name


def index_file_name(model_id: int, preset: str, log_seq: int) -> str:
    """An index file's name, made from the catalog row's numbers, never read from it: a
    catalog that someone else can write cannot point clipsearch at any other file."""
    return f"model{int(model_id)}-{preset}-{int(log_seq)}.faiss"


class VectorIndexes:
    """Builds, loads, updates and saves the FAISS index of each model in a store."""

    chunk = 50_000  # vectors read from the catalog and added to the index at a time

    def __init__(self, catalog: Catalog, directory: Path, query_log: QueryLog | None = None):
        self.catalog = catalog
        self.directory = Path(directory)
        self.query_log = query_log

    # ---- building -------------------------------------------------------------------

    def build(
        self,
        model_id: int,
        preset: str = "auto",
        prompts: np.ndarray | None = None,
        memory_budget: int | None = None,
    ) -> LoadedIndex:
        """A fresh index from every vector of the model in the catalog, its search
        parameter tuned (tuning.py) on the prompts the caller's model encoded, if any."""
        log_seq = self.catalog.log_position(model_id)
        all_ids = self.catalog.vector_ids(model_id)
        n = len(all_ids)
        dim = self.catalog.model(model_id).dim
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
        _set_params(index, chosen.build)
        set_training_effort(index, chosen.train)
        if not index.is_trained:
            _, train = self.catalog.vectors(model_id, training_sample(all_ids, factory).tolist())
            with native_stderr() as printed:
                index.train(train)
            note = note or _training_note(printed, len(train))
        read = [np.zeros(0, np.int64)]
        for ids, vecs in self.catalog.iter_vector_batches(model_id, self.chunk):
            index.add_with_ids(vecs, ids)
            read.append(ids)
        loaded = LoadedIndex(
            model_id, chosen, factory, index, dict(chosen.search), log_seq, set(), dim, note=note
        )
        # Vectors committed while the batches were read are in already: replay the rest.
        later = self.catalog.log_since(model_id, log_seq)
        adds = np.array([fid for _, fid, op in later if op == "+"], dtype=np.int64)
        already = set(adds[np.isin(adds, np.concatenate(read))].tolist())
        loaded.apply_log([e for e in later if not (e[2] == "+" and e[1] in already)], self.catalog)
        loaded.log_seq = later[-1][0] if later else log_seq
        if chosen.tune and n > 0:
            loaded.recall = tuning.tune(self.catalog, loaded, self.query_sets(model_id, prompts))
            loaded.params = loaded.recall.params
        return loaded

    def query_sets(self, model_id: int, prompts: np.ndarray | None) -> dict[str, np.ndarray]:
        """The sets the index is tuned and checked on (tuning.py), with this store's
        logged queries."""
        model = self.catalog.model(model_id)
        logged = self.query_log.recent(model.digest, model.dim) if self.query_log else None
        return tuning.query_sets(self.catalog, model_id, prompts, logged)

    def check(self, loaded: LoadedIndex, prompts: np.ndarray | None) -> tuning.Recall:
        """Recall of the index as it is searched now, on every query set."""
        return tuning.check(self.catalog, loaded, self.query_sets(loaded.model_id, prompts))

    def retune(self, loaded: LoadedIndex, prompts: np.ndarray | None) -> LoadedIndex:
        """The index with its search parameter chosen again (no rebuild)."""
        if not loaded.preset.tune:
            return loaded
        found = tuning.tune(self.catalog, loaded, self.query_sets(loaded.model_id, prompts))
        return replace(loaded, params=found.params, recall=found, gpu=None)

    # ---- files ----------------------------------------------------------------------

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
        recorded = self.catalog.record_index(
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
        current = self.file_for(self.catalog.index_row(loaded.model_id))
        self.remove_others(loaded.model_id, current)
        return path if recorded else None

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
            row = self.catalog.index_row(model_id)
            path = self.file_for(row)
            preset = presets().get(row.preset) if row is not None else None
            if path is None or preset is None:
                return None
            try:
                index, tombstones = read_index_file(path, preset.mapped)
            except Exception:  # missing, truncated, garbage: the catalog rebuilds it
                return None
            dim = self.catalog.model(model_id).dim
            if index.d != dim:  # a file that belongs to something else
                return None
            later = self.catalog.log_since(model_id, row.log_seq)
            again = self.catalog.index_row(model_id)
            if again is not None and again.log_seq == row.log_seq:
                break
        else:
            return None
        loaded = LoadedIndex(
            model_id,
            preset,
            row.factory,
            index,
            json.loads(row.params),
            row.log_seq,
            tombstones,
            dim,
            recall=tuning.Recall.from_dict(json.loads(row.recall)) if row.recall else None,
            mapped=preset.mapped,
        )
        loaded.apply_log(later, self.catalog)
        return loaded

    def get(self, model_id: int) -> tuple[LoadedIndex, str]:
        """An index answering for everything committed, and what had to be done:
        'loaded', 'updated' (log replayed in memory) or 'rebuilt'."""
        row = self.catalog.index_row(model_id)
        loaded = self.load(model_id)
        if loaded is None:
            preset = row.preset if row is not None and row.preset in presets() else "auto"
            return self.build(model_id, preset), "rebuilt"
        return loaded, "updated" if row is not None and loaded.log_seq != row.log_seq else "loaded"

    def sync(
        self,
        model_id: int,
        preset: str = "auto",
        prompts: np.ndarray | None = None,
        memory_budget: int | None = None,
    ) -> tuple[LoadedIndex, str]:
        """After indexing: update and save the index, rebuilding when the preset changes,
        the file is unusable, or tombstones pass 10% of the vectors, and tuning it again
        when queries logged since it was measured find it below target."""
        row = self.catalog.index_row(model_id)
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
            drifted = self.check(loaded, prompts)
            loaded = replace(loaded, recall=drifted)
            if drifted.below:
                loaded, action = self.retune(loaded, prompts), "retuned"
        elif row is not None and loaded.log_seq == row.log_seq:
            return loaded, "unchanged"
        self.save(loaded)
        return loaded, action

    def _queries_since(self, loaded: LoadedIndex) -> bool:
        """Queries were logged after the index's recall was last measured."""
        if not (loaded.preset.tune and self.query_log):
            return False
        logged = self.query_log.last_logged(self.catalog.model(loaded.model_id).digest)
        measured = loaded.recall.measured_at if loaded.recall else ""
        return logged is not None and logged > measured

    def refresh(self, loaded: LoadedIndex) -> LoadedIndex:
        """An index loaded earlier, brought up to the catalog: the log replayed since, or
        the saved index reloaded where a writer has saved a later one (and trimmed the log
        this one would need)."""
        row = self.catalog.index_row(loaded.model_id)
        if row is not None and row.log_seq > loaded.log_seq:
            return self.load(loaded.model_id) or self.build(loaded.model_id, row.preset)
        loaded.apply_log(self.catalog.log_since(loaded.model_id, loaded.log_seq), self.catalog)
        return loaded

    def sync_all(self) -> None:
        """Bring every saved index up to the catalog (after files were forgotten, say)."""
        for row in self.catalog.index_rows():
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


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
