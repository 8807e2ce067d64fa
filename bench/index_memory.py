"""Vector indexes larger than memory: peak memory of building and of querying an index
over 1M and 5M vectors, against the vectors' own size, with build time and recall@10.

    python bench/index_memory.py [--sizes 1000000,5000000] [--dim 512] [--budget 1G]

Clustered synthetic 512-d unit vectors (as bench/presets.py makes them) go through the real
catalog (SQLite) and the real build, save, load and search code. The budget is set below
the flat vectors' size, so `auto` picks the compressed preset (IVF-PQ, re-ranked exactly
from the catalog) and its file is memory-mapped. Each figure comes from a fresh process:
  build   peak RSS of `VectorIndexes.build` (streams the catalog in chunks) plus the save;
  query   RSS after loading the saved index and peak RSS over 200 queries (k=10), their
          p50 latency and recall@10 against exact search over the catalog.
`baseline` is a process that imports the same modules and opens the catalog.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name
from presets import fill, query_kinds, store_centres

from clipsearch.core.sizes import parse_size
from clipsearch.query.search import nearest
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.exact import ground_truth
from clipsearch.storage.vector_indexes import VectorIndexes

QUERIES = 200


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    return 0


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10


def child(kind: str, folder: Path, budget: int, dim: int) -> dict:
    catalog = Catalog(f"sqlite:///{folder / 'catalog.db'}")
    model_id = catalog.models.counted()[0][0].id
    indexes = VectorIndexes(catalog, folder / "indexes")
    if kind == "baseline":
        return {"peak": rss_peak()}
    if kind == "build":
        start = time.perf_counter()
        loaded = indexes.build(model_id, "auto", memory_budget=budget)
        path = indexes.save(loaded)
        return {
            "peak": rss_peak(),
            "seconds": time.perf_counter() - start,
            "preset": loaded.preset.name,
            "factory": loaded.factory,
            "params": loaded.params,
            "tuned recall": loaded.recall.sets if loaded.recall else None,
            "file": path.stat().st_size,
        }
    start_rss = rss_now()
    loaded, action = indexes.get(model_id)
    after_load = rss_now()
    centres = store_centres(dim, np.random.default_rng(0))
    queries = query_kinds(centres, QUERIES, np.random.default_rng(7))["gap"]
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append([i for i, _ in nearest(catalog, loaded, q, 10)])
        times.append(time.perf_counter() - t)
    peak = rss_peak()
    truth = ground_truth(catalog, model_id, queries, 10)
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth.tolist()))
    return {
        "action": action,
        "mapped": loaded.mapped,
        "load": after_load - start_rss,
        "peak": peak,
        "p50 ms": 1000 * float(np.median(times)),
        "recall": hits / (10 * len(queries)),
    }


def measure(kind: str, folder: Path, budget: int, dim: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(folder), str(budget), str(dim)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"the {kind} process failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def run(n: int, dim: int, budget: int, folder: Path) -> None:
    start = time.perf_counter()
    catalog = Catalog(f"sqlite:///{folder / 'catalog.db'}")
    fill(catalog, n, dim, store_centres(dim, np.random.default_rng(0)))
    catalog.engine.dispose()
    made = time.perf_counter() - start
    vectors = n * dim * 4
    base = measure("baseline", folder, budget, dim)["peak"]
    built = measure("build", folder, budget, dim)
    queried = measure("query", folder, budget, dim)
    print(f"\n{n:,} vectors of {dim} d: {gb(vectors)} as float32 (catalog filled in {made:.0f} s)")
    print(f"  baseline process (imports, catalog open): peak RSS {gb(base)}")
    print(
        f"  build: {built['preset']} {built['factory']} in {built['seconds']:.0f} s, peak RSS "
        f"{gb(built['peak'])} = {gb(built['peak'] - base)} over baseline = "
        f"{(built['peak'] - base) / vectors:.2f}x the vectors; file {gb(built['file'])} "
        f"({built['file'] / n:.0f} B/vector); tuned {built['params']}, "
        f"recall@10 on its query sets {built['tuned recall']}"
    )
    print(
        f"  query: index {queried['action']}, memory-mapped {queried['mapped']}; RSS added by "
        f"loading {gb(queried['load'])}, peak over {QUERIES} queries {gb(queried['peak'])} = "
        f"{gb(queried['peak'] - base)} over baseline; p50 {queried['p50 ms']:.1f} ms; "
        f"recall@10 on gap queries {queried['recall']:.3f}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, folder, budget, dim = sys.argv[2:6]
        print(json.dumps(child(kind, Path(folder), int(budget), int(dim))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--budget", default="1G", help="memory budget given to the build")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (temp)")
    args = parser.parse_args()
    budget = parse_size(args.budget)
    print(f"{cpu_name()}; memory budget {gb(budget)}")
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            run(n, args.dim, budget, Path(tmp))
    print("done")


if __name__ == "__main__":
    main()
