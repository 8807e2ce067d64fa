"""The search page and API of two clipsearch trees side by side: search p50 over HTTP and
the time from opening the page to its first results on screen, interleaved run by run.

    python bench/page_latency.py --trees OLD_CHECKOUT,. [--images 300] [--loads 15]

One store of generated photos indexed with a random-weight ViT-B/32; each tree serves it
in turn with `python -m clipsearch serve` (its own code on PYTHONPATH). Per tree: the p50
of text searches posted as the page posts them, and the p50 of page loads in Debian's
headless Chromium, from `driver.get(/?q=...)` to every result's thumbnail drawn (the
thumbnails already made: the figure is the page's own cost, not JPEG encoding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from clipsearch import Library

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "server"))
from index_throughput import small_png  # noqa: E402
from machine import cpu_name  # noqa: E402

WORDS = ("dog", "cat", "beach", "city", "forest", "car", "cake", "bridge", "boat", "snow")
K = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trees", required=True, help="two checkouts, comma-separated")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), args.images)
        searches = {t: [] for t in trees}
        loads = {t: [] for t in trees}
        for _ in range(3):  # interleaved: each tree's share of the machine's moods
            for tree in trees:
                with served(tree, store) as url:
                    searches[tree] += search_times(url, args.queries // 3)
                    loads[tree] += page_loads(url, args.loads // 3)
        p50 = {t: (statistics.median(searches[t]), statistics.median(loads[t])) for t in trees}
        for tree in trees:
            search, page = p50[tree]
            print(f"{tree}: search p50 {search:.1f} ms, page to first results p50 {page:.0f} ms")
        (search_1, page_1), (search_2, page_2) = p50[trees[0]], p50[trees[1]]
        print(f"second/first: search {search_2 / search_1:.2f}x, page {page_2 / page_1:.2f}x")


def build_store(tmp: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(n):
        small_png(photos / f"{i:04d}.png", rng)
    with Library(tmp / "store", create=True) as lib:
        lib.index([photos], model="random:ViT-B-32")
    return tmp / "store"


class served:
    """`python -m clipsearch serve` from a tree, on a free port, until the block ends."""

    def __init__(self, tree: Path, store: Path):
        env = {**os.environ, "PYTHONPATH": str(tree), "CLIPSEARCH_QUERY_LOG": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clipsearch", "serve", "--store", str(store), "--port", "0"],
            stderr=subprocess.PIPE, text=True, env=env, cwd=tree,
        )  # fmt: skip

    def __enter__(self) -> str:
        line = self.proc.stderr.readline()
        return line.split(" at ")[1].split(" ")[0].rstrip("/")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()


def search_times(url: str, n: int) -> list[float]:
    times = []
    with httpx.Client(timeout=60, headers={"origin": url}) as client:
        for i in range(n + 3):
            t = time.perf_counter()
            client.post(f"{url}/api/v1/search", json={"query": f"a {WORDS[i % 10]}", "k": K})
            if i >= 3:
                times.append((time.perf_counter() - t) * 1000)
    return times


def page_loads(url: str, n: int) -> list[float]:
    from test_web import open_browser  # the tests' Chromium, flags and all

    driver = open_browser(tempfile.mkdtemp())
    loaded = (
        f"return document.querySelectorAll('#grid img').length === {K} && "
        "[...document.querySelectorAll('#grid img')].every((i) => i.complete && i.naturalWidth)"
    )
    times = []
    try:
        for i in range(n + 1):
            driver.delete_all_cookies()
            t = time.perf_counter()
            driver.get(f"{url}/?q=a+dog+photo&k={K}")
            while not driver.execute_script(loaded):
                time.sleep(0.005)
            if i:  # the first made the thumbnails
                times.append((time.perf_counter() - t) * 1000)
    finally:
        driver.quit()
    return times


if __name__ == "__main__":
    main()
