"""export.onnx: the plain FP32 ONNX contract, its metadata, parity with PyTorch, and its errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dslnet_edge.comparison import compare
from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec
from export.onnx import (
    ExportError,
    ParityError,
    drop_unused_initializers,
    export_onnx,
    load_onnx,
    onnx_model_from_torch,
    random_images,
    set_input_spec,
    spec_from_onnx,
    write_checked,
)
from export.parity import FP32_TOLERANCES, backend_runner, ort_backend, torch_backend


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_contract(onnx_path, model):
    proto = onnx.load(onnx_path)
    onnx.checker.check_model(proto)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("images", "embeddings")
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(inp) == ["N", 3, model.spec.height, model.spec.width]
    assert _dims(out) == ["N", 512]
    assert proto.opset_import[0].version == 17


def test_training_only_parts_are_not_exported(onnx_path):
    names = {i.name for i in onnx.load(onnx_path).graph.initializer}
    assert not [n for n in names if n.startswith(("classifier", "aux_"))]
    assert any(n.startswith("fc.") for n in names)  # the embedding head is there


def _unused_initializers(proto: onnx.ModelProto) -> list[str]:
    used = {name for node in proto.graph.node for name in node.input}
    return [i.name for i in proto.graph.initializer if i.name not in used]


def test_export_carries_no_unused_initializers_and_loads_quietly(onnx_path, capfd):
    assert _unused_initializers(onnx.load(onnx_path)) == []
    import onnxruntime as ort

    capfd.readouterr()
    ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])  # ORT's default log level: warnings
    assert capfd.readouterr().err == ""


def test_bundled_demo_onnx_carries_no_unused_initializers():
    from dslnet_edge.weights import DEMO_ONNX

    if not DEMO_ONNX.is_file():
        pytest.skip(f"no bundled demo ONNX at {DEMO_ONNX}")
    assert _unused_initializers(onnx.load(DEMO_ONNX)) == []


def test_dropping_unused_initializers_is_a_pure_cleanup(onnx_path, tmp_path, capfd):
    """What a foreign torch export carries (the OMZ 0267 ONNX: ~90 of them) is dropped; outputs stay bit-identical."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    proto = onnx.load(onnx_path)
    extra = {"classifier.weight": np.ones((10, 512), np.float32),
             "conv1.bn.num_batches_tracked": np.array(7, np.int64), "fc.1.num_batches_tracked": np.array(7, np.int64)}
    for name, value in extra.items():
        proto.graph.initializer.append(numpy_helper.from_array(value, name))
    proto.graph.input.append(helper.make_tensor_value_info("classifier.weight", onnx.TensorProto.FLOAT, [10, 512]))
    dirty = tmp_path / "dirty.onnx"
    onnx.save(proto, dirty)
    assert sorted(drop_unused_initializers(proto.graph)) == sorted(extra)
    assert _unused_initializers(proto) == [] and [i.name for i in proto.graph.input] == ["images"]
    assert drop_unused_initializers(proto.graph) == []  # idempotent
    onnx.checker.check_model(proto)
    clean = tmp_path / "clean.onnx"
    onnx.save(proto, clean)
    images = random_images(spec_from_onnx(proto), 3)
    capfd.readouterr()
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
               for p in (dirty, clean)]
    assert "Removing initializer 'conv1.bn.num_batches_tracked'" in capfd.readouterr().err  # only the dirty one warns
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_metadata_round_trip(onnx_path, model):
    assert spec_from_onnx(onnx_path) == model.spec
    meta = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    assert InputSpec.from_json(meta[SPEC_METADATA_KEY]) == model.spec
    # ONNX Runtime (what the runtime reads) sees the same entry
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert InputSpec.from_json(session.get_modelmeta().custom_metadata_map[SPEC_METADATA_KEY]) == model.spec


def test_set_input_spec_replaces_the_entry(onnx_path):
    proto = onnx.load(onnx_path)
    set_input_spec(proto, InputSpec(height=32, width=16, precision="fp16"))
    assert [p.key for p in proto.metadata_props].count(SPEC_METADATA_KEY) == 1
    assert spec_from_onnx(proto).precision == "fp16"


@pytest.mark.parametrize("batch", [1, 3])
def test_parity_with_pytorch_at_any_batch(onnx_path, model, batch):
    result = compare(
        {"pytorch": backend_runner(torch_backend(model)), "onnxruntime": backend_runner(ort_backend(onnx_path))},
        random_images(model.spec, batch, seed=batch),
        tolerances=FP32_TOLERANCES,
    )
    assert result.passed, result.format()
    norms = np.linalg.norm(backend_runner(ort_backend(onnx_path))(random_images(model.spec, 2))["embeddings"], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # L2-normalized


def test_export_leaves_the_mode_and_folder_clean(make_model, tmp_path):
    model = make_model(seed=3).train()
    path = export_onnx(model, tmp_path / "sub" / "m.onnx")
    assert model.training
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]  # no temporary files left


def test_static_batch(make_model):
    proto = onnx_model_from_torch(make_model(), dynamic_batch=False)
    assert _dims(proto.graph.input[0])[0] == 1


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, p: export_onnx(object(), p), TypeError, "expects a dslnet_edge DSLNet"),
        (lambda m, p: export_onnx(m, p, opset=9), ValueError, "opset must be an integer"),
        (lambda m, p: export_onnx(m, p.with_suffix(".txt")), ValueError, "must end in .onnx"),
    ],
)
def test_export_errors(model, tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(model, tmp_path / "m.onnx")


def test_spec_errors(onnx_path, tmp_path):
    proto = onnx.load(onnx_path)
    del proto.metadata_props[:]
    with pytest.raises(ExportError, match="no 'dslnet_edge.input_spec'"):
        spec_from_onnx(proto)
    proto.metadata_props.add(key=SPEC_METADATA_KEY, value="{not json")
    with pytest.raises(ExportError, match="invalid 'dslnet_edge.input_spec'"):
        spec_from_onnx(proto)


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), (b"this is not protobuf", "not a readable ONNX"), (b"", "not a readable ONNX")],
)
def test_load_onnx_errors(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ExportError, match=message):
        load_onnx(path)


def test_broken_parity_writes_nothing(onnx_path, make_model, tmp_path):
    """The ONNX of one model checked against another model's PyTorch: parity fails, --out stays absent."""
    other = make_model(seed=1)
    proto = onnx.load(onnx_path)

    def check(tmp):
        return compare(
            {"pytorch": backend_runner(torch_backend(other)), "onnxruntime": backend_runner(ort_backend(tmp))},
            random_images(other.spec, 2),
            tolerances=FP32_TOLERANCES,
        )

    with pytest.raises(ParityError, match="nothing written"):
        write_checked(proto, tmp_path / "out.onnx", check)
    assert list(tmp_path.iterdir()) == []
