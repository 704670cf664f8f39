"""Calibrate, gate, and only then publish: the one function behind ``python -m calibration`` and ``--calibration-dir``.

The Q/DQ ONNX is written to a temporary file beside ``out``, judged by the accuracy gate on
held-out crops, and moved to ``out`` only if the gate passed. The gate's JSON is written beside
``out`` either way (``<stem>.gate.json``), so a failed attempt leaves its numbers, and never a
model that lost accuracy at the path a build would pick up.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from calibration.crops import list_images
from calibration.errors import CalibrationError
from calibration.gate import GateResult, GateThresholds, check_gate, gate_path_for, run_gate
from calibration.quantization import QuantizeConfig, QuantizeResult, _staged_qdq

__all__ = ["CalibrationResult", "calibrate"]

_log = logging.getLogger(__name__)

_DEFAULT_CONFIG = QuantizeConfig()
_DEFAULT_THRESHOLDS = GateThresholds()


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """The published Q/DQ ONNX, how it was made, and the gate that let it through."""

    quantized: QuantizeResult
    gate: GateResult
    gate_path: Path

    def __post_init__(self) -> None:
        if not self.gate.passed:
            raise ValueError("a CalibrationResult is only made for a model that passed the gate")

    @property
    def path(self) -> Path:
        return self.quantized.path


def calibrate(
    fp32_onnx: str | os.PathLike,
    crops_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    holdout_dir: str | os.PathLike | None = None,
    config: QuantizeConfig = _DEFAULT_CONFIG,
    thresholds: GateThresholds = _DEFAULT_THRESHOLDS,
    num_holdout: int = 256,
    threads: int | None = None,
) -> CalibrationResult:
    """Q/DQ INT8 ONNX at ``out`` if it passes the gate; raises :class:`~calibration.errors.GateFailure` if not.

    ``holdout_dir`` defaults to ``crops_dir``; the crops calibration used are always left out
    of the gate's selection.
    """
    from dslnet_edge.backends import read_onnx_spec

    out = Path(out)
    read_onnx_spec(fp32_onnx)  # a missing or unusable model is the first thing to hear about
    holdout = Path(holdout_dir) if holdout_dir is not None else Path(crops_dir)
    if holdout_dir is None and len(list_images(crops_dir)) <= config.num_images:
        raise CalibrationError(
            f"all {len(list_images(crops_dir))} images of {crops_dir} go into calibration (--num-images "
            f"{config.num_images}), none would be left for the accuracy gate; pass a held-out folder "
            "(--holdout; --crops for export.build_engine) or a smaller --num-images"
        )
    with _staged_qdq(fp32_onnx, crops_dir, out, config) as (tmp, quantized):
        _log.info(dataclasses.replace(quantized, path=out).format())
        gate = run_gate(fp32_onnx, tmp, holdout, thresholds=thresholds, num_images=num_holdout,
                        exclude=quantized.crops, seed=config.seed, threads=threads)
        gate = dataclasses.replace(gate, int8_onnx=str(out))
        gate_path = gate.save(gate_path_for(out))
        check_gate(gate)  # GateFailure: the staged file is discarded, ``out`` stays as it was
    return CalibrationResult(dataclasses.replace(quantized, path=out), gate, gate_path)
