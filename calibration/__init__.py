"""INT8 calibration from real person crops: crop collection, Q/DQ quantization, accuracy gate.

``python -m calibration --onnx model.onnx --crops DIR --out model.int8.onnx`` (see
:mod:`calibration.__main__`); from Python::

    from calibration import calibrate
    result = calibrate("model.onnx", "crops/", "model.int8.onnx", holdout_dir="holdout/")
    print(result.gate.format())

Modules: :mod:`calibration.crops` (find, sample, read, preprocess crops),
:mod:`calibration.quantization` (ONNX Runtime static quantization into TensorRT-ready Q/DQ),
:mod:`calibration.gate` (INT8 vs FP32 on held-out crops: cosine, Rank-1/mAP).
Names are imported lazily, so ``import calibration`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors
    from calibration.errors import CalibrationError, GateFailure
    from calibration.gate import GateResult, GateThresholds, gate_path_for, read_gate, run_gate
    from calibration.pipeline import CalibrationResult, calibrate
    from calibration.quantization import QuantizeConfig, QuantizeResult, quantize, quantize_onnx

__all__ = [
    "CalibrationError",
    "GateFailure",
    "QuantizeConfig",
    "QuantizeResult",
    "quantize",
    "quantize_onnx",
    "GateThresholds",
    "GateResult",
    "run_gate",
    "CalibrationResult",
    "calibrate",
    "gate_path_for",
    "read_gate",
]

# name -> module that defines it (never a submodule's own name: see dslnet_edge/__init__.py)
_LAZY = {
    "CalibrationError": "calibration.errors",
    "GateFailure": "calibration.errors",
    "QuantizeConfig": "calibration.quantization",
    "QuantizeResult": "calibration.quantization",
    "quantize": "calibration.quantization",
    "quantize_onnx": "calibration.quantization",
    "GateThresholds": "calibration.gate",
    "GateResult": "calibration.gate",
    "run_gate": "calibration.gate",
    "gate_path_for": "calibration.gate",
    "read_gate": "calibration.gate",
    "CalibrationResult": "calibration.pipeline",
    "calibrate": "calibration.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'calibration' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
