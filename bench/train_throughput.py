"""Training throughput and peak memory, and emoji recall@5 against training time.

    python bench/train_throughput.py [--archs tiny,ViT-B-32] [--emoji-epochs 30]

Throughput: optimizer steps of the real loss (forward, backward, AdamW) on random
batches, images/s and the process's peak RSS, per config at batch 32. Learning: a tiny
CLIP trained from scratch with `clipsearch train` on two emoji styles, text->image
recall@5 on the third style's unseen concepts after each epoch, against wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from clipsearch.models.model import CLIP, CONFIGS
from clipsearch.training.losses import step_loss
from clipsearch.training.trainable import param_groups

EMOJI = Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji"

PEAK = """
import resource, sys
sys.path.insert(0, {bench!r})
from train_throughput import steps_per_second
rate = steps_per_second({arch!r}, {batch})
print(rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def steps_per_second(arch: str, batch: int, steps: int = 4) -> float:
    torch.manual_seed(0)
    model = CLIP(CONFIGS[arch]).train()
    opt = torch.optim.AdamW(param_groups(model, 0.2), lr=1e-4)
    size = model.config.vision.image_size
    pixels = torch.randn(batch, 3, size, size)
    tokens = torch.zeros(batch, 20, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:19], tokens[:, 19] = (
        49406,
        torch.randint(1, 49000, (batch, 18)),
        49407,
    )

    def step() -> None:
        step_loss(model, pixels, tokens).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def emoji_curve(epochs: int) -> None:
    if not (EMOJI / "captions.jsonl").exists():
        print(f"emoji data not found at {EMOJI}; skipping the learning curve")
        return
    rows = [json.loads(line) for line in (EMOJI / "captions.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:

        def write(name, keep):
            path = Path(tmp) / name
            path.write_text(
                "".join(
                    json.dumps({"image": str(EMOJI / r["image"]), "caption": r["caption"]}) + "\n"
                    for r in rows
                    if keep(r)
                )
            )
            return str(path)

        train = write("train.jsonl", lambda r: r["split"] == "train" and r["vendor"] != "openmoji")
        val = write("val.jsonl", lambda r: r["split"] == "val" and r["vendor"] == "openmoji")
        run = Path(tmp) / "run"
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "clipsearch",
                "train",
                "--data",
                train,
                "--val-data",
                val,
                "--arch",
                "tiny",
                "--epochs",
                str(epochs),
                "--batch-size",
                "128",
                "--lr",
                "2e-3",
                "--warmup",
                "50",
                "--workers",
                "1",
                "--run-dir",
                str(run),
                "--json",
            ],
            check=True,
            capture_output=True,
        )
        total = time.perf_counter() - start
        curve = [
            json.loads(line)["validation"]
            for line in (run / "metrics.jsonl").read_text().splitlines()
            if "validation" in line
        ]
        print(
            f"emoji, tiny from scratch, {total:.0f} s for {epochs} epochs; chance R@5 {5 / 192:.1%}"
        )
        for v in curve:
            print(
                f"  epoch {v['epoch']:>3} ({total * v['epoch'] / epochs:5.0f} s): "
                f"text->image R@1 {v['text_to_image_R@1']:.1%} R@5 {v['text_to_image_R@5']:.1%} "
                f"R@10 {v['text_to_image_R@10']:.1%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="tiny,ViT-B-32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--emoji-epochs", type=int, default=30)
    args = parser.parse_args()
    bench = str(Path(__file__).parent)
    for arch in args.archs.split(","):  # one process each, so peak RSS is the config's own
        code = PEAK.format(bench=bench, arch=arch, batch=args.batch)
        rate, peak = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
        rate, peak = float(rate), float(peak)
        print(f"{arch:>9} batch {args.batch}: {rate:7.1f} images/s, peak RSS {peak:6.0f} MB")
    if args.emoji_epochs:
        emoji_curve(args.emoji_epochs)


if __name__ == "__main__":
    main()
