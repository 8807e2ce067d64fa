"""An unchanged re-run of `index` against a bare walk of the same tree.

    python bench/noop_rerun.py [--files 1000,10000,100000] [--repeats 3]

For each size, a synthetic tree of 1,000-byte `.jpg` files (a re-run never reads an unchanged
file, so content does not matter) in folders of 500, and a catalog that already holds a
vector for each (storage/synthetic.py), for a tiny saved model. Then, interleaved:

- bare walk: os.scandir recursion with a stat per file (what any tool must do to notice a
  change), in this process;
- re-run (API): `Library.index` on the tree, in this process, nothing to do: answered from
  the walk, as the last run found nothing to do either (indexing/settled.py);
- full re-run (API): the same with `quick=False`: the catalog's rows read and compared, as
  a run does after anything changed;
- re-run (CLI): `clipsearch index TREE` as a user runs it, interpreter start included.

Prints min/median/max seconds, the API re-run's files per second (of its median) and its
ratio to the bare walk (of the medians, and of the minima).
Then, for 400 files and a ViT-B/32 (random weights saved to disk), the unchanged re-run
against loading that model (`clipsearch embed --text x`), both as a user runs them.
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

from machine import cpu_name

from clipsearch import Library, load_model
from clipsearch.indexing.indexer import IndexOptions
from clipsearch.storage import synthetic

MTIME_NS = 10**18


def make_tree(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        folder = root / f"{i // 500:04d}"
        if i % 500 == 0:
            folder.mkdir(parents=True)
        path = folder / f"{i:07d}.jpg"
        path.touch()
        os.truncate(path, 1000)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
        paths.append(str(path))
    return paths


def bare_walk(folder: str) -> int:
    count = 0
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            count += bare_walk(entry.path)
        else:
            entry.stat()
            count += 1
    return count


def fill_catalog(store: Path, paths: list[str], model: str) -> None:
    """A vector for every file, as if indexed (synthetic rows say 1,000 bytes and
    MTIME_NS, as the tree's files do)."""
    encoder = load_model(model)
    with Library(store, create=True) as lib, lib.store.writing():
        vectors = synthetic.around(synthetic.clustered(40, encoder.dim), 0.3, len(paths))
        rows = (encoder.name, encoder.architecture, encoder.digest, encoder.dim)
        synthetic.file_vectors(lib.catalog, vectors, rows, path=lambda i: paths[i - 1])


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", default="1000,10000,100000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(
        "| files | bare walk | re-run (API) | files/s | ratio (medians) | ratio (minima) "
        "| full re-run (API) | re-run (CLI) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.files.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            print(row(Path(tmp), n, args.repeats), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(versus_model_load(Path(tmp), args.repeats))


def versus_model_load(tmp: Path, repeats: int) -> str:
    tree, store, model = tmp / "photos", tmp / "store", tmp / "vit-b-32"
    paths = make_tree(tree, 400)
    load_model("random:ViT-B-32").save(str(model))
    fill_catalog(store, paths, str(model))
    cli = [sys.executable, "-m", "clipsearch"]
    rerun = [*cli, "index", str(tree), "--store", str(store), "--model", str(model)]
    for _ in range(2):  # the store learns the digest; then a run finds nothing to do
        subprocess.run(rerun, check=True, capture_output=True)
    load = [*cli, "embed", "--text", "x", "--model", str(model)]
    reruns, loads = [], []
    for _ in range(repeats):
        reruns.append(timed(lambda: subprocess.run(rerun, check=True, capture_output=True)))
        loads.append(timed(lambda: subprocess.run(load, check=True, capture_output=True)))
    ratio = statistics.median(reruns) / statistics.median(loads)
    return (
        f"\n400 files, ViT-B/32: unchanged re-run {spread(reruns)}; loading the model "
        f"(embed --text x) {spread(loads)}; ratio {ratio:.2f}"
    )


def row(tmp: Path, n: int, repeats: int) -> str:
    tree, store, model = tmp / "photos", tmp / "store", tmp / "model"
    paths = make_tree(tree, n)
    load_model("random:tiny").save(str(model))
    fill_catalog(store, paths, str(model))
    options = IndexOptions(workers=1)
    with Library(store) as lib:  # learns the model's digest, builds the vector index
        first = lib.index([tree], str(model), options)
        quiet = lib.index([tree], str(model), options)  # nothing to do: leaves its note
    assert first.unchanged == quiet.unchanged == n and "scan" in quiet.profile, quiet
    cli = [sys.executable, "-m", "clipsearch", "index", str(tree), "--store", str(store)]
    cli += ["--model", str(model)]
    walks, apis, fulls, clis = [], [], [], []
    for _ in range(repeats):
        walks.append(timed(lambda: bare_walk(str(tree))))
        with Library(store) as lib:
            apis.append(timed(lambda: lib.index([tree], str(model), options)))  # noqa: B023
            fulls.append(timed(lambda: lib.index([tree], str(model), options, quick=False)))  # noqa: B023
        clis.append(timed(lambda: subprocess.run(cli, check=True, capture_output=True)))
    walk, api = statistics.median(walks), statistics.median(apis)
    return (
        f"| {n:,} | {spread(walks)} | {spread(apis)} | {n / api:,.0f} | {api / walk:.1f}x | "
        f"{min(apis) / min(walks):.1f}x | {spread(fulls)} | {spread(clis)} |"
    )


def spread(seconds: list[float]) -> str:
    return f"{min(seconds):.3f} / {statistics.median(seconds):.3f} / {max(seconds):.3f} s"


if __name__ == "__main__":
    main()
