"""Reading text in images: how fast, what it adds to an index run, and what it finds.

    python bench/ocr.py [--photos 24] [--screens 8]

Pictures made here in Debian's fonts: camera-sized photos of signs (4000x3000 JPEG, two
lines on a noisy ground) and screenshots (1920x1080 PNG, 24 lines of 22-px text). Prints
images/s of the reader on each kind; every word of each sign read, by it and by Debian's
Tesseract where installed (the choice of engine); an index run of the photos with a random ViT-B/32
without and with --ocr; and, searching each sign's words as a phrase, recall@1 by --mode
vector against hybrid (a random model reads nothing: the vectors find a sign by chance).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from clipsearch import Library  # noqa: E402
from clipsearch.core.config import IndexOptions  # noqa: E402

WORDS = (  # noqa: SIM905
    "harbour bakery museum station library garden theatre market pharmacy gallery "
    "cinema bridge castle temple tower lighthouse stadium airport hospital school "
    "bistro brewery chapel fountain island meadow orchard palace quarry vineyard "
    "workshop zoo canyon desert forest glacier lagoon summit valley volcano"
).split()


def photos(folder: Path, n: int) -> list[tuple[str, str]]:
    from helpers import sign

    made = []
    for i in range(n):
        words = f"{WORDS[i % len(WORDS)].upper()} {WORDS[(i * 7 + 3) % len(WORDS)]}"
        path = sign(folder / f"IMG_{4000 + i}.jpg", words.split(), seed=i,
                    size=(4000, 3000), at=(600, 900), height=220)  # fmt: skip
        made.append((words.lower(), path.name))
    return made


def screens(folder: Path, n: int) -> list[Path]:
    from helpers import sign

    lines = [f"{WORDS[(j * 5) % len(WORDS)]} settings item {j}: enabled" for j in range(24)]
    return [
        sign(folder / f"screen{i}.png", lines, seed=i, size=(1920, 1080), at=(40, 20), height=22)
        for i in range(n)
    ]


def against_tesseract(signs: list[tuple[str, str]], folder: Path) -> None:
    """The choice of engine: signs whose every word each reads, and seconds per sign, with
    Debian's Tesseract (`apt install tesseract-ocr`) given the same 1,600-px image."""
    import shutil
    import subprocess

    from PIL import Image

    from clipsearch.images.ocr import TextReader
    from clipsearch.storage.catalog_words import words_of

    if shutil.which("tesseract") is None:
        print("tesseract: not installed (apt install tesseract-ocr), not compared")
        return
    reader = TextReader()

    def tesseract(path: Path) -> str:
        img = Image.open(path)
        img.thumbnail((1600, 1600))
        img.save(path.with_suffix(".png"))
        command = ["tesseract", str(path.with_suffix(".png")), "-", "--psm", "11"]
        return subprocess.run(command, capture_output=True, text=True).stdout

    engines = {"rapidocr": lambda p: " ".join(x.text for x in reader.read(str(p))),
               "tesseract": tesseract}  # fmt: skip
    reader.read(str(folder / signs[0][1]))  # the models load
    for name, read in engines.items():
        start, right = time.perf_counter(), 0
        for words, file in signs:
            right += set(words.split()) <= {w.lower() for w in words_of(read(folder / file))}
        each = (time.perf_counter() - start) / len(signs)
        print(f"{name}: every word of {right}/{len(signs)} signs, {each:.2f} s a sign")


def rate(paths: list[Path]) -> float:
    from clipsearch.images.ocr import TextReader

    reader = TextReader()
    reader.read(str(paths[0]))  # the models load
    start = time.perf_counter()
    for p in paths:
        reader.read(str(p))
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--screens", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        signs = photos(folder / "photos", args.photos)
        shots = screens(folder / "screens", args.screens)
        print(f"reader: {rate(sorted((folder / 'photos').iterdir())):.2f} photos/s (4000x3000), "
              f"{rate(shots):.2f} screenshots/s (1920x1080)")  # fmt: skip
        against_tesseract(signs, folder / "photos")
        took = {}
        for ocr in (False, True):
            store = folder / f"store-{ocr}"
            with Library(store, create=True) as lib:
                start = time.perf_counter()
                lib.index([folder / "photos"], model="random:ViT-B-32",
                          options=IndexOptions(ocr=ocr, workers=1))  # fmt: skip
                took[ocr] = time.perf_counter() - start
        print(f"index {args.photos} photos: {took[False]:.1f} s, with --ocr {took[True]:.1f} s "
              f"({took[True] / took[False]:.2f}x)")  # fmt: skip
        with Library(folder / "store-True") as lib:
            for mode in ("vector", "hybrid"):
                hits = sum(  # as written on the sign: two signs may hold the same two words
                    Path(lib.search(f'"{words}"', k=1, mode=mode).results[0].path).name == name
                    for words, name in signs
                )
                print(f"signs found by their words, {mode}: recall@1 {hits / len(signs):.3f}")


if __name__ == "__main__":
    main()
