"""Search by words beside vectors: does hybrid ranking leave visual queries as good as
vectors alone, and what do captions add?

    python bench/words_recall.py --model DIR      # a trained model (else the tests' one is trained)

The shared emoji data's val split, one style (openmoji: concepts no training run saw),
each picture's caption as a query for it. Two stores: the pictures as files (named by
their code points, so a caption's words rarely match a name: pure visual queries), and the
same pictures from a list file whose caption column the store keeps (words that do
match). Prints text->image recall@1 and @5 for --mode vector and --mode hybrid on each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from clipsearch import Library  # noqa: E402


def recall(lib: Library, queries: list[tuple[str, str]], mode: str) -> tuple[float, float]:
    """Share of queries whose picture is first, and among the first five."""
    first = top5 = 0
    for caption, name in queries:
        found = [Path(r.path).name for r in lib.search(caption, k=5, mode=mode).results]
        first += found[:1] == [name]
        top5 += name in found
    return first / len(queries), top5 / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model (default: train the tests' one)")
    args = parser.parse_args()
    from helpers import EMOJI, index

    from clipsearch import load_model

    rows = [json.loads(line) for line in (EMOJI / "captions.jsonl").open()]
    val = [r for r in rows if r["split"] == "val" and r["vendor"] == "openmoji"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            from helpers import train_emoji_models

            (folder / "trained").mkdir()
            model = str(train_emoji_models(folder / "trained")["dir"] / "tuned")
        encoder = load_model(model)
        pictures = folder / "pictures"
        pictures.mkdir()
        for r in val:
            shutil.copy(EMOJI / r["image"], pictures / Path(r["image"]).name)
        listed = pictures / "captions.jsonl"
        listed.write_text("".join(
            json.dumps({"path": Path(r["image"]).name, "caption": r["caption"]}) + "\n"
            for r in val
        ))  # fmt: skip
        queries = [(r["caption"], Path(r["image"]).name) for r in val]
        print(f"{len(queries)} queries (openmoji val captions), model {model}")
        print("| store | mode | recall@1 | recall@5 |")
        print("|---|---|---:|---:|")
        for store, roots in (("files", [pictures]), ("captioned list", [listed])):
            index(folder / store, roots, encoder)
            with Library(folder / store) as lib:
                for mode in ("vector", "hybrid"):
                    at1, at5 = recall(lib, queries, mode)
                    print(f"| {store} | {mode} | {at1:.3f} | {at5:.3f} |")


if __name__ == "__main__":
    main()
