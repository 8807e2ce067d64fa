"""Search in other languages: text->image recall@5 on unseen emoji concepts by English,
German, French, Japanese and Chinese CLDR labels, before and after `train --distill-text`.

    python bench/distill_languages.py [--model RUN_DIR] [--epochs 10] [--languages de,fr,ja,zh]

The model is the tiny CLIP the tests train on the emoji images (trained here if --model is
not given, ~1 minute); its image vectors of the `val` concepts' images (all three styles,
concepts never seen in training, in any language) stay as they are, and only the text
tower learns, from the `train` concepts' labels in the chosen languages.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.core.config import TrainConfig
from clipsearch.images.pixels import preprocess
from clipsearch.models.encoder import load_model
from clipsearch.training.distill import distill_text
from clipsearch.training.evaluate import concept_recall

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import EMOJI, train_emoji_models  # noqa: E402  (the tests' own model recipe)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def recall_at_5(encoder, images, image_concepts, concepts, language) -> float:
    texts = encoder.encode_text([c["labels"][language] for c in concepts])
    return concept_recall(texts, [c["codepoint"] for c in concepts], images, image_concepts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--languages", default="de,fr,ja,zh")
    args = parser.parse_args()
    if not (EMOJI / "concepts_i18n.jsonl").exists():
        sys.exit(f"the shared emoji data is not at {EMOJI}")
    learn = args.languages.split(",")
    shown = ["en", *learn]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(train_emoji_models(tmp)["dir"] / "tuned")
        concepts = rows(EMOJI / "concepts_i18n.jsonl")
        val = [c for c in concepts if c["split"] == "val" and set(shown) <= set(c["labels"])]
        images = [r for r in rows(EMOJI / "captions.jsonl") if r["split"] == "val"]
        teacher = load_model(model)
        pixels = np.stack(
            [preprocess(EMOJI / r["image"], teacher.preprocessing)[0] for r in images]
        )
        vectors, image_concepts = (
            teacher.encode_pixels(pixels),
            [r["base_codepoint"] for r in images],
        )
        with open(tmp / "parallel.jsonl", "w") as f:
            for c in concepts:
                if c["split"] == "train":
                    f.write(json.dumps(c["labels"], ensure_ascii=False) + "\n")
        start = time.perf_counter()
        cfg = TrainConfig(
            data=str(tmp / "parallel.jsonl"),
            init=model,
            run_dir=str(tmp / "tower"),
            epochs=args.epochs,
            batch_size=128,
            lr=5e-4,
            weight_decay=0.0,
            distill_text=True,
            languages=learn,
        )
        distill_text(cfg)
        seconds = time.perf_counter() - start
        tower = load_model(str(tmp / "tower"))
        chance = 5 / len(set(image_concepts))
        print(f"{len(val)} unseen concepts, {len(images)} images; chance {chance:.1%}; "
              f"distillation {args.epochs} epochs in {seconds:.0f} s")  # fmt: skip
        after_en = recall_at_5(tower, vectors, image_concepts, val, "en")
        print(f"{'language':>8} {'before':>7} {'after':>7} {'after / English after':>22}")
        for lang in shown:
            before = recall_at_5(teacher, vectors, image_concepts, val, lang)
            after = recall_at_5(tower, vectors, image_concepts, val, lang)
            print(f"{lang:>8} {before:7.1%} {after:7.1%} {after / after_en:22.2f}")


if __name__ == "__main__":
    main()
