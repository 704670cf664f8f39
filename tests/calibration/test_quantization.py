"""Q/DQ quantization: what TensorRT needs (INT8, zero point 0, per-channel weights, float islands), what ONNX
Runtime runs, the metadata, the range cache, and every bad input as a clear error."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from calibration.crops import list_images
from calibration.errors import CalibrationError
from calibration.quantization import (
    CALIBRATION_METADATA_KEY,
    DEFAULT_EXCLUDE,
    QuantizeConfig,
    cache_path_for,
    qdq_summary,
    quantize,
    quantize_onnx,
)
from dslnet_edge.backends import read_onnx_spec
from dslnet_edge.backends.base import ArtifactError
from dslnet_edge.comparison import Tolerances, compare
from dslnet_edge.spec import SPEC_METADATA_KEY


def _producers(model) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _inits(model) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


# ---------------------------------------------------------------------------------------------
# the graph TensorRT gets
# ---------------------------------------------------------------------------------------------
def test_qdq_nodes_are_symmetric_int8(quantized):
    model = onnx.load(quantized.path)
    inits = _inits(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert sum(n.op_type == "QuantizeLinear" for n in qdq) > 50 and sum(n.op_type == "DequantizeLinear" for n in qdq) > 50
    for node in qdq:
        zero_point = inits[node.input[2]]
        assert zero_point.data_type == TensorProto.INT8, node.name
        assert not numpy_helper.to_array(zero_point).any(), node.name
        assert (numpy_helper.to_array(inits[node.input[1]]) > 0).all(), node.name
    weights = [inits[n.input[0]] for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weights and all(w.data_type == TensorProto.INT8 for w in weights)  # weights stored as INT8
    assert onnx.checker.check_model(model) is None


def test_every_conv_reads_int8_inputs_with_per_channel_weights(quantized):
    model = onnx.load(quantized.path)
    producers, inits = _producers(model), _inits(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 91
    for conv in convs:
        activation, weight = (producers.get(i) for i in conv.input[:2])
        assert activation is not None and activation.op_type == "DequantizeLinear", conv.name
        assert weight is not None and weight.op_type == "DequantizeLinear", conv.name
        scale = numpy_helper.to_array(inits[weight.input[1]])
        out_channels = inits[weight.input[0]].dims[0]
        assert scale.shape == (out_channels,), conv.name  # one scale per output channel
        assert {a.name: a.i for a in weight.attribute}.get("axis", 1) == 0, conv.name
        if len(conv.input) > 2:  # TensorRT rejects INT32 bias DequantizeLinear: biases stay float
            assert conv.input[2] in inits and inits[conv.input[2]].data_type == TensorProto.FLOAT, conv.name
    assert quantized.summary.per_channel_weights == 91
    assert quantized.summary.quantized_op_inputs["Conv"] == 91


def test_float_islands_stay_float(quantized):
    model = onnx.load(quantized.path)
    producers = _producers(model)
    by_name = {n.name: n for n in model.graph.node}
    css_matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and "/attention/" in n.name]
    assert len(css_matmuls) == 12  # two FCs per CSS module, six modules
    islands = [*css_matmuls, *(n for n in model.graph.node if n.name.startswith("/fc/")),
               by_name["/Sub"], by_name["/Div"], by_name["/ReduceL2"], by_name["/Div_1"],
               *(n for n in model.graph.node if n.op_type == "Softmax")]
    for node in islands:
        for name in node.input:
            producer = producers.get(name)
            assert producer is None or producer.op_type != "DequantizeLinear", f"{node.name} reads INT8 input {name}"
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert "images" not in {n.input[0] for n in quantizers}  # the graph input itself is never quantized
    assert "/Div_output_0" in {n.input[0] for n in quantizers}  # the normalized image is, in front of the stem
    assert set(quantized.excluded_nodes) >= {"/Sub", "/Div", "/fc/fc.0/Gemm", "/ReduceL2", "/Div_1"}
    assert quantized.unmatched_patterns == ()


def test_metadata_says_int8_and_how(quantized, fp32_onnx):
    spec = read_onnx_spec(quantized.path)
    assert spec.precision == "int8" and spec == read_onnx_spec(fp32_onnx).replace(precision="int8")
    meta = {p.key: p.value for p in onnx.load(quantized.path).metadata_props}
    assert list(meta).count(SPEC_METADATA_KEY) == 1
    calibration = json.loads(meta[CALIBRATION_METADATA_KEY])
    assert calibration["method"] == "minmax" and calibration["num_images"] == 16
    assert len(calibration["fp32_onnx_sha256"]) == 64


def test_runs_in_onnxruntime_and_agrees_with_fp32(quantized, fp32_onnx, holdout_dir, spec):
    """Measured on this model and these crops: mean cosine 0.9997, min 0.9995 (16 calibration crops).

    The bounds leave ~60x room on the cosine deficit; a broken placement (per-tensor weights,
    CSS heads in INT8) measured 0.64-0.25 minimum cosines on the CUHK03 checkpoint."""
    from calibration.crops import crop_batches
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    batches = list(crop_batches(list_images(holdout_dir), spec, batch_size=24))
    runners = {name: OnnxRuntimeBackend(path).infer for name, path in (("fp32", fp32_onnx), ("int8", quantized.path))}
    result = compare(runners, batches, tolerances=Tolerances(max_abs=None, min_cosine=0.98, mean_cosine=0.99))
    assert result.passed, result.format()
    assert result.mean_cosine < 0.999999  # it really is quantized, not a copy of the FP32 graph


# ---------------------------------------------------------------------------------------------
# the range cache
# ---------------------------------------------------------------------------------------------
def _scales(path) -> dict[str, np.ndarray]:
    model = onnx.load(path)
    inits = _inits(model)
    return {n.input[0]: numpy_helper.to_array(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def test_cache_is_reused_with_identical_ranges(fp32_onnx, calib_dir, tmp_path):
    out = tmp_path / "m.int8.onnx"
    config = QuantizeConfig(num_images=24)
    t0 = time.perf_counter()
    first = quantize(fp32_onnx, calib_dir, out, config)
    t1 = time.perf_counter()
    first_scales = _scales(out)
    second = quantize(fp32_onnx, calib_dir, out, config)
    t2 = time.perf_counter()
    assert first.cache_path == cache_path_for(out) == tmp_path / "m.int8.calibration.json" and first.cache_path.is_file()
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.ranges == first.ranges and len(first.ranges) > 50
    assert second.crops == first.crops
    assert _scales(out).keys() == first_scales.keys()
    for name, scale in _scales(out).items():
        np.testing.assert_array_equal(scale, first_scales[name])
    print(f"calibrated {t1 - t0:.2f} s, from the cache {t2 - t1:.2f} s")  # the speed-up is reported, not asserted
    cached = json.loads(first.cache_path.read_text())
    assert cached["key"]["onnx_sha256"] == json.loads(
        {p.key: p.value for p in onnx.load(out).metadata_props}[CALIBRATION_METADATA_KEY])["fp32_onnx_sha256"]
    # exclusions do not change the ranges: another placement is quantized from the same cache
    third = quantize(fp32_onnx, calib_dir, out, QuantizeConfig(num_images=24, exclude=(r"/attention/",)))
    assert third.cache_hit and third.ranges == first.ranges


@pytest.mark.parametrize(
    "change",
    ["other crops", "other method", "edited crop", "other onnx", "damaged cache", "no cache"],
)
def test_cache_is_not_trusted_when_inputs_change(change, tmp_path, people):
    """On a tiny real ONNX (random projection + L2 norm: milliseconds to quantize); the cache key does not depend on the model."""
    from testutils import tiny_embedding_onnx

    fp32_onnx = tiny_embedding_onnx(tmp_path / "tiny.onnx")
    crops = people(tmp_path / "crops", range(3), per_camera=2)
    out = tmp_path / "m.int8.onnx"
    config = QuantizeConfig(num_images=6)
    first = quantize(fp32_onnx, crops, out, config)
    assert not first.cache_hit and first.summary.quantized_op_inputs == {"MatMul": 1}
    source = fp32_onnx
    if change == "other crops":
        config = QuantizeConfig(num_images=5)
    elif change == "other method":
        config = QuantizeConfig(num_images=6, method="percentile")
    elif change == "edited crop":
        import cv2

        path = list_images(crops)[0]
        image = cv2.imread(str(path))
        cv2.imwrite(str(path), 255 - image)
    elif change == "other onnx":
        model = onnx.load(fp32_onnx)
        model.doc_string += " (edited)"
        source = tmp_path / "edited.onnx"
        onnx.save(model, source)
    elif change == "damaged cache":
        first.cache_path.write_text("{ not json")
    else:
        config = QuantizeConfig(num_images=6, use_cache=False)
    second = quantize(source, crops, out, config)
    assert not second.cache_hit
    if change == "no cache":
        assert second.cache_path is None
    else:
        json.loads(first.cache_path.read_text())  # rewritten, valid again
        assert quantize(source, crops, out, config).cache_hit


# ---------------------------------------------------------------------------------------------
# options, the hook, and errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(method, fp32_onnx, calib_dir, quantized, tmp_path):
    result = quantize(fp32_onnx, calib_dir, tmp_path / "m.int8.onnx", QuantizeConfig(num_images=8, method=method))
    assert result.method == method and result.summary == quantized.summary  # same placement, other scales
    lo_hi = np.array(list(result.ranges.values()))
    assert np.all(np.isfinite(lo_hi)) and np.all(lo_hi[:, 1] >= lo_hi[:, 0])


def test_per_tensor_weights_and_no_exclusions(fp32_onnx, calib_dir, tmp_path):
    result = quantize(fp32_onnx, calib_dir, tmp_path / "m.int8.onnx",
                      QuantizeConfig(num_images=8, per_channel=False, exclude=()))
    assert result.summary.per_channel_weights == 0
    assert result.summary.quantized_op_inputs["MatMul"] == 12 and result.summary.quantized_op_inputs["Gemm"] == 1
    assert result.excluded_nodes == ()


def test_unmatched_patterns_are_reported(fp32_onnx, calib_dir, tmp_path):
    result = quantize(fp32_onnx, calib_dir, tmp_path / "m.int8.onnx",
                      QuantizeConfig(num_images=8, exclude=(*DEFAULT_EXCLUDE.values(), r"^/no_such_module/")))
    assert result.unmatched_patterns == (r"^/no_such_module/",)
    assert "matched no node" in result.format()


def test_the_build_engine_hook(fp32_onnx, calib_dir, tmp_path):
    out = quantize_onnx(fp32_onnx, calib_dir, tmp_path / "hook.int8.onnx", num_images=8)
    assert out == tmp_path / "hook.int8.onnx" and read_onnx_spec(out).precision == "int8"
    assert qdq_summary(onnx.load(out)).quantize_nodes > 0


def test_a_model_with_nothing_left_to_quantize(fp32_onnx, calib_dir, tmp_path):
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(CalibrationError, match="inserted no Q/DQ nodes"):
        quantize(fp32_onnx, calib_dir, out, QuantizeConfig(num_images=4, exclude=(".",)))
    assert not out.exists()


def test_errors_name_the_problem(fp32_onnx, calib_dir, quantized, tmp_path):
    from testutils import tiny_embedding_onnx

    no_spec = tiny_embedding_onnx(tmp_path / "nospec.onnx", with_spec=False)
    fp16 = onnx.load(fp32_onnx)  # one float16 initializer is what marks an FP16 graph
    fp16.graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.float16), "half"))
    onnx.save(fp16, tmp_path / "fp16.onnx")
    out = tmp_path / "m.int8.onnx"
    cases = [
        (tmp_path / "missing.onnx", calib_dir, out, ArtifactError, "does not exist"),
        (no_spec, calib_dir, out, ArtifactError, "no 'dslnet_edge.input_spec' entry"),
        (quantized.path, calib_dir, out, CalibrationError, "already quantized"),
        (tmp_path / "fp16.onnx", calib_dir, out, CalibrationError, "is an FP16 graph"),
        (fp32_onnx, tmp_path / "nowhere", out, CalibrationError, "does not exist"),
        (fp32_onnx, calib_dir, tmp_path / "m.engine", CalibrationError, "must end in .onnx"),
        (fp32_onnx, calib_dir, fp32_onnx, CalibrationError, "would overwrite the FP32 model"),
    ]
    for source, crops, target, error, message in cases:
        with pytest.raises(error, match=message):
            quantize(source, crops, target, QuantizeConfig(num_images=4))
    assert not out.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_images=0), "num_images must be a positive integer"),
        (dict(batch_size=True), "batch_size must be a positive integer"),
        (dict(method="kl"), "method must be one of minmax, entropy, percentile"),
        (dict(percentile=101.0), "percentile must be in"),
        (dict(op_types=()), "op_types must name at least one"),
        (dict(exclude=("(unclosed",)), "not a valid regular expression"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantizeConfig(**kwargs)
