"""export.plugin.graph + ort_reference: the plugin flavour (one DSLNet_CSS node per CSS) equals the plain graph."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dslnet_edge.comparison import compare
from export.onnx import ExportError, random_images, spec_from_onnx
from export.parity import FP32_TOLERANCES, backend_runner, ort_backend
from export.plugin import NUM_STREAMS, PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_NAMESPACE
from export.plugin.graph import css_marked, plugin_model_from_torch, plugin_nodes, set_aot
from export.plugin.ort_reference import css_numpy, for_onnxruntime, reference_backend
from export.precision import FP16_TOLERANCES, check_strongly_typed, to_fp16


def _ops(proto) -> collections.Counter:
    return collections.Counter(n.op_type for n in proto.graph.node)


def test_six_plugin_nodes_and_no_css_ops_left(plugin_proto, onnx_path):
    plain, plugin = _ops(onnx.load(onnx_path)), _ops(plugin_proto)
    assert plugin[PLUGIN_NAME] == 6
    assert plain["Softmax"] == 6 and plugin["Softmax"] == 0
    assert plain["ReduceMean"] == 7 and plugin["ReduceMean"] == 1  # only the final global pool remains
    assert plain["MatMul"] == 12 and plugin["MatMul"] == 0
    assert plugin["Conv"] == plain["Conv"]  # nothing else changed


def test_node_form_tensorrt_expects(plugin_proto):
    inits = {i.name: numpy_helper.to_array(i) for i in plugin_proto.graph.initializer}
    for node in plugin_nodes(plugin_proto):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"plugin_namespace": PLUGIN_NAMESPACE.encode(), "plugin_version": b"1", "aot": 1}
        assert node.domain == PLUGIN_DOMAIN
        # TensorRT >= 10.10 takes the plugin namespace from the node's domain, older ones from the attribute
        assert node.domain == attrs["plugin_namespace"].decode() == PLUGIN_NAMESPACE
        streams, weights = node.input[:NUM_STREAMS], node.input[NUM_STREAMS:]
        assert len(streams) == 6 and not set(streams) & set(inits)  # activations
        w1, b1, w2, b2 = (inits[w] for w in weights)  # the FC weights travel with the node
        s, r, c = w1.shape
        assert (s, b1.shape, w2.shape, b2.shape) == (6, (6, r), (6, c, r), (6, c))
    assert any(o.domain == PLUGIN_DOMAIN for o in plugin_proto.opset_import)
    onnx.checker.check_model(plugin_proto)
    assert spec_from_onnx(plugin_proto).height == 32


def test_plugin_weights_are_the_modules_weights(plugin_proto, model):
    from dslnet_edge.model import ChannelwiseScaleSelection

    inits = {i.name: numpy_helper.to_array(i) for i in plugin_proto.graph.initializer}
    modules = [m for m in model.modules() if isinstance(m, ChannelwiseScaleSelection)]
    for node, module in zip(plugin_nodes(plugin_proto), modules):
        np.testing.assert_array_equal(inits[node.input[NUM_STREAMS]], module.fc1_weight.detach().numpy())
        np.testing.assert_array_equal(inits[node.input[NUM_STREAMS + 3]], module.fc2_bias.detach().numpy())


def test_set_aot(plugin_proto):
    jit = set_aot(plugin_proto, False)
    assert {helper.get_attribute_value(a) for n in plugin_nodes(jit) for a in n.attribute if a.name == "aot"} == {0}
    assert {helper.get_attribute_value(a) for n in plugin_nodes(plugin_proto) for a in n.attribute if a.name == "aot"} == {1}


def test_plugin_graph_in_onnxruntime_equals_the_plain_graph(plugin_proto, onnx_path, model):
    result = compare(
        {"plain": backend_runner(ort_backend(onnx_path)), "plugin": backend_runner(reference_backend(plugin_proto))},
        random_images(model.spec, 3),
        tolerances=FP32_TOLERANCES,
    )
    assert result.passed, result.format()


def test_fp16_plugin_graph(plugin_proto, onnx_path, model):
    half = to_fp16(plugin_proto)
    check_strongly_typed(half)
    types = {i.name: i.data_type for i in half.graph.initializer}
    for node in plugin_nodes(half):  # streams in float16 (casts in front), FC weights float32
        assert {types[w] for w in node.input[NUM_STREAMS:]} == {TensorProto.FLOAT}
    result = compare(
        {"fp32": backend_runner(ort_backend(onnx_path)), "plugin fp16": backend_runner(reference_backend(half))},
        random_images(model.spec, 3),
        tolerances=FP16_TOLERANCES,
    )
    assert result.passed, result.format()


def test_reference_op_is_css_reference(rng):
    """One plugin node alone in ONNX Runtime equals dslnet_edge.model.css_reference."""
    import torch

    from dslnet_edge.model import css_reference

    b, c, h, w, r = 2, 5, 3, 4, 2
    streams = [rng.normal(size=(b, c, h, w)).astype(np.float32) for _ in range(6)]
    weights = [rng.normal(size=s).astype(np.float32) for s in ((6, r, c), (6, r), (6, c, r), (6, c))]
    names = [f"s{i}" for i in range(6)]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [b, c, h, w]) for n in names]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(weights, ("w1", "b1", "w2", "b2"))]
    node = helper.make_node(PLUGIN_NAME, [*names, "w1", "b1", "w2", "b2"], ["y"], name="css", domain=PLUGIN_DOMAIN,
                            plugin_namespace=PLUGIN_NAMESPACE)
    graph = helper.make_graph([node], "css", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(PLUGIN_DOMAIN, 1)])
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    from export.plugin.ort_reference import register_reference_op

    register_reference_op()  # a single-node graph, not an embedding model: a plain session runs it
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    session = ort.InferenceSession(for_onnxruntime(proto).SerializeToString(), options, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, dict(zip(names, streams)))
    expected = css_reference([torch.from_numpy(s) for s in streams], *(torch.from_numpy(x) for x in weights)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(css_numpy(*streams, *weights), expected, rtol=0, atol=0)


def test_models_without_css_are_refused(make_model):
    with pytest.raises(ExportError, match="no CSS modules"):
        plugin_model_from_torch(make_model(attention="se"))


def test_marking_is_undone(make_model):
    from dslnet_edge.model import ChannelwiseScaleSelection

    model = make_model()
    with css_marked(model) as count:
        assert count == 6
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, ChannelwiseScaleSelection))


def test_for_onnxruntime_needs_plugin_nodes(onnx_path):
    with pytest.raises(ValueError, match="no DSLNet_CSS plugin nodes"):
        for_onnxruntime(onnx.load(onnx_path))
