"""The plugin flavour of the ONNX: each CSS module becomes ONE ``DSLNet_CSS`` node.

How the CSS subgraphs are found -- by construction, not by pattern matching
---------------------------------------------------------------------------
Traced, one CSS is ~80 ONNX nodes (adds, a ReduceMean, two MatMuls, a Softmax, six
Gather/Unsqueeze/Mul chains) whose exact shape depends on the torch version, the opset and
constant folding; a pattern matcher over that is fragile and silently matches less after any
upstream change. Instead the model is exported a second time with every
``ChannelwiseScaleSelection`` module's forward routed through an autograd ``Function`` whose
``symbolic`` emits a single marker node ``dslnet_edge::CSS`` (inputs: the six streams, then the
stacked FC weights as initializers). The onnx-graphsurgeon pass :func:`to_plugin_graph` then turns
every marker into the node TensorRT's ONNX parser maps to a plugin, and checks that the count
equals the number of CSS modules in the model. The traced forward still runs
:func:`dslnet_edge.model.css_reference`, so nothing else about the graph changes.

The node TensorRT expects (facts from NVIDIA's docs and sources, not copied code)
-------------------------------------------------------------------------------
* op type = the plugin name, attribute ``plugin_namespace`` (and ``plugin_version``, default
  "1"): onnx-tensorrt's ``FallbackPluginImporter`` looks the creator up by
  (op_type, plugin_version, plugin_namespace); newer parsers route any node carrying a
  ``plugin_namespace`` attribute to the plugin registry first. Since TensorRT 10.10 the plugin
  importer also reads the namespace from the node's *domain*, so the domain is the namespace
  (``PLUGIN_DOMAIN == PLUGIN_NAMESPACE``; the test checks every node).
  (github.com/onnx/onnx-tensorrt ``ModelImporter.cpp`` parseNode, ``onnxOpImporters.cpp``
  FallbackPluginImporter; NVIDIA/TensorRT ``samples/python/quickly_deployable_plugins``.)
* only attributes the plugin declares become plugin fields; initializer inputs become constant
  tensors of the layer (``addPluginWithCreator`` -> ``convertToTensor``).
* ``aot`` (int): with TensorRT >= 10.9, picks the ahead-of-time implementation when a plugin
  defines both (quickly_deployable_plugins sample, ``circ_pad`` ONNX mode).

Why the FC weights are node *inputs* and not attributes: ``tensorrt.plugin.aot_impl``'s
documentation says "Plugin attributes are not serialized into the engine when using an AOT
implementation" -- an AOT kernel only sees tensors and integer launch arguments, so weights in
attributes could not reach it. As constant inputs they travel with the node in the same file
and TensorRT stores them in the engine as constants.
(https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/trt_plugin_aot_impl/index.html)
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from export.contract import DEFAULT_OPSET, ExportError
from export.onnx import check_onnx, onnx_model_from_torch, save_onnx
from export.plugin import NUM_STREAMS, PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

if TYPE_CHECKING:
    from dslnet_edge.model import DSLNet

__all__ = [
    "MARKER_DOMAIN",
    "MARKER_OP",
    "css_marked",
    "plugin_model_from_torch",
    "export_plugin_onnx",
    "to_plugin_graph",
    "plugin_nodes",
    "set_aot",
]

MARKER_DOMAIN = "dslnet_edge"
MARKER_OP = "CSS"
_NUM_WEIGHTS = 4  # fc1_weight [S,R,C], fc1_bias [S,R], fc2_weight [S,C,R], fc2_bias [S,C]


# ---------------------------------------------------------------------------------------------
# export with the CSS modules marked
# ---------------------------------------------------------------------------------------------
_MARKER_FUNCTION = None


def _marker_function():
    """The autograd Function (built on first use, so importing this module needs no torch)."""
    global _MARKER_FUNCTION
    if _MARKER_FUNCTION is None:
        import torch

        from dslnet_edge.model.dslnet import css_reference

        class CSSMarker(torch.autograd.Function):
            """Runs the CSS maths; exports as one ``dslnet_edge::CSS`` node."""

            @staticmethod
            def forward(ctx, *tensors):
                streams, (w1, b1, w2, b2) = tensors[:-_NUM_WEIGHTS], tensors[-_NUM_WEIGHTS:]
                return css_reference(streams, w1, b1, w2, b2)

            @staticmethod
            def symbolic(g, *tensors):
                out = g.op(f"{MARKER_DOMAIN}::{MARKER_OP}", *tensors)
                out.setType(tensors[0].type())
                return out

        _MARKER_FUNCTION = CSSMarker
    return _MARKER_FUNCTION


@contextlib.contextmanager
def css_marked(model: DSLNet) -> Iterator[int]:
    """Within the block, every CSS module of ``model`` exports as one marker node; yields their count."""
    from dslnet_edge.model import ChannelwiseScaleSelection

    marker = _marker_function()
    modules = [m for m in model.modules() if isinstance(m, ChannelwiseScaleSelection)]
    for module in modules:
        if module.num_streams != NUM_STREAMS:
            raise ExportError(
                f"the CSS plugin takes {NUM_STREAMS} streams; this model's CSS has {module.num_streams} "
                "(use the plain ONNX: --css-plugin off)"
            )

        def forward(streams, _m=module):
            return marker.apply(*streams, _m.fc1_weight, _m.fc1_bias, _m.fc2_weight, _m.fc2_bias)

        module.forward = forward  # instance attribute: shadows the class's forward
    try:
        yield len(modules)
    finally:
        for module in modules:
            del module.forward


def plugin_model_from_torch(
    model: DSLNet, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True, aot: bool = True
) -> onnx.ModelProto:
    """The plugin flavour of ``model``'s ONNX (checked; InputSpec in the metadata)."""
    from dslnet_edge.model import ChannelwiseScaleSelection

    expected = sum(isinstance(m, ChannelwiseScaleSelection) for m in model.modules())
    if expected == 0:
        raise ExportError(
            f"this model has no CSS modules (attention={model.config.attention!r}); "
            "there is nothing for the CSS plugin to fuse (use --css-plugin off)"
        )
    marked = onnx_model_from_torch(
        model, opset=opset, dynamic_batch=dynamic_batch, tracing=css_marked(model), custom_opsets={MARKER_DOMAIN: 1}
    )
    return to_plugin_graph(marked, aot=aot, expected=expected)


def export_plugin_onnx(
    model: DSLNet, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True, aot: bool = True
) -> Path:
    """Write the plugin flavour to ``path`` (atomically)."""
    return save_onnx(plugin_model_from_torch(model, opset=opset, dynamic_batch=dynamic_batch, aot=aot), path)


# ---------------------------------------------------------------------------------------------
# the graph pass
# ---------------------------------------------------------------------------------------------
def to_plugin_graph(proto: onnx.ModelProto, *, aot: bool = True, expected: int | None = None) -> onnx.ModelProto:
    """Replace every ``dslnet_edge::CSS`` marker by the TensorRT plugin node ``DSLNet_CSS``.

    Checks each marker (six stream inputs, then the four FC weights as constants with
    consistent shapes), gives the node the plugin attributes and its output a type and shape,
    and removes what became unused. ``expected``: the number of markers there must be.
    """
    import onnx_graphsurgeon as gs

    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = gs.import_onnx(inferred)
    markers = [n for n in graph.nodes if n.op == MARKER_OP and n.domain == MARKER_DOMAIN]
    if expected is not None and len(markers) != expected:
        raise ExportError(f"expected {expected} CSS marker nodes in the exported graph, found {len(markers)}")
    for index, node in enumerate(markers):
        for i, tensor in enumerate(list(node.inputs)):
            resolved = _through_identities(tensor)
            if resolved is not tensor:
                node.inputs[i] = resolved
        _check_marker(node, index)
        stream = node.inputs[0]
        node.op = PLUGIN_NAME
        node.domain = PLUGIN_DOMAIN
        node.name = node.name or f"css_{index}"
        node.attrs = {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION, "aot": int(aot)}
        (out,) = node.outputs
        out.dtype = stream.dtype
        out.shape = stream.shape
    graph.cleanup().toposort()
    model = gs.export_onnx(graph, do_type_check=True)
    _set_opset(model, PLUGIN_DOMAIN, 1)
    model.metadata_props.extend(proto.metadata_props)
    model.producer_name, model.doc_string = proto.producer_name, proto.doc_string
    check_onnx(model)
    return model


def _through_identities(tensor):
    """The constant behind a chain of ``Identity`` nodes (the exporter shares equal weights that way)."""
    import onnx_graphsurgeon as gs

    current = tensor
    while not isinstance(current, gs.Constant) and len(current.inputs) == 1 and current.inputs[0].op == "Identity":
        current = current.inputs[0].inputs[0]
    return current if isinstance(current, gs.Constant) else tensor


def _check_marker(node, index: int) -> None:
    import onnx_graphsurgeon as gs

    where = f"CSS node {index} ({node.name})"
    if len(node.inputs) != NUM_STREAMS + _NUM_WEIGHTS or len(node.outputs) != 1:
        raise ExportError(
            f"{where} has {len(node.inputs)} inputs/{len(node.outputs)} outputs; "
            f"expected {NUM_STREAMS} streams + {_NUM_WEIGHTS} weights -> 1 output"
        )
    streams, weights = node.inputs[:NUM_STREAMS], node.inputs[NUM_STREAMS:]
    if any(isinstance(s, gs.Constant) for s in streams):
        raise ExportError(f"{where}: a stream input is a constant; expected activations")
    if not all(isinstance(w, gs.Constant) for w in weights):
        names = [w.name for w in weights if not isinstance(w, gs.Constant)]
        raise ExportError(f"{where}: FC weights {names} are not constants (initializers)")
    w1, b1, w2, b2 = (np.asarray(w.values) for w in weights)
    s, r, c = w1.shape if w1.ndim == 3 else (None, None, None)
    shapes_ok = (
        w1.ndim == 3 and s == NUM_STREAMS and b1.shape == (s, r) and w2.shape == (s, c, r) and b2.shape == (s, c)
    )
    if not shapes_ok:
        raise ExportError(
            f"{where}: FC weight shapes {w1.shape}, {b1.shape}, {w2.shape}, {b2.shape} are not "
            f"[S,R,C], [S,R], [S,C,R], [S,C] with S={NUM_STREAMS}"
        )
    channels = {st.shape[1] for st in streams if st.shape is not None and len(st.shape) == 4}
    if channels and channels != {c}:
        raise ExportError(f"{where}: stream channels {sorted(channels)} do not match the FC width {c}")


def _set_opset(model: onnx.ModelProto, domain: str, version: int) -> None:
    for entry in model.opset_import:
        if entry.domain == domain:
            entry.version = version
            return
    model.opset_import.add(domain=domain, version=version)


def plugin_nodes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The ``DSLNet_CSS`` plugin nodes of a graph."""
    return [n for n in proto.graph.node if n.op_type == PLUGIN_NAME and n.domain == PLUGIN_DOMAIN]


def set_aot(proto: onnx.ModelProto, aot: bool) -> onnx.ModelProto:
    """A copy whose plugin nodes ask for the ahead-of-time (``aot=1``) or JIT (``aot=0``) implementation."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for node in plugin_nodes(model):
        for attr in node.attribute:
            if attr.name == "aot":
                attr.i = int(aot)
    return model


def op_counts(proto: onnx.ModelProto) -> collections.Counter:
    """``Counter`` of op types (for reports and tests)."""
    return collections.Counter(n.op_type for n in proto.graph.node)
