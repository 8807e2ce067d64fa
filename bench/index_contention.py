"""Searching while `clipsearch index` runs on the same machine, and what yielding costs the
indexer.

    python bench/index_contention.py [--pngs 600] [--jpegs 60] [--runs 3]

A store of 10,000 vectors answers warm text queries in this process (a Library, as the
server keeps one), alone and beside a real `clipsearch index` process embedding small
PNGs or 12-MP JPEGs with the same model, once in the foreground (normal priority, as
before) and once in the background (the default). Then the indexer alone, foreground
and background, for its own images/s. Runs are interleaved and repeated; each figure is
min / median / max over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch import Library
from clipsearch.models.encoder import load_model
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.synthetic import clustered, file_vectors

sys.path.insert(0, str(Path(__file__).parent))
from index_throughput import camera_jpeg, small_png  # noqa: E402

WORDS = ("dog", "cat", "beach", "city", "forest", "car", "cake", "bridge", "boat", "snow")


def query_times(lib: Library, seconds: float, limit: int) -> list[float]:
    """ms per warm text query, distinct texts, for up to `seconds` or `limit` queries."""
    times, start = [], time.perf_counter()
    while len(times) < limit and time.perf_counter() - start < seconds:
        text = f"a photo of a {WORDS[len(times) % len(WORDS)]} number {len(times)}"
        t = time.perf_counter()
        lib.search(text, k=10)
        times.append((time.perf_counter() - t) * 1000)
    return times


def spread(values: list[float]) -> str:
    return f"{min(values):7.1f} / {statistics.median(values):7.1f} / {max(values):7.1f}"


def index_command(folder: Path, store: Path, model: Path, mode: str) -> list[str]:
    cmd = [sys.executable, "-m", "clipsearch", "index", str(folder), "--store", str(store)]
    return cmd + ["--model", str(model), f"--{mode}", "--json"]


def indexer_alone(folder: Path, store: Path, model: Path, mode: str) -> float:
    """images/s of a whole run, nothing else running."""
    start = time.perf_counter()
    out = subprocess.run(
        index_command(folder, store, model, mode), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)["added"] / (time.perf_counter() - start)


def beside_indexer(lib, folder: Path, store: Path, model: Path, mode: str, limit: int):
    """Query times while an indexer runs (measured once it is embedding)."""
    proc = subprocess.Popen(
        index_command(folder, store, model, mode),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    catalog = store / "catalog.db"
    deadline = time.time() + 60
    while time.time() < deadline and not catalog.exists():
        time.sleep(0.1)
    time.sleep(3)  # model loaded, workers spawned: steady state
    times = query_times(lib, 20, limit)
    proc.kill()
    proc.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pngs", type=int, default=600)
    parser.add_argument("--jpegs", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--model", default="random:ViT-B-32")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; model {args.model}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        folders = {"small PNGs": tmp / "pngs", "12-MP JPEGs": tmp / "jpegs"}
        for folder in folders.values():
            folder.mkdir()
        for i in range(args.pngs):
            small_png(folders["small PNGs"] / f"{i:04d}.png", rng)
        for i in range(args.jpegs):
            camera_jpeg(folders["12-MP JPEGs"] / f"{i:03d}.jpg", rng)
        model = tmp / "model"
        encoder = load_model(args.model)
        encoder.save(str(model))
        query_store = tmp / "query-store"
        query_store.mkdir()
        catalog = Catalog(f"sqlite:///{query_store / 'catalog.db'}")
        spec = (str(model.resolve()), encoder.architecture, encoder.digest, encoder.dim)
        file_vectors(catalog, clustered(10_000, encoder.dim), spec)
        catalog.close()

        results: dict[str, list[float]] = {}
        with Library(query_store) as lib:
            query_times(lib, 30, 20)  # load, check the faster tower, trace: warm
            for run in range(args.runs):
                alone = query_times(lib, 20, args.queries)
                results.setdefault("alone", []).append(statistics.median(alone))
                results.setdefault("alone p95", []).append(float(np.percentile(alone, 95)))
                for kind, folder in folders.items():
                    for mode in ("foreground", "background"):
                        store = tmp / f"store-{kind[:3]}-{mode}-{run}"
                        times = beside_indexer(lib, folder, store, model, mode, args.queries)
                        key = f"beside {kind}, {mode}"
                        results.setdefault(key, []).append(statistics.median(times))
                        results.setdefault(key + " p95", []).append(float(np.percentile(times, 95)))
        for run in range(args.runs):
            for mode in ("foreground", "background"):
                store = tmp / f"alone-{mode}-{run}"
                rate = indexer_alone(folders["small PNGs"], store, model, mode)
                results.setdefault(f"indexer alone, {mode}", []).append(rate)

        print(f"\ntext query, warm, ms (min / median / max over {args.runs} runs)")
        for key, values in results.items():
            if not key.startswith("indexer"):
                print(f"  {key:42s} {spread(values)}")
        print("\nindexer alone, small PNGs, images/s (min / median / max)")
        for key, values in results.items():
            if key.startswith("indexer"):
                print(f"  {key:42s} {spread(values)}")


if __name__ == "__main__":
    main()
