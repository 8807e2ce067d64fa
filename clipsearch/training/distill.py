"""Teaching a CLIP's text tower other languages: multilingual knowledge distillation
(Reimers & Gurevych 2020).

The model's own text tower on the source-language caption is the teacher, frozen. A
student tower, initialised from it, learns to put each translation where the teacher puts
the source caption (mean squared error between unit vectors), and to keep the source
captions where they were. The image tower is not touched, so a store's image vectors stay
valid: the student is saved as a *text tower* aligned to the image model (its digest), and
answers text queries in any language it learned against vectors already indexed.

Data: parallel captions, a column per language (CSV/TSV, JSONL objects such as
`{"en": "grinning face", "de": "grinsendes Gesicht"}`), or JSONL whose "labels" object
holds them (the CLDR file in ../shared/data/emoji).
"""

from __future__ import annotations

import copy
import csv
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.config import TrainConfig
from ..images.records import DataError, read_text
from ..models.encoder import Encoder
from ..models.model import CLIP
from ..models.open_clip_models import is_open_clip_config
from ..models.tokenizer import cut_to_longest, default_tokenizer
from ..models.weights import resolve, save_text_tower

Progress = Callable[[int, int, dict], None]


@dataclass
class DistillResult:
    run_dir: str
    steps: int
    epochs_done: int
    pairs: int
    languages: list[str]
    aligned_to: str  # the image model's digest: whose stored vectors the tower answers for
    images_per_s: float = 0.0  # (texts per second; the name TrainResult's readers expect)
    history: list[dict] = field(default_factory=list)


def parallel_rows(path: str, source: str, languages: Sequence[str] | None) -> list[dict]:
    """Rows of {language: caption}, each with the source language."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: no such file")
    text = read_text(file)
    if file.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: each line must be a JSON object")
            rows.append(record.get("labels", record))
    else:
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if "\t" in text else ","))
    rows = [
        {k: str(v).strip() for k, v in r.items() if isinstance(v, str) and str(v).strip()}
        for r in rows
    ]
    rows = [r for r in rows if source in r]
    if not rows:
        raise DataError(f"{path}: no rows with a {source!r} caption (--source-language)")
    if languages:
        keep = {source, *languages}
        rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
    return rows


def pairs_of(rows: list[dict], source: str) -> list[tuple[str, str]]:
    """(caption to learn, source caption): every translation, and the source caption itself
    as often as its translations together, so that the tower keeps what it knew (its source
    language does not drift while it learns the others)."""
    out = []
    for r in rows:
        translations = [text for lang, text in r.items() if lang != source]
        out += [(text, r[source]) for text in translations]
        out += [(r[source], r[source])] * max(1, len(translations))
    return out


def distill_text(cfg: TrainConfig, progress: Progress | None = None) -> DistillResult:
    """Train a text tower aligned to cfg.init's image tower on cfg.data's parallel
    captions; save it in cfg.run_dir (`--text-model RUN_DIR` uses it)."""
    if not cfg.init:
        raise DataError("--distill-text needs the model whose text tower teaches: --from MODEL")
    torch.manual_seed(cfg.seed)
    weights = resolve(cfg.init)
    if is_open_clip_config(weights.config):
        raise DataError(
            f"--distill-text teaches clipsearch's own CLIP models; {weights.name} is built by "
            "open_clip (for many languages, use its XLM-R models: docs/models.md)"
        )
    teacher = Encoder(weights.build(), weights.name)
    rows = parallel_rows(cfg.data, cfg.source_language, cfg.languages or None)
    pairs = pairs_of(rows, cfg.source_language)
    languages = sorted({k for r in rows for k in r} - {cfg.source_language})
    sources = sorted({src for _, src in pairs})
    targets = dict(zip(sources, teacher.encode_text(sources)))
    student = copy.deepcopy(teacher.model).train()
    student.visual = None
    optimizer = torch.optim.AdamW(
        student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98)
    )
    steps_per_epoch = max(1, len(pairs) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    rng = random.Random(cfg.seed)
    history, step, started = [], 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        rng.shuffle(pairs)
        for i in range(steps_per_epoch):
            batch = pairs[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            loss = distill_step(student, optimizer, batch, targets)
            step += 1
            record = {"step": step, "epoch": epoch + 1, "loss": loss}
            if progress:
                record["images_per_s"] = step * cfg.batch_size / (time.perf_counter() - started)
                progress(step, total, {**record, "lr": cfg.lr})
        history.append(record)
    name = f"{teacher.name}+text:{','.join(languages)}"
    learned = [cfg.source_language, *languages]
    save_text_tower(student.eval(), cfg.run_dir, name, teacher.digest, learned)
    return DistillResult(
        run_dir=cfg.run_dir,
        steps=step,
        epochs_done=cfg.epochs,
        pairs=len(pairs),
        languages=languages,
        aligned_to=teacher.digest,
        images_per_s=step * cfg.batch_size / max(1e-9, time.perf_counter() - started),
        history=history,
    )


def distill_step(
    student: CLIP,
    optimizer: torch.optim.Optimizer,
    batch: Sequence[tuple[str, str]],
    targets: dict[str, np.ndarray],
) -> float:
    """One step: the student's unit vectors of the captions, pulled to the teacher's of
    their source captions."""
    tokens = torch.from_numpy(cut_to_longest(default_tokenizer()([t for t, _ in batch])))
    want = torch.from_numpy(np.stack([targets[src] for _, src in batch]))
    got = F.normalize(student.encode_text(tokens), dim=-1)
    loss = ((got - want) ** 2).sum(-1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
