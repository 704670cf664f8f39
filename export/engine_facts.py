"""What the hand-over exporters (``export.triton_repo``, ``export.deepstream``) need from an engine's sidecar.

The ONE place they read the sidecar, through the runtime's reader, so a change of the sidecar
schema (one ``EngineSidecar`` class for writer and reader) touches only :func:`engine_facts`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dslnet_edge.spec import InputSpec

__all__ = ["EngineFacts", "engine_facts"]


@dataclasses.dataclass(frozen=True)
class EngineFacts:
    spec: InputSpec
    precision: str
    max_batch: int | None
    opt_batch: int | None
    plugin: str  # "none" | "aot" (compiled into the engine) | "jit" (Python plugin)
    onnx: Path | None  # the ONNX the engine was built from, when the sidecar names one that exists


def engine_facts(engine: str | Path) -> EngineFacts:
    """Read ``engine``'s sidecar (``model.engine.json``, :class:`EngineSidecar`) into :class:`EngineFacts`."""
    from dslnet_edge.backends.tensorrt_sidecar import read_engine_sidecar

    engine = Path(engine)
    sidecar = read_engine_sidecar(engine)
    plugin = "none"
    if sidecar.plugin.used:
        plugin = "aot" if sidecar.plugin.embedded else "jit"
    onnx_path = engine.parent / sidecar.onnx_path if sidecar.onnx_path else None
    return EngineFacts(
        spec=sidecar.input_spec,
        precision=sidecar.precision,
        max_batch=sidecar.max_batch,
        opt_batch=sidecar.opt_shape[0] if sidecar.opt_shape else None,
        plugin=plugin,
        onnx=onnx_path if onnx_path is not None and onnx_path.is_file() else None,
    )
