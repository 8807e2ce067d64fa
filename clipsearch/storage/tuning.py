"""Choosing a vector index's search parameter on queries that represent the store.

The presets promise recall@10 >= AGREEMENT_TARGET against exact search. How many lists
(IVF) or graph nodes (HNSW) a query must visit for that depends on where queries land
relative to the stored vectors, and generic text prompts can all land near the same few
cells of a store, saying nothing about the rest. So the parameter is the smallest that
meets the target on each of these query sets at once:

- images: a sample of the store's own vectors (what `similar` asks);
- prompts: generic prompts encoded by the model (SEARCH_PROMPTS);
- across the gap: the image sample moved by the mean difference between the model's text
  and image vectors (CLIP's modality gap): text-like queries about what the store holds;
- queries: the last queries people ran against the store (query_log), once there are a
  few.

The sets are samples of what will be asked, so the parameter is chosen to reach the target
plus a margin on each: queries not in them then reach the target too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np

from .catalog import Catalog
from .exact import ground_truth
from .loaded_index import LoadedIndex
from .recall import Recall

K = 10
LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
SAMPLE = 200  # stored vectors used as queries
MIN_LOGGED = 16  # fewer logged queries say too little to tune on
MARGIN = 0.02  # aimed above the target, for the queries the sets did not sample


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def query_sets(
    catalog: Catalog, model_id: int, prompts: np.ndarray | None, logged: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The query sets above that this store and model can give."""
    ids = catalog.vectors.ids(model_id)
    sample = np.sort(np.random.default_rng(1).permutation(ids)[:SAMPLE])
    _, images = catalog.vectors.get(model_id, sample.tolist())
    sets = {"images": images}
    if prompts is not None and len(prompts):
        sets["prompts"] = np.asarray(prompts, np.float32)
    if logged is not None and len(logged) >= MIN_LOGGED:
        sets["queries"] = np.asarray(logged, np.float32)
    text = [sets[name] for name in ("prompts", "queries") if name in sets]
    if text and len(images):
        gap = np.concatenate(text).mean(axis=0) - images.mean(axis=0)
        sets["across the gap"] = unit(images + gap)
    return sets


def truths(catalog: Catalog, model_id: int, sets: Mapping[str, np.ndarray]) -> dict:
    """Every set's exact top-10 in one pass over the catalog."""
    names = list(sets)
    allq = np.concatenate([sets[n] for n in names]) if names else np.zeros((0, 1), np.float32)
    found = ground_truth(catalog, model_id, allq, K)
    bounds = np.cumsum([0] + [len(sets[n]) for n in names])
    return {n: found[a:b] for n, a, b in zip(names, bounds[:-1], bounds[1:])}


def recall(loaded: LoadedIndex, queries: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    _, found = loaded.search(queries, k * loaded.rerank)
    hits = sum(len(set(t[t >= 0]) & set(f)) for t, f in zip(truth, found))
    return hits / max(1, int((truth >= 0).sum()))


def measure(
    loaded: LoadedIndex, sets: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]
) -> Recall:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    found = {name: round(recall(loaded, sets[name], truth[name]), 4) for name in sets}
    return Recall(now, dict(loaded.params), found)


def tune(
    catalog: Catalog,
    loaded: LoadedIndex,
    sets: Mapping[str, np.ndarray],
    margin: float = MARGIN,
) -> Recall:
    """The smallest search parameter meeting the target (plus the margin) on every set,
    and what it reached (the largest tried, if none does). Compressed codes rank candidates
    roughly: where no probe count is enough, more candidates are fetched for the exact
    re-rank."""
    truth = truths(catalog, loaded.model_id, sets)
    name = loaded.preset.tune
    rerank = loaded.preset.rerank
    reranks = [rerank * 2**i for i in range(4)] if rerank > 1 else [1]
    found = None
    for r in reranks:
        for value in LADDER:
            params = {**loaded.params, name: value, **({"rerank": r} if r > 1 else {})}
            found = measure(loaded.with_params(params), sets, truth)
            if min(found.sets.values()) >= found.target + margin:
                return found
    return found


def check(catalog: Catalog, loaded: LoadedIndex, sets: Mapping[str, np.ndarray]) -> Recall:
    """Recall with the index's present parameters."""
    return measure(loaded, sets, truths(catalog, loaded.model_id, sets))
