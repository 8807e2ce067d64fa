"""clipsearch beside rclip 3.3.0, on this machine, in one interleaved run.

    python bench/rclip_side_by_side.py --rclip-python PATH [--images 300] [--query-images 1200]
        [--vectors 100000] [--repeats 5] [--figures fresh,images,vectors]

PATH is a Python that has `rclip==3.3.0` installed (it brings ONNX Runtime; torch is not
needed there), e.g. `python -m venv /tmp/rclip && /tmp/rclip/bin/pip install rclip==3.3.0`.
This side needs `onnx` for torch's exporter and `onnxruntime` (`pip install onnx
onnxruntime`; the `ocr` extra brings the latter).

Both sides run the same model: OpenAI's ViT-B/32 with random weights (clipsearch's
`random:ViT-B-32`, saved to disk), its two towers exported to ONNX in rclip's layout, the
image tower as open_clip computes it (what rclip's scripts/convert_model.py exports: a
convolution for the patches, every token through every block, where clipsearch's last
block computes the class token alone)
(`$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx`, input "input",
one output, vectors not normalised: rclip normalises) with clipsearch's BPE vocabulary as
rclip's tokenizer. rclip resizes to 256 px for its own model; a wrapper sets its
`IMAGE_SIZE` to 224 first, as the issue says. Nothing is downloaded (`HF_HUB_OFFLINE=1`).
The exported towers are checked against clipsearch's own vectors before anything is timed.

Figures, each side in a fresh process as a user runs it, interleaved pairs:

- a fresh index of IMAGES small PNGs at fp32: `clipsearch index --precision fp32` then
  `clipsearch query` (rclip has no index-only mode: one `rclip QUERY` indexes, then answers);
  with the fast extra, that first query also exports the text tower (once per store);
- a cold query over QUERY-IMAGES indexed images (`rclip -n`: no indexing);
- a cold query over VECTORS stored vectors (synthetic, the same on both sides).
The cold queries come after the store's first query, as they would for a user.

Prints min / median / max seconds per side and the ratio of medians (clipsearch / rclip).
"""

from __future__ import annotations

import argparse
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
import torch
from machine import cpu_name
from PIL import Image, ImageDraw

QUERY = "a red bicycle"
RCLIP_MODEL_DIR = "ViT-B-32-256-datacomp_s34b_b86k"  # the name rclip 3.3.0 looks for
RCLIP_AT_224 = """
import sys
import rclip.utils.preprocess as preprocess
preprocess.IMAGE_SIZE = 224
from rclip.main import main
sys.argv[0] = "rclip"
main()
"""


def make_images(folder: Path, n: int, seed: int) -> None:
    """Small PNGs with a few coloured shapes each (what is drawn does not matter)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        image = Image.new("RGB", (160, 120), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.integers(0, 140), rng.integers(0, 100)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x, y, x + rng.integers(10, 60), y + rng.integers(10, 60)), fill=colour)
        image.save(folder / f"{i:05d}.png")


def export_for_rclip(model_dir: Path, datadir: Path) -> float:
    """The saved model's towers as rclip's ONNX files; the largest difference between
    their unit vectors and clipsearch's, for a few texts and images."""
    from clipsearch import load_model

    encoder = load_model(str(model_dir), precision="fp32")
    target = datadir / RCLIP_MODEL_DIR
    target.mkdir(parents=True)
    examples = {"visual": torch.randn(1, 3, 224, 224),
                "textual": torch.from_numpy(encoder.tokenizer(["x"]))}  # fmt: skip
    for name, example in examples.items():
        torch.onnx.export(
            Tower(encoder.model, name), (example,), str(target / f"{name}.onnx"),
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=18, dynamo=False,
        )  # fmt: skip
    (datadir / "tokenizer").mkdir()
    vocab = Path(__file__).resolve().parents[1] / "clipsearch" / "data"
    shutil.copy(vocab / "bpe_simple_vocab_16e6.txt.gz", datadir / "tokenizer")
    return parity(encoder, target)


class Tower(torch.nn.Module):
    """One of the model's towers, as the module torch.onnx.export takes; the image tower
    as open_clip computes it."""

    def __init__(self, clip: torch.nn.Module, name: str):
        super().__init__()
        self.clip = clip.eval()
        self.encode = self.open_clip_image if name == "visual" else clip.encode_text

    def open_clip_image(self, pixels: torch.Tensor) -> torch.Tensor:
        v = self.clip.visual
        x = v.conv1(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], dim=1)
        x = v.transformer(v.ln_pre(x + v.positional_embedding))
        return v.ln_post(x[:, 0]) @ v.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)


def parity(encoder, target: Path) -> float:
    import onnxruntime as ort

    texts = ["a dog on a beach", "a red bicycle", "x"]
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    runs = {
        "textual": (encoder.tokenizer(texts), encoder.encode_text(texts)),
        "visual": (pixels, encoder.encode_pixels(pixels)),
    }
    worst = 0.0
    for name, (given, ours) in runs.items():
        session = ort.InferenceSession(str(target / f"{name}.onnx"))
        (theirs,) = session.run(None, {"input": given})
        theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
        worst = max(worst, float(np.abs(theirs - ours).max()))
    return worst


def rclip_vectors(db_file: Path, folder: Path, vectors: np.ndarray) -> None:
    """rclip's database (schema of rclip 3.3.0's db.py) holding these vectors, as files
    under `folder` (rclip -n reads the rows, not the files)."""
    db = sqlite3.connect(db_file)
    db.executescript(
        """CREATE TABLE images (id INTEGER PRIMARY KEY, deleted BOOLEAN,
           filepath TEXT NOT NULL UNIQUE, modified_at DATETIME NOT NULL,
           size INTEGER NOT NULL, vector BLOB NOT NULL, indexing BOOLEAN, hash TEXT);
           CREATE UNIQUE INDEX existing_images ON images(filepath) WHERE deleted IS NULL;
           CREATE INDEX hash_index ON images(hash) WHERE deleted IS NULL;
           CREATE TABLE db_version (version INTEGER); INSERT INTO db_version VALUES (4);"""
    )
    rows = ((f"{folder}/{i:07d}.jpg", 0.0, 1000, v.tobytes()) for i, v in enumerate(vectors))
    db.executemany(
        "INSERT INTO images (filepath, modified_at, size, vector) VALUES (?, ?, ?, ?)", rows
    )
    db.commit()
    db.close()


def clipsearch_vectors(store: Path, model_dir: Path, vectors: np.ndarray, folder: Path) -> None:
    from clipsearch import Library, load_model
    from clipsearch.storage import synthetic

    encoder = load_model(str(model_dir), text_only=True)
    with Library(store, create=True) as lib, lib.store.writing():
        row = (encoder.name, encoder.architecture, encoder.digest, encoder.dim)
        synthetic.file_vectors(lib.catalog, vectors, row, path=lambda i: f"{folder}/{i:07d}.jpg")
    with Library(store) as lib:  # as after `index`: its vector index built, digest known
        lib.rebuild()
        lib.search(QUERY, model=str(model_dir))


class Sides:
    """The two commands of each figure, run as a user runs them."""

    def __init__(self, tmp: Path, rclip_python: str, model_dir: Path):
        self.tmp = tmp
        self.model = str(model_dir)
        self.wrapper = tmp / "rclip_224.py"
        self.wrapper.write_text(RCLIP_AT_224)
        self.rclip_python = rclip_python
        self.clipsearch = [sys.executable, "-m", "clipsearch"]

    def rclip(self, datadir: Path, folder: Path, *flags: str) -> float:
        env = {**os.environ, "RCLIP_DATADIR": str(datadir), "HF_HUB_OFFLINE": "1"}
        command = [self.rclip_python, str(self.wrapper), *flags, "-t", "10", QUERY]
        return timed(command, cwd=folder, env=env)

    def index_then_query(self, folder: Path, store: Path) -> float:
        store_args = ["--store", str(store), "--model", self.model]
        index = [*self.clipsearch, "index", str(folder), "--precision", "fp32", *store_args]
        query = [*self.clipsearch, "query", QUERY, "-k", "10", *store_args]
        return timed(index) + timed(query)

    def query(self, store: Path) -> float:
        store_args = ["--store", str(store), "--model", self.model]
        return timed([*self.clipsearch, "query", QUERY, "-k", "10", *store_args])


def rclip_datadir(tmp: Path, name: str) -> Path:
    """A data folder of rclip's own: the exported model and tokenizer, no database yet."""
    shutil.copytree(tmp / "rclip", tmp / name)
    return tmp / name


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if done.returncode or "error" in done.stderr.lower():
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def line(figure: str, ours: list[float], theirs: list[float]) -> str:
    ratio = statistics.median(ours) / statistics.median(theirs)
    return f"| {figure} | {spread(ours)} | {spread(theirs)} | {ratio:.2f} |"


def spread(seconds: list[float]) -> str:
    return f"{min(seconds):.2f} / {statistics.median(seconds):.2f} / {max(seconds):.2f} s"


def fresh_index(sides: Sides, tmp: Path, images: int, repeats: int) -> str:
    folder = tmp / "fresh"
    make_images(folder, images, seed=1)
    ours, theirs = [], []
    for i in range(repeats):
        ours.append(sides.index_then_query(folder, tmp / f"fresh-store-{i}"))
        theirs.append(sides.rclip(rclip_datadir(tmp, f"fresh-rclip-{i}"), folder))
    return line(f"fresh fp32 index of {images} small PNGs, then a query", ours, theirs)


def cold_query_over_images(sides: Sides, tmp: Path, images: int, repeats: int) -> str:
    folder = tmp / "indexed"
    make_images(folder, images, seed=2)
    store = tmp / "indexed-store"
    sides.index_then_query(folder, store)
    datadir = rclip_datadir(tmp, "indexed-rclip")
    sides.rclip(datadir, folder)  # indexes them
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(sides.query(store))
        theirs.append(sides.rclip(datadir, folder, "-n"))
    return line(f"cold query, {images:,} indexed images", ours, theirs)


def cold_query_over_vectors(sides: Sides, tmp: Path, n: int, repeats: int) -> str:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    folder = tmp / "many"
    folder.mkdir()
    store = tmp / "many-store"
    clipsearch_vectors(store, Path(sides.model), vectors, folder)
    datadir = rclip_datadir(tmp, "many-rclip")
    rclip_vectors(datadir / "db.sqlite3", folder, vectors)
    sides.query(store)  # a store's first query (after `index`) exports the text tower
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(sides.query(store))
        theirs.append(sides.rclip(datadir, folder, "-n"))
    return line(f"cold query, {n:,} stored vectors", ours, theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rclip-python", required=True)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--query-images", type=int, default=1200)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--figures", default="fresh,images,vectors", help="which to measure")
    args = parser.parse_args()
    figures = {
        "fresh": lambda: fresh_index(sides, tmp, args.images, args.repeats),
        "images": lambda: cold_query_over_images(sides, tmp, args.query_images, args.repeats),
        "vectors": lambda: cold_query_over_vectors(sides, tmp, args.vectors, args.repeats),
    }
    from clipsearch import load_model

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model_dir = tmp / "vit-b-32"
        load_model("random:ViT-B-32", precision="fp32").save(str(model_dir))
        worst = export_for_rclip(model_dir, tmp / "rclip")
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
        print(f"ONNX towers against clipsearch's vectors: largest difference {worst:.1e}\n")
        sides = Sides(tmp, args.rclip_python, model_dir)
        print("| figure | clipsearch | rclip 3.3.0 | ratio |\n|---|---:|---:|---:|")
        for figure in args.figures.split(","):
            print(figures[figure](), flush=True)


if __name__ == "__main__":
    main()
