"""Query latency: cold CLI (process start to printed result) and warm API per preset.

    python bench/query_latency.py [--sizes 10000,100000] [--presets exact,hnsw,ivf-flat,ivf-pq]

Cold: `clipsearch query` as a new process, next to `python -c "import torch"` and a bare
model load measured in the same run. Warm: `Library.search` (text encoding, vector search,
catalog rows of the hits) on a store of synthetic vectors filed under a random ViT-B-32
saved to disk like a downloaded model. `--store clusters` draws them around 500 random
centres, far from where the model's text vectors fall (a pessimistic case for the vector
index: its search parameter is tuned on text queries); `--store captions` around the
model's own vectors of 2,000 captions, 50 per caption, so text queries land among them as
they do in a store of a trained model's image vectors (and the store is crowded).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.library import Library
from clipsearch.models.encoder import load_model
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.synthetic import around, file_vectors

QUERIES = [
    f"a photo of {w}"
    for w in (
        "a dog",
        "a beach at sunset",
        "two cats on a sofa",
        "a red car in the snow",
        "mountains",
        "a birthday cake",
    )
]


def timed(cmd: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


CAPTION_WORDS = (
    ("red", "old", "small", "happy", "wet", "dark", "bright", "wooden", "tall", "sleeping"),
    ("dog", "cat", "car", "house", "tree", "child", "boat", "bird", "cake", "mountain")
    + ("beach", "street", "flower", "horse", "bicycle", "phone", "book", "church", "bridge")
    + ("kitchen",),
    ("in the snow", "at night", "on a table", "by the sea", "in a garden", "in the city")
    + ("on grass", "under the sun", "in the rain", "indoors"),
)


def centres(encoder, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Cluster centres of a synthetic store and the noise around them."""
    if kind == "captions":
        captions = [f"a photo of a {a} {n} {p}" for a, n, p in itertools.product(*CAPTION_WORDS)]
        return encoder.encode_text(captions), 0.02
    return rng.standard_normal((500, encoder.dim)), 0.6


def synthetic_store(folder: Path, encoder, n: int, kind: str = "clusters") -> None:
    """n unit vectors filed under the encoder's digest, as if its images were indexed."""
    catalog = Catalog(f"sqlite:///{folder / 'catalog.db'}")
    middle, noise = centres(encoder, kind, np.random.default_rng(0))
    model = (encoder.name, encoder.architecture, encoder.digest, encoder.dim)
    file_vectors(catalog, around(middle, noise, n), model)
    catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--presets", default="exact,hnsw,ivf-flat,ivf-pq")
    parser.add_argument("--store", choices=("clusters", "captions"), default="clusters")
    parser.add_argument(
        "--precisions",
        default="fp32,int8,fp16,auto",
        help="text tower precisions; auto is int8 or fp16 only if the store's check passes",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "ViT-B-32"
        load_model("random:ViT-B-32").save(str(model_dir))
        encoder = load_model(str(model_dir), precision="fp32")

        store = Path(tmp) / "cold"
        store.mkdir()
        synthetic_store(store, encoder, 1000)
        exe = str(Path(sys.executable).parent / "clipsearch")
        query = [exe, "query", "a dog", "--store", str(store), "--model", str(model_dir), "-k", "5"]
        subprocess.run(query, check=True, capture_output=True)  # builds the index once
        torch_import = timed([sys.executable, "-c", "import torch"])
        model_load = timed(
            [
                sys.executable,
                "-c",
                f"from clipsearch import load_model; load_model({str(model_dir)!r})",
            ]
        )
        cold = timed(query)
        print(
            f"cold: import torch {torch_import:.2f} s, import+load ViT-B-32 {model_load:.2f} s, "
            f"clipsearch query {cold:.2f} s = {cold / torch_import:.1f}x torch import, "
            f"{cold / model_load:.2f}x model load"
        )

        for n in map(int, args.sizes.split(",")):
            folder = Path(tmp) / f"warm{n}"
            folder.mkdir()
            synthetic_store(folder, encoder, n, args.store)
            for preset in args.presets.split(","):
                with Library(folder) as lib:
                    lib.rebuild(preset, str(model_dir))
                for precision in args.precisions.split(","):
                    with Library(folder, precision=precision) as lib:
                        p50, encode, repeat = warm_latency(lib, str(model_dir))
                        used = lib.query_encoder(str(model_dir), text_only=True).precision
                        check = lib.status().models[0].query_precision
                    if precision == "auto":  # no check where no faster tower runs here
                        found = check["agreement"] if check else "none made"
                        precision = f"auto={used} (check {found})"
                    print(
                        f"warm {n:>8} {preset:>8} {precision}: search p50 {p50:6.1f} ms "
                        f"(text encoding alone {encode:5.1f} ms; "
                        f"a repeated query {repeat:5.1f} ms)",
                        flush=True,
                    )


def warm_latency(lib: Library, model: str) -> tuple[float, float, float]:
    """p50 of Library.search over distinct queries, of their text encoding alone, and of
    a repeated query (its vector cached), after a warm-up."""
    for q in QUERIES:  # model and index loaded, tokenizer cache warm
        lib.search(q, k=10, model=model)
    encoder = lib.query_encoder(model, text_only=True)
    times, encode, repeat = [], [], []
    for i in range(60):
        q = QUERIES[i % len(QUERIES)] + f" {i}"
        t = time.perf_counter()
        encoder.encode_text([q])
        encode.append(time.perf_counter() - t)
        t = time.perf_counter()
        lib.search(q, k=10, model=model)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        lib.search(q, k=10, model=model)
        repeat.append(time.perf_counter() - t)
    return tuple(float(np.median(x)) * 1000 for x in (times, encode, repeat))


if __name__ == "__main__":
    main()
