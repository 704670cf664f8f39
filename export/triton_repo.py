"""``python -m export.triton_repo``: a Triton Inference Server model repository for DSLNet.

::

    python -m export.triton_repo --engine model.engine --out models/    # TensorRT plan (+ Python models)
    python -m export.triton_repo --onnx model.onnx --out models/        # ONNX Runtime (+ Python models)

writes, for ``--name dslnet``::

    models/
      dslnet/          config.pbtxt + 1/model.plan (tensorrt_plan) or 1/model.onnx (onnxruntime_onnx)
      dslnet_python/   config.pbtxt + 1/model.py + the model file: Python backend wrapping dslnet_edge.Engine
      dslnet_crops/    config.pbtxt + 1/model.py + the model file: raw crops in, preprocessing on the server
      README.md        how the three differ and how to start the server

``dslnet`` and ``dslnet_python`` take the same tensors, ``images`` float32 ``[N, 3, H, W]``
(preprocessed, 0-255 pixels in the InputSpec's channel order) and return ``embeddings`` float32
``[N, D]``; a client picks either by name (``Engine("grpc://host:8001/dslnet")``, see
:mod:`dslnet_edge.backends.triton_client_backend`). ``dslnet_python`` runs wherever
``dslnet_edge`` installs, so a server without TensorRT (or without Triton's ONNX Runtime
backend) can serve too. ``dslnet_crops`` takes ``crops`` uint8 ``[n, h, w, 3]`` BGR (one size per
request, any size across requests: ``allow_ragged_batch``) and runs the project's one
preprocessing function, so a thin client sends pixels and gets embeddings.

Every model batches dynamically (``max_batch_size`` = the engine profile's max batch, or
``--max-batch``), and every config carries the InputSpec as the parameter ``dslnet_input_spec``
(JSON) so a client can preprocess exactly as the model expects. The configs are plain
``config.pbtxt`` text; the tests parse them with Triton's own protobuf schema (``tritonclient``).

The CSS plugin: an engine whose sidecar says the plugin was compiled ahead of time (TensorRT >=
10.9) carries it inside and needs nothing on the server; an engine needing the JIT Python plugin
cannot run in Triton's TensorRT backend (that plugin needs a Python interpreter in the process),
so its ``dslnet`` model is not written and ``dslnet_python`` (which registers the plugin) serves
it instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

from dslnet_edge.backends.triton_client_backend import SPEC_PARAMETER
from dslnet_edge.errors import DslnetError
from dslnet_edge.spec import InputSpec
from export.engine_facts import engine_facts

__all__ = ["TritonRepoConfig", "TritonRepoError", "write_repository", "main", "SPEC_PARAMETER"]

logger = logging.getLogger(__name__)

INPUT_NAME = "images"  # export.onnx.INPUT_NAME (kept literal: importing export.onnx pulls in torch)
OUTPUT_NAME = "embeddings"
CROPS_NAME = "crops"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")
_DEFAULT_ONNX_MAX_BATCH = 32


class TritonRepoError(DslnetError, ValueError):
    """The model repository cannot be written as asked (bad input artefact, existing non-repository output)."""


@dataclasses.dataclass(frozen=True)
class TritonRepoConfig:
    """What ``python -m export.triton_repo`` writes (see :func:`build_parser` for the flags)."""

    out: Path
    engine: Path | None = None
    onnx: Path | None = None
    name: str = "dslnet"
    max_batch: int | None = None
    python_model: Path | None = None  # what the Python-backend models wrap (default: --onnx, or the engine's ONNX)
    python_device: str = "cpu"
    instances: int = 1
    queue_delay_us: int = 2000
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("out", "engine", "onnx", "python_model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if (self.engine is None) == (self.onnx is None):
            raise TritonRepoError("pass exactly one of --engine model.engine or --onnx model.onnx")
        source = self.engine or self.onnx
        if not source.is_file():
            raise FileNotFoundError(f"{source} does not exist")
        if self.python_model is not None and not self.python_model.is_file():
            raise FileNotFoundError(f"--python-model {self.python_model} does not exist")
        if not self.name or not all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in self.name):
            raise TritonRepoError(f"--name must be letters, digits, '_' or '-', got {self.name!r}")
        for name, low in (("max_batch", 1), ("instances", 1), ("queue_delay_us", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise TritonRepoError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.python_device not in ("cpu", "cuda"):
            raise TritonRepoError(f"--python-device must be cpu or cuda, got {self.python_device!r}")


# ---------------------------------------------------------------------------------------------
# what the artefact says
# ---------------------------------------------------------------------------------------------
def _onnx_spec(path: Path) -> InputSpec:
    from dslnet_edge.backends import read_onnx_spec

    return read_onnx_spec(path)


# ---------------------------------------------------------------------------------------------
# config.pbtxt text
# ---------------------------------------------------------------------------------------------
def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid protobuf text-format string


def model_config(
    name: str,
    *,
    kind: str,
    spec: InputSpec,
    max_batch: int,
    preferred: list[int] | None = None,
    queue_delay_us: int = 2000,
    instances: int = 1,
    parameters: dict[str, str] | None = None,
    crops: bool = False,
) -> str:
    """The ``config.pbtxt`` of one model: ``kind`` is ``tensorrt_plan``, ``onnxruntime_onnx`` or ``python``."""
    head = {
        "tensorrt_plan": ['platform: "tensorrt_plan"', 'default_model_filename: "model.plan"'],
        "onnxruntime_onnx": ['platform: "onnxruntime_onnx"', 'default_model_filename: "model.onnx"'],
        "python": ['backend: "python"'],
    }[kind]
    if crops:
        inputs = (f'  {{ name: "{CROPS_NAME}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] allow_ragged_batch: true }}')
    else:
        inputs = f'  {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: [ 3, {spec.height}, {spec.width} ] }}'
    lines = [
        f"name: {_quote(name)}",
        *head,
        f"max_batch_size: {max_batch}",
        "input [",
        inputs,
        "]",
        "output [",
        f'  {{ name: "{OUTPUT_NAME}" data_type: TYPE_FP32 dims: [ {spec.feature_dim} ] }}',
        "]",
        "dynamic_batching {",
        *([f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]"] if preferred else []),
        f"  max_queue_delay_microseconds: {queue_delay_us}",
        "}",
        "instance_group [",
        f"  {{ kind: {'KIND_GPU' if kind == 'tensorrt_plan' else 'KIND_CPU'} count: {instances} }}",
        "]",
    ]
    params = {SPEC_PARAMETER: spec.to_json(), **(parameters or {})}
    for key, value in params.items():
        lines.append(f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the repository
# ---------------------------------------------------------------------------------------------
def write_repository(config: TritonRepoConfig) -> dict[str, Path]:
    """Write the model repository; returns ``{model name: its folder}``."""
    _prepare_out(config)
    models: dict[str, Path] = {}
    notes: list[str] = []
    if config.engine is not None:
        facts = engine_facts(config.engine)
        spec = facts.spec
        max_batch = config.max_batch or facts.max_batch or 1
        if facts.max_batch is not None and max_batch > facts.max_batch:
            raise TritonRepoError(f"--max-batch {max_batch} exceeds the engine profile's max batch {facts.max_batch}")
        preferred = sorted({b for b in (facts.opt_batch, max_batch) if b and b <= max_batch})
        python_source = config.python_model or facts.onnx or config.engine
        if facts.plugin == "jit":
            notes.append(
                f"{config.name}: not written. The engine needs the JIT CSS plugin (a TensorRT Python plugin), which "
                "Triton's TensorRT backend cannot load; the Python-backend models serve it (they register the plugin), "
                "or rebuild the engine with TensorRT >= 10.9 (ahead-of-time plugin) or --css-plugin off."
            )
            logger.warning(notes[-1])
        else:
            folder = _model_folder(config.out, config.name)
            shutil.copyfile(config.engine, folder / "1" / "model.plan")
            text = model_config(config.name, kind="tensorrt_plan", spec=spec, max_batch=max_batch, preferred=preferred,
                                queue_delay_us=config.queue_delay_us, instances=config.instances)
            (folder / "config.pbtxt").write_text(text, encoding="utf-8")
            models[config.name] = folder
            if facts.plugin == "aot":
                notes.append(f"{config.name}: the CSS plugin was compiled ahead of time into the engine; nothing to load.")
            notes.append(f"{config.name}: a TensorRT plan runs only on the TensorRT version and GPU that built it.")
    else:
        spec = _onnx_spec(config.onnx)
        max_batch = config.max_batch or _DEFAULT_ONNX_MAX_BATCH
        preferred = None
        python_source = config.python_model or config.onnx
        folder = _model_folder(config.out, config.name)
        shutil.copyfile(config.onnx, folder / "1" / "model.onnx")
        text = model_config(config.name, kind="onnxruntime_onnx", spec=spec, max_batch=max_batch,
                            queue_delay_us=config.queue_delay_us, instances=config.instances)
        (folder / "config.pbtxt").write_text(text, encoding="utf-8")
        models[config.name] = folder
    for suffix, crops in (("_python", False), ("_crops", True)):
        name = config.name + suffix
        models[name] = _python_model(config, name, python_source, spec=spec, max_batch=max_batch, crops=crops)
    (config.out / "README.md").write_text(_readme(config, models, notes), encoding="utf-8")
    return models


def _prepare_out(config: TritonRepoConfig) -> None:
    out = config.out
    if out.exists() and not out.is_dir():
        raise TritonRepoError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / "README.md").is_file() and "export.triton_repo" in (out / "README.md").read_text(errors="replace")
        if not (ours and config.overwrite):
            raise TritonRepoError(
                f"--out {out} is not empty; pass an empty or new folder"
                + (" (or --overwrite to replace this repository)" if ours else "")
            )
        for name in (config.name, config.name + "_python", config.name + "_crops"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)


def _model_folder(out: Path, name: str) -> Path:
    folder = out / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    return folder


def _python_model(config: TritonRepoConfig, name: str, source: Path, *, spec: InputSpec, max_batch: int, crops: bool) -> Path:
    folder = _model_folder(config.out, name)
    version = folder / "1"
    shutil.copyfile(PYTHON_MODEL_SOURCE, version / "model.py")
    shutil.copyfile(source, version / source.name)
    sidecar = source.with_name(source.name + ".json")
    if source.suffix.lower() in (".engine", ".plan") and sidecar.is_file():
        shutil.copyfile(sidecar, version / sidecar.name)
    device = "cuda" if source.suffix.lower() in (".engine", ".plan") else config.python_device  # TensorRT runs on the GPU
    parameters = {"model_file": source.name, "device": device, "input": CROPS_NAME if crops else INPUT_NAME}
    text = model_config(name, kind="python", spec=spec, max_batch=max_batch, queue_delay_us=config.queue_delay_us,
                        instances=config.instances, parameters=parameters, crops=crops)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    return folder


def _readme(config: TritonRepoConfig, models: dict[str, Path], notes: list[str]) -> str:
    lines = [
        "# DSLNet model repository (written by python -m export.triton_repo)",
        "",
        "| model | input | runs |",
        "| --- | --- | --- |",
    ]
    for name in models:
        if name.endswith("_crops"):
            lines.append(f"| `{name}` | `crops` uint8 [n, h, w, 3] BGR, any size per request | Python backend: dslnet_edge preprocessing + Engine |")
        elif name.endswith("_python"):
            lines.append(f"| `{name}` | `images` float32 [N, 3, H, W] | Python backend: dslnet_edge.Engine (no TensorRT needed with an ONNX) |")
        else:
            kind = "TensorRT plan" if config.engine is not None else "ONNX Runtime"
            lines.append(f"| `{name}` | `images` float32 [N, 3, H, W] | {kind} backend |")
    lines += [
        "",
        "Every model returns `embeddings` float32 [N, D] and carries its InputSpec as the config parameter "
        f"`{SPEC_PARAMETER}`.",
        "The Python-backend models import `dslnet_edge`: start `tritonserver` with the environment that has it first "
        "on PATH (the Python backend stub uses the first `python` there).",
        "",
        "```bash",
        "tritonserver --model-repository models/",
        "python -c \"import dslnet_edge; print(dslnet_edge.Engine('grpc://127.0.0.1:8001/" + config.name + "'))\"",
        "```",
        "",
        *[f"- {note}" for note in notes],
    ]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m export.triton_repo",
        description="Write a Triton Inference Server model repository: a tensorrt_plan (--engine) or onnxruntime_onnx "
        "(--onnx) model plus two Python-backend models wrapping dslnet_edge.Engine (preprocessed images; raw crops).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--engine", type=Path, help="TensorRT engine with its sidecar model.engine.json")
    source.add_argument("--onnx", type=Path, help="FP32 ONNX from python -m export.onnx")
    parser.add_argument("--out", type=Path, required=True, help="repository folder (new or empty)")
    parser.add_argument("--name", default="dslnet", help="model name (default dslnet; also NAME_python, NAME_crops)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help=f"max_batch_size (default: the engine profile's max, or {_DEFAULT_ONNX_MAX_BATCH} for ONNX)")
    parser.add_argument("--python-model", type=Path, default=None,
                        help="model file the Python-backend models wrap (default: --onnx, or the ONNX the engine came from)")
    parser.add_argument("--python-device", choices=("cpu", "cuda"), default="cpu", help="device of the Python-backend models")
    parser.add_argument("--instances", type=int, default=1, help="instances of each model (instance_group count)")
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batching max queue delay (microseconds)")
    parser.add_argument("--overwrite", action="store_true", help="replace a repository this tool wrote before")
    return parser


def config_from_args(args) -> TritonRepoConfig:
    return TritonRepoConfig(
        out=args.out,
        engine=args.engine,
        onnx=args.onnx,
        name=args.name,
        max_batch=args.max_batch,
        python_model=args.python_model,
        python_device=args.python_device,
        instances=args.instances,
        queue_delay_us=args.queue_delay_us,
        overwrite=args.overwrite,
    )


def run(config: TritonRepoConfig) -> dict[str, Path]:
    models = write_repository(config)
    for name, folder in models.items():
        logger.info(f"{name}: {folder / 'config.pbtxt'}")
    logger.info(f"wrote {config.out / 'README.md'}")
    return models


def main(argv: list[str] | None = None) -> int:
    from export._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error

    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        with log_to_console("stdout"):
            run(config_from_args(args))
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
