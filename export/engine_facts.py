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
    plugin: str  # "none" | "aot" (compiled into the engine) | "jit" (Python plugin) | "library" (a shared library)
    plugin_library: str | None
    onnx: Path | None  # the ONNX the engine was built from, when the sidecar names one that exists


def engine_facts(engine: str | Path) -> EngineFacts:
    """Read ``engine``'s sidecar (``model.engine.json``) into :class:`EngineFacts`."""
    from dslnet_edge.backends.tensorrt_backend import read_engine_sidecar

    engine = Path(engine)
    sidecar = read_engine_sidecar(engine)
    raw = sidecar.raw
    profile = raw.get("profile") if isinstance(raw.get("profile"), dict) else {}
    opt = profile.get("opt")
    plugin, library = "none", None
    if sidecar.plugin is not None:
        plugin = "aot" if sidecar.plugin.embedded else "library" if sidecar.plugin.library else "jit"
        library = sidecar.plugin.library
    onnx = raw["onnx"].get("path") if isinstance(raw.get("onnx"), dict) else None
    onnx_path = engine.parent / onnx if isinstance(onnx, str) and onnx else None
    return EngineFacts(
        spec=sidecar.input_spec,
        precision=sidecar.precision or sidecar.input_spec.precision,
        max_batch=sidecar.max_batch,
        opt_batch=opt[0] if isinstance(opt, list) and opt and isinstance(opt[0], int) else None,
        plugin=plugin,
        plugin_library=library,
        onnx=onnx_path if onnx_path is not None and onnx_path.is_file() else None,
    )
