"""Contrastive training and fine-tuning of CLIP (Radford et al. 2021, section 2.5).

The run in one place: its data in per-process batches, its checkpoints, its loop. The
objective is in losses.py, what trains and the learning rate in trainable.py, the
processes and precision in world.py. AdamW without weight decay on gains, biases,
embeddings and the temperature, warmup then cosine, temperature clamped to 100 (or where a
released model already has it). A run directory holds the latest weights (loadable as
`--model RUN_DIR`), `best/` by validation recall, `state.pt` to resume exactly, and
`metrics.jsonl`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..core.config import TrainConfig
from ..core.errors import ClipsearchError
from ..core.files import replacing
from ..models.encoder import Encoder, text_tokenizer, trims_padding
from ..models.tokenizer import cut_to_longest
from ..models.weights import random_weights, resolve, save_weights
from .data import Pair, PairDataset, Pairs, load_pairs, split
from .evaluate import evaluate
from .losses import step_loss
from .trainable import apply_locks, lr_at, param_groups
from .world import World, autocast, init_world

MAX_LOGIT_SCALE = math.log(100)
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    run_dir: str
    steps: int
    epochs_done: int
    interrupted: bool
    before: dict | None
    after: dict | None
    best: dict | None
    skipped_rows: int
    images_per_s: float
    history: list[dict] = field(default_factory=list)
    main_process: bool = True  # under torchrun, the process that reports


Progress = Callable[[int, int, dict], None]  # (step, total steps, latest metrics)


class TrainingError(ClipsearchError, ValueError):
    """A run that cannot start as asked; the message says what to give instead."""


def default_loader_workers() -> int:
    """Data-loading processes for training: the cores the model leaves, at most four."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def load_data(cfg: TrainConfig) -> tuple[Pairs, list[Pair]]:
    train = load_pairs(cfg.data, cfg.image_column, cfg.caption_column, cfg.max_bad_fraction)
    if cfg.val_data:
        val = load_pairs(
            cfg.val_data, cfg.image_column, cfg.caption_column, cfg.max_bad_fraction
        ).rows
    elif cfg.val_fraction > 0:
        train.rows, val = split(train.rows, cfg.val_fraction)
    else:
        val = []
    if not train.rows:
        raise TrainingError(f"{cfg.data}: no training rows left")
    return train, val


def epoch_batches(n: int, batch: int, world: World, seed: int, epoch: int) -> list[list[int]]:
    """This process's slice of each global batch of a seeded per-epoch permutation.
    A last global batch that cannot be split evenly is dropped (alone, it is kept)."""
    order = torch.randperm(
        n, generator=torch.Generator().manual_seed(seed * 10_007 + epoch)
    ).tolist()
    step = batch * world.size
    out = []
    for start in range(0, n, step):
        chunk = order[start : start + step]
        if len(chunk) < step and world.size > 1:
            break
        per = len(chunk) // world.size
        out.append(chunk[world.rank * per : (world.rank + 1) * per])
    return [b for b in out if len(b) > 1]


def collate(items):
    kept = [(p, t) for p, t, ok in items if ok]
    bad = len(items) - len(kept)
    if not kept:
        return None, None, bad
    pixels = torch.from_numpy(np.stack([p for p, _ in kept]))
    tokens = torch.from_numpy(np.stack([t for _, t in kept]))
    return pixels, tokens, bad


@dataclass
class TrainState:
    """Where a run stands; saved with every checkpoint, so that a resumed run goes on with
    exactly the batches, learning rates and random numbers an uninterrupted one would."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch consumed
    best: dict | None = None  # validation metrics of the best epoch so far
    before: dict | None = None  # validation metrics before training
    bad_images: int = 0  # rows skipped because their image could not be read


@dataclass
class Run:
    """A run's working parts: what trains, on what, and where it is written."""

    cfg: TrainConfig
    world: World
    folder: Path
    model: nn.Module  # clipsearch's CLIP, or a model open_clip built
    wrapped: nn.Module  # the model, or DDP around it under torchrun
    optimizer: torch.optim.Optimizer
    dataset: PairDataset
    val: list[Pair]
    name: str
    state: TrainState
    total_steps: int
    skipped_rows: int
    max_logit_scale: float = MAX_LOGIT_SCALE  # higher where the model came with more (SigLIP)


def save_checkpoint(run: Run) -> None:
    """state.pt (weights, optimizer, state, RNG) atomically, then the loadable model."""
    if not run.world.main:
        return
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "position": asdict(run.state),
        "config": asdict(run.cfg),
        "rng": torch.get_rng_state(),
    }
    with replacing(run.folder / STATE_FILE) as tmp:
        torch.save(state, tmp)
    save_weights(run.model, run.folder, run.name)


def load_checkpoint(folder: Path) -> dict:
    """The run's state, read as tensors and plain values only: a state file that carries
    code is refused (and never read the unsafe way torch's own message suggests)."""
    try:
        return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(
            f"{folder / STATE_FILE}: not a training state clipsearch can read safely "
            f"({type(e).__name__}); start the run again without --resume, or in a new folder"
        ) from None


def log_metrics(folder: Path, record: dict) -> None:
    with open(folder / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def validate(model: nn.Module, val: list[Pair], name: str) -> dict | None:
    if not val:
        return None
    was_training = model.training
    encoder = Encoder(model, name, device=str(next(model.parameters()).device))
    metrics = evaluate(encoder, val)
    model.train(was_training)
    metrics["score"] = float(np.mean([metrics[f"text_to_image_R@{k}"] for k in (1, 5, 10)]))
    return metrics


def build_model(cfg: TrainConfig) -> tuple[nn.Module, str]:
    if cfg.init:
        w = resolve(cfg.init)
        return w.build(), w.name
    if not cfg.arch:
        raise TrainingError(
            "give --arch CONFIG to train from scratch, or --from MODEL to fine-tune"
        )
    w = random_weights(f"random:{cfg.arch}:{cfg.seed}")
    return w.build(), f"trained:{cfg.arch}"


def start(cfg: TrainConfig) -> Run:
    """A new run, or the one in cfg.run_dir resumed with the settings it started with."""
    world = init_world()
    folder = Path(cfg.run_dir)
    saved = None
    if (folder / STATE_FILE).exists():
        if not cfg.resume:
            raise TrainingError(
                f"{folder} already holds a run; pass --resume to continue it, or another --run-dir"
            )
        saved = load_checkpoint(folder)
        cfg = replace(TrainConfig(**saved["config"]), run_dir=cfg.run_dir, resume=True)
    elif cfg.resume:
        raise TrainingError(f"{folder}: nothing to resume (no {STATE_FILE})")
    torch.manual_seed(cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    model, base_name = build_model(cfg)
    name = f"{base_name}+ft:{folder.name}" if cfg.init else base_name
    data, val = load_data(cfg)
    dataset = PairDataset(
        data.rows, model.config.pixels, text_tokenizer(model), cfg.augment, cfg.seed
    )
    state = TrainState()
    if saved is not None:
        model.load_state_dict(saved["model"])
        state = TrainState(**saved["position"])
        torch.set_rng_state(saved["rng"])
    apply_locks(model, cfg.lock_image, cfg.lock_text, cfg.unlock_last)
    if cfg.grad_checkpointing:  # open_clip's Hugging Face towers turn it on whatever is asked
        model.set_grad_checkpointing(True)
    model.to(world.device)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6
    )
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
    wrapped = nn.parallel.DistributedDataParallel(model) if world.size > 1 else model
    per_epoch = len(epoch_batches(len(dataset), cfg.batch_size, world, cfg.seed, 0))
    total_steps = max(1, cfg.epochs * per_epoch // cfg.accum)
    return Run(
        cfg, world, folder, model, wrapped, optimizer, dataset, val, name, state, total_steps,
        data.skipped, max(MAX_LOGIT_SCALE, float(model.logit_scale.detach())),
    )  # fmt: skip


class Meter:
    """Images seen and the time they took, for images/s."""

    def __init__(self, world: World):
        self.world = world
        self.seen = 0
        self.started = time.perf_counter()

    def add(self, images: int) -> None:
        self.seen += images * self.world.size

    @property
    def per_second(self) -> float:
        return self.seen / max(1e-9, time.perf_counter() - self.started)


def optimizer_step(run: Run) -> float:
    """One step at the schedule's learning rate; the temperature clamped."""
    lr = lr_at(run.state.step, run.cfg.lr, run.cfg.warmup, run.total_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        run.model.logit_scale.clamp_(0, run.max_logit_scale)
    run.state.step += 1
    return lr


def train_one_epoch(
    run: Run, meter: Meter, progress: Progress | None, stop_after: int | None
) -> bool:
    """The rest of the current epoch's batches; True if it stopped at `stop_after` steps."""
    cfg, state = run.cfg, run.state
    run.dataset.epoch = state.epoch
    batches = epoch_batches(len(run.dataset), cfg.batch_size, run.world, cfg.seed, state.epoch)
    loader = DataLoader(
        run.dataset,
        batch_sampler=batches[state.batch :],
        num_workers=default_loader_workers() if cfg.workers is None else cfg.workers,
        collate_fn=collate,
    )
    run.model.train()
    trim = cut_to_longest if trims_padding(run.model) else (lambda tokens: tokens)
    loss = torch.tensor(float("nan"))
    for pixels, tokens, bad in loader:
        state.bad_images += bad
        if pixels is not None:
            tokens = trim(tokens)
            with autocast(cfg.precision, run.world.device):
                loss = step_loss(
                    run.wrapped, pixels.to(run.world.device), tokens.to(run.world.device)
                )
            (loss / cfg.accum).backward()
            meter.add(len(pixels))
        state.batch += 1
        if state.batch % cfg.accum and state.batch < len(batches):
            continue  # accumulating
        lr = optimizer_step(run)
        record = {
            "step": state.step,
            "epoch": state.epoch + 1,
            "loss": loss.item(),
            "lr": lr,
            "logit_scale": run.model.logit_scale.detach().exp().item(),
            "images_per_s": meter.per_second,
        }
        if run.world.main and state.step % 10 == 0:
            log_metrics(run.folder, record)
        if progress:
            progress(state.step, run.total_steps, record)
        if cfg.save_every and state.step % cfg.save_every == 0:
            save_checkpoint(run)
        if stop_after and state.step >= stop_after:
            return True
    return False


def end_epoch(run: Run, history: list[dict]) -> None:
    """Validate, keep the best model, checkpoint."""
    state = run.state
    state.epoch, state.batch = state.epoch + 1, 0
    metrics = validate(run.model, run.val, run.name) if run.world.main else None
    if metrics is not None:
        record = {"epoch": state.epoch, "step": state.step, **metrics}
        history.append(record)
        log_metrics(run.folder, {"validation": record})
        if state.best is None or metrics["score"] > state.best["score"]:
            state.best = record
            save_weights(run.model, run.folder / "best", run.name)
    save_checkpoint(run)


def stop_and_save(run: Run) -> None:
    """Checkpoint mid-epoch, from the start of a half-accumulated step (redone on resume)."""
    run.state.batch -= run.state.batch % run.cfg.accum
    save_checkpoint(run)


def train(
    cfg: TrainConfig, progress: Progress | None = None, stop_after: int | None = None
) -> TrainResult:
    """Run (or resume) training; returns the metrics before and after. stop_after ends the
    run after that many steps as Ctrl-C does (saved, to be resumed)."""
    run = start(cfg)
    if run.state.before is None and run.world.main:
        run.state.before = validate(run.model, run.val, run.name)
    history: list[dict] = []
    meter = Meter(run.world)
    stopped = False
    try:
        while run.state.epoch < run.cfg.epochs and not stopped:
            stopped = train_one_epoch(run, meter, progress, stop_after)
            if not stopped:
                end_epoch(run, history)
        if stopped:
            stop_and_save(run)
    except KeyboardInterrupt:
        stopped = True
        stop_and_save(run)
    finally:
        if run.world.size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    after = validate(run.model, run.val, run.name) if run.world.main and not stopped else None
    return TrainResult(
        run_dir=str(run.folder),
        steps=run.state.step,
        epochs_done=run.state.epoch,
        interrupted=stopped,
        before=run.state.before,
        after=after,
        best=run.state.best,
        skipped_rows=run.skipped_rows + run.state.bad_images,
        images_per_s=meter.per_second,
        history=history,
        main_process=run.world.main,
    )
