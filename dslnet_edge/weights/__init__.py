"""Where the bundled weights live (the files themselves come from the training run and export.release).

* :data:`DEMO_ONNX` ``dslnet_cuhk03.onnx``: FP32 ONNX, what ``dslnet_edge.Engine()`` loads by default.
* :data:`DEMO_CHECKPOINT` ``dslnet_cuhk03.pt``: the fp16 inference-only checkpoint it was exported from.

Trained on CUHK03 and distilled from OMZ 0277/0286 (trained on MSMT17 and Market-1501), so they
inherit those data sets' terms: non-commercial research use only (README "Bundled weights").
Standard library only.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WEIGHTS_DIR", "DEMO_ONNX", "DEMO_CHECKPOINT", "demo_weights"]

WEIGHTS_DIR = Path(__file__).resolve().parent
DEMO_ONNX = WEIGHTS_DIR / "dslnet_cuhk03.onnx"
DEMO_CHECKPOINT = WEIGHTS_DIR / "dslnet_cuhk03.pt"


def demo_weights(kind: str = "onnx") -> Path:
    """Path of the bundled demo weights (``"onnx"`` or ``"pt"``); ``FileNotFoundError`` naming it when absent."""
    paths = {"onnx": DEMO_ONNX, "pt": DEMO_CHECKPOINT}
    if kind not in paths:
        raise ValueError(f"demo weights kind must be one of {sorted(paths)}, got {kind!r}")
    path = paths[kind]
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled demo weights {path} are not there: this checkout has no trained weights yet "
            "(the training run produces them), or the package was installed without package data; "
            "pass your own model instead, e.g. dslnet_edge.Engine('model.onnx')"
        )
    return path
