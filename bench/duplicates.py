"""Duplicates: how well the measured default finds copies, and how long groups take.

    python bench/duplicates.py --model DIR            # a trained model (else one is trained)
    python bench/duplicates.py --sizes 100000,1000000 --skip-calibration

Calibration: 40 emoji pictures of the shared data's val split (openmoji) as originals,
each with its copies (calibration.copies_of: JPEG 50/85, resized 25%/50%, cropped 5%/15%,
15% darker/brighter, framed) and a JPEG stored turned with an EXIF orientation that turns it
back; among every other val picture of all three styles (different concepts, and the same
concept drawn in another style: the hard negatives). The store measures its threshold as a
user's would; pair precision and recall of near and similar are counted against the
families. Scale: synthetic clustered 512-d vectors in a real catalog, with 1% planted near
copies; the time of Library-level grouping and the planted pairs found.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "query"))

from clipsearch import Library  # noqa: E402
from clipsearch.query import duplicates  # noqa: E402
from clipsearch.storage import synthetic  # noqa: E402
from clipsearch.storage.catalog import Catalog  # noqa: E402


def pair_counts(found, family_of: dict[str, str], concept_of: dict[str, str]):
    """(pairs grouped, of them right, of them the same concept in another style)."""
    pairs = set()
    for g in found.groups:
        names = sorted(m.path.rsplit("/", 1)[1] for m in g.items)
        pairs |= {(a, b) for i, a in enumerate(names) for b in names[i + 1 :]}
    right = {p for p in pairs if family_of.get(p[0], p[0]) == family_of.get(p[1], p[1])}
    styles = {p for p in pairs - right if concept_of[p[0]] == concept_of[p[1]]}
    return len(pairs), len(right), len(styles)


def calibration(model: str, folder: Path) -> None:
    from helpers import EMOJI
    from PIL import Image
    from test_duplicates import emoji_copies

    photos = folder / "photos"
    photos.mkdir()
    families = emoji_copies(photos)
    family_of = {n: orig for orig, names in families.items() for n in [orig, *names]}
    lines = [json.loads(x) for x in (EMOJI / "captions.jsonl").read_text().splitlines()]
    concept_of = {n: n.split("-")[0].split(".")[0] for n in family_of}
    for x in lines:
        name = f"{x['vendor']}-{x['codepoint']}.png"
        if x["split"] == "val" and f"{x['codepoint']}.png" not in families:
            Image.open(EMOJI / x["image"]).convert("RGB").resize((256, 256)).save(photos / name)
            concept_of[name] = x["codepoint"]
    every = sum(len(n) * (len(n) + 1) // 2 for n in families.values())
    print(f"{len(list(photos.iterdir()))} pictures: {len(families)} families of 11, "
          f"{every} copy pairs; model {model}")  # fmt: skip
    with Library(folder / "store", create=True) as lib:
        lib.index([photos], model=model)
        started = time.perf_counter()
        measured = lib.thresholds()
        print(f"measured in {time.perf_counter() - started:.1f} s: {measured}")
        print("| kind | threshold | pairs | precision | recall | same concept, other style |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind in ("near", "similar"):
            for threshold in (None, 0.99, 0.95, 0.9):
                found = lib.duplicates(kind, threshold=threshold)
                pairs, right, styles = pair_counts(found, family_of, concept_of)
                said = f"{found.threshold:.4f}" + (" (measured)" if threshold is None else "")
                print(f"| {kind} | {said} | {pairs} | {right / max(pairs, 1):.3f} | "
                      f"{right / every:.3f} | {styles} |")  # fmt: skip
                if kind == "similar" and threshold is None:
                    break


def scale(n: int, folder: Path) -> None:
    """n clustered 512-d vectors and 1% planted copies (similarity about 0.97)."""
    rng = np.random.default_rng(0)
    planted = n // 100
    base = synthetic.clustered(n - planted, 512, clusters=200, noise=0.6)
    copies = synthetic.unit(base[:planted] + 0.008 * rng.standard_normal((planted, 512)))
    catalog = Catalog(f"sqlite:///{folder / f'catalog-{n}.db'}")
    model_id = synthetic.file_vectors(
        catalog, iter([base, copies]), ("synthetic", "none", f"digest{n}", 512)
    )
    truth = {(i + 1, n - planted + i + 1) for i in range(planted)}
    started = time.perf_counter()
    groups = duplicates.find(catalog, model_id, "near", 0.95)
    took = time.perf_counter() - started
    found = {tuple(sorted(m.id for m in g.items)) for g in groups}
    pairs = {(a, b) for g in found for a in g for b in g if a < b}
    print(f"| {n:,} | {took:.1f} s | {len(truth & pairs) / planted:.4f} | "
          f"{len(pairs - truth)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model (default: train the tests' one)")
    parser.add_argument("--sizes", default="100000", help="vectors for the scale part")
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_calibration:
            model = args.model
            if model is None:
                from helpers import train_emoji_models

                model = str(train_emoji_models(folder / "trained")["dir"] / "tuned")
            (folder / "calibration").mkdir()
            calibration(model, folder / "calibration")
        print("| vectors | grouping | planted pairs found | other pairs |")
        print("|---:|---:|---:|---:|")
        for n in (int(x) for x in args.sizes.split(",")):
            scale(n, folder)


if __name__ == "__main__":
    main()
