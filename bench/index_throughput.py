"""Indexing throughput against the machine's own bound, repeated and interleaved.

    python bench/index_throughput.py [--jpegs 60 --copies 5] [--pngs 1000] [--repeats 3]
                                     [--model random:ViT-B-32] [--precision auto]
                                     [--device cpu|cuda] [--foreground]
                                     [--transfer shared pickled]

Measured in one run: the per-image decode cost (12-MP JPEGs in draft mode and small
PNGs, one core, to the model's uint8 square; and with reading and hashing the file, what
a decoding process does with each, which the bound counts), the image tower's throughput
fed pre-made uint8 squares, and `clipsearch index`'s images/s for several worker counts.
On CPU decoding and the model share the cores, so the bound is cores / (decode
core-seconds + model core-seconds) per image. On CUDA the model leaves the CPU and the
bound is the slower of the GPU and cores / decode seconds; the worker sweep then says how
many decode workers keep the GPU fed.

These machines are noisy: every figure is taken --repeats times, the sets and worker
counts interleaved, the bound measured again before and after each set's runs (the model
alone for --bound-seconds each time), and printed as min / median / max of rate / bound.
Whole run: from the start (scan, the first batch) to the end of the vector index build,
the decoding processes started beforehand, as `clipsearch index` starts them while its
model loads (a load takes longer than their start: BENCHMARKS.md gives both). Steady: from
the first commit reported to the last, counting the images embedded in between (a commit
is reported once the next batch is embedded). The profile says where the main process's
time went in the median run.

The process runs as `clipsearch index` does by default, in the background (priority.py:
OpenMP threads that sleep rather than spin when they wait, which leaves the decoding
processes those cycles), or as `--foreground`; the bound is measured in the same mode.
`--transfer` compares squares sent back through shared memory (the default) with pickled
ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from clipsearch.indexing.priority import run_in_background

if __name__ == "__main__" and "--foreground" not in sys.argv:
    run_in_background()  # as `clipsearch index` by default; OpenMP reads it when torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from clipsearch.images.pixels import preprocess, square  # noqa: E402
from clipsearch.indexing.indexer import Indexer, IndexOptions  # noqa: E402
from clipsearch.indexing.pool import DecodePool  # noqa: E402
from clipsearch.indexing.worker import decode_for_index
from clipsearch.models.encoder import load_model  # noqa: E402
from clipsearch.storage.store import Store  # noqa: E402


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


def decode_cost(paths: list[Path], prep, draft: bool) -> float:
    """One core's seconds per image, file to uint8 square (what a decoder does)."""
    start = time.perf_counter()
    for p in paths:
        square(p, prep, draft=draft)
    return (time.perf_counter() - start) / len(paths)


def file_cost(paths: list[Path], prep) -> float:
    """One core's seconds per file for all a decoding process does with it: read it, hash
    its bytes (what recognises it when it moves), decode it in draft mode to the square."""
    items = [(str(p), (p.stat().st_size, p.stat().st_mtime_ns)) for p in paths]
    start = time.perf_counter()
    for path, expect in items:
        decode_for_index(path, prep, expect)
    return (time.perf_counter() - start) / len(items)


def receiving_cost(paths: list[Path], prep, batch: int, shared: bool) -> float:
    """CPU seconds the model's process spends per square receiving decoded batches (the
    decoding itself is the workers'), through shared memory or pickled."""
    items = [(str(p), (p.stat().st_size, p.stat().st_mtime_ns)) for p in paths]
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    with DecodePool(2, shared=shared) as pool:
        pool.start()
        pool.ready()
        start = time.process_time()
        for decoded in pool.decode(batches, prep):
            np.stack([pixels for pixels, _, _ in decoded if pixels is not None])
        return (time.process_time() - start) / len(items)


def model_cost(encoder, batch: int, seconds: float, least: int) -> float:
    """Wall seconds per image with every core busy, fed pre-made uint8 squares, over at
    least `seconds` and `least` images: a fraction of a second is at these machines' mercy."""
    size = encoder.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    encoder.encode_pixels(pixels)
    images, start = 0, time.perf_counter()
    while images < least or time.perf_counter() - start < seconds:
        encoder.encode_pixels(pixels)
        images += batch
    return (time.perf_counter() - start) / images


@dataclass
class Run:
    whole: float  # images/s
    steady: float
    profile: dict[str, float]
    batches: int


def index_run(
    folder: Path, encoder, workers: int, batch: int, threads: int | None, shared: bool
) -> Run:
    """One `clipsearch index` of a folder, the model on `threads` torch threads (None:
    torch's default, every core), squares sent back through shared memory or pickled."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        return _index_run(folder, encoder, workers, batch, shared)
    finally:
        torch.set_num_threads(default)


def _index_run(folder: Path, encoder, workers: int, batch: int, shared: bool) -> Run:
    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        commits: list[tuple[float, int]] = []

        def progress(n: int, total: int) -> None:
            commits.append((time.perf_counter(), n))

        options = IndexOptions(workers=workers, batch_size=batch)
        with DecodePool(workers, shared=shared) as pool:
            pool.start()  # as `clipsearch index` starts them: while its model loads
            pool.ready()
            start = time.perf_counter()
            report = Indexer(store, encoder, options, pool).run([str(folder)], progress)
            end = time.perf_counter()
        whole = commits[-1][1] / (end - start)
        if len(commits) < 3:
            return Run(whole, whole, report.profile, len(commits))  # too short for a window
        # A commit is reported once the next batch is embedded (it commits meanwhile): at
        # the first report the second batch is done too.
        (t0, _), (_, n0), (t1, n1) = commits[0], commits[1], commits[-1]
        return Run(whole, (n1 - n0) / (t1 - t0), report.profile, len(commits))


def machine_bound(model: float, decode: float, cores: int, on_gpu: bool) -> float:
    """Images/s this machine could reach: on CPU the model's and decoding's core-seconds
    share the cores; a GPU takes the model off them."""
    if on_gpu:
        return min(1 / model, cores / decode)
    return cores / (decode + model * cores)


def spread(values: list[float]) -> str:
    return f"{min(values):4.0%} / {statistics.median(values):4.0%} / {max(values):4.0%}"


STARTUP = ("scan", "plan", "first batch decoded", "remove missing", "vector index")
PER_BATCH = ("waiting for decoding", "stacking pixels", "model", "commit", "waiting for the commit")


def profile_line(run: Run) -> str:
    p = run.profile
    startup = ", ".join(f"{k} {p.get(k, 0) * 1000:.0f}" for k in STARTUP)
    per_batch = ", ".join(f"{k} {p.get(k, 0) / run.batches * 1000:.1f}" for k in PER_BATCH)
    return f"start-up ms: {startup}; per batch ms: {per_batch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jpegs", type=int, default=60)
    parser.add_argument("--copies", type=int, default=5, help="variants of each JPEG")
    parser.add_argument("--pngs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="*", help="worker counts to sweep")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--bound-seconds", type=float, default=2.0,
        help="how long the model alone runs for the bound, before and after each set's runs",
    )  # fmt: skip
    parser.add_argument(
        "--index-threads", type=int, nargs="*", default=[0],
        help="torch threads for the model while indexing to sweep (0: every core)",
    )  # fmt: skip
    parser.add_argument(
        "--foreground", action="store_true",
        help="run at normal priority, OpenMP threads spinning (clipsearch index --foreground)",
    )  # fmt: skip
    parser.add_argument(
        "--transfer", nargs="*", default=["shared"], choices=("shared", "pickled"),
        help="how decoded squares come back to the model's process, to sweep",
    )  # fmt: skip
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    started = time.perf_counter()
    with DecodePool(cores) as pool:
        pool.start()
        pool.ready()
        spawned = time.perf_counter() - started
    started = time.perf_counter()
    encoder = load_model(args.model, device=args.device, precision=args.precision)
    loaded = time.perf_counter() - started
    print(
        f"start-up: {cores} decoding processes ready in {spawned * 1000:.0f} ms, the model "
        f"loaded in {loaded * 1000:.0f} ms (clipsearch index overlaps the two)"
    )
    prep = encoder.preprocessing
    rng = np.random.default_rng(0)
    on_gpu = args.device == "cuda"
    model_images = 4096 if on_gpu else 128
    per_image = model_cost(encoder, args.batch, args.bound_seconds, model_images)
    print(
        f"{cores} cores, torch threads {torch.get_num_threads()}, "
        f"{'foreground' if args.foreground else 'background'}, "
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
            f"{args.jpegs * args.copies} generated 12-MP JPEGs, {mb:.1f} MB each; "
            f"{args.pngs} 256x256 PNGs"
        )
        full = decode_cost(sample, prep, draft=False)
        draft = decode_cost(sample, prep, draft=True)
        a = encoder.encode_pixels(np.stack([preprocess(p, prep)[0] for p in sample]))
        b = encoder.encode_pixels(np.stack([preprocess(p, prep, draft=True)[0] for p in sample]))
        cos = np.sum(a * b, axis=1)
        png = decode_cost(sorted(pngs.iterdir())[:100], prep, draft=True)
        jpeg_file = file_cost(sample, prep)
        png_file = file_cost(sorted(pngs.iterdir())[:100], prep)
        print(
            f"decode to the model's square, one core: 12-MP JPEG full {full * 1000:.0f} ms, "
            f"draft {draft * 1000:.0f} ms (embedding cosine to full: min {cos.min():.4f}); "
            f"256x256 PNG {png * 1000:.1f} ms. A decoding process's whole work per file "
            f"(read, hash, draft decode), the bound's decode cost: 12-MP JPEG "
            f"{jpeg_file * 1000:.1f} ms, 256x256 PNG {png_file * 1000:.2f} ms"
        )
        some = sorted(pngs.iterdir())[:640]
        received = {t: receiving_cost(some, prep, args.batch, t == "shared") for t in args.transfer}
        print(
            f"the model's process, receiving {prep.size}-px squares in batches of {args.batch} "
            "(CPU per square): "
            + ", ".join(f"{t} {seconds * 1000:.3f} ms" for t, seconds in received.items())
        )

        sets = (("12-MP JPEG", jpegs, jpeg_file), ("small PNG", pngs, png_file))
        if args.workers:
            sweep = sorted(set(args.workers))
        elif on_gpu:
            sweep = sorted({2**i for i in range(cores.bit_length())} | {cores})
        else:
            sweep = sorted({max(1, cores - 1), cores})
        runs: dict[tuple[str, int, int, str], list[tuple[Run, float]]] = {}
        for repeat in range(args.repeats):
            for label, folder, decode in sets:
                taken = []
                before = model_cost(encoder, args.batch, args.bound_seconds, model_images)
                for workers in sweep:
                    for threads in args.index_threads:
                        for transfer in args.transfer:
                            shared = transfer == "shared"
                            run = index_run(folder, encoder, workers, args.batch, threads, shared)
                            taken.append(((label, workers, threads, transfer), run))
                after = model_cost(encoder, args.batch, args.bound_seconds, model_images)
                bound = machine_bound((before + after) / 2, decode, cores, on_gpu)
                for key, run in taken:
                    runs.setdefault(key, []).append((run, bound))
            print(f"repeat {repeat + 1} of {args.repeats} done", flush=True)

        print(f"\nrate / bound, min / median / max of {args.repeats} runs:")
        for (label, workers, threads, transfer), taken in runs.items():
            bounds = [bound for _, bound in taken]
            whole = [r.whole / bound for r, bound in taken]
            steady = [r.steady / bound for r, bound in taken]
            median = sorted(taken, key=lambda t: t[0].whole / t[1])[len(taken) // 2][0]
            print(
                f"{label:>10}, workers {workers}, model threads {threads or 'all'}, "
                f"{transfer}: "
                f"whole run {spread(whole)}, "
                f"steady {spread(steady)} "
                f"(bound {statistics.median(bounds):.1f} img/s, "
                f"median whole run {median.whole:.1f} img/s)"
            )
            print(f"{'':>12}{profile_line(median)}")


if __name__ == "__main__":
    main()
