"""Re-indexing an unchanged folder, and peak memory while indexing it.

    python bench/reindex.py [--files 10000]

Indexes N small generated PNGs with a tiny random model (first run), then runs again on the
unchanged folder: the second run must only stat files, so it should take seconds. Peak
memory is the maximum RSS of this process and, separately, of the decoding workers.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from clipsearch.indexing.indexer import Indexer, IndexOptions
from clipsearch.models.encoder import load_model
from clipsearch.storage.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--model", default="random:tiny")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    encoder = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        for i in range(args.files):
            sub = folder / f"{i // 500:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                sub / f"{i}.png"
            )
        for run in ("first run", "unchanged re-run"):
            with Store(Path(tmp) / "store") as store:
                start = time.perf_counter()
                report = Indexer(store, encoder, IndexOptions()).run([str(folder)])
                seconds = time.perf_counter() - start
            print(f"{run}: {seconds:.1f} s ({report.added} added, {report.unchanged} unchanged)")
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: main process {main_rss:.0f} MB, largest decoding worker {workers_rss:.0f} MB")


if __name__ == "__main__":
    main()
