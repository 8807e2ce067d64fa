"""Vectors committed per second into one catalog, SQLite and PostgreSQL: the ceiling of a
cluster of indexers that all write through a single catalog, in GPUs it keeps busy.

    python bench/catalog_write_rate.py [--vectors 50000] [--batches 32,256,2048] [--dim 512]
                                       [--backends sqlite,postgres,postgres-fsync]
                                       [--ways batch,row] [--gpu-rate 2500]

Each batch is one transaction (`catalog.write()`, which takes the write lock at its
first statement), as `clipsearch index` commits each embedded batch, written two ways:

  batch       as the indexer commits now: `catalog.files.add_many` (one multi-row INSERT
              that returns the ids), then `catalog.vectors.add` for the whole batch (one
              INSERT into vectors and one into vector_log);
  row         as it committed before: per image `catalog.files.add` (an INSERT that
              returns the new id), then `catalog.vectors.add` for that one vector, three
              statements an image.

Rows carry what the indexer stores (path, size, mtime, fingerprint and content hashes,
pixel size, format, date taken, camera) and L2-normalised float32 vectors (2 KB each at
512-d). Every (backend, batch, way) writes into a fresh, empty database; the clock runs
from the first transaction to the last commit, the rows' Python included (the writer
process builds them too), the vectors made beforehand.

SQLite is a file in a temporary folder opened as clipsearch opens it: WAL with
synchronous=NORMAL, so a commit does not wait for the disk (durable at the next
checkpoint, never corrupt). PostgreSQL is the tests' throwaway local server on a Unix
socket (tests/helpers.py), default settings otherwise: `postgres` runs it with fsync=off,
as the tests do (nothing ever waits for the disk: an upper bound, not a deployment);
`postgres-fsync` with fsync on, so each commit waits for its WAL to reach the disk, as a
real server would. A server on another machine adds a network round trip per statement,
which the row-by-row way pays three times an image.

GPUs fed: vectors/s over --gpu-rate, what one GPU embeds of ViT-B/32 images a second.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from machine import cpu_name
from sqlalchemy.engine import URL

from clipsearch.storage.catalog import Catalog
from clipsearch.storage.database import sqlite_url
from clipsearch.storage.synthetic import clustered

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import PostgresUnavailable, throwaway_postgres  # noqa: E402  (the tests' server)

BACKENDS = {
    "sqlite": "SQLite, WAL + synchronous=NORMAL (as clipsearch opens it)",
    "postgres": "PostgreSQL, fsync=off (as the tests run it; never waits for the disk)",
    "postgres-fsync": "PostgreSQL, fsync on (each commit waits for its WAL on disk)",
}
WAYS = {"batch": "batch (as the indexer commits)", "row": "row by row (as it did before)"}
TAKEN = datetime(2024, 1, 1)


def path(i: int) -> str:
    return f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg"


def file_fields(i: int) -> dict:
    """What the indexer stores of an image besides path, size and mtime."""
    return dict(
        fingerprint=hashlib.sha1(b"f%d" % i).hexdigest(),
        content=hashlib.sha256(b"c%d" % i).hexdigest(),
        width=4000,
        height=3000,
        format="JPEG",
        taken_at=TAKEN + timedelta(seconds=37 * i),
        camera_make="Canon",
        camera_model="Canon EOS R6",
    )


def model_spec(dim: int) -> tuple[str, str, str, int]:
    return ("synthetic", "none", f"digest{dim}", dim)


def row_by_row(catalog: Catalog, vectors: np.ndarray, batch: int) -> None:
    """As the indexer wrote a batch of new images before: per image a file row (its id
    back from the database) and its vector."""
    model_id = catalog.models.register(*model_spec(vectors.shape[1])).id
    for start in range(0, len(vectors), batch):
        with catalog.write() as s:
            for i in range(start, min(start + batch, len(vectors))):
                row = catalog.files.add(s, path(i + 1), 3_000_000, 10**18, **file_fields(i + 1))
                catalog.vectors.add(s, model_id, [row.id], vectors[i][None])


def as_indexer(catalog: Catalog, vectors: np.ndarray, batch: int) -> None:
    """As `Pipeline.write` writes a batch of new images now."""
    model_id = catalog.models.register(*model_spec(vectors.shape[1])).id
    for start in range(0, len(vectors), batch):
        numbers = range(start + 1, min(start + batch, len(vectors)) + 1)
        rows = [
            {"path": path(i), "size": 3_000_000, "mtime_ns": 10**18, **file_fields(i)}
            for i in numbers
        ]
        with catalog.write() as s:
            ids = catalog.files.add_many(s, rows)
            catalog.vectors.add(s, model_id, ids, vectors[start : start + len(ids)])


def measure(url, write: Callable, vectors: np.ndarray, batch: int) -> float:
    """vectors/s of one writer into a fresh catalog at `url`."""
    catalog = Catalog(url)
    try:
        catalog.prepare()  # the schema, before the clock starts
        start = time.perf_counter()
        write(catalog, vectors, batch)
        seconds = time.perf_counter() - start
        model_id = catalog.models.register(*model_spec(vectors.shape[1])).id
        assert len(catalog.vectors.ids(model_id)) == len(vectors)
        assert catalog.vectors.log_position(model_id) == len(vectors)
    finally:
        catalog.close()
    return len(vectors) / seconds


@contextmanager
def databases(backend: str, tmp: Path) -> Iterator[Callable[[], str | URL]]:
    """A function that makes a fresh, empty database's URL for the backend."""
    if backend == "sqlite":
        made = itertools.count()
        yield lambda: sqlite_url(tmp / f"catalog{next(made)}.db")
    else:
        with throwaway_postgres(fsync=backend == "postgres-fsync") as fresh_database:
            yield fresh_database


def where(url) -> str:
    """The database's version and where it is."""
    catalog = Catalog(url)
    try:
        if catalog.sqlite_file is not None:
            return f"SQLite {sqlite3.sqlite_version}, a file in {catalog.sqlite_file.parent}"
        with catalog.engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
        return f"PostgreSQL {version}, local server on a Unix socket"
    finally:
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=50_000, help="per configuration")
    parser.add_argument("--batches", default="32,256,2048", help="images per transaction")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--gpu-rate", type=float, default=2500, help="images/s one GPU embeds")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    backends, ways = args.backends.split(","), args.ways.split(",")
    for name, known in ((backends, BACKENDS), (ways, WAYS)):
        if unknown := set(name) - set(known):
            parser.error(f"unknown {sorted(unknown)}; choose from {', '.join(known)}")
    vectors = clustered(args.vectors, args.dim)
    print(f"{cpu_name()}, {os.cpu_count()} cores", flush=True)
    print(f"{args.vectors:,} vectors of {args.dim}-d float32 per configuration, one writer")
    print(f"GPUs fed: vectors/s / {args.gpu_rate:,.0f} images/s per GPU (ViT-B/32)\n")

    results = []
    with tempfile.TemporaryDirectory(prefix="catalog-write-rate-") as tmp:
        for backend in backends:
            with ExitStack() as stack:
                try:
                    fresh_database = stack.enter_context(databases(backend, Path(tmp)))
                except PostgresUnavailable as e:
                    print(f"{backend}: skipped, {e}\n", flush=True)
                    continue
                print(f"{backend}: {BACKENDS[backend]}\n  {where(fresh_database())}", flush=True)
                for batch in batches:
                    for way in ways:
                        write = row_by_row if way == "row" else as_indexer
                        rate = measure(fresh_database(), write, vectors, batch)
                        gpus = rate / args.gpu_rate
                        results.append((backend, batch, way, rate, gpus))
                        print(
                            f"  batch {batch:5d}  {WAYS[way]:36s} {rate:9,.0f} vectors/s"
                            f"  = {gpus:5.1f} GPUs",
                            flush=True,
                        )
                print(flush=True)

    print("summary: vectors/s (GPUs fed)")
    print(f"  {'backend':15s} {'batch':>5s}  " + "  ".join(f"{w:>17s}" for w in ways))
    for backend in backends:
        for batch in batches:
            cells = {w: (r, g) for b, n, w, r, g in results if b == backend and n == batch}
            if cells:
                shown = [f"{cells[w][0]:8,.0f} ({cells[w][1]:5.1f})" for w in ways]
                print(f"  {backend:15s} {batch:5d}  " + "  ".join(f"{c:>17s}" for c in shown))


if __name__ == "__main__":
    main()
