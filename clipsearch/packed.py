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

Under dynamic int8 the linear layers are already quantised, except the attention's
in-projection: it is two raw parameters (nn.MultiheadAttention's names), which
quantize_dynamic does not see. Here it is quantised the same way, which takes a quarter of
the text tower's weights from fp32 to int8 (ViT-B/32 text encoding, interleaved A/B:
medians 16.6 -> 13.0 ms).
"""

from __future__ import annotations

import warnings

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
    """Attention with both projections packed (or int8), under Attention's parameter names."""

    def __init__(self, attn: Attention, int8: bool):
        super().__init__()
        self.heads = attn.heads
        self.in_proj_weight, self.in_proj_bias = attn.in_proj_weight, attn.in_proj_bias
        self.in_proj = _int8_linear(attn.in_proj_weight, attn.in_proj_bias) if int8 else None
        if not int8:
            packed = _pack(attn.in_proj_weight)
            self.register_buffer("in_proj_packed", packed, persistent=False)
        self.out_proj = _packed(attn.out_proj)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        if self.in_proj is None:
            qkv = _linear(x, self.in_proj_packed, self.in_proj_bias)
        else:
            qkv = self.in_proj(x)
        return self.out_proj(attend(qkv, self.heads, causal))


def _int8_linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """What quantize_dynamic makes of an nn.Linear, made from two bare parameters."""
    with warnings.catch_warnings():  # deprecated for torchao, still the stock CPU path
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import default_dynamic_qconfig

    linear = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    linear.weight, linear.bias = weight, bias
    linear.qconfig = default_dynamic_qconfig
    return DynamicLinear.from_float(linear)


def _packed(layer: nn.Module) -> nn.Module:
    """Pack fp32 layers; leave int8 ones (dynamic quantisation) as they are."""
    return PackedLinear(layer) if type(layer) is nn.Linear else layer


def pack_text_tower(model: CLIP, int8: bool = False) -> None:
    """Swap the text transformer's fp32 linear layers for packed ones, in place; int8 says
    the model went through quantize_dynamic."""
    for block in model.transformer.resblocks:
        block.attn = PackedAttention(block.attn, int8)
        block.mlp.c_fc = _packed(block.mlp.c_fc)
        block.mlp.c_proj = _packed(block.mlp.c_proj)
