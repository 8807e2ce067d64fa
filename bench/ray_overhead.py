"""What scheduling on Ray costs on one machine: `clipsearch index --ray` against the local
pipeline on the same images, as a ratio of images/s, repeated and interleaved.

    python bench/ray_overhead.py [--pngs 600] [--repeats 3] [--model random:ViT-B-32]

Both runs go through `Library.index` with the same model, precision and batch size into
fresh stores; the Ray one on a local Ray instance started once beforehand (its start-up
is reported apart: a cluster is started once, not per run). Whole run: scan to the end of
the vector index build. On one machine Ray can only add overhead (task scheduling, the
object store between decoding and the model, a model actor beside the decode tasks); its
point is the machines it adds, each of which then runs the local pipeline's code.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from index_throughput import small_png
from machine import cpu_name

from clipsearch import Library
from clipsearch.indexing.indexer import IndexOptions


def rate(folder: Path, model: str, ray: bool, batch: int) -> float:
    with tempfile.TemporaryDirectory() as store, Library(store, create=True) as lib:
        start = time.perf_counter()
        report = lib.index([folder], model, IndexOptions(batch_size=batch, ray=ray))
        seconds = time.perf_counter() - start
    assert report.added == len(list(folder.iterdir())), report.failures[:3]
    return report.added / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pngs", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    import ray

    from clipsearch.indexing import ray_pipeline

    start = time.perf_counter()
    ray_pipeline.connect(None)
    started = time.perf_counter() - start
    print(f"{cpu_name()}; Ray {ray.__version__} started locally in {started:.1f} s")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.pngs):
            small_png(folder / f"{i:05d}.png", rng)
        local, on_ray = [], []
        for r in range(args.repeats):
            local.append(rate(folder, args.model, False, args.batch))
            on_ray.append(rate(folder, args.model, True, args.batch))
            print(f"repeat {r + 1}: local {local[-1]:.1f} img/s, ray {on_ray[-1]:.1f} img/s")
    ratios = sorted(r / loc for r, loc in zip(on_ray, local))
    print(
        f"{args.pngs} 256x256 PNGs, {args.model}: local median {statistics.median(local):.1f} "
        f"img/s, Ray median {statistics.median(on_ray):.1f} img/s; Ray / local min / median / "
        f"max {ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
