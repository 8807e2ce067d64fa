"""Settings as plain values, each declared once: its default, its command-line flag and its
help live on one dataclass field, and the CLI builds its options from the fields.

No torch here: the command line reads these to build `--help`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any


def setting(default: Any, *flags: str, help: str, **cli: Any) -> Any:
    """A dataclass field that is also a command-line option: `flags` as typer takes them,
    `cli` typer's other arguments (min=, max=...). A default of MISSING makes it required."""
    meta = {"flags": flags, "help": help, "cli": cli}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


MEMORY_BUDGET_HELP = (
    "Memory the vector index may take, e.g. 4G (default: half the memory free now); auto "
    "picks a compressed preset (IVF-PQ, re-ranked exactly) when full vectors would not fit."
)


@dataclass
class IndexOptions:
    """How `clipsearch index` runs (what it indexes and into which store are arguments)."""

    batch_size: int = setting(
        32, "--batch-size", help="Images per model batch and per commit.", min=1
    )
    workers: int | None = setting(
        None, "--workers", help="Decoding processes (default: one per core).", min=1
    )
    preset: str = setting(
        "auto", "--preset", help="Vector index preset: auto, exact, hnsw, ivf-flat, ivf-pq."
    )
    memory_budget: str | None = setting(
        None,
        "--memory-budget",
        help=MEMORY_BUDGET_HELP,
    )
    ray: bool = setting(
        False,
        "--ray",
        help="Decode and embed on Ray Data (pip install 'clipsearch\\[ray]'): a local Ray "
        "instance, or the cluster --ray-address names. This process still plans and writes.",
    )
    ray_address: str | None = setting(
        None,
        "--ray-address",
        help="With --ray: auto (the cluster the environment names) or ray://HOST:PORT.",
    )
    ray_gpus: float | None = setting(
        None,
        "--ray-gpus",
        help="With --ray: GPUs per model actor (default: 1 where the cluster has GPUs, else "
        "CPU actors; 0.5: two actors per GPU; 0: CPU actors).",
        min=0.0,
    )
    include_hidden: bool = setting(
        False, "--include-hidden", help="Also index dot-files and dot-folders."
    )
    follow_symlinks: bool = setting(
        False, "--follow-symlinks", help="Follow symbolic links (loops are detected)."
    )
    exclude: list[str] = setting(
        [], "--exclude", help="Glob of names or paths to skip (repeatable)."
    )
    trust_lists: bool = setting(
        False,
        "--trust-lists",
        help="Let list files name files anywhere on this machine (without it, only files "
        "in the list's own folder and below: a list from elsewhere cannot reach yours).",
    )
    ocr: bool | None = setting(
        None,
        "--ocr/--no-ocr",
        help="Read the text in images (signs, receipts, slides, screenshots) after embedding, "
        "so that search finds them by it (pip install 'clipsearch\\[ocr]'). The store "
        "remembers the choice for later runs and watch.",
    )
    dry_run: bool = setting(False, "--dry-run", help="Report what would change; write nothing.")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved with its checkpoints."""

    data: str = setting(
        MISSING, "--data", help="CSV/TSV, JSONL, a folder with .txt sidecars, or tar shards."
    )
    run_dir: str = setting("runs/clip", "--run-dir", help="Where checkpoints and metrics go.")
    arch: str | None = setting(
        None, "--arch", help="Train from scratch with this config (tiny, small, ViT-B-32...)."
    )
    init: str | None = setting(
        None, "--from", help="Fine-tune this model (named, file, directory, run)."
    )
    val_data: str | None = setting(
        None, "--val-data", help="Validation data (else --val-fraction)."
    )
    val_fraction: float = setting(
        0.0, "--val-fraction", help="Hold out this fraction (stable by image path)."
    )
    epochs: int = setting(10, "--epochs", help="Passes over the data.", min=1)
    batch_size: int = setting(
        64, "--batch-size", help="Per process; the contrastive batch is the global one.", min=2
    )
    lr: float = setting(5e-4, "--lr", help="Peak learning rate (fine-tuning wants ~1e-5).")
    weight_decay: float = setting(0.2, "--wd", help="AdamW weight decay (not on gains, biases).")
    warmup: int = setting(100, "--warmup", help="Warmup optimizer steps.", min=0)
    accum: int = setting(1, "--accum", help="Batches per optimizer step.", min=1)
    lock_image: bool = setting(False, "--lock-image", help="Freeze the image tower (LiT).")
    lock_text: bool = setting(False, "--lock-text", help="Freeze the text tower.")
    unlock_last: int = setting(
        0, "--unlock-last", help="Keep the last N groups of a locked tower trainable.", min=0
    )
    precision: str = setting("auto", "--precision", help="auto, fp32, bf16, fp16 (CUDA).")
    grad_checkpointing: bool = setting(
        False, "--grad-checkpointing", help="Trade compute for memory."
    )
    seed: int = setting(0, "--seed", help="Seeds the initial weights, order and augmentation.")
    save_every: int = setting(
        0, "--save-every", help="Checkpoint every N steps (0: each epoch).", min=0
    )
    workers: int | None = setting(
        None,
        "--workers",
        help="Data-loading processes (default: the cores the model leaves, at most 4; "
        "0 loads in the training process).",
        min=0,
    )
    augment: str = setting(
        "crop",
        "--augment",
        help="crop (random resized crop), strong (crop + colour jitter), none.",
    )
    image_column: str | None = setting(None, "--image-column", help="Column of image paths.")
    caption_column: str | None = setting(None, "--caption-column", help="Column of captions.")
    max_bad_fraction: float = setting(
        0.01, "--max-bad", help="Fail if more rows than this are unusable."
    )
    resume: bool = setting(False, "--resume", help="Continue the run in --run-dir exactly.")
    distill_text: bool = setting(
        False,
        "--distill-text",
        help="Teach --from's text tower other languages from parallel captions in --data "
        "(a column per language): the result, in --run-dir, is a text tower for the same "
        "image vectors (query --text-model RUN_DIR). No images needed.",
    )
    source_language: str = setting(
        "en", "--source-language", help="With --distill-text: the language the model knows."
    )
    languages: list[str] = setting(
        [],
        "--language",
        help="With --distill-text: a language to learn (repeatable; "
        "default: every one in the data).",
    )
