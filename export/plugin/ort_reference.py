"""The ``DSLNet_CSS`` plugin node evaluated inside ONNX Runtime (the CPU reference).

onnxruntime-extensions runs Python functions as ONNX Runtime custom operators
(``@onnx_op``); they live in its domain ``ai.onnx.contrib`` and take float32 tensors. The
plugin ONNX is meant for TensorRT, whose node lives in the ``dslnet_edge`` domain (TensorRT
ignores domains), so ONNX Runtime evaluates a rewritten copy: :func:`for_onnxruntime` moves
every plugin node into ``ai.onnx.contrib`` and, in the FP16 flavour, wraps its stream inputs
and its output in Casts (the fused kernel computes in float32 internally too).

The operator's body is :func:`dslnet_edge.model.css_reference` itself (through torch), so the
plugin graph in ONNX Runtime is checked against the one CSS maths, not against a copy of it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from export.plugin import NUM_STREAMS, PLUGIN_DOMAIN, PLUGIN_NAME

__all__ = ["ORT_CONTRIB_DOMAIN", "register_reference_op", "for_onnxruntime", "reference_backend", "css_numpy"]

ORT_CONTRIB_DOMAIN = "ai.onnx.contrib"
_registered = False


def css_numpy(*tensors: np.ndarray) -> np.ndarray:
    """The plugin's maths on numpy arrays: six streams, then fc1_weight, fc1_bias, fc2_weight, fc2_bias."""
    import torch

    from dslnet_edge.model.dslnet import css_reference

    streams, (w1, b1, w2, b2) = tensors[:NUM_STREAMS], tensors[NUM_STREAMS:]
    with torch.no_grad():
        out = css_reference(
            [torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)) for s in streams],
            *(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) for w in (w1, b1, w2, b2)),
        )
    return out.numpy()


def register_reference_op() -> None:
    """Register ``ai.onnx.contrib::DSLNet_CSS`` with onnxruntime-extensions (once per process)."""
    global _registered
    if _registered:
        return
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    onnx_op(
        op_type=PLUGIN_NAME,
        inputs=[PyCustomOpDef.dt_float] * (NUM_STREAMS + 4),
        outputs=[PyCustomOpDef.dt_float],
    )(css_numpy)
    _registered = True


def for_onnxruntime(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a plugin graph that ONNX Runtime + onnxruntime-extensions can run."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    types = _elem_types(model)
    nodes: list[onnx.NodeProto] = []
    found = 0
    for node in graph.node:
        if not (node.op_type == PLUGIN_NAME and node.domain == PLUGIN_DOMAIN):
            nodes.append(node)
            continue
        found += 1
        node.domain = ORT_CONTRIB_DOMAIN
        del node.attribute[:]  # TensorRT-only attributes (namespace, version, aot)
        for i, name in enumerate(node.input):
            if types.get(name) == TensorProto.FLOAT16:
                cast_out = f"{name}__ort_fp32"
                nodes.append(helper.make_node("Cast", [name], [cast_out], name=f"{cast_out}_cast", to=TensorProto.FLOAT))
                node.input[i] = cast_out
        nodes.append(node)
        (out,) = node.output
        if types.get(out) == TensorProto.FLOAT16:
            inner = f"{out}__ort_fp32"
            node.output[0] = inner
            nodes.append(helper.make_node("Cast", [inner], [out], name=f"{out}_cast", to=TensorProto.FLOAT16))
    if not found:
        raise ValueError("the graph has no DSLNet_CSS plugin nodes; evaluate it with a plain ONNX Runtime session")
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    if not any(o.domain == ORT_CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.add(domain=ORT_CONTRIB_DOMAIN, version=1)
    return model


def reference_backend(proto: onnx.ModelProto, *, threads: int = 0):
    """The ONNX Runtime CPU backend running ``proto``'s plugin nodes with the reference op."""
    from export.parity import ort_backend

    register_reference_op()
    return ort_backend(for_onnxruntime(proto), custom_ops=True, threads=threads)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {i.name: i.data_type for i in model.graph.initializer}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    for node in model.graph.node:  # outputs of plugin nodes: typed like their first input
        if node.op_type == PLUGIN_NAME and node.input and node.input[0] in types:
            types.setdefault(node.output[0], types[node.input[0]])
    return types
