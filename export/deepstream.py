"""``python -m export.deepstream``: hand a DSLNet engine to NVIDIA DeepStream as a secondary GIE.

::

    python -m export.deepstream --engine model.engine --out ds/ [--primary-gie-id 1 --person-class-id 0]

writes ``ds/config_infer_reid.txt`` (an ``nvinfer`` config: re-identification on the person
objects of the primary detector, the raw embedding attached as tensor meta) and
``ds/reid_probe.py`` (a short pad probe that reads the embeddings and feeds a ``Matcher``).

Every value comes from the engine's sidecar and its InputSpec, never from constants:

=========================  ==============================================================
key                        from
=========================  ==============================================================
``process-mode=2``         secondary: runs on objects (crops), not on full frames
``network-type=100``       "other": nvinfer does no post-processing, the output is kept
``output-tensor-meta=1``   the ``embeddings`` tensor is attached to each object's user meta
``batch-size``             the engine profile's max batch (sidecar ``profile``)
``infer-dims``             ``3;H;W`` of the InputSpec
``model-color-format``     InputSpec ``channel_order`` (0 = RGB, 1 = BGR)
``net-scale-factor``,      nvinfer computes ``y = net-scale-factor * (x - offset)``; the runtime
``offsets``                feeds raw pixels in ``pixel_range`` and the model normalizes inside
                           (``normalization_in_model``), so scale = (high - low) / 255 and
                           offsets = -low / scale; a model that does not normalize inside gets
                           ``(x / 255 - mean) / std`` (one std for all channels: nvinfer has a
                           single scale factor)
``network-mode``           sidecar ``precision`` (0 = FP32, 1 = INT8, 2 = FP16)
``scaling-filter``         InputSpec ``interpolation`` (nearest 0, linear 1, cubic 2, area 3);
                           ``maintain-aspect-ratio=0`` like the runtime's plain resize
=========================  ==============================================================

DeepStream's scaler is not OpenCV's: embeddings agree closely but not bit for bit with
``Engine.embed`` on the same crops. An engine that needs the JIT Python CSS plugin cannot run in
DeepStream (no Python inside nvinfer): rebuild it with the ahead-of-time plugin (TensorRT >= 10.9)
or ``--css-plugin off``; this tool refuses it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

from dslnet_edge.errors import DslnetError
from dslnet_edge.spec import InputSpec
from export.engine_facts import EngineFacts, engine_facts

__all__ = ["DeepStreamConfig", "DeepStreamError", "nvinfer_properties", "write_deepstream", "main"]

_log = logging.getLogger(__name__)

CONFIG_NAME = "config_infer_reid.txt"
PROBE_NAME = "reid_probe.py"
PROBE_SOURCE = Path(__file__).with_name("deepstream_probe.py")
OUTPUT_NAME = "embeddings"  # export.onnx.OUTPUT_NAME (literal: importing export.onnx pulls in torch)
_NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
_COLOR_FORMAT = {"RGB": 0, "BGR": 1}
_SCALING_FILTER = {"nearest": 0, "linear": 1, "cubic": 2, "area": 3}


class DeepStreamError(DslnetError, ValueError):
    """The engine cannot be handed to DeepStream as asked."""


@dataclasses.dataclass(frozen=True)
class DeepStreamConfig:
    """What ``python -m export.deepstream`` writes (see :func:`build_parser` for the flags)."""

    engine: Path
    out: Path
    gie_id: int = 2
    primary_gie_id: int = 1
    person_class_id: int = 0
    gpu_id: int = 0
    batch_size: int | None = None  # default: the engine profile's max batch
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", Path(self.engine))
        object.__setattr__(self, "out", Path(self.out))
        if not self.engine.is_file():
            raise FileNotFoundError(f"--engine {self.engine} does not exist")
        for name, low in (("gie_id", 1), ("primary_gie_id", 1), ("person_class_id", 0), ("gpu_id", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise DeepStreamError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.gie_id == self.primary_gie_id:
            raise DeepStreamError(f"--gie-id and --primary-gie-id must differ, both are {self.gie_id}")


def scale_and_offsets(spec: InputSpec) -> tuple[float, tuple[float, float, float]]:
    """nvinfer's ``net-scale-factor`` and per-channel ``offsets`` giving the pixels the model expects."""
    if spec.normalization_in_model:
        low, high = spec.pixel_range
        scale = (high - low) / 255.0
        return scale, (-low / scale,) * 3
    if max(spec.std) - min(spec.std) > 1e-9:
        raise DeepStreamError(
            f"the model expects (x/255 - mean)/std with per-channel std {spec.std}, but nvinfer has one net-scale-factor; "
            "export the model with normalization inside (the default of export.onnx)"
        )
    return 1.0 / (255.0 * spec.std[0]), tuple(255.0 * m for m in spec.mean)


def nvinfer_properties(config: DeepStreamConfig, facts: EngineFacts, engine_path: str) -> dict[str, str]:
    """The ``[property]`` group of the nvinfer config, as ordered key -> text."""
    spec = facts.spec
    if facts.plugin == "jit":
        raise DeepStreamError(
            f"{config.engine} needs the JIT CSS plugin (a TensorRT Python plugin), which nvinfer cannot load; rebuild it "
            "with TensorRT >= 10.9 (ahead-of-time plugin) or python -m export.build_engine --css-plugin off"
        )
    batch = config.batch_size or facts.max_batch or 1
    if facts.max_batch is not None and batch > facts.max_batch:
        raise DeepStreamError(f"--batch-size {batch} exceeds the engine profile's max batch {facts.max_batch}")
    scale, offsets = scale_and_offsets(spec)
    properties = {
        "gpu-id": str(config.gpu_id),
        "model-engine-file": engine_path,
        "batch-size": str(batch),
        "network-mode": str(_NETWORK_MODE[facts.precision]),
        "net-scale-factor": repr(scale),
        "offsets": ";".join(repr(float(o)) for o in offsets),
        "model-color-format": str(_COLOR_FORMAT[spec.channel_order]),
        "infer-dims": f"3;{spec.height};{spec.width}",
        "maintain-aspect-ratio": "0",
        "scaling-filter": str(_SCALING_FILTER[spec.interpolation]),
        "output-blob-names": OUTPUT_NAME,
        "network-type": "100",
        "output-tensor-meta": "1",
        "process-mode": "2",
        "gie-unique-id": str(config.gie_id),
        "operate-on-gie-id": str(config.primary_gie_id),
        "operate-on-class-ids": str(config.person_class_id),
        "classifier-async-mode": "0",
    }
    return properties


def write_deepstream(config: DeepStreamConfig) -> dict[str, Path]:
    """Write the nvinfer config and the pad-probe example; returns their paths."""
    facts = engine_facts(config.engine)
    config.out.mkdir(parents=True, exist_ok=True)
    paths = {"config": config.out / CONFIG_NAME, "probe": config.out / PROBE_NAME}
    for path in paths.values():
        if path.exists() and not config.overwrite:
            raise DeepStreamError(f"{path} exists; pass --overwrite to replace it")
    engine_path = os.path.relpath(config.engine.resolve(), config.out.resolve())
    properties = nvinfer_properties(config, facts, engine_path)
    spec = facts.spec
    lines = [
        "# DSLNet re-identification as a DeepStream secondary GIE (nvinfer), written by python -m export.deepstream.",
        f"# Engine: {config.engine.name} ({facts.precision}); InputSpec {spec.height}x{spec.width} {spec.channel_order}, "
        f"pixels {spec.pixel_range[0]:g}-{spec.pixel_range[1]:g}, {spec.feature_dim}-d embeddings "
        f"({'L2-normalized' if spec.l2_normalized else 'not normalized'}) as tensor meta '{OUTPUT_NAME}'.",
        f"# The CSS plugin: {_plugin_note(facts)}",
        f"# Read the embeddings in a pad probe after this GIE: see {PROBE_NAME}.",
        "[property]",
        *[f"{key}={value}" for key, value in properties.items()],
    ]
    from dslnet_edge._io import atomic_write_text

    atomic_write_text(paths["config"], "\n".join(lines) + "\n")
    shutil.copyfile(PROBE_SOURCE, paths["probe"])
    return paths


def _plugin_note(facts: EngineFacts) -> str:
    return {
        "none": "not used; nothing to load.",
        "aot": "compiled ahead of time into the engine; nothing to load.",
    }[facts.plugin]


def read_nvinfer_config(path: str | os.PathLike) -> dict[str, str]:
    """The ``[property]`` group of an nvinfer config file (a GLib key file) as a dict (for tests and checks)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return dict(parser["property"])


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m export.deepstream",
        description="Write a DeepStream nvinfer secondary-GIE config for a DSLNet engine (values from its sidecar and "
        "InputSpec) and a pad-probe example that feeds the embeddings to a Matcher.",
    )
    parser.add_argument("--engine", type=Path, required=True, help="TensorRT engine with its sidecar model.engine.json")
    parser.add_argument("--out", type=Path, required=True, help="folder for config_infer_reid.txt and reid_probe.py")
    parser.add_argument("--gie-id", type=int, default=2, help="gie-unique-id of this GIE (default 2)")
    parser.add_argument("--primary-gie-id", type=int, default=1, help="the person detector's gie-unique-id (default 1)")
    parser.add_argument("--person-class-id", type=int, default=0, help="the detector's person class id (default 0)")
    parser.add_argument("--gpu-id", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="objects per batch (default: the engine's max batch)")
    parser.add_argument("--overwrite", action="store_true", help="replace files written before")
    return parser


def config_from_args(args) -> DeepStreamConfig:
    return DeepStreamConfig(
        engine=args.engine,
        out=args.out,
        gie_id=args.gie_id,
        primary_gie_id=args.primary_gie_id,
        person_class_id=args.person_class_id,
        gpu_id=args.gpu_id,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )


def run(config: DeepStreamConfig) -> dict[str, Path]:
    paths = write_deepstream(config)
    _log.info(f"wrote {paths['config']} and {paths['probe']}")
    return paths


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
