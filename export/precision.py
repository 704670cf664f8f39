"""Precision passes on the ONNX graph: the FP16 flavour, and the strong-typing check TensorRT needs.

Precision is decided here, in the ONNX, and verified with ONNX Runtime; TensorRT then compiles
the graph as typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; TensorRT 11 has no other
way: BuilderFlag.FP16 is gone). A strongly typed network takes every tensor's type from the
graph, so the graph must be explicit: float16 weights and activations, float32 where it must be,
a ``Cast`` node at every boundary, and never an operator whose float inputs disagree
(``Add(float16, float32)`` is a build error there, not an implicit promotion).

What stays float32 (the *sensitive* nodes, found by walking the graph, not by names):

* **the input normalization** (``(x - mean) / std`` on 0-255 pixels, before the first Conv):
  one element-wise pass on the input; in float32 the mean 123.675 is not rounded to 123.6875.
* **each CSS head** (after the pooling: FC -> ReLU -> FC -> softmax across streams): tensors of
  ``[B, 6, C]``, free to keep in float32, and the softmax's exponent is where float16 overflows
  first. The stream sum, the pooling and the weighted sum (the big ``[B, C, H, W]`` tensors) run
  in float16; the cast sits on the pooled ``[B, C]`` vector.
* **the final L2 normalization** (``ReduceL2 -> Clip(eps=1e-12) -> Div``): 1e-12 underflows to
  0 in float16 (an all-zero embedding would give NaN) and a sum of 512 squares can exceed
  float16's 65504.

Measured (``benchmarks/bench_export_fp16.py``: full-size model, random weights with BatchNorm
statistics from 96 CUHK03 crops, 64 real crops, ONNX Runtime CPU), min / mean cosine to FP32:
everything float16 0.999753 / 0.999903; + L2 norm in float32: same; + input normalization in
float32: 0.999815 / 0.999933 (the one that shows); + CSS heads in float32: no measurable change in
ONNX Runtime (whose CPU softmax computes internally in float32 anyway); kept for TensorRT, where
it costs nothing. The L2 normalization in float32 guards the eps underflow and the sum-of-squares
overflow above, which random crops do not reach.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dslnet_edge.comparison import Tolerances
from dslnet_edge.spec import InputSpec
from export.onnx import ExportError, set_input_spec, spec_from_onnx
from export.plugin import NUM_STREAMS, PLUGIN_NAME

__all__ = [
    "to_fp16",
    "sensitive_nodes",
    "check_strongly_typed",
    "StrongTypingError",
    "FP16_TOLERANCES",
    "INT8_SANITY_TOLERANCES",
]

_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)
# Ops whose float inputs need not share one type (Shape reads only the shape; Cast converts).
_TYPE_AGNOSTIC = {"Shape", "Size", "Cast", "CastLike"}
# Walk sets: which op types may belong to each sensitive region.
_NORM_OPS = {"Div", "Expand", "Clip", "ReduceL2", "Shape", "Sqrt", "ReduceSumSquare", "Max", "Mul", "Constant", "Identity", "Reciprocal"}
_CSS_HEAD_OPS = {"Squeeze", "Unsqueeze", "Add", "MatMul", "Relu", "Gemm", "Reshape", "Transpose", "Constant", "Identity", "Flatten"}
_INPUT_NORM_OPS = {"Sub", "Div", "Mul", "Add"}
# Ops that must see ONE float type across their float inputs in a strongly typed network.
# (Resize's float ``scales`` input is float32 by definition.)
_HOMOGENEOUS_EXEMPT = _TYPE_AGNOSTIC | {"Resize"}


def _plugin_input_types(node: onnx.NodeProto, activation: int) -> list[int]:
    """The CSS plugin takes its streams in the activation type and its FC weights in float32."""
    return [activation] * NUM_STREAMS + [TensorProto.FLOAT] * (len(node.input) - NUM_STREAMS)


#: Ops whose inputs have fixed, mixed types: op type -> (node, activation type) -> type per input.
_MIXED_INPUT_OPS = {PLUGIN_NAME: _plugin_input_types}


class StrongTypingError(ExportError):
    """A graph TensorRT's strongly typed mode would reject (mixed float types in one op)."""


# ---------------------------------------------------------------------------------------------
# finding the sensitive nodes
# ---------------------------------------------------------------------------------------------
def sensitive_nodes(proto: onnx.ModelProto) -> set[str]:
    """Names of the nodes the FP16 pass keeps in float32 (see the module docstring)."""
    names = [n.name for n in proto.graph.node]
    if not all(names) or len(set(names)) != len(names):  # name a copy; the caller's model stays as it is
        proto = _copy(proto)
        _require_node_names(proto.graph)
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    keep: set[str] = set()
    # final normalization: backwards from every graph output
    for out in graph.output:
        keep |= set(_walk_back(producers, [out.name], _NORM_OPS, stop_at=set()))
    # CSS heads: backwards from every Softmax to (and including) the ReduceMean that pools
    for node in graph.node:
        if node.op_type == "Softmax":
            region = _walk_back(producers, list(node.input), _CSS_HEAD_OPS | {"ReduceMean"}, stop_at={"ReduceMean"})
            if "ReduceMean" in region.values():  # a softmax fed by a pooled vector: a CSS head
                # the pooling itself stays float16 (its input is the big [B,C,H,W] fused sum; casting
                # that to float32 would double its traffic): the cast goes on the pooled [B,C] vector
                keep |= {name for name, op in region.items() if op != "ReduceMean"} | {node.name}
    # input normalization: forwards from the graph inputs through element-wise ops on constants
    initializers = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    frontier = [i.name for i in graph.input]
    while frontier:
        name = frontier.pop()
        for node in consumers.get(name, []):
            others = [i for i in node.input if i != name]
            if node.op_type in _INPUT_NORM_OPS and all(i in initializers for i in others) and node.name not in keep:
                keep.add(node.name)
                frontier.extend(node.output)
    return keep


def _walk_back(
    producers: dict[str, onnx.NodeProto], start: list[str], ops: set[str], *, stop_at: set[str]
) -> dict[str, str]:
    """Nodes (name -> op type) reached backwards from ``start`` through ``ops``, not past ``stop_at``."""
    seen: dict[str, str] = {}
    stack = list(start)
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen or node.op_type not in ops:
            continue
        seen[node.name] = node.op_type
        if node.op_type not in stop_at:
            stack.extend(i for i in node.input if i)
    return seen


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    return model


def _require_node_names(graph: onnx.GraphProto) -> None:
    """Give every node a unique name (the passes key on names)."""
    used: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in used:
            node.name = f"{node.op_type}_{i}_auto"
        used.add(node.name)


# ---------------------------------------------------------------------------------------------
# the FP16 pass
# ---------------------------------------------------------------------------------------------
def to_fp16(proto: onnx.ModelProto, *, keep_fp32: Iterable[str] | None = None) -> onnx.ModelProto:
    """A float16 copy of ``proto`` with float32 graph inputs/outputs and explicit Casts.

    Args:
        proto: a float32 model (not modified).
        keep_fp32: node names to keep in float32; default :func:`sensitive_nodes`.

    The result passes :func:`check_strongly_typed` and carries the InputSpec with
    ``precision="fp16"`` (the graph's inputs and outputs stay float32, as the runtime feeds them).
    """
    model = _copy(proto)
    graph = model.graph
    _require_node_names(graph)
    _constants_to_initializers(graph)
    keep = set(sensitive_nodes(model) if keep_fp32 is None else keep_fp32)
    elem_types = _elem_types(model)

    inits = {i.name: i for i in graph.initializer}
    float_inits = {n for n, t in inits.items() if t.data_type == TensorProto.FLOAT}
    # initializer -> wanted types (a weight read by fp16 and fp32 nodes gets two copies)
    wanted: dict[str, set[int]] = collections.defaultdict(set)
    node_type: dict[str, int] = {}
    for node in graph.node:
        node_type[node.name] = TensorProto.FLOAT if node.name in keep else TensorProto.FLOAT16
        if node.op_type in _TYPE_AGNOSTIC:
            continue
        for name, want in zip(node.input, _input_types(node, node_type[node.name])):
            if name in float_inits:
                wanted[name].add(want)
    renamed_inits: dict[tuple[str, int], str] = {}
    for name, types in wanted.items():
        if TensorProto.FLOAT16 not in types:
            continue
        array = numpy_helper.to_array(inits[name])
        _check_fp16_range(name, array)
        half = numpy_helper.from_array(array.astype(np.float16), name)
        if types == {TensorProto.FLOAT16}:
            inits[name].CopyFrom(half)
            elem_types[name] = TensorProto.FLOAT16
        else:
            half.name = f"{name}__fp16"
            graph.initializer.append(half)
            elem_types[half.name] = TensorProto.FLOAT16
            renamed_inits[(name, TensorProto.FLOAT16)] = half.name

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key in renamed_inits:
            return renamed_inits[key]
        if key not in casts:
            out = f"{name}__to_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], name=f"{out}_cast", to=to))
            casts[key] = out
            elem_types[out] = to
        return casts[key]

    for node in graph.node:
        want = node_type[node.name]
        if node.op_type not in _TYPE_AGNOSTIC:
            for i, (name, want_in) in enumerate(zip(node.input, _input_types(node, want))):
                have = elem_types.get(name)
                if name and have in _FLOAT_TYPES and have != want_in:
                    node.input[i] = cast(name, want_in)
        if node.op_type == "Cast":
            to = helper.get_attribute_value(next(a for a in node.attribute if a.name == "to"))
            if to in _FLOAT_TYPES and to != want:
                for a in node.attribute:
                    if a.name == "to":
                        a.i = want
        for out in node.output:
            if elem_types.get(out) in _FLOAT_TYPES:
                elem_types[out] = want
        new_nodes.append(node)

    # graph outputs stay float32: rename the producer's fp16 output and cast back
    for out in graph.output:
        if elem_types.get(out.name) == TensorProto.FLOAT16:
            inner = f"{out.name}__fp16"
            for node in new_nodes:
                node.input[:] = [inner if i == out.name else i for i in node.input]
                node.output[:] = [inner if o == out.name else o for o in node.output]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_to_fp32", to=TensorProto.FLOAT))
    original_info = {v.name: v for v in graph.value_info}
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    _type_custom_outputs(graph, original_info, elem_types)
    try:
        spec = spec_from_onnx(model)
    except ExportError:
        spec = None
    if spec is not None:
        set_input_spec(model, spec.replace(precision="fp16"))
    check_strongly_typed(model)
    return model


def _type_custom_outputs(graph: onnx.GraphProto, original: dict, elem_types: dict[str, int]) -> None:
    """Shape inference cannot type the outputs of custom-domain nodes: record them in value_info."""
    for node in graph.node:
        if node.domain in ("", "ai.onnx"):
            continue
        for out in node.output:
            info = onnx.ValueInfoProto()
            if out in original:
                info.CopyFrom(original[out])
            info.name = out
            info.type.tensor_type.elem_type = elem_types.get(out, TensorProto.FLOAT)
            graph.value_info.append(info)


def _input_types(node: onnx.NodeProto, want: int) -> list[int]:
    mixed = _MIXED_INPUT_OPS.get(node.op_type)
    return mixed(node, want) if mixed else [want] * len(node.input)


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Float ``Constant`` nodes become initializers, so the pass handles every float constant alike."""
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type == TensorProto.FLOAT:
                array = numpy_helper.to_array(tensor)
                graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
                continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def _check_fp16_range(name: str, array: np.ndarray) -> None:
    finite = array[np.isfinite(array)]
    if finite.size and np.abs(finite).max() > np.finfo(np.float16).max:
        raise ExportError(
            f"weight {name} holds values up to {np.abs(finite).max():.3g}, beyond float16's "
            f"{np.finfo(np.float16).max:.0f}; this model cannot be converted to FP16 (keep it FP32)"
        )


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------
def check_strongly_typed(proto: onnx.ModelProto) -> None:
    """Raise :class:`StrongTypingError` unless every op sees one float type and I/O is float32.

    Runs ONNX's strict type inference (which rejects e.g. ``Add(float16, float32)``) and then a
    direct scan, so the error names the node.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise StrongTypingError(f"type inference rejects the graph: {first}") from None
    types: dict[str, int] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
    for node in inferred.graph.node:
        if node.op_type in _HOMOGENEOUS_EXEMPT:
            continue
        if node.op_type in _MIXED_INPUT_OPS:
            expected = _MIXED_INPUT_OPS[node.op_type](node, types.get(node.input[0], TensorProto.FLOAT))
            found = [types.get(i) for i in node.input]
            if found != expected:
                raise StrongTypingError(f"node {node.name} ({node.op_type}) has input types {found}, expected {expected}")
            continue
        floats = {types.get(i) for i in node.input if i and types.get(i) in _FLOAT_TYPES}
        if len(floats) > 1:
            raise StrongTypingError(
                f"node {node.name} ({node.op_type}) mixes float16 and float32 inputs; insert a Cast"
            )
    for value in (*proto.graph.input, *proto.graph.output):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise StrongTypingError(f"graph input/output {value.name} is not float32")


def precision_of(proto: onnx.ModelProto) -> str:
    """'fp16' when the graph computes in float16 (any float16 initializer), else 'fp32'."""
    return "fp16" if any(i.data_type == TensorProto.FLOAT16 for i in proto.graph.initializer) else "fp32"


def spec_with_precision(spec: InputSpec, proto: onnx.ModelProto) -> InputSpec:
    return spec.replace(precision=precision_of(proto))


# ---------------------------------------------------------------------------------------------
# tolerances (measured; see the module docstring and tests/export/test_precision.py)
# ---------------------------------------------------------------------------------------------
#: FP16 vs FP32 in ONNX Runtime, full-size model, 64 real crops (benchmarks/bench_export_fp16.py):
#: max|diff| 0.0049, min cosine 0.99981, mean 0.99993. The bounds leave ~5x room on the cosine
#: deficit (TensorRT's FP16 kernels round differently from ONNX Runtime's) and 4x on max|diff|.
FP16_TOLERANCES = Tolerances(max_abs=2e-2, min_cosine=0.999, mean_cosine=0.9995)
#: A sanity check of a Q/DQ graph (catches a broken quantization: wrong scales, swapped inputs),
#: not the accuracy gate, which belongs to calibration/.
INT8_SANITY_TOLERANCES = Tolerances(max_abs=None, min_cosine=0.9, mean_cosine=0.95)
