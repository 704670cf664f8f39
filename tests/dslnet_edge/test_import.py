"""``import dslnet_edge`` stays light: no torch, no TensorRT, no ONNX Runtime until used."""

from __future__ import annotations

import subprocess
import sys


def test_import_needs_neither_torch_nor_tensorrt():
    code = (
        "import sys, dslnet_edge\n"
        "heavy = [m for m in ('torch', 'tensorrt', 'onnxruntime', 'cv2') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "dslnet_edge.InputSpec()\n"
        "dslnet_edge.preprocess\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unknown_attribute_is_an_attribute_error():
    import dslnet_edge

    try:
        dslnet_edge.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
