"""Vector index presets at scale: build time, size, query latency, and the recall@10
against exact search that each reaches on queries near the stored vectors and on queries
from across a modality gap, tuned as clipsearch tunes them and as it used to.

    python bench/presets.py [--sizes 100000,1000000] [--dim 512] [--presets hnsw,...]

Clustered synthetic unit vectors stand in for image embeddings (1,000 clusters in a 16-d
subspace of the 512-d space: CLIP's vectors have a low intrinsic dimension, so clusters
crowd each other) and go through the real catalog (SQLite) and the real build, save,
load and search code. Three kinds of query:
  near     cluster centres plus wider noise: text-like, around what the store holds;
  gap      the same moved by one constant offset, as CLIP's text vectors sit apart from
           its image vectors (the modality gap), and a domain model moves both;
  prompts  48 "generic prompts" across the gap from 3 of the 1,000 clusters only, as
           generic prompts land in a few cells of a domain store.
"before" is the index with its parameter tuned on the prompts alone, as clipsearch did
until now; "new" as `clipsearch` builds it before any query is logged (tuned on the
store's own vectors, the prompts, and the image sample moved across the gap the prompts
show); "logged" once half the gap queries have been run and logged (recall measured on the
other half).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.query.search import nearest
from clipsearch.storage import tuning
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.exact import ground_truth
from clipsearch.storage.presets import presets
from clipsearch.storage.query_log import QueryLog
from clipsearch.storage.synthetic import around, file_vectors, unit
from clipsearch.storage.vector_indexes import VectorIndexes


def fill(catalog: Catalog, n: int, dim: int, centres: np.ndarray) -> int:
    model = ("synthetic", "bench", f"bench-{n}-{dim}", dim)
    return file_vectors(catalog, around(centres, NOISE, n), model)


NOISE = 0.3  # of the stored vectors around their centres


def store_centres(dim: int, rng) -> np.ndarray:
    basis = np.linalg.qr(rng.standard_normal((dim, 16)))[0].T
    return 3 * rng.standard_normal((1000, 16)) @ basis


def query_kinds(centres: np.ndarray, count: int, rng) -> dict[str, np.ndarray]:
    dim = centres.shape[1]
    gap = 0.8 * np.linalg.norm(centres, axis=1).mean() * unit(rng.standard_normal((1, dim)))[0]
    picks = centres[rng.integers(0, len(centres), count)]
    return {
        "near": unit(picks + 1.2 * rng.standard_normal((count, dim))),
        "gap": unit(picks + gap + 1.2 * rng.standard_normal((count, dim))),
        "prompts": unit(centres[rng.integers(0, 3, 48)] + gap + rng.standard_normal((48, dim))),
    }


def latency(catalog: Catalog, loaded, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        nearest(catalog, loaded, q, 10)
        times.append(time.perf_counter() - start)
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    return p50, p95


def params_text(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--presets", default=",".join(p for p in presets() if p != "exact"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = store_centres(args.dim, rng)
    kinds = query_kinds(centres, 200, rng)
    print(
        f"{'n':>9} {'preset':>8} {'build s':>8} {'MB':>7} {'p50 ms':>7} {'p95 ms':>7}  "
        "recall@10 near, gap: before / new / logged   (tuned: before; new; logged)",
        flush=True,
    )
    for n in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Catalog(f"sqlite:///{Path(tmp) / 'c.db'}")
            model_id = fill(catalog, n, args.dim, centres)
            log = QueryLog(Path(tmp))
            indexes = VectorIndexes(catalog, Path(tmp) / "indexes", log)
            truth = {k: ground_truth(catalog, model_id, q, 10) for k, q in kinds.items()}
            typed, held_out = kinds["gap"][:100], slice(100, None)
            for name in args.presets.split(","):
                log.clear(f"bench-{n}-{args.dim}")
                start = time.perf_counter()
                new = indexes.build(model_id, name, prompts=kinds["prompts"])
                path = indexes.save(new)
                build = time.perf_counter() - start
                new, _ = indexes.get(model_id)
                before = new.with_params(
                    tuning.tune(catalog, new, {"prompts": kinds["prompts"]}, margin=0).params
                )
                for vector in typed:
                    log.add(f"bench-{n}-{args.dim}", vector)
                logged = indexes.retune(new, kinds["prompts"])
                found = [
                    tuning.recall(index, kinds["near"], truth["near"])
                    for index in (before, new, logged)
                ] + [
                    tuning.recall(index, kinds["gap"][held_out], truth["gap"][held_out])
                    for index in (before, new, logged)
                ]
                p50, p95 = latency(catalog, logged, kinds["gap"])
                tuned = "; ".join(params_text(i.params) for i in (before, new, logged))
                print(
                    f"{n:>9} {name:>8} {build:8.1f} {path.stat().st_size / 1e6:7.1f} {p50:7.2f} "
                    f"{p95:7.2f}  near {found[0]:.3f} / {found[1]:.3f} / {found[2]:.3f}, "
                    f"gap {found[3]:.3f} / {found[4]:.3f} / {found[5]:.3f}   ({tuned})",
                    flush=True,
                )
            catalog.close()


if __name__ == "__main__":
    main()
