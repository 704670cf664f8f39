"""export.precision: the FP16 flavour (explicit casts, sensitive parts in FP32) and the strong-typing check."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dslnet_edge.comparison import compare
from export.onnx import ExportError, random_images, spec_from_onnx
from export.parity import backend_runner, ort_backend
from export.precision import (
    FP16_TOLERANCES,
    StrongTypingError,
    check_strongly_typed,
    precision_of,
    sensitive_nodes,
    to_fp16,
)


@pytest.fixture(scope="module")
def fp32(onnx_path) -> onnx.ModelProto:
    return onnx.load(onnx_path)


@pytest.fixture(scope="module")
def fp16(fp32) -> onnx.ModelProto:
    return to_fp16(fp32)


def _ops_of(proto, names):
    by_name = {n.name: n.op_type for n in proto.graph.node}
    return collections.Counter(by_name[n] for n in names if n in by_name)


def test_sensitive_nodes_are_found_by_structure(fp32):
    ops = _ops_of(fp32, sensitive_nodes(fp32))
    assert ops["Softmax"] == 6  # every CSS head ...
    assert ops["MatMul"] == 12 and ops["ReduceMean"] == 0  # ... both FCs, after the (float16) pooling
    assert ops["ReduceL2"] == 1 and ops["Clip"] == 1  # the final L2 normalization
    assert ops["Sub"] == 1  # the input normalization
    assert ops["Conv"] == 0 and ops["Mul"] == 0  # no convolution, no weighted sum of the streams


def test_fp16_graph_types(fp16):
    check_strongly_typed(fp16)  # raises on any mixed-type op
    onnx.checker.check_model(fp16, full_check=True)
    assert precision_of(fp16) == "fp16"
    assert spec_from_onnx(fp16).precision == "fp16"
    for value in (*fp16.graph.input, *fp16.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
    conv_weights = {n.input[1] for n in fp16.graph.node if n.op_type == "Conv"}
    inits = {i.name: i.data_type for i in fp16.graph.initializer}
    assert {inits[w] for w in conv_weights} == {TensorProto.FLOAT16}
    casts = [n for n in fp16.graph.node if n.op_type == "Cast"]
    # into fp16 after the input normalization, around each of 6 CSS heads (the pooled vector in,
    # the softmax weights out), out before the L2 norm
    assert len(casts) == 1 + 2 * 6 + 1
    pooled = {n.output[0] for n in fp16.graph.node if n.op_type == "ReduceMean"}
    assert sum(c.input[0] in pooled for c in casts) == 6  # no cast of a full [B, C, H, W] map


def test_fp16_agrees_with_fp32(fp32, fp16, model):
    x = random_images(model.spec, 4)
    result = compare({"fp32": backend_runner(ort_backend(fp32)), "fp16": backend_runner(ort_backend(fp16))}, x,
                     tolerances=FP16_TOLERANCES, label="fp16 vs fp32")
    assert result.passed, result.format()
    assert result.max_abs > 0  # it really computed in float16


def test_everything_fp16_still_typed(fp32):
    """keep_fp32=() converts every node; the graph must still be explicit (casts only at the I/O)."""
    proto = to_fp16(fp32, keep_fp32=())
    check_strongly_typed(proto)
    assert sum(n.op_type == "Cast" for n in proto.graph.node) == 2


def test_mixed_types_are_rejected():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT16, [2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"], name="add")], "g", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(StrongTypingError, match="type inference rejects|mixes float16 and float32"):
        check_strongly_typed(model)


def test_weights_beyond_fp16_range_are_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    big = numpy_helper.from_array(np.array([1e6, 1.0], dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"], name="mul")], "g", [x], [y], [big])
    with pytest.raises(ExportError, match="beyond float16"):
        to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), keep_fp32=())


def test_input_model_is_not_modified(fp32, onnx_path):
    to_fp16(fp32)
    assert fp32.SerializeToString() == onnx.load(onnx_path).SerializeToString()
