"""``python -m export.build_engine``: checkpoint or ONNX -> checked ONNX flavours -> TensorRT engine.

Steps, each a small function:

1. :func:`prepare_onnx` -- the ONNX TensorRT will compile, every flavour written beside ``--out``
   and checked in ONNX Runtime before the next step:
   ``<stem>.onnx`` (plain FP32, vs PyTorch), ``<stem>.plugin.onnx`` (fused CSS plugin nodes, vs
   the plain ONNX through the reference op), ``<stem>[.plugin].fp16.onnx`` (vs FP32). INT8 takes
   the Q/DQ ONNX made by ``calibration/`` (``--qdq-onnx``).
2. :func:`decide_css_plugin` -- whether the plugin flavour is used, and why (TensorRT version; with a
   GPU, whether this Triton makes an AOT kernel TensorRT can launch: :func:`export.plugin.trt_plugin.check_aot_kernel`).
3. The TensorRT step (:mod:`export.tensorrt_build`): a strongly typed compile of that ONNX, loaded
   through the runtime's own :class:`~dslnet_edge.backends.tensorrt_backend.TensorRTBackend` and
   compared with the FP32 ONNX in ONNX Runtime; only then are the engine and its sidecar
   (:class:`~dslnet_edge.backends.tensorrt_sidecar.EngineSidecar`, ``<out>.json``) written atomically.
   An engine that does not load, run or agree fails the command and nothing is written at ``--out``.

Without TensorRT or without a GPU, steps 1-2 still run and the command exits with status 2 and
one line naming what is missing and where the ready ONNX is.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from dslnet_edge._io import atomic_write, file_sha256
from dslnet_edge.backends.tensorrt_sidecar import EnginePlugin, EngineSidecar, write_engine_sidecar
from dslnet_edge.errors import DslnetError
from dslnet_edge.spec import InputSpec
from export.onnx import (
    DEMO_CHECKPOINT,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    OnnxExportConfig,
    ParityError,
    export_checked,
    load_export_model,
    load_onnx,
    spec_from_onnx,
    write_checked,
)
from export.tensorrt_build import Profile

__all__ = [
    "EngineBuildConfig",
    "PreparedOnnx",
    "PluginChoice",
    "MissingBuildTarget",
    "artefact_paths",
    "decide_css_plugin",
    "prepare_onnx",
    "build",
    "make_sidecar",
    "main",
]

_log = logging.getLogger(__name__)

_ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
PRECISIONS = ("fp32", "fp16", "int8")
PLUGIN_MODES = ("auto", "on", "off")


class MissingBuildTarget(DslnetError, RuntimeError):
    """No TensorRT or no GPU here: everything up to the engine is ready (exit status 2)."""


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EngineBuildConfig:
    """What ``python -m export.build_engine`` does (see :func:`build_parser` for the flags)."""

    out: Path = Path("dslnet.engine")
    checkpoint: Path | None = None
    onnx: Path | None = None
    precision: str = "fp32"
    qdq_onnx: Path | None = None
    calibration_dir: Path | None = None
    profile: Profile = Profile()
    workspace_mib: int | None = None
    timing_cache: Path | None = None
    css_plugin: str = "auto"
    crops_dir: Path | None = None
    num_crops: int = 8
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("out", "checkpoint", "onnx", "qdq_onnx", "calibration_dir", "timing_cache", "crops_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.checkpoint is not None and self.onnx is not None:
            raise ValueError("pass --checkpoint or --onnx, not both")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.css_plugin not in PLUGIN_MODES:
            raise ValueError(f"--css-plugin must be one of {PLUGIN_MODES}, got {self.css_plugin!r}")
        if self.out.suffix.lower() not in _ENGINE_SUFFIXES:
            raise ValueError(f"--out must end in {', '.join(_ENGINE_SUFFIXES)}, got {self.out}")
        if self.precision == "int8":
            if self.qdq_onnx is None and self.calibration_dir is None:
                raise ValueError(
                    "--int8 needs calibration data: pass --qdq-onnx PATH (the Q/DQ ONNX made by calibration/) "
                    "or --calibration-dir DIR"
                )
        elif self.qdq_onnx is not None or self.calibration_dir is not None:
            raise ValueError("--qdq-onnx / --calibration-dir only apply with --int8")
        if self.checkpoint is None and self.onnx is None and not (self.precision == "int8" and self.qdq_onnx):
            object.__setattr__(self, "checkpoint", DEMO_CHECKPOINT)
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError(f"--workspace must be a positive number of MiB, got {self.workspace_mib}")
        if self.num_crops < 0:
            raise ValueError(f"--num-crops must be >= 0, got {self.num_crops}")


def artefact_paths(out: Path) -> dict[str, Path]:
    """Where every intermediate goes: beside the engine, named after it."""
    stem = out.with_suffix("")
    return {
        "plain": stem.with_name(stem.name + ".onnx"),
        "plugin": stem.with_name(stem.name + ".plugin.onnx"),
        "fp16": stem.with_name(stem.name + ".fp16.onnx"),
        "plugin_fp16": stem.with_name(stem.name + ".plugin.fp16.onnx"),
        "sidecar": out.with_name(out.name + ".json"),
    }


# ---------------------------------------------------------------------------------------------
# the CSS plugin decision
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PluginChoice:
    used: bool
    implementation: str | None  # "aot", "jit" or None
    reason: str


def decide_css_plugin(mode: str, support, *, have_model: bool, has_css: bool, precision: str) -> PluginChoice:
    """Use the fused CSS plugin? ``auto`` uses it only where the engine stays Python-free (AOT).

    Raises ValueError for ``on`` when it cannot be honoured.
    """
    if mode == "off":
        return PluginChoice(False, None, "off (--css-plugin off)")

    def refuse(reason: str) -> PluginChoice:
        if mode == "on":
            raise ValueError(f"--css-plugin on: {reason}")
        return PluginChoice(False, None, reason)

    if precision == "int8":
        return refuse("the CSS plugin is not used with --int8 (the Q/DQ graph keeps the CSS as plain ops)")
    if not have_model:
        return refuse("the plugin flavour is exported from the model: pass --checkpoint instead of --onnx")
    if not has_css:
        return refuse("this model has no CSS modules")
    if support.tensorrt is None:
        if mode == "on":
            return PluginChoice(True, "aot", "requested; TensorRT is not installed here, so it is built but not compiled")
        return PluginChoice(False, None, "TensorRT is not installed here: the plain ONNX is the portable one")
    if not support.jit:
        return refuse(f"{support.reason}; the builder uses the plain ONNX")
    if support.aot:
        return PluginChoice(True, "aot", f"TensorRT {support.tensorrt}: ahead-of-time plugin, the engine needs no Python")
    if mode == "on":
        return PluginChoice(True, "jit", f"TensorRT {support.tensorrt}: JIT plugin, the engine needs Python and dslnet-edge at run time")
    return PluginChoice(
        False, None,
        f"{support.reason}; a JIT plugin would tie the engine to Python (pass --css-plugin on to use it anyway)",
    )


# ---------------------------------------------------------------------------------------------
# step 1: the ONNX flavours
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PreparedOnnx:
    """The ONNX to compile, its FP32 counterpart, and what was made and checked on the way."""

    engine_onnx: Path
    fp32_onnx: Path  # same graph in FP32 (the weakly typed fallback compiles this with flags)
    reference_onnx: Path | None  # plain FP32 ONNX the engine is verified against
    precision: str
    spec: InputSpec
    plugin: PluginChoice
    artefacts: dict[str, str]
    parity: dict[str, Any]
    int8_gate: dict[str, Any] | None = None  # calibration's accuracy gate (JSON), copied into the sidecar


def prepare_onnx(config: EngineBuildConfig, support) -> PreparedOnnx:
    if config.precision == "int8":
        return _prepare_int8(config, support)
    paths = artefact_paths(config.out)
    parity: dict[str, Any] = {}
    model = None
    if config.checkpoint is not None:
        model = load_export_model(config.checkpoint)
        export_config = OnnxExportConfig(
            checkpoint=config.checkpoint, out=paths["plain"], crops_dir=config.crops_dir, num_crops=config.num_crops
        )
        plain = export_checked(model, export_config)
        spec = model.spec
    else:
        plain = config.onnx
        spec = _validated_onnx(plain)
    has_css = model is not None and _has_css(model)
    plugin = decide_css_plugin(
        config.css_plugin, support, have_model=model is not None, has_css=has_css, precision=config.precision
    )
    _log.info(f"CSS plugin: {'used' if plugin.used else 'not used'} ({plugin.reason})")
    artefacts = {"plain": str(plain)}
    fp32 = plain
    if plugin.used:
        fp32 = _make_plugin_onnx(model, plain, paths["plugin"], spec, config, aot=plugin.implementation == "aot")
        artefacts["plugin"] = str(fp32)
    engine_onnx = fp32
    if config.precision == "fp16":
        target = paths["plugin_fp16"] if plugin.used else paths["fp16"]
        engine_onnx = _make_fp16_onnx(fp32, plain, target, spec, config)
        artefacts["fp16"] = str(engine_onnx)
    parity["checked"] = sorted(artefacts)
    return PreparedOnnx(engine_onnx, fp32, plain, config.precision, spec.replace(precision=config.precision), plugin, artefacts, parity)


def _has_css(model) -> bool:
    from dslnet_edge.model import ChannelwiseScaleSelection

    return any(isinstance(m, ChannelwiseScaleSelection) for m in model.modules())


def _validated_onnx(path: Path) -> InputSpec:
    """An --onnx input: readable, dslnet_edge's contract (names, spec), plain FP32 (no plugin nodes)."""
    from export.plugin.graph import plugin_nodes
    from export.precision import precision_of

    proto = load_onnx(path)
    spec = spec_from_onnx(proto)
    inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(f"{path} has inputs {inputs} and outputs {outputs}; expected [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]")
    if plugin_nodes(proto):
        raise ExportError(f"{path} already holds CSS plugin nodes; pass the plain ONNX (python -m export.onnx)")
    if precision_of(proto) != "fp32":
        raise ExportError(f"{path} is not an FP32 graph; pass the plain FP32 ONNX and choose the precision with --fp16")
    return spec


def _ort_runner(path: Path):
    from export.parity import backend_runner, ort_backend

    return backend_runner(ort_backend(path))


def _make_plugin_onnx(model, plain: Path, out: Path, spec: InputSpec, config: EngineBuildConfig, *, aot: bool) -> Path:
    from export.parity import FP32_TOLERANCES, backend_runner, check_parity
    from export.plugin.graph import plugin_model_from_torch, plugin_nodes
    from export.plugin.ort_reference import reference_backend

    proto = plugin_model_from_torch(model, aot=aot)
    _log.info(f"plugin flavour: {len(plugin_nodes(proto))} {plugin_nodes(proto)[0].op_type} nodes")

    def check(tmp: Path):
        runners = {"plain": _ort_runner(plain), "plugin (reference op)": backend_runner(reference_backend(proto))}
        return check_parity(runners, spec, tolerances=FP32_TOLERANCES, label="plugin vs plain (onnxruntime)",
                            crops_dir=config.crops_dir, num_crops=config.num_crops)

    path, report = write_checked(proto, out, check)
    _log.info(report.format())
    return path


def _make_fp16_onnx(fp32: Path, plain: Path, out: Path, spec: InputSpec, config: EngineBuildConfig) -> Path:
    from export.parity import backend_runner, check_parity
    from export.plugin.graph import plugin_nodes
    from export.plugin.ort_reference import reference_backend
    from export.precision import FP16_TOLERANCES, to_fp16

    proto = to_fp16(load_onnx(fp32))

    def check(tmp: Path):
        candidate = backend_runner(reference_backend(proto)) if plugin_nodes(proto) else _ort_runner(tmp)
        return check_parity({"fp32": _ort_runner(plain), "fp16": candidate}, spec, tolerances=FP16_TOLERANCES,
                            label="fp16 vs fp32 (onnxruntime)", crops_dir=config.crops_dir, num_crops=config.num_crops)

    path, report = write_checked(proto, out, check)
    _log.info(report.format())
    return path


def _prepare_int8(config: EngineBuildConfig, support) -> PreparedOnnx:
    from export.precision import INT8_SANITY_TOLERANCES

    plugin = decide_css_plugin(config.css_plugin, support, have_model=False, has_css=False, precision="int8")
    reference = None
    artefacts: dict[str, str] = {}
    if config.checkpoint is not None or config.onnx is not None:
        paths = artefact_paths(config.out)
        if config.checkpoint is not None:
            model = load_export_model(config.checkpoint)
            reference = export_checked(model, OnnxExportConfig(checkpoint=config.checkpoint, out=paths["plain"],
                                                               crops_dir=config.crops_dir, num_crops=config.num_crops))
        else:
            _validated_onnx(config.onnx)
            reference = config.onnx
        artefacts["plain"] = str(reference)
    if config.qdq_onnx is not None:
        qdq, gate = config.qdq_onnx, _saved_gate(config.qdq_onnx)
    else:
        qdq, gate = _calibrate(config, reference)
    proto = load_onnx(qdq)
    ops = {n.op_type for n in proto.graph.node}
    if not {"QuantizeLinear", "DequantizeLinear"} <= ops:
        raise ExportError(f"{qdq} has no QuantizeLinear/DequantizeLinear nodes; it is not a Q/DQ (INT8) ONNX")
    spec = spec_from_onnx(proto)
    artefacts["int8"] = str(qdq)
    if reference is not None:
        from export.parity import check_parity

        report = check_parity({"fp32": _ort_runner(reference), "int8": _ort_runner(qdq)}, spec,
                              tolerances=INT8_SANITY_TOLERANCES, label="int8 Q/DQ vs fp32 (onnxruntime, sanity)",
                              crops_dir=config.crops_dir, num_crops=config.num_crops)
        _log.info(report.format())
        if not report.passed:
            raise ParityError(f"{qdq}: {report.summary()}")
    else:
        _log.info("note: no --checkpoint/--onnx given: the Q/DQ ONNX is not compared with an FP32 reference")
    if gate is None:
        _log.info(f"note: {qdq} has no INT8 accuracy gate result beside it (python -m calibration writes one); "
            "the sidecar records none")
    return PreparedOnnx(Path(qdq), Path(qdq), reference, "int8", spec.replace(precision="int8"), plugin, artefacts, {},
                        int8_gate=gate)


def _saved_gate(qdq: Path) -> dict[str, Any] | None:
    """The gate result ``python -m calibration`` saved beside a user's Q/DQ ONNX, if it judged this very file."""
    try:
        from calibration import read_gate
    except ImportError:
        return None
    result = read_gate(qdq)
    if result is not None and not result.passed:
        raise ExportError(f"{qdq} failed its INT8 accuracy gate: {result.summary()}")
    return None if result is None else result.to_dict()


def _calibrate(config: EngineBuildConfig, reference: Path) -> tuple[Path, dict[str, Any] | None]:
    """Q/DQ ONNX from ``calibration/``: calibrated on ``--calibration-dir``, gated on held-out crops.

    The gate judges on ``--crops`` when given, else on the calibration folder's images that
    calibration did not use; a failed gate raises (one line with the numbers) and nothing is built.
    """
    from calibration import calibrate

    if not config.calibration_dir.is_dir():
        raise ExportError(f"calibration folder {config.calibration_dir} does not exist")
    paths = artefact_paths(config.out)
    out = paths["plain"].with_name(paths["plain"].stem + ".int8.onnx")
    result = calibrate(reference, config.calibration_dir, out, holdout_dir=config.crops_dir)
    _log.info(result.gate.format())
    return result.path, result.gate.to_dict()


# ---------------------------------------------------------------------------------------------
# step 3: TensorRT
# ---------------------------------------------------------------------------------------------
def trtexec_hint(onnx_path: Path, spec: InputSpec, profile: Profile, out: Path) -> str:
    shapes = profile.shapes(spec)
    dims = {k: "x".join(str(d) for d in v) for k, v in shapes.items()}
    return (
        f"trtexec --onnx={onnx_path} --stronglyTyped --minShapes={INPUT_NAME}:{dims['min']} "
        f"--optShapes={INPUT_NAME}:{dims['opt']} --maxShapes={INPUT_NAME}:{dims['max']} --saveEngine={out}"
    )


def build(config: EngineBuildConfig) -> Path:
    """The whole command; returns the engine path. Raises :class:`MissingBuildTarget` without TensorRT/GPU."""
    from export.plugin.trt_plugin import check_aot_kernel, plugin_support
    from export.tensorrt_build import gpu_info

    support = plugin_support()
    if support.aot and config.css_plugin != "off" and config.precision != "int8" and gpu_info() is not None:
        support = check_aot_kernel(support)  # can this Triton make a kernel TensorRT launches? (else JIT/plain, said why)
    prepared = prepare_onnx(config, support)
    hint = trtexec_hint(prepared.engine_onnx, prepared.spec, config.profile, config.out)
    if prepared.plugin.used:  # trtexec cannot register a Python plugin: this command must run there
        hint = "this same command (python -m export.build_engine ...) on a machine with TensorRT >= 10.9"
    if support.tensorrt is None:
        raise MissingBuildTarget(
            f"TensorRT is not installed here; the {prepared.precision} ONNX is ready at {prepared.engine_onnx} "
            f"-- build on the target with: {hint}"
        )
    gpu = gpu_info()
    if gpu is None:
        raise MissingBuildTarget(
            f"no CUDA GPU found (TensorRT {support.tensorrt} needs one to build); the {prepared.precision} ONNX is ready "
            f"at {prepared.engine_onnx} -- build on the target with: {hint}"
        )
    return _compile(config, prepared, gpu)


def _compile(config: EngineBuildConfig, prepared: PreparedOnnx, gpu) -> Path:
    import tensorrt as trt

    from export.tensorrt_build import build_engine_bytes

    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    onnx_path = prepared.engine_onnx
    if not strongly_typed and prepared.precision == "fp16":
        onnx_path = prepared.fp32_onnx  # old TensorRT: FP32 graph + BuilderFlag.FP16
        _log.info(f"TensorRT {trt.__version__} has no strongly typed networks: compiling {onnx_path} with BuilderFlag.FP16")
    if prepared.plugin.used:
        from export.plugin.trt_plugin import register_css_plugin

        _log.info(f"registered the CSS plugin ({register_css_plugin()})")
    workspace = config.workspace_mib * (1 << 20) if config.workspace_mib else None
    engine, facts = build_engine_bytes(
        onnx_path,
        spec=prepared.spec,
        profile=config.profile,
        precision=prepared.precision,
        workspace_bytes=workspace,
        timing_cache=config.timing_cache,
        prefer_aot_plugins=prepared.plugin.implementation == "aot",
        verbose=config.verbose,
    )
    sidecar = make_sidecar(config, prepared, onnx_path, gpu, facts, {"verified": False, "reason": "not yet verified"})
    # The engine and its sidecar are loaded through the runtime's own TensorRTBackend (sidecar checks, plugin
    # registration, pinned buffers, profile padding) from a folder beside --out; only an engine that loads and
    # agrees with the ONNX is moved to --out.
    with tempfile.TemporaryDirectory(dir=config.out.parent, prefix=f".{config.out.name}.verify-") as tmp:
        candidate = Path(tmp) / config.out.name
        candidate.write_bytes(engine)
        write_engine_sidecar(candidate, sidecar)
        verification = _verify(candidate, prepared, config)
    sidecar = dataclasses.replace(sidecar, verification=verification)
    with atomic_write(config.out) as tmp:
        tmp.write_bytes(engine)
    sidecar_file = write_engine_sidecar(config.out, sidecar)
    _log.info(f"wrote {config.out} ({len(engine) / 1e6:.1f} MB, {prepared.precision}, TensorRT {facts['tensorrt_version']}, "
        f"{gpu.name} sm_{gpu.compute_capability.replace('.', '')}) and {sidecar_file}")
    return config.out


def _verify(engine_path: Path, prepared: PreparedOnnx, config: EngineBuildConfig) -> dict[str, Any]:
    """Load the engine just built through :class:`~dslnet_edge.backends.tensorrt_backend.TensorRTBackend` and
    compare it with the FP32 ONNX in ONNX Runtime. Raises BuildError (nothing is written) when it does not load
    or disagrees."""
    from dslnet_edge.backends.base import BackendError
    from dslnet_edge.backends.tensorrt_backend import TensorRTBackend
    from dslnet_edge.comparison import Tolerances
    from export.parity import backend_runner, check_parity
    from export.precision import FP16_TOLERANCES, INT8_SANITY_TOLERANCES
    from export.tensorrt_build import BuildError

    try:
        backend = TensorRTBackend(engine_path)
    except (BackendError, ValueError) as exc:  # ArtifactError/PluginError/EngineCompatibilityError are BackendErrors
        raise BuildError(f"the engine just built does not load through dslnet_edge's TensorRT backend: {exc}; "
                         f"nothing written at {config.out}") from None
    try:
        if prepared.reference_onnx is None:
            _log.info("note: no FP32 reference ONNX: the engine was loaded but not compared")
            return {"verified": False, "loaded": True, "reason": "no FP32 reference ONNX"}

        # FP32 engines may use TF32 convolutions: a cosine bound, with max|diff| loosened accordingly.
        tolerances = {"fp32": Tolerances(max_abs=5e-3, min_cosine=0.9999), "fp16": FP16_TOLERANCES,
                      "int8": INT8_SANITY_TOLERANCES}[prepared.precision]
        report = check_parity({"onnxruntime fp32": _ort_runner(prepared.reference_onnx), "tensorrt": backend_runner(backend)},
                              prepared.spec, tolerances=tolerances, label=f"tensorrt {prepared.precision} vs onnxruntime fp32",
                              crops_dir=config.crops_dir, num_crops=config.num_crops)
    except BackendError as exc:
        raise BuildError(f"the engine just built fails to run: {exc}; nothing written at {config.out}") from None
    finally:
        backend.close()
    _log.info(report.format())
    if not report.passed:
        raise BuildError(f"the engine disagrees with the ONNX: {report.summary()}; nothing written")
    return {"verified": True, **report.to_dict()}


def make_sidecar(config, prepared: PreparedOnnx, onnx_path: Path, gpu, facts: dict, verification: dict) -> EngineSidecar:
    """``<out>.json``: what the runtime needs to trust the engine (read by dslnet_edge's TensorRT backend)."""
    from export.plugin import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

    choice = prepared.plugin
    plugin = EnginePlugin(used=False, reason=choice.reason)
    if choice.used:
        # what the runtime imports and calls before deserializing a JIT-plugin engine
        plugin = EnginePlugin(used=True, implementation=choice.implementation, reason=choice.reason, name=PLUGIN_NAME,
                              namespace=PLUGIN_NAMESPACE, version=PLUGIN_VERSION,
                              register="export.plugin.trt_plugin:register_css_plugin")
    shapes = config.profile.shapes(prepared.spec)
    major, _, minor = gpu.compute_capability.partition(".")
    return EngineSidecar(
        input_spec=prepared.spec,
        precision=prepared.precision,
        tensorrt_version=facts["tensorrt_version"],
        gpu_name=gpu.name,
        compute_capability=(int(major), int(minor)),
        profile_input=INPUT_NAME,
        min_shape=tuple(shapes["min"]),
        opt_shape=tuple(shapes["opt"]),
        max_shape=tuple(shapes["max"]),
        plugin=plugin,
        strongly_typed=facts["strongly_typed"],
        builder_flags=tuple(facts["builder_flags"]),
        onnx_path=os.path.relpath(onnx_path, config.out.parent),
        onnx_sha256=file_sha256(onnx_path),
        intermediates={k: os.path.relpath(v, config.out.parent) for k, v in prepared.artefacts.items()},
        workspace_bytes=facts["workspace_bytes"],
        verification=verification,
        int8_gate=prepared.int8_gate,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def sidecar_dict(config, prepared: PreparedOnnx, onnx_path: Path, gpu, facts: dict, verification: dict) -> dict[str, Any]:
    """:func:`make_sidecar` as the JSON object written beside the engine."""
    return make_sidecar(config, prepared, onnx_path, gpu, facts, verification).to_dict()


def prepared_shapes(spec: InputSpec, profile: Profile) -> dict[str, list[int]]:
    return profile.shapes(spec)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m export.build_engine",
        description="Build a TensorRT engine (strongly typed; TensorRT 10 and 11) from a DSLNet checkpoint or ONNX. "
        "Every ONNX it makes is kept beside --out and checked in ONNX Runtime first. Without TensorRT or a GPU it "
        "stops after the ONNX with exit status 2.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="checkpoint .pt (default: the demo weights)")
    source.add_argument("--onnx", type=Path, help="a plain FP32 ONNX from python -m export.onnx")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="FP16 weights/activations (sensitive parts FP32)")
    precision.add_argument("--int8", action="store_true", help="INT8 from a Q/DQ ONNX (--qdq-onnx or --calibration-dir)")
    parser.add_argument("--qdq-onnx", type=Path, help="Q/DQ ONNX made by calibration/ (with --int8)")
    parser.add_argument("--calibration-dir", type=Path, help="crops to calibrate with through calibration/ (with --int8)")
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--workspace", type=int, default=None, metavar="MIB", help="builder workspace limit in MiB")
    parser.add_argument("--timing-cache", type=Path, default=None, help="timing cache file (read if present, then updated)")
    parser.add_argument("--css-plugin", choices=PLUGIN_MODES, default="auto",
                        help="fused CSS plugin: auto = where TensorRT compiles it ahead of time (>= 10.9)")
    parser.add_argument("--crops", type=Path, default=None, help="person crops for the real-crop parity checks")
    parser.add_argument("--num-crops", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("dslnet.engine"), help="engine path (default dslnet.engine)")
    parser.add_argument("--verbose", action="store_true", help="TensorRT verbose log")
    return parser


def config_from_args(args) -> EngineBuildConfig:
    return EngineBuildConfig(
        out=args.out,
        checkpoint=args.checkpoint,
        onnx=args.onnx,
        precision="fp16" if args.fp16 else "int8" if args.int8 else "fp32",
        qdq_onnx=args.qdq_onnx,
        calibration_dir=args.calibration_dir,
        profile=Profile(args.min_batch, args.opt_batch, args.max_batch),
        workspace_mib=args.workspace,
        timing_cache=args.timing_cache,
        css_plugin=args.css_plugin,
        crops_dir=args.crops,
        num_crops=args.num_crops,
        verbose=args.verbose,
    )


def main(argv: list[str] | None = None) -> int:
    from export._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error

    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        with log_to_console("stdout"):
            build(config_from_args(args))
    except MissingBuildTarget as exc:
        return report_error(exc, status=2)
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
