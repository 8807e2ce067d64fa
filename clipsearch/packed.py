"""The text tower with its weights pre-packed for oneDNN, for fast queries on a CPU.

A text query is about ten tokens, so each linear layer multiplies a handful of rows by a
large weight. For that shape MKL's plain sgemm, which `F.linear` calls, is 1.7x slower
than oneDNN with the weight reordered once into its blocked layout (bench/text_latency.py).
The arithmetic is the same to float rounding; the tests compare against transformers
through this path.

The packed copy sits beside the original weights, which stay as parameters with their
names: the state dict, the weights digest and saving are unchanged, at the cost of a
second copy of the text tower's linear weights (150 MB for ViT-B/32). It does not follow
later changes to those weights, so only a model nothing trains is packed.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import CLIP, Attention, attend

ROWS_HINT = 16  # oneDNN chooses the packed layout for about this many rows


def available() -> bool:
    """oneDNN is in the torch build and exposes the two ops inductor uses for the same job."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), ROWS_HINT)


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(nn.Module):
    """nn.Linear's parameters plus their oneDNN packing; inference only."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.register_buffer("packed", _pack(linear.weight), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.packed, self.bias)


class PackedAttention(nn.Module):
    """Attention with both projections packed, under Attention's parameter names."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.heads = attn.heads
        self.in_proj_weight, self.in_proj_bias = attn.in_proj_weight, attn.in_proj_bias
        self.register_buffer("in_proj_packed", _pack(attn.in_proj_weight), persistent=False)
        self.out_proj = _packed(attn.out_proj)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        qkv = _linear(x, self.in_proj_packed, self.in_proj_bias)
        return self.out_proj(attend(qkv, self.heads, causal))


def _packed(layer: nn.Module) -> nn.Module:
    """Pack fp32 layers; leave int8 ones (dynamic quantisation) as they are."""
    return PackedLinear(layer) if type(layer) is nn.Linear else layer


def pack_text_tower(model: CLIP) -> None:
    """Swap the text transformer's fp32 linear layers for packed ones, in place."""
    for block in model.transformer.resblocks:
        block.attn = PackedAttention(block.attn)
        block.mlp.c_fc = _packed(block.mlp.c_fc)
        block.mlp.c_proj = _packed(block.mlp.c_proj)
