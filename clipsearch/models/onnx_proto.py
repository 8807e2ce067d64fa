"""The few ONNX messages a text tower's graph needs, written in protobuf's wire format.

The `onnx` package would write them too, but importing it costs more than the whole
export (its C++ extension: 1.4 s here), and it would be one more dependency. The field
numbers are onnx.proto's (tests/models/test_onnx_text.py reads the bytes back with
`onnx` and runs its checker). Every message is bytes; a message inside another is a
length-delimited field.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType
_ATTRIBUTE_TYPES = {float: 1, int: 2, list: 7}  # AttributeProto.AttributeType: FLOAT, INT, INTS
_DATA_TYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 is ten bytes of two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def integer(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def nested(number: int, payload: bytes) -> bytes:
    """A string, bytes or a message, as field `number`."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return nested(number, value.encode())


def node(op_type: str, inputs: Iterable[str], outputs: Iterable[str], **attributes) -> bytes:
    """NodeProto; attributes are floats, ints or lists of ints."""
    out = b"".join(text(1, name) for name in inputs) + b"".join(text(2, n) for n in outputs)
    out += text(4, op_type)
    for name, value in sorted(attributes.items()):  # as onnx.helper orders them
        out += nested(5, _attribute(name, value))
    return out


def _attribute(name: str, value: float | int | list[int]) -> bytes:
    kind = _ATTRIBUTE_TYPES[type(value)]
    if kind == 1:
        body = _varint(2 << 3 | 5) + struct.pack("<f", value)
    elif kind == 2:
        body = integer(3, value)
    else:
        body = b"".join(integer(8, v) for v in value)
    return text(1, name) + body + integer(20, kind)


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto holding its values (little-endian raw data)."""
    array = np.asarray(array)  # not ascontiguousarray: it makes a scalar one-dimensional
    head = b"".join(integer(1, d) for d in array.shape) + integer(2, _DATA_TYPES[array.dtype])
    values = array.astype(array.dtype.newbyteorder("<")).tobytes()  # tobytes: C order
    return head + text(8, name) + nested(9, values)


def external_tensor(name: str, shape: tuple[int, ...], where: Mapping[str, str]) -> bytes:
    """TensorProto of float32 values kept in a file beside the graph (location, offset,
    length)."""
    out = b"".join(integer(1, d) for d in shape) + integer(2, FLOAT) + text(8, name)
    for key, value in where.items():
        out += nested(13, text(1, key) + text(2, value))
    return out + integer(14, 1)  # data_location: EXTERNAL


def value_info(name: str, data_type: int, dims: Iterable[str | None]) -> bytes:
    """ValueInfoProto of a tensor whose dimensions are named (symbolic) or unknown."""
    shape = b"".join(nested(1, b"" if d is None else text(2, d)) for d in dims)
    return text(1, name) + nested(2, nested(1, integer(1, data_type) + nested(2, shape)))


def model(graph_nodes, initializers, inputs, outputs, name: str, opset: int, ir: int) -> bytes:
    """ModelProto of one graph in the default domain."""
    graph = b"".join(nested(1, n) for n in graph_nodes) + text(2, name)
    graph += b"".join(nested(5, t) for t in initializers)
    graph += b"".join(nested(11, v) for v in inputs) + b"".join(nested(12, v) for v in outputs)
    opset_import = text(1, "") + integer(2, opset)  # the default domain, named as onnx does
    return integer(1, ir) + text(2, "clipsearch") + nested(7, graph) + nested(8, opset_import)
