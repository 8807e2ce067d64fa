"""Where the time of a cold `clipsearch query` goes, part by part.

    python bench/cold_query.py [--vectors 1200,100000] [--repeats 5] [--towers torch,onnx]

For each size, a store whose catalog holds that many vectors (storage/synthetic.py) of a
ViT-B/32 with random weights saved to disk, as a user's would be after `index`; for
`onnx`, a copy of it that also keeps the model's text tower exported for ONNX Runtime (as
after the first `clipsearch query`; needs the fast extra). Then, interleaved, REPEATS
times each:

- `python -c pass`: the interpreter's own start;
- the parts, each timed in a fresh interpreter (this file run as a child): the imports
  one after another (numpy, torch or onnxruntime, faiss, sqlalchemy, typer, rich, then
  clipsearch's own), opening the store, the text tower (model resolution, digest, load),
  tokenizing and encoding the query, loading the vector index, the search, the catalog
  lookups, and printing the table;
- `clipsearch query "a red bicycle"` as a user runs it.

Prints min / median / max milliseconds of each, per tower.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

QUERY = "a red bicycle"
RUNTIMES = {"torch": "torch", "onnx": "onnxruntime"}  # the module each tower imports
IMPORTS = ("numpy", "{runtime}", "faiss", "sqlalchemy", "typer", "rich")


def parts(store: str, model: str, tower: str) -> dict[str, float]:
    """The parts of one cold query, in milliseconds (run in a fresh interpreter)."""
    spent: dict[str, float] = {}
    last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        spent[name] = (now - last) * 1000
        last = now

    for module in (m.format(runtime=RUNTIMES[tower]) for m in IMPORTS):
        __import__(module)
        lap(f"import {module}")
    from clipsearch.cli import app  # noqa: F401
    from clipsearch.library import Library
    from clipsearch.query.render import as_table
    from clipsearch.query.search import hydrate, nearest

    lap("import clipsearch")
    lib = Library(store)
    lap("open the store")
    reader = lib.text_reader(model)
    assert (type(reader).__name__ == "OnnxTextTower") == (tower == "onnx")
    row = lib.encoders.model_row(reader)
    lap("text tower: resolve, digest, load")
    vector = reader.encode_text([QUERY])[0]
    lap("tokenize and encode")
    loaded, _ = lib.searcher.index_for(row.id)
    lap("load the vector index")
    hits = nearest(lib.catalog, loaded, vector, 11)
    lap("search")
    results = hydrate(lib.catalog, hits, None)
    lap("catalog lookups")
    print(as_table(QUERY, results[:10]), file=io.StringIO())
    lap("print")
    return spent


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return (time.perf_counter() - start) * 1000


def make_store(folder: Path, n: int) -> tuple[str, str]:
    from clipsearch import Library, load_model
    from clipsearch.storage import synthetic

    model = folder / "vit-b-32"
    encoder = load_model("random:ViT-B-32")
    encoder.save(str(model))
    store = folder / "torch"
    with Library(store, create=True) as lib, lib.store.writing():
        vectors = synthetic.around(synthetic.clustered(200, encoder.dim), 0.3, n)
        row = (encoder.name, encoder.architecture, encoder.digest, encoder.dim)
        synthetic.file_vectors(lib.catalog, vectors, row)
    with Library(store) as lib:  # as after `index`: its vector index built, digest known
        lib.rebuild()
        lib.search(QUERY, model=str(model))
    shutil.copytree(store, folder / "onnx")
    with Library(folder / "onnx") as lib:
        lib.encoder(str(model))  # loaded, as after an index run that embedded
        start = time.perf_counter()
        if lib.export_text_tower(str(model)) is None:
            shutil.rmtree(folder / "onnx")  # no fast extra here: torch only
        else:
            print(f"the text tower's export took {time.perf_counter() - start:.2f} s")
    return str(folder), str(model)


def table(rows: dict[str, list[float]]) -> str:
    lines = ["| part | min | median | max |", "|---|---:|---:|---:|"]
    for name, values in rows.items():
        lines.append(
            f"| {name} | {min(values):.0f} | {statistics.median(values):.0f} | {max(values):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(parts(*sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", default="1200,100000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--towers", default="torch,onnx")
    args = parser.parse_args()
    for n in [int(x) for x in args.vectors.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            folder, model = make_store(Path(tmp), n)
            towers = [t for t in args.towers.split(",") if (Path(folder) / t).is_dir()]
            rows = {t: {"interpreter start (python -c pass)": []} for t in towers}
            for _ in range(args.repeats):
                for tower in towers:
                    store = str(Path(folder) / tower)
                    measure(rows[tower], store, model, tower)
            for tower in towers:
                print(f"\n{n:,} vectors, {tower} text tower, {cpu_name()}\n")
                print(table(rows[tower]))


def measure(rows: dict[str, list[float]], store: str, model: str, tower: str) -> None:
    rows["interpreter start (python -c pass)"].append(timed([sys.executable, "-c", "pass"]))
    child = subprocess.run(
        [sys.executable, __file__, "--child", store, model, tower],
        capture_output=True, text=True,
    )  # fmt: skip
    if child.returncode:
        sys.exit(child.stderr)
    for name, ms in json.loads(child.stdout).items():
        rows.setdefault(name, []).append(ms)
    cli = [sys.executable, "-m", "clipsearch", "query", QUERY, "--store", store]
    whole = "clipsearch query (the whole, as a user runs it)"
    torch_only = {"CLIPSEARCH_NO_ONNX": "1"} if tower == "torch" else {}  # nor export
    rows.setdefault(whole, []).append(timed([*cli, "--model", model], torch_only))


if __name__ == "__main__":
    main()
