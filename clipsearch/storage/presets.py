"""Vector-index presets: one declarative TOML file each in indexes/ (FAISS factory string,
the collection sizes it suits, memory per vector, GPU support, search parameters), and
the choice among them for a collection of a given size within a memory budget.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources

import faiss
import numpy as np

from ..core.errors import ClipsearchError
from ..core.sizes import available_memory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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


def choose_preset(n: int, dim: int, memory_budget: int | None = None) -> Preset:
    """The first preset, from exact to most compressed, that suits n and fits the budget
    (default: half the memory available now)."""
    budget = memory_budget if memory_budget is not None else available_memory() // 2
    for name in AUTO_ORDER:
        p = presets()[name]
        if p.min_vectors <= n <= p.max_vectors and p.memory(n, dim) <= budget:
            return p
    return presets()["ivf-pq"]
