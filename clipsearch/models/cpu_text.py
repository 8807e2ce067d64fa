"""The text tower made fast for queries on a CPU: packed weights, quantised projections,
and a traced forward.

A text query is about ten tokens, so each linear layer multiplies a handful of rows by a
large weight. For that shape MKL's plain sgemm, which `F.linear` calls, is slower than
oneDNN with the weight reordered once into its blocked layout (bench/text_latency.py
measures both).
The arithmetic is the same to float rounding; the tests compare against transformers
through this path.

The packed copy sits beside the original weights, which stay as parameters with their
names: the state dict, the weights digest and saving are unchanged, at the cost of a
second copy of the text tower's linear weights (150 MB for ViT-B/32). It does not follow
later changes to those weights, so only a model nothing trains is packed.

Under dynamic quantisation (int8, or fp16 weights with fp32 arithmetic) the linear layers
are already converted, except the attention's in-projection: it is two raw parameters
(nn.MultiheadAttention's names), which quantize_dynamic does not see. Here it is converted
the same way, which takes a quarter of the tower's weights out of fp32.

With the weights this small, a good part of a query's time is Python dispatching ~500
small ops; `trace_text_tower` records them once into TorchScript's interpreter, which runs
the same ops without it (bench/text_latency.py: eager against traced).
"""

from __future__ import annotations

import functools
import warnings
from typing import List, Optional, Union  # noqa: UP035 -- TorchScript reads these

import torch
from torch import nn

from .model import CLIP, Attention, attend

ROWS_HINT = 16  # oneDNN chooses the packed layout for about this many rows


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), ROWS_HINT)


def _packed_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045
) -> torch.Tensor:
    no_scalars: List[Optional[Union[int, float, complex]]] = []  # noqa: UP006, UP007, UP045
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", no_scalars, "")


@functools.cache
def _linear():
    """The packed linear as TorchScript: the tracer cannot record the op's empty scalar
    list from Python, but can record a call to a scripted function that makes it."""
    return torch.jit.script(_packed_linear)


class PackedLinear(nn.Module):
    """nn.Linear's parameters plus their oneDNN packing; inference only."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.register_buffer("packed", _pack(linear.weight), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear()(x, self.packed, self.bias)


class PackedAttention(nn.Module):
    """Attention with both projections packed (fp32) or dynamically quantised (dtype
    torch.qint8 or torch.float16), under Attention's parameter names."""

    def __init__(self, attn: Attention, dtype: torch.dtype | None = None):
        super().__init__()
        self.heads = attn.heads
        self.in_proj_weight, self.in_proj_bias = attn.in_proj_weight, attn.in_proj_bias
        self.in_proj = None
        if dtype is None:
            packed = _pack(attn.in_proj_weight)
            self.register_buffer("in_proj_packed", packed, persistent=False)
        else:
            self.in_proj = _dynamic_linear(attn.in_proj_weight, attn.in_proj_bias, dtype)
        self.out_proj = _packed(attn.out_proj)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        if self.in_proj is None:
            qkv = _linear()(x, self.in_proj_packed, self.in_proj_bias)
        else:
            qkv = self.in_proj(x)
        return self.out_proj(attend(*qkv.chunk(3, dim=-1), self.heads, causal))


def _dynamic_linear(weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype) -> nn.Module:
    """What quantize_dynamic makes of an nn.Linear, made from two bare parameters."""
    with warnings.catch_warnings():  # deprecated for torchao, still the stock CPU path
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import default_dynamic_qconfig, float16_dynamic_qconfig

    linear = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    linear.weight, linear.bias = weight, bias
    linear.qconfig = float16_dynamic_qconfig if dtype == torch.float16 else default_dynamic_qconfig
    return DynamicLinear.from_float(linear)


def _packed(layer: nn.Module) -> nn.Module:
    """Pack fp32 layers; leave dynamically quantised ones as they are."""
    return PackedLinear(layer) if type(layer) is nn.Linear else layer


def pack_text_tower(model: CLIP, dynamic: torch.dtype | None = None) -> None:
    """Swap the text transformer's fp32 linear layers for packed ones, in place; dynamic
    names the dtype quantize_dynamic gave the model, if it went through it."""
    for block in model.transformer.resblocks:
        block.attn = PackedAttention(block.attn, dynamic)
        block.mlp.c_fc = _packed(block.mlp.c_fc)
        block.mlp.c_proj = _packed(block.mlp.c_proj)


def trace_text_tower(model: CLIP, tokens: torch.Tensor, expected: torch.Tensor):
    """model.encode_text recorded by TorchScript's tracer, or None where tracing fails or
    its output on `tokens` differs from `expected` (what eager mode just returned).

    The trace holds for every batch size and length (the tests compare it with eager mode
    from 1 to 77 tokens): shapes flow through it as values, and it has no branches."""
    try:
        with warnings.catch_warnings():  # deprecated in favour of torch.compile, which
            warnings.simplefilter("ignore")  # costs tens of seconds per process here
            traced = torch.jit.trace_module(model, {"encode_text": tokens}, check_trace=False)
            ok = torch.allclose(traced.encode_text(tokens), expected, rtol=1e-4, atol=1e-5)
    except Exception:  # an op or a torch build the tracer cannot handle: stay eager
        return None
    return traced.encode_text if ok else None
