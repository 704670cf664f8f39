"""The errors calibration raises on purpose (each one sentence that names the file or the number)."""

from __future__ import annotations

from dslnet_edge.errors import DslnetError

__all__ = ["CalibrationError", "GateFailure"]


class CalibrationError(DslnetError, ValueError):
    """Bad calibration input: a missing or empty folder, an unreadable image, an unusable ONNX."""


class GateFailure(DslnetError, RuntimeError):
    """The INT8 model lost more accuracy than the gate allows; carries the :class:`~calibration.gate.GateResult`."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
