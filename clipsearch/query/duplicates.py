"""Duplicates: groups of files that are one picture, found from the vectors a store holds.

Three kinds, each wider than the one before. `exact`: the same bytes (the catalog's hash of
every byte). `near`: the same picture re-encoded, resized, lightly cropped or recoloured.
`similar`: the same scene, another shot (a burst). near and similar are pairs of vectors
at or above a threshold (calibration.py measures one per model).

No step is quadratic. Files whose vectors are identical (copies) count once; each distinct
vector finds its NEIGHBOURS nearest through FAISS (among all up to FLAT_LIMIT vectors;
above, within the clusters of its two nearest centres, from FAISS's k-means), and the pairs
above the threshold are joined, best first, into groups with a guard against chaining: two
groups join only if every member of one is at least 2t - 1 similar to every member of the
other (at most twice the threshold's distance apart), so A≈B≈…≈Z never glues two ends that
are not alike.

In a group the keeper comes first: the largest resolution, then the oldest (EXIF capture
time, else the file's time), then the path; each member's score is its similarity to the
keeper. Nothing here deletes or moves a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ..storage.catalog import Catalog
from ..storage.catalog_files import prefixes_of
from ..storage.schema import File
from .search import Filters, QueryError, filtered_ids, utc

if TYPE_CHECKING:
    from .calibration import Thresholds

KINDS = ("exact", "near", "similar")
NEIGHBOURS = 16  # nearest vectors asked for each: a group larger than this still links up
FLAT_LIMIT = 20_000  # distinct vectors compared all with all; above, within clusters
BATCH = 1024  # rows compared at once (a BATCH x block matrix of similarities)
IP = faiss.METRIC_INNER_PRODUCT


@dataclass
class Member:
    """One file of a group; `taken` is its EXIF capture time, else the file's time."""

    id: int
    path: str
    score: float
    width: int | None
    height: int | None
    bytes: int
    taken: datetime
    keep: bool

    def to_dict(self) -> dict:
        return {**self.__dict__, "taken": self.taken.isoformat(), "score": round(self.score, 5)}


@dataclass
class Group:
    kind: str
    items: list[Member]

    @property
    def extra(self) -> list[Member]:
        """The members the rule would not keep."""
        return [m for m in self.items if not m.keep]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "items": [m.to_dict() for m in self.items]}


@dataclass
class Duplicates:
    """Groups of duplicates, and the threshold that made them (None for exact copies)."""

    kind: str
    model: str
    threshold: float | None
    groups: list[Group]
    calibrated: Thresholds | None = None  # the model's measured thresholds, where used

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.model,
            "threshold": self.threshold,
            "groups": [g.to_dict() for g in self.groups],
        }


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise QueryError(f"unknown kind of duplicate {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def find(
    catalog: Catalog,
    model_id: int,
    kind: str,
    threshold: float | None,
    filters: Filters = Filters(),
    of: Sequence[str] = (),
) -> list[Group]:
    """Groups of duplicates among the model's files that pass the filters; with `of`
    (files or folders), only groups that hold one of them. Largest groups first. The
    threshold is for near and similar (exact copies need none)."""
    ids = filtered_ids(catalog, model_id, filters) if filters else None
    vector_of: dict[int, np.ndarray] = {}
    if kind == "exact":
        sets = _same_content(catalog, ids)
    elif threshold is None:
        raise QueryError(f"{kind} duplicates need a threshold (Library.thresholds measures one)")
    else:
        file_ids, vectors = catalog.vectors.get(model_id, None if ids is None else ids.tolist())
        sets = vector_groups(file_ids, vectors, threshold)
        wanted = {f for s in sets for f in s}
        vector_of = {f: v for f, v in zip(file_ids.tolist(), vectors) if f in wanted}
    rows = catalog.files.rows([f for s in sets for f in s])
    if of:
        prefixes = prefixes_of(of)
        inside = {f for f, r in rows.items() if r.path in of or r.path.startswith(prefixes)}
        sets = [s for s in sets if inside.intersection(s)]
    groups = [ordered(kind, [rows[f] for f in s if f in rows], vector_of) for s in sets]
    groups = [g for g in groups if len(g.items) > 1]
    groups.sort(key=lambda g: (-len(g.items), g.items[0].path))
    return groups


def _same_content(catalog: Catalog, ids: np.ndarray | None) -> list[list[int]]:
    allowed = None if ids is None else set(ids.tolist())
    by_content: dict[str, list[int]] = {}
    for file_id, content in catalog.files.shared_contents():
        if allowed is None or file_id in allowed:
            by_content.setdefault(content, []).append(file_id)
    return [members for members in by_content.values() if len(members) > 1]


def vector_groups(file_ids: np.ndarray, vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Groups of file ids whose vectors are alike at `threshold`, as the module says."""
    if len(file_ids) < 2:
        return []
    rows = np.ascontiguousarray(vectors).view(np.dtype((np.void, vectors.shape[1] * 4)))
    _, first, which = np.unique(rows.ravel(), return_index=True, return_inverse=True)
    distinct, which = vectors[first], which.reshape(-1)
    files_of: list[list[int]] = [[] for _ in range(len(distinct))]
    for file_id, d in zip(file_ids.tolist(), which.tolist()):
        files_of[d].append(file_id)
    linked = linked_sets(distinct, *neighbour_pairs(distinct, threshold), 2 * threshold - 1)
    grouped = {d for s in linked for d in s}
    groups = [[f for d in s for f in files_of[d]] for s in linked]
    groups += [files for d, files in enumerate(files_of) if len(files) > 1 and d not in grouped]
    return groups


def neighbour_pairs(vectors: np.ndarray, threshold: float):
    """(i, j, score) with i < j: the pairs at or above the threshold among each vector's
    NEIGHBOURS nearest in its blocks, in either direction, each once."""
    n = len(vectors)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    firsts, seconds, scores = [], [], []
    for block in blocks(vectors):
        k = min(NEIGHBOURS + 1, len(block))
        members = np.ascontiguousarray(vectors[block])
        for start in range(0, len(block), BATCH):
            mine = block[start : start + BATCH]
            best, top = faiss.knn(members[start : start + BATCH], members, k, IP)
            other = block[top]
            hit = (other != mine[:, None]) & (best >= threshold)
            me = np.broadcast_to(mine[:, None], other.shape)[hit]
            firsts.append(np.minimum(me, other[hit]))
            seconds.append(np.maximum(me, other[hit]))
            scores.append(best[hit])
    i, j, s = (np.concatenate(x) for x in (firsts, seconds, scores))
    _, once = np.unique(i * n + j, return_index=True)
    return i[once], j[once], s[once]


def blocks(vectors: np.ndarray) -> list[np.ndarray]:
    """Row numbers to compare with each other: all of them for a few vectors; for many,
    about √n clusters (spherical k-means on a sample), each vector in those of its two
    nearest centres, so that two copies, which lie close, share one."""
    n, dim = vectors.shape
    if n <= FLAT_LIMIT:
        return [np.arange(n)]
    nlist = int(math.sqrt(n))
    kmeans = faiss.Kmeans(dim, nlist, niter=10, spherical=True, seed=0)
    sample = np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)
    kmeans.train(vectors[np.sort(sample)])
    _, nearest = kmeans.index.search(vectors, 2)
    order = np.argsort(nearest.reshape(-1), kind="stable")
    rows = order // 2
    bounds = np.searchsorted(nearest.reshape(-1)[order], np.arange(nlist + 1))
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def linked_sets(
    vectors: np.ndarray, i: np.ndarray, j: np.ndarray, scores: np.ndarray, floor: float
) -> list[list[int]]:
    """Pairs joined best first into sets of row numbers, two sets only where every cross
    pair is at least `floor` alike (the guard against chaining)."""
    parent: dict[int, int] = {}
    members: dict[int, list[int]] = {}

    def root(x: int) -> int:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for a, b in zip(*(x[np.argsort(-scores, kind="stable")].tolist() for x in (i, j))):
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        left, right = members.get(ra, [ra]), members.get(rb, [rb])
        if (vectors[left] @ vectors[right].T).min() < floor:
            continue
        if len(left) < len(right):
            ra, rb, left, right = rb, ra, right, left
        parent[rb] = ra
        members[ra] = left + right
        members.pop(rb, None)
    return [sorted(m) for m in members.values()]


def ordered(kind: str, rows: list[File], vector_of: dict[int, np.ndarray]) -> Group:
    """A group's members in the keeper rule's order, the first kept, each scored against it
    (1 for exact copies)."""
    rows = sorted(rows, key=_keeper_rank)
    keeper = vector_of.get(rows[0].id) if rows else None
    items = []
    for n, row in enumerate(rows):
        mine = vector_of.get(row.id)
        alike = 1.0 if keeper is None or mine is None else float(keeper @ mine)
        items.append(
            Member(row.id, row.path, alike, row.width, row.height, row.size, _taken(row), n == 0)
        )
    return Group(kind, items)


def _taken(row: File) -> datetime:
    return row.taken_at or utc(row.mtime_ns)


def _keeper_rank(row: File) -> tuple:
    return (-((row.width or 0) * (row.height or 0)), _taken(row), row.path)
