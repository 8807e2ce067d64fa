"""The objective: symmetric InfoNCE over the global batch (Radford et al. 2021), features
all-gathered with their gradient under torchrun, or the sigmoid loss for a model trained
with it (SigLIP, Zhai et al. 2023)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric cross-entropy over the image-text similarity matrix of unit features."""
    logits = logit_scale.exp() * image @ text.t()
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def sigmoid_loss(
    image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor
) -> torch.Tensor:
    """SigLIP's (Zhai et al. 2023): every image-text pair is its own binary question, the
    matching pairs positive; summed over pairs, averaged over images."""
    logits = logit_scale.exp() * image @ text.t() + logit_bias
    labels = 2 * torch.eye(len(image), device=image.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / len(image)


class _AllGather(torch.autograd.Function):
    """Concatenate every process's features; gradients go back to their owners, summed
    over the processes whose loss used them."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def gather(x: torch.Tensor) -> torch.Tensor:
    """All processes' features, so the contrastive batch is the global batch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllGather.apply(x)


def step_loss(model: nn.Module, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The loss of one batch over the global batch, the model's own: sigmoid where it has
    a learned logit bias (SigLIP), else contrastive. `model` may be DDP-wrapped; open_clip's
    models return the scale (and bias) after the features."""
    image, text = model(pixels, tokens)[:2]
    clip = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    image, text = gather(image).float(), gather(text).float()
    bias = getattr(clip, "logit_bias", None)
    if bias is not None:
        return sigmoid_loss(image, text, clip.logit_scale, bias)
    return contrastive_loss(image, text, clip.logit_scale)
