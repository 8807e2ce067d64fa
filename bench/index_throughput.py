"""Indexing throughput against the machine's own bound.

    python bench/index_throughput.py [--jpegs 48] [--pngs 400] [--model random:ViT-B-32]
                                     [--device cpu|cuda]

Measured in one run: the per-image decode+preprocess cost (full decode and JPEG draft
mode, one core), the image tower's throughput, and `clipsearch index`'s images/s for
several worker counts. On CPU decoding and the model share the cores, so the bound is
cores / (decode core-seconds + model core-seconds) per image. On CUDA the model leaves
the CPU and the bound is the slower of the GPU and cores / decode seconds; the worker
sweep then says how many decode workers keep the GPU fed. The ratio to the bound says
how much the pipeline leaves on the table. Draft mode's effect is the cosine similarity
of its embeddings to full-decode ones.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsearch.encoder import load_model
from clipsearch.indexer import Indexer, IndexOptions
from clipsearch.preprocess import preprocess
from clipsearch.store import Store


def camera_jpeg(path: Path, rng, size=(4000, 3000)) -> None:
    """A 12-MP JPEG with photo-like detail: smooth structure plus sensor-like noise."""
    base = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    noise = rng.normal(0, 12, (size[1], size[0], 1)).astype(np.int16)
    arr = np.clip(np.asarray(base, np.int16) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def small_png(path: Path, rng) -> None:
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (256, 256), Image.Resampling.BICUBIC
    ).save(path)


def decode_cost(paths: list[Path], size: int, draft: bool) -> float:
    start = time.perf_counter()
    for p in paths:
        preprocess(p, size, draft=draft)
    return (time.perf_counter() - start) / len(paths)


def model_cost(encoder, n: int = 64, batch: int = 32) -> float:
    """Wall seconds per image with every core busy."""
    pixels = (
        np.random.default_rng(0)
        .standard_normal((batch, 3, encoder.image_size, encoder.image_size))
        .astype(np.float32)
    )
    encoder.encode_pixels(pixels)
    start = time.perf_counter()
    for _ in range(n // batch):
        encoder.encode_pixels(pixels)
    return (time.perf_counter() - start) / n


def pipeline_rate(folder: Path, encoder, workers: int, batch: int) -> tuple[float, float]:
    """(whole run, steady) images/s. Whole run: from the start (scan, worker start-up, the
    first batch's decode) to the last commit. Steady: from the first commit on, which is
    what a long run sees."""
    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        commits: list[tuple[float, int]] = []
        start = time.perf_counter()

        def progress(n: int, total: int) -> None:
            commits.append((time.perf_counter(), n))

        options = IndexOptions(workers=workers, batch_size=batch)
        Indexer(store, encoder, options).run([str(folder)], progress)
        (t0, n0), (t1, n1) = commits[0], commits[-1]
        return n1 / (t1 - start), (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jpegs", type=int, default=64)
    parser.add_argument("--copies", type=int, default=5, help="variants of each JPEG")
    parser.add_argument("--pngs", type=int, default=400)
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    encoder = load_model(args.model, device=args.device, precision=args.precision)
    size = encoder.image_size
    rng = np.random.default_rng(0)
    on_gpu = args.device == "cuda"
    per_image = model_cost(encoder, n=4096, batch=args.batch) if on_gpu else model_cost(encoder)
    print(
        f"{cores} cores, torch threads {torch.get_num_threads()}, "
        f"model {encoder.name} {encoder.precision} on {args.device}: "
        f"{1 / per_image:.1f} img/s = {per_image * cores * 1000:.0f} core-ms/image"
    )

    with tempfile.TemporaryDirectory() as tmp:
        jpegs, pngs = Path(tmp) / "jpegs", Path(tmp) / "pngs"
        jpegs.mkdir()
        pngs.mkdir()
        for i in range(args.jpegs):
            camera_jpeg(jpegs / f"{i:04d}.jpg", rng)
        # Long enough for a steady state: each photo again with distinct trailing bytes
        # (after the JPEG end marker), so fingerprints differ and every file is embedded.
        originals = sorted(jpegs.iterdir())
        for copy in range(1, args.copies):
            for p in originals:
                (jpegs / f"{p.stem}-{copy}.jpg").write_bytes(p.read_bytes() + bytes([copy]) * 16)
        for i in range(args.pngs):
            small_png(pngs / f"{i:05d}.png", rng)
        sample = sorted(jpegs.iterdir())[:8]
        mb = np.mean([p.stat().st_size for p in sample]) / 1e6
        print(
            f"{args.jpegs} x {args.copies} generated 12-MP JPEGs, {mb:.1f} MB each; "
            f"{args.pngs} 256x256 PNGs"
        )
        full = decode_cost(sample, size, draft=False)
        draft = decode_cost(sample, size, draft=True)
        a = encoder.encode_pixels(np.stack([preprocess(p, size)[0] for p in sample]))
        b = encoder.encode_pixels(np.stack([preprocess(p, size, draft=True)[0] for p in sample]))
        cos = np.sum(a * b, axis=1)
        print(
            f"12-MP JPEG decode+preprocess: full {full * 1000:.0f} ms, "
            f"draft {draft * 1000:.0f} ms; "
            f"draft vs full embedding cosine min {cos.min():.4f} mean {cos.mean():.4f}"
        )
        png = decode_cost(sorted(pngs.iterdir())[:100], size, draft=True)
        print(f"256x256 PNG decode+preprocess: {png * 1000:.1f} ms")

        for label, folder, decode in (("12-MP JPEG", jpegs, draft), ("small PNG", pngs, png)):
            if on_gpu:
                bound = min(1 / per_image, cores / decode)
                sweep = {2**i for i in range(cores.bit_length())} | {cores}
            else:
                bound = cores / (decode + per_image * cores)
                sweep = {1, max(1, cores - 1), cores}
            for workers in sorted(sweep):
                overall, steady = pipeline_rate(folder, encoder, workers, args.batch)
                print(
                    f"{label:>10}: workers {workers}: steady {steady:6.1f} img/s "
                    f"({steady / bound:4.0%} of bound {bound:.1f}), "
                    f"whole run {overall:6.1f} img/s ({overall / bound:4.0%})"
                )


if __name__ == "__main__":
    main()
