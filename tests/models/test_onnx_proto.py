"""The ONNX messages written by hand are byte for byte what the `onnx` package writes."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.models import onnx_proto as proto

onnx = pytest.importorskip("onnx", reason="onnx (in the dev extra) is not installed")
helper, numpy_helper = onnx.helper, onnx.numpy_helper


@pytest.mark.parametrize(
    "attributes",
    [{}, {"axis": -1}, {"keepdims": 1, "axis": 3}, {"epsilon": 1e-5}, {"perm": [2, 0, 3, 1, 4]}],
)
def test_a_node_and_its_attributes(attributes):
    ours = proto.node("Op", ["a", "b"], ["c"], **attributes)
    assert ours == helper.make_node("Op", ["a", "b"], ["c"], **attributes).SerializeToString()


@pytest.mark.parametrize(
    "array",
    [np.asarray(2, np.int64), np.asarray([0, -1, 7], np.int64), np.float32(0.125),
     np.arange(12, dtype=np.float32).reshape(3, 4)],
)  # fmt: skip
def test_a_tensor_held_in_the_graph(array):
    array = np.asarray(array)
    ours = proto.tensor("t", array)
    assert ours == numpy_helper.from_array(array, "t").SerializeToString()
    np.testing.assert_array_equal(numpy_helper.to_array(onnx.load_tensor_from_string(ours)), array)


def test_a_tensor_kept_beside_the_graph():
    where = {"location": "w.data", "offset": "4096", "length": "48"}
    theirs = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[3, 4])
    for key, value in where.items():
        theirs.external_data.add(key=key, value=value)
    theirs.data_location = onnx.TensorProto.EXTERNAL
    assert proto.external_tensor("w", (3, 4), where) == theirs.SerializeToString()


def test_value_infos_and_a_model():
    inputs = [proto.value_info("tokens", proto.INT64, ["n", "length"])]
    outputs = [proto.value_info("vectors", proto.FLOAT, ["n", None])]
    theirs_in = helper.make_tensor_value_info("tokens", onnx.TensorProto.INT64, ["n", "length"])
    theirs_out = helper.make_tensor_value_info("vectors", onnx.TensorProto.FLOAT, ["n", None])
    assert (inputs[0], outputs[0]) == (
        theirs_in.SerializeToString(),
        theirs_out.SerializeToString(),
    )
    nodes = [proto.node("Identity", ["tokens"], ["vectors"])]
    ours = proto.model(
        nodes, [proto.tensor("c", np.zeros(2, np.float32))], inputs, outputs, "g", 18, 8
    )
    graph = helper.make_graph(
        [helper.make_node("Identity", ["tokens"], ["vectors"])], "g", [theirs_in], [theirs_out],
        [numpy_helper.from_array(np.zeros(2, np.float32), "c")],
    )  # fmt: skip
    theirs = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    theirs.ir_version, theirs.producer_name = 8, "clipsearch"
    assert ours == theirs.SerializeToString()
