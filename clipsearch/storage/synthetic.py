"""Stores of vectors that no image made: for the tests and benchmarks of everything after
the model (vector indexes, filters, precision checks, latency at a million vectors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .catalog import Catalog

BATCH = 50_000


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(
    n: int, dim: int, clusters: int = 40, noise: float = 0.35, seed: int = 0
) -> np.ndarray:
    """n unit vectors around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)))


def around(centres: np.ndarray, noise: float, n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """n unit vectors near given centres, BATCH at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        m = min(BATCH, n - start)
        picked = centres[rng.integers(0, len(centres), m)]
        yield unit(picked + noise * rng.standard_normal((m, centres.shape[1])))


def file_vectors(
    catalog: Catalog,
    batches: np.ndarray | Iterator[np.ndarray],
    model: tuple[str, str, str, int],
    path: Callable[[int], str] = lambda i: f"/photos/{i}.jpg",
) -> int:
    """Vectors filed under a model (name, architecture, digest, dim), one file row each,
    as if its images had been indexed; ids count from 1. One transaction per batch.
    Returns the model's id."""
    model_id = catalog.models.register(*model).id
    start = 1
    for vectors in [batches] if isinstance(batches, np.ndarray) else batches:
        ids = list(range(start, start + len(vectors)))
        rows = [
            {"id": i, "path": path(i), "size": 1000, "mtime_ns": 10**18, "state": "ok"} for i in ids
        ]
        with catalog.write() as s:
            catalog.files.add_many(s, rows)
            catalog.vectors.add(s, model_id, ids, np.asarray(vectors, np.float32))
        start += len(vectors)
    return model_id
