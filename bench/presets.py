"""Vector index presets at scale: build time, memory, query latency, recall@10 vs exact.

    python bench/presets.py [--sizes 100000,1000000] [--dim 512] [--presets exact,hnsw,...]

Clustered synthetic unit vectors stand in for image embeddings; queries come from a
shifted distribution (cluster centres plus wider noise) the way text embeddings sit apart
from image embeddings, and the same queries tune each preset for recall@10 >= 0.95. Vectors
go through the real catalog (SQLite) and the real build, save, load and search code.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.ann import VectorIndexes, presets
from clipsearch.catalog import Catalog
from clipsearch.exact import ground_truth
from clipsearch.search import nearest
from clipsearch.synthetic import around, file_vectors, unit


def fill(catalog: Catalog, n: int, dim: int, centres: np.ndarray) -> int:
    model = ("synthetic", "bench", f"bench-{n}-{dim}", dim)
    return file_vectors(catalog, around(centres, 0.6, n), model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--presets", default=",".join(presets()))
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.dim))
    # Queries sit further from the clusters than the vectors do, as text does from images.
    picks = centres[rng.integers(0, 1000, args.queries)]
    queries = unit(picks + 1.2 * rng.standard_normal((args.queries, args.dim)))
    header = ("n", "preset", "build s", "MB", "B/vec", "p50 ms", "p95 ms", "recall@10")
    widths = (9, 8, 8, 8, 6, 7, 7, 9)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths)) + "  params")
    for n in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Catalog(f"sqlite:///{Path(tmp) / 'c.db'}")
            model_id = fill(catalog, n, args.dim, centres)
            indexes = VectorIndexes(catalog, Path(tmp) / "indexes")
            truth = ground_truth(catalog, model_id, queries, 10)
            for name in args.presets.split(","):
                start = time.perf_counter()
                loaded = indexes.build(model_id, name, prompts=queries)
                path = indexes.save(loaded)
                build = time.perf_counter() - start
                loaded, _ = indexes.get(model_id)
                size = path.stat().st_size
                times, found = [], []
                for q in queries:
                    t = time.perf_counter()
                    hits = nearest(catalog, loaded, q, 10)
                    times.append(time.perf_counter() - t)
                    found.append([i for i, _ in hits])
                recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
                p50, p95 = np.percentile(times, [50, 95]) * 1000
                print(
                    f"{n:>9} {name:>8} {build:8.1f} {size / 1e6:8.1f} {size / n:6.0f} {p50:7.2f} "
                    f"{p95:7.2f} {recall:9.3f}  {loaded.params or ''}",
                    flush=True,
                )
            catalog.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
