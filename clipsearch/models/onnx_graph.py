"""CLIP's text tower written as an ONNX graph, node by node, from its weights.

What model.py computes, in ONNX operators (opset 18): token and position embeddings, the
blocks (LayerNorm, causal multi-head attention, LayerNorm, MLP with QuickGELU or GELU),
the final LayerNorm, pooling at end-of-text (the largest id) and the projection. Written
here rather than traced by torch.onnx.export: it takes a second instead of several, and
does not depend on torch's exporters, which change from release to release. onnx_text.py
checks what it computes against torch before keeping it.

The weights go to one file beside the graph (ONNX's external data), each tensor at an
offset aligned for mapping, linear layers transposed once so that each is a MatMul.
The messages are written by onnx_proto.py: no `onnx` package is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

from . import onnx_proto as proto

OPSET = 18  # LayerNormalization (17), Shape with start and end (15)
IR_VERSION = 8  # what opset 18 needs; ONNX Runtime 1.25 reads up to 10
ALIGN = 4096  # each tensor starts on a page: ONNX Runtime maps rather than copies


class _Builder:
    """Nodes and initializers of one graph; large tensors are written to `data`."""

    def __init__(self, data: BinaryIO, data_name: str):
        self.data, self.data_name = data, data_name
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self.count = 0

    def weight(self, name: str, array: np.ndarray) -> str:
        """A float32 tensor stored in the data file."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        self.data.write(b"\0" * (-self.data.tell() % ALIGN))
        where = {"location": self.data_name, "offset": str(self.data.tell())}
        self.data.write(memoryview(array).cast("B"))  # no copy of a contiguous one
        where["length"] = str(array.nbytes)
        self.initializers.append(proto.external_tensor(name, array.shape, where))
        return name

    def const(self, values, dtype=np.int64) -> str:
        """A small tensor kept in the graph itself (shapes, axes, scalars)."""
        name = f"const{len(self.initializers)}"
        self.initializers.append(proto.tensor(name, np.asarray(values, dtype=dtype)))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes) -> str:
        self.count += 1
        out = output or f"{op_type.lower()}{self.count}"
        self.nodes.append(proto.node(op_type, inputs, [out], **attributes))
        return out


def text_tower(state: Mapping[str, np.ndarray], config, data: BinaryIO, data_name: str) -> bytes:
    """The serialised ModelProto of the text tower of a CLIP with this state dict (numpy
    arrays) and config: input "tokens" (n, length <= context) int64, output "vectors"
    (n, embed_dim), not normalised. Its weights are written to `data`, named `data_name`."""
    b = _Builder(data, data_name)
    t = config.text
    length = b.op("Shape", "tokens", start=1, end=2)  # (1,)
    x = b.op("Gather", b.weight("token_embedding", state["token_embedding.weight"]), "tokens")
    positions = b.weight("positional_embedding", state["positional_embedding"])
    x = b.op("Add", x, b.op("Slice", positions, b.const([0]), length, b.const([0])))
    causal = np.triu(np.full((t.context_length,) * 2, -np.inf, dtype=np.float32), 1)
    ends = b.op("Concat", length, length, axis=0)
    mask = b.op("Slice", b.weight("causal_mask", causal), b.const([0, 0]), ends, b.const([0, 1]))
    for i in range(t.layers):
        x = _block(b, state, f"transformer.resblocks.{i}.", x, mask, t.width, t.heads, config)
    x = _layer_norm(b, state, "ln_final", x)
    eot = b.op("ArgMax", b.op("Cast", "tokens", to=proto.FLOAT), axis=-1, keepdims=1)
    pooled = b.op("GatherND", x, eot, batch_dims=1)  # (n, width): each text at its end
    projection = b.weight("text_projection", state["text_projection"])
    b.op("MatMul", pooled, projection, output="vectors")
    inputs = [proto.value_info("tokens", proto.INT64, ["n", "length"])]
    outputs = [proto.value_info("vectors", proto.FLOAT, ["n", None])]
    return proto.model(
        b.nodes, b.initializers, inputs, outputs, "clip_text_tower", OPSET, IR_VERSION
    )


def _block(b: _Builder, state, prefix: str, x: str, mask: str, width: int, heads: int, config):
    """x + attention(ln_1(x)), then + mlp(ln_2(that)): model.ResidualAttentionBlock."""
    qkv = _linear(b, state, prefix + "attn.in_proj_", _layer_norm(b, state, prefix + "ln_1", x))
    split = b.op("Reshape", qkv, b.const([0, 0, 3, heads, width // heads]))
    split = b.op("Transpose", split, perm=[2, 0, 3, 1, 4])  # (3, n, heads, length, head)
    q, k, v = (b.op("Gather", split, b.const(j), axis=0) for j in range(3))
    scores = b.op("MatMul", q, b.op("Transpose", k, perm=[0, 1, 3, 2]))
    scores = b.op("Mul", scores, b.const(1 / math.sqrt(width // heads), np.float32))
    attended = b.op("MatMul", b.op("Softmax", b.op("Add", scores, mask), axis=-1), v)
    attended = b.op("Transpose", attended, perm=[0, 2, 1, 3])  # (n, length, heads, head)
    attended = b.op("Reshape", attended, b.const([0, 0, width]))
    x = b.op("Add", x, _linear(b, state, prefix + "attn.out_proj.", attended))
    y = _linear(b, state, prefix + "mlp.c_fc.", _layer_norm(b, state, prefix + "ln_2", x))
    y = _quick_gelu(b, y) if config.quick_gelu else _gelu(b, y)
    return b.op("Add", x, _linear(b, state, prefix + "mlp.c_proj.", y))


def _layer_norm(b: _Builder, state, prefix: str, x: str) -> str:
    scale = b.weight(prefix + ".weight", state[prefix + ".weight"])
    bias = b.weight(prefix + ".bias", state[prefix + ".bias"])
    return b.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=1e-5)


def _linear(b: _Builder, state, prefix: str, x: str) -> str:
    """x @ W.T + bias, with W.T stored: `prefix` + weight/bias, as nn.Linear's names
    (the attention's in-projection is named in_proj_weight, in_proj_bias)."""
    weight = state[prefix + "weight"].T
    return b.op(
        "Add",
        b.op("MatMul", x, b.weight(prefix + "weight_t", weight)),
        b.weight(prefix + "bias", state[prefix + "bias"]),
    )


def _quick_gelu(b: _Builder, x: str) -> str:
    return b.op("Mul", x, b.op("Sigmoid", b.op("Mul", x, b.const(1.702, np.float32))))


def _gelu(b: _Builder, x: str) -> str:
    """The exact (erf) GELU of nn.GELU()."""
    erf = b.op("Erf", b.op("Mul", x, b.const(1 / math.sqrt(2), np.float32)))
    half = b.op("Mul", x, b.const(0.5, np.float32))
    return b.op("Mul", half, b.op("Add", erf, b.const(1.0, np.float32)))
