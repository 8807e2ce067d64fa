"""Exact search: brute-force top-k inner products. It answers small filtered sets, and it
is the ground truth every vector index is measured against."""

from __future__ import annotations

import numpy as np

from .catalog import Catalog


def exact_topk(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int):
    """Top-k inner products by brute force: (scores, ids), -1 where fewer than k."""
    n = len(queries)
    scores = np.full((n, k), -np.inf, np.float32)
    out = np.full((n, k), -1, np.int64)
    if len(ids) == 0:
        return scores, out
    sims = queries @ vectors.T
    top = min(k, len(ids))
    part = np.argpartition(-sims, top - 1, axis=1)[:, :top]
    order = np.take_along_axis(-sims, part, axis=1).argsort(axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    scores[:, :top] = np.take_along_axis(sims, best, axis=1)
    out[:, :top] = ids[best]
    return scores, out


def ground_truth(catalog: Catalog, model_id: int, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids over all of the model's vectors, read a batch at a time."""
    scores = np.full((len(queries), 0), -np.inf, np.float32)
    ids = np.zeros((len(queries), 0), np.int64)
    for batch_ids, vecs in catalog.vectors.batches(model_id):
        s, i = exact_topk(queries, batch_ids, vecs, k)
        scores, ids = np.hstack([scores, s]), np.hstack([ids, i])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    return ids
