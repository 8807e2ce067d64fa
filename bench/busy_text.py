"""A text query on a busy machine: the text tower on one thread against all of them.

    python bench/busy_text.py [--model random:ViT-B-32] [--runs 40]

A text query is ~500 small operations; with several threads, each waits for the slowest
thread at every one of them, and on a busy machine that thread has been descheduled. For
1 thread and for every core, p50 and p95 of one ten-token text (distinct texts, the
encoder as clipsearch runs it on CPU in fp32), first on an idle machine, then beside a
CPU hog (one spinning process per core, at normal priority). Also what
`Encoder.encode_text` does by itself (its own choice of threads).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

import numpy as np
import torch

from clipsearch.models.encoder import load_model


def spin() -> None:
    while True:
        pass


def timings(encode, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        start = time.perf_counter()
        encode([f"a photo of {i} dogs on a beach at sunset"])
        out.append((time.perf_counter() - start) * 1000)
    return out


def row(label: str, ms: list[float]) -> str:
    return f"| {label} | {statistics.median(ms):.1f} | {np.percentile(ms, 95):.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    encoder = load_model(args.model, precision="fp32", text_only=True)
    cores = os.cpu_count() or 1
    encoder.encode_text(["warm up", "and trace"])  # packing and tracing happen once
    encoder.encode_text(["warm up"])

    def on(threads: int):
        def encode(texts):
            torch.set_num_threads(threads)
            return encoder.encode_tokens(encoder.tokenizer(texts))

        return encode

    print(f"{cores} cores, {args.model}, fp32\n")
    print("| text tower | p50 ms | p95 ms |")
    print("|---|---:|---:|")
    for load in ("idle", "beside a CPU hog"):
        hogs = []
        if load != "idle":
            hogs = [mp.get_context("fork").Process(target=spin, daemon=True) for _ in range(cores)]
            for hog in hogs:
                hog.start()
            time.sleep(1)
        try:
            for threads in (1, cores):
                print(row(f"{load}, {threads} thread(s)", timings(on(threads), args.runs)))
            torch.set_num_threads(cores)
            print(row(f"{load}, encode_text's own choice", timings(encoder.encode_text, args.runs)))
        finally:
            for hog in hogs:
                hog.kill()


if __name__ == "__main__":
    main()
