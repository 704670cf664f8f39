"""YOLOX adapter: letterbox, grid decoding, person scores, options; a tiny real ONNX head; the shared models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from samples.detect import DetectorError
from samples.detectors import make_detector
from samples.yolox import (
    YoloxConfig,
    YoloxDetector,
    decode_grids,
    grid_points,
    letterbox,
    looks_decoded,
    parse_yolox_spec,
    person_boxes,
    to_tensor,
)

DETECTORS = Path(__file__).resolve().parents[3] / "shared" / "models" / "detectors"


def test_letterbox_keeps_aspect_pads_114_at_bottom_right():
    frame = np.full((100, 300, 3), 7, np.uint8)
    image, ratio = letterbox(frame, (96, 128))
    assert ratio == pytest.approx(128 / 300)
    assert image.shape == (96, 128, 3)
    assert (image[:42] == 7).all() and (image[43:] == 114).all()


def test_to_tensor_normalizations():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    raw = to_tensor(image, "raw")
    assert raw.shape == (1, 3, 32, 32) and raw[0, 2].max() == 255 and raw[0, 0].max() == 0  # BGR kept
    net = to_tensor(image, "imagenet")
    assert net[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229)  # RGB: red first, /255, ImageNet mean/std
    with pytest.raises(DetectorError, match="unknown YOLOX normalization"):
        to_tensor(image, "bgr")


def test_grid_points_match_yolox_anchor_counts():
    assert len(grid_points((416, 416))[0]) == 3549  # yolox_nano_416's output rows
    assert len(grid_points((608, 1088))[0]) == 13566  # ByteTrack's 608x1088 model
    xy, stride = grid_points((64, 64))
    assert xy[64].tolist() == [0.0, 0.0] and stride[63, 0] == 8 and stride[64, 0] == 16  # stride 16 grid starts after 8x8


def _raw_with_one_person(size=(64, 64), classes=2, cell=(3, 2), stride_index=0, wh=(20.0, 40.0), obj=0.9, cls=(0.8, 0.1)):
    """A raw YOLOX output with one confident box at grid ``cell`` (x, y) of the first stride."""
    xy, stride = grid_points(size)
    raw = np.zeros((len(xy), 5 + classes), np.float32)
    row = next(i for i in range(len(xy)) if stride[i, 0] == (8, 16, 32)[stride_index] and tuple(xy[i]) == cell)
    s = stride[row, 0]
    raw[row, :4] = [0.5, 0.25, np.log(wh[0] / s), np.log(wh[1] / s)]
    raw[row, 4] = obj
    raw[row, 5 : 5 + len(cls)] = cls
    return raw, row


def test_decode_and_person_scores():
    raw, _ = _raw_with_one_person()
    decoded = decode_grids(raw, (64, 64))
    xyxy, scores = person_boxes(decoded, 0, 0.5)
    # centre ((3 + 0.5) * 8, (2 + 0.25) * 8) = (28, 18), size 20 x 40
    assert xyxy.tolist() == [pytest.approx([18.0, -2.0, 38.0, 38.0], abs=1e-4)] and scores == pytest.approx([0.72])
    assert person_boxes(decoded, 1, 0.05)[1] == pytest.approx([0.09])  # the other class's score
    assert not looks_decoded(raw) and looks_decoded(decoded)
    with pytest.raises(DetectorError, match="class 5 does not exist"):
        person_boxes(decoded, 5, 0.5)
    with pytest.raises(DetectorError, match="input size does not match"):
        decode_grids(raw, (96, 96))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("m.onnx", YoloxConfig("m.onnx")),
        ("m.onnx,score=0.3,nms=0.5", YoloxConfig("m.onnx", score=0.3, nms_iou=0.5)),
        ("m.onnx,input=608x1088,norm=imagenet,person=1,threads=2", YoloxConfig("m.onnx", (608, 1088), "imagenet", 1, threads=2)),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_yolox_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "needs an ONNX file"),
        ("m.onnx,score", "not KEY=VALUE"),
        ("m.onnx,colour=red", "not KEY=VALUE"),
        ("m.onnx,score=high", "score='high' is not a valid value"),
        ("m.onnx,score=nan", "is not a valid value"),
        ("m.onnx,score=1.5", "score threshold must be in"),
        ("m.onnx,input=600x1000", "multiples of 32"),
        ("m.onnx,norm=bgr", "norm must be one of"),
        ("m.onnx,person=-1", "person class must be"),
    ],
)
def test_parse_spec_errors(spec, match):
    with pytest.raises(DetectorError, match=match):
        parse_yolox_spec(spec)


def _tiny_yolox(path: Path, raw: np.ndarray, size=(64, 64), dynamic=False) -> Path:
    """An ONNX graph with YOLOX's interface whose output is ``raw`` (plus 0 x the image, so the input is used)."""
    h, w = ("H", "W") if dynamic else size
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, raw.shape[0], raw.shape[1]])
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["head", "nothing"], ["output"]),
    ]
    inits = [numpy_helper.from_array(raw[None], "head"), numpy_helper.from_array(np.float32(0), "zero")]
    graph = helper.make_graph(nodes, "tiny_yolox", [image], [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_tiny_onnx_detector_end_to_end(tmp_path):
    raw, _ = _raw_with_one_person(cell=(3, 4))  # centre (28, 34) in the 64x64 input
    path = _tiny_yolox(tmp_path / "tiny.onnx", raw)
    detector = make_detector(f"yolox:{path},score=0.5")
    assert isinstance(detector, YoloxDetector) and detector.input_size == (64, 64) and detector.norm == "raw"
    frame = np.zeros((256, 256, 3), np.uint8)  # letterbox ratio 0.25: boxes come back x4
    (box,) = detector.detect(frame)
    assert box[:4] == pytest.approx((72.0, 56.0, 152.0, 216.0)) and box.score == pytest.approx(0.72)
    assert detector.detect(frame[:, :, :]) == [box]  # the decision "raw, not decoded" is kept


def test_tiny_onnx_detector_errors(tmp_path):
    raw, _ = _raw_with_one_person()
    dynamic = _tiny_yolox(tmp_path / "dyn.onnx", raw, dynamic=True)
    with pytest.raises(DetectorError, match="dynamic input size"):
        make_detector(f"yolox:{dynamic}")
    assert make_detector(f"yolox:{dynamic},input=64x64").input_size == (64, 64)
    with pytest.raises(DetectorError, match="does not exist"):
        make_detector(f"yolox:{tmp_path / 'missing.onnx'}")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(DetectorError, match="could not be loaded by ONNX Runtime"):
        make_detector(f"yolox:{junk}")
    with pytest.raises(DetectorError, match="has 2 classes; person class 3"):
        make_detector(f"yolox:{_tiny_yolox(tmp_path / 'two.onnx', raw)},person=3")


@pytest.mark.realdata
@pytest.mark.parametrize("name, norm", [("yolox_nano_416.onnx", "raw"), ("bytetrack_nano_608x1088.onnx", "imagenet")])
def test_shared_models_find_the_person_of_the_sample_video(name, norm, real_data):
    model = DETECTORS / name
    video = real_data / "videos" / "one-by-one-person-detection.mp4"
    if not model.is_file() or not video.is_file():
        pytest.skip(f"{model} or {video} is not there (detector models and sample videos come from ../shared)")
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 300)  # the first person, whole, in the middle of the frame
    ok, frame = capture.read()
    capture.release()
    assert ok
    detector = make_detector(f"yolox:{model}")
    assert detector.norm == norm
    boxes = [b for b in detector.detect(frame) if b.score >= 0.5]
    assert len(boxes) == 1
    (box,) = boxes
    # a standing person: tall, a person's aspect, at the centre-right of the frame (x 380-545 by eye)
    assert box.height > 300 and 0.3 < box.width / box.height < 0.6 and 360 < (box.x1 + box.x2) / 2 < 560
