"""How soon `clipsearch watch` makes a new photo searchable, and what it costs idle.

    python bench/watch_latency.py [--singles 10] [--burst 1000] [--idle 30] [--model random:tiny]
    python bench/watch_latency.py --backends

Runs `clipsearch watch FOLDER --json` as a user runs it, then:

- singles: one photo at a time, written and closed; latency is from the close to the
  moment its vector is in the catalog (read with sqlite3 every 20 ms);
- a burst: BURST photos copied in at once; latency per photo, from the end of the copy
  (its close) to its vector, and how many runs the watcher made of it;
- idle: the watcher's CPU time (its children included) over IDLE seconds with nothing
  changing, as a share of one core.

Prints p50/p95 latencies and the idle share. With --backends, instead: watchfiles (what
clipsearch uses, with its settings) against watchdog, each watching a tree of 2,000
folders in this process: seconds until its first event (the watch set up), CPU share
while idle, and milliseconds from a file's close to its event.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((640, 480), Image.BILINEAR).save(path, quality=90)


def embedded(store: Path) -> set[str]:
    try:
        db = sqlite3.connect(f"file:{store / 'catalog.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("select f.path from files f join vectors v on v.file_id = f.id")
            return {r[0] for r in rows}
        finally:
            db.close()
    except sqlite3.Error:
        return set()


def wait_embedded(store: Path, paths: set[str], timeout: float = 300) -> dict[str, float]:
    """When each path first had its vector (perf_counter seconds)."""
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    while len(seen) < len(paths) and time.perf_counter() < deadline:
        now = time.perf_counter()
        for path in embedded(store) & paths:
            seen.setdefault(path, now)
        time.sleep(0.02)
    return seen


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += tree_cpu(int(child))
    return total


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def backends(seconds: float) -> None:
    import threading

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(2000):
            (root / f"{i // 100:02d}" / f"{i:04d}").mkdir(parents=True)
        for name, start in (("watchfiles", watchfiles_events), ("watchdog", watchdog_events)):
            if importlib.util.find_spec(name) is None:
                print(f"{name}: not installed (pip install {name})")
                continue
            seen, stop = [], threading.Event()
            began = time.perf_counter()
            thread = threading.Thread(target=start, args=(root, seen, stop), daemon=True)
            thread.start()
            probe = root / "00" / "0000" / f"probe-{name}.jpg"
            while str(probe) not in list(seen):  # the watch is up once a change is seen
                probe.write_bytes(b"x")
                time.sleep(0.005)
            setup = time.perf_counter() - began
            time.sleep(1)
            cpu, wall = time.process_time(), time.perf_counter()
            time.sleep(seconds)
            idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
            target = root / "19" / "1999" / f"{name}.jpg"
            target.write_bytes(b"x")
            closed = time.perf_counter()
            while not any(str(target) == p for p in list(seen)):
                time.sleep(0.001)
            print(
                f"{name}: set up in {setup:.2f} s, idle {100 * idle:.2f}% of a core, "
                f"event {1000 * (time.perf_counter() - closed):.0f} ms after the close"
            )
            stop.set()
            thread.join(10)


def watchfiles_events(root: Path, seen: list, stop) -> None:
    import watchfiles

    from clipsearch.watching.changes import STEP_MS, WAKE_MS

    for events in watchfiles.watch(
        root, watch_filter=None, stop_event=stop, step=STEP_MS, rust_timeout=WAKE_MS
    ):
        seen.extend(path for _, path in events)


def watchdog_events(root: Path, seen: list, stop) -> None:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            seen.append(event.src_path)

    observer = Observer()
    observer.schedule(Handler(), str(root), recursive=True)
    observer.start()
    stop.wait()
    observer.stop()
    observer.join()


def main() -> None:
    if "--backends" in sys.argv:
        backends(10)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--singles", type=int, default=10)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30)
    parser.add_argument("--model", default="random:tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, store, source = tmp / "photos", tmp / "store", tmp / "source"
        folder.mkdir()
        source.mkdir()
        for i in range(args.burst):
            photo(source / f"burst{i:04d}.jpg", i)
        command = [sys.executable, "-m", "clipsearch", "watch", str(folder), "--json"]
        watcher = subprocess.Popen(
            [*command, "--store", str(store), "--model", args.model],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            json.loads(watcher.stdout.readline())  # caught up
            time.sleep(1)
            singles = []
            for i in range(args.singles):
                path = folder / f"single{i:03d}.jpg"
                photo(path, 100_000 + i)
                closed = time.perf_counter()
                singles.append(wait_embedded(store, {str(path)})[str(path)] - closed)
            idle_from, idle_cpu = time.perf_counter(), tree_cpu(watcher.pid)
            time.sleep(args.idle)
            idle = (tree_cpu(watcher.pid) - idle_cpu) / (time.perf_counter() - idle_from)
            shutil.copytree(source, folder / "burst")
            copied = time.perf_counter()
            names = {str(folder / "burst" / p.name) for p in source.iterdir()}
            burst = [t - copied for t in wait_embedded(store, names).values()]
            time.sleep(5)  # the run's end (its vector index saved, its line printed)
        finally:
            watcher.terminate()
            rest = watcher.communicate(timeout=60)[0]
        burst_runs = len(rest.splitlines()) - len(singles)  # a line a run; a run per single
        print(f"model {args.model}, {os.cpu_count()} cores")
        print(
            f"one photo, close to searchable: p50 {statistics.median(singles):.2f} s, "
            f"p95 {pct(singles, 95):.2f} s ({len(singles)} photos)"
        )
        print(
            f"burst of {args.burst}: p50 {statistics.median(burst):.2f} s, p95 "
            f"{pct(burst, 95):.2f} s, all in {max(burst):.2f} s, in {burst_runs} runs "
            f"(exit status {watcher.returncode})"
        )
        print(f"idle: {100 * idle:.2f}% of a core over {args.idle:g} s")


if __name__ == "__main__":
    main()
