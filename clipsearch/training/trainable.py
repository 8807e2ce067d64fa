"""What trains, and how fast: locked towers (LiT) with their last groups unlocked, weight
decay only where it belongs, and the learning rate's warmup and cosine decay."""

from __future__ import annotations

import math

from torch import nn

from ..models.model import CLIP
from ..models.open_clip_models import is_open_clip_config


def tower_groups(model: CLIP, tower: str) -> list[list[nn.Parameter]]:
    """A tower's parameters in order: embeddings, each block, then the final norm and
    projection; `--unlock-last N` keeps the last N groups trainable."""
    if tower == "image":
        v = model.visual
        first = [v.conv1.weight, v.class_embedding, v.positional_embedding, *v.ln_pre.parameters()]
        blocks, last = v.transformer.resblocks, [*v.ln_post.parameters(), v.proj]
    else:
        first = [model.token_embedding.weight, model.positional_embedding]
        blocks = model.transformer.resblocks
        last = [*model.ln_final.parameters(), model.text_projection]
    return [first, *[list(b.parameters()) for b in blocks], last]


def apply_locks(model: nn.Module, lock_image: bool, lock_text: bool, unlock_last: int) -> None:
    if is_open_clip_config(model.config):  # its towers know their own groups
        if lock_image:
            model.lock_image_tower(unlocked_groups=unlock_last, freeze_bn_stats=True)
        if lock_text:
            model.lock_text_tower(unlocked_layers=unlock_last)
        return
    for tower, locked in (("image", lock_image), ("text", lock_text)):
        if locked:
            groups = tower_groups(model, tower)
            for i, group in enumerate(groups):
                for p in group:
                    p.requires_grad_(i >= len(groups) - unlock_last)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on gains, biases, embeddings and the temperature (as open_clip)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or "embedding" in name or name == "logit_scale"
        (no_decay if exempt else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress)))
