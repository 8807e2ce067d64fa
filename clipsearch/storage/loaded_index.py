"""A FAISS index as search uses it: its preset, its search parameters and the bookkeeping
that keeps it equal to the catalog (the log position it reflects, tombstones for removed
vectors a preset cannot remove in place). Replaying the catalog's log brings it up to date
in memory; a GPU copy answers unfiltered searches where faiss-gpu sees a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import faiss
import numpy as np

from .catalog import Catalog
from .presets import Preset
from .recall import Recall


def set_params(index: faiss.Index, params: dict, gpu: bool = False) -> None:
    """FAISS parameters (nprobe, efSearch...) set on an index; rerank is clipsearch's own."""
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
    recall: Recall | None = None  # what its parameters reached when last measured
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
            ids, vecs = catalog.vectors.get(self.model_id, fresh)
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
            set_params(gpu or self.index, self.params, gpu=gpu is not None)
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


def gpu_count() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
