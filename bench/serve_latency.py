"""`clipsearch serve` under load: HTTP against in-process latency, throughput, start-up,
memory, thumbnails, and searching while `clipsearch index` runs beside it.

    python bench/serve_latency.py [--sizes 100000,1000000] [--model random:ViT-B-32]

Per store size: a store of synthetic vectors filed under a real (random-weight) ViT-B/32
saved to disk, its vector index built by `clipsearch rebuild` (the auto preset), plus a few
12-MP camera JPEGs indexed for real. Measured in one run: warm text-query latency through
`Library.search` in this process, then through `clipsearch serve` over HTTP (the
difference is what HTTP costs); queries/s with 1, 4 and 16 concurrent clients, and with
one client fetching uncached thumbnails beside them; the time from starting `clipsearch
serve` to its first answered query; the server's memory (RSS); a thumbnail's first and
cached request; and search latency while a `clipsearch index` of small images runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from clipsearch import Library
from clipsearch.models.encoder import load_model
from clipsearch.storage.catalog import Catalog
from clipsearch.storage.synthetic import clustered, file_vectors

sys.path.insert(0, str(Path(__file__).parent))
from index_throughput import camera_jpeg, small_png  # noqa: E402

WORDS = ("dog", "cat", "beach", "city", "forest", "car", "cake", "bridge", "boat", "snow")


def text(i: int) -> str:
    return f"a photo of a {WORDS[i % len(WORDS)]} number {i}"


def percentiles(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):6.2f} ms, p95 {np.percentile(ms, 95):6.2f} ms"


def in_process(store: Path, count: int) -> list[float]:
    with Library(store) as lib:
        for i in range(5):
            lib.search(text(10_000 + i), k=20)  # load, check the faster tower, trace
        times = []
        for i in range(count):
            start = time.perf_counter()
            lib.search(text(i), k=20)
            times.append((time.perf_counter() - start) * 1000)
    return times


def http_times(client: httpx.Client, url: str, first: int, count: int) -> list[float]:
    times = []
    for i in range(first, first + count):
        start = time.perf_counter()
        response = client.post(f"{url}api/v1/search", json={"query": text(i), "k": 20})
        response.raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return times


def throughput(url: str, clients: int, seconds: float, thumbs: list[int] = ()) -> float:
    """Searches answered per second with `clients` searching at once (and, given thumbs,
    one more client fetching those thumbnails uncached meanwhile)."""
    done, stop = [0] * clients, time.perf_counter() + seconds

    def searcher(n: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = 100_000 * (n + 1)
            while time.perf_counter() < stop:
                client.post(f"{url}api/v1/search", json={"query": text(i), "k": 20})
                done[n] += 1
                i += 1

    def thumbnailer() -> None:
        with httpx.Client(timeout=60) as client:
            size = 100
            while time.perf_counter() < stop:
                for file_id in thumbs:
                    client.get(f"{url}thumb/{file_id}", params={"size": size})
                size += 1  # a new size is a new, uncached thumbnail

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(clients)]
    if thumbs:
        threads.append(threading.Thread(target=thumbnailer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(store: Path) -> tuple[subprocess.Popen, str, float]:
    """`clipsearch serve` started, and the seconds until it answered its first query."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch", "serve", "--store", str(store), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = proc.stderr.readline().split(" at ")[1].split(" ")[0]
    httpx.post(f"{url}api/v1/search", json={"query": "a first query"}, timeout=600)
    return proc, url, time.perf_counter() - started


def beside_indexer(url: str, photos: Path, store: Path, model: Path, count: int) -> list[float]:
    indexer = subprocess.Popen(
        [sys.executable, "-m", "clipsearch", "index", str(photos), "--store", str(store)]
        + ["--model", str(model)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(5)  # model loaded, decoding workers running
    with httpx.Client(timeout=60) as client:
        times = http_times(client, url, 50_000, count)
    indexer.kill()
    indexer.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--model", default="random:ViT-B-32")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        model = tmp / "model"
        encoder = load_model(args.model)
        encoder.save(str(model))
        jpegs, pngs = tmp / "jpegs", tmp / "pngs"
        jpegs.mkdir()
        pngs.mkdir()
        for i in range(4):
            camera_jpeg(jpegs / f"{i}.jpg", rng)
        for i in range(400):
            small_png(pngs / f"{i:03d}.png", rng)
        for n in map(int, args.sizes.split(",")):
            store = tmp / f"store{n}"
            store.mkdir()
            catalog = Catalog(f"sqlite:///{store / 'catalog.db'}")
            spec = (str(model.resolve()), encoder.architecture, encoder.digest, encoder.dim)
            file_vectors(catalog, clustered(n, encoder.dim, clusters=500), spec)
            catalog.close()
            with Library(store) as lib:
                lib.index([jpegs], model=str(model.resolve()))
                preset = lib.rebuild()[0]
            print(f"\n{n:,} vectors, preset {preset.preset} {preset.params}", flush=True)
            alone = in_process(store, args.queries)
            print(f"  Library.search in process       {percentiles(alone)}", flush=True)
            proc, url, first = start_server(store)
            try:
                with httpx.Client(timeout=60) as client:
                    http_times(client, url, 20_000, 5)
                    over_http = http_times(client, url, 0, args.queries)
                    overhead = statistics.median(over_http) - statistics.median(alone)
                    print(f"  over HTTP                       {percentiles(over_http)} "
                          f"(HTTP's share of the p50: {overhead:+.2f} ms)")  # fmt: skip
                    print(f"  serve start to first answer     {first:.1f} s; "
                          f"RSS {rss_mb(proc.pid):,.0f} MB")  # fmt: skip
                    ids = [r.id for r in Library(store).catalog.files.under([str(jpegs)]).values()]
                    t = time.perf_counter()
                    client.get(f"{url}thumb/{ids[0]}", params={"size": 256}).raise_for_status()
                    made = (time.perf_counter() - t) * 1000
                    t = time.perf_counter()
                    client.get(f"{url}thumb/{ids[0]}", params={"size": 256}).raise_for_status()
                    cached = (time.perf_counter() - t) * 1000
                    print(f"  12-MP thumbnail                 first {made:.0f} ms, "
                          f"cached {cached:.1f} ms")  # fmt: skip
                for clients in (1, 4, 16):
                    rate = throughput(url, clients, 10)
                    print(f"  {clients:2d} clients                      {rate:6.1f} queries/s")
                rate = throughput(url, 4, 10, thumbs=ids)
                print(f"   4 clients, thumbnails beside   {rate:6.1f} queries/s", flush=True)
                busy = beside_indexer(url, pngs, tmp / f"indexed{n}", model, args.queries)
                ratio = statistics.median(busy) / statistics.median(over_http)
                print(f"  beside `clipsearch index`       {percentiles(busy)} "
                      f"({ratio:.1f}x the idle p50)", flush=True)  # fmt: skip
            finally:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
