"""DSLNet -> ONNX: the plain FP32 graph every other artefact starts from.

The graph takes ``images`` float32 ``[N, 3, H, W]`` (RGB, 0-255; normalization is inside the
graph) and returns ``embeddings`` float32 ``[N, feature_dim]``, L2-normalized, with a dynamic
batch dimension ``N``. The model's :class:`~dslnet_edge.spec.InputSpec` travels as JSON in the
ONNX ``metadata_props`` under ``dslnet_edge.input_spec``. Only the eval-mode forward is traced,
so the auxiliary branch and the identity classifiers never reach the file.

Why the TorchScript exporter (``dynamo=False``): torch's newer ``torch.export`` exporter needs
``onnxscript``, which the project does not depend on, and the TorchScript exporter is what lets
:mod:`export.plugin.graph` emit each CSS module as one marker node through an autograd
``Function.symbolic`` (see there). Its deprecation warning is silenced here, on purpose and
only for this call.

``python -m export.onnx --checkpoint CKPT --out model.onnx`` runs the export with its parity
report (see :func:`main`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from dslnet_edge._io import atomic_write
from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec
from dslnet_edge.weights import DEMO_CHECKPOINT  # the demo weights the training run produces
from export.contract import (  # the graph contract, re-exported here where users look for it
    BATCH_DIM,
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    PRODUCER,
    ExportError,
    ParityError,
    random_images,
)

if TYPE_CHECKING:  # torch is imported lazily: reading an ONNX spec must not need it
    from dslnet_edge.model import DSLNet

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "BATCH_DIM",
    "DEFAULT_OPSET",
    "export_onnx",
    "onnx_model_from_torch",
    "save_onnx",
    "load_onnx",
    "spec_from_onnx",
    "set_input_spec",
    "drop_unused_initializers",
    "ExportError",
    "ParityError",
    "random_images",
]

_log = logging.getLogger(__name__)

def export_onnx(model: DSLNet, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> Path:
    """Write ``model``'s plain FP32 ONNX to ``path`` (atomically) and return the path.

    Args:
        model: a :class:`~dslnet_edge.model.DSLNet` (any mode; it is traced in eval mode and
            left in the mode it came in).
        path: destination ``.onnx`` file; its folder is created.
        opset: ONNX opset (17 by default, see :data:`DEFAULT_OPSET`).
        dynamic_batch: a symbolic batch dimension ``N``; ``False`` fixes the batch at 1.
    """
    proto = onnx_model_from_torch(model, opset=opset, dynamic_batch=dynamic_batch)
    return save_onnx(proto, path)


def onnx_model_from_torch(
    model: DSLNet,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    tracing: contextlib.AbstractContextManager | None = None,
    custom_opsets: dict[str, int] | None = None,
) -> onnx.ModelProto:
    """Trace ``model`` into a checked in-memory ONNX model with the contract's names, shapes and metadata.

    A flavour of the graph wraps this exporter: ``tracing`` is a context entered around the trace
    (:func:`export.plugin.graph.css_marked` makes every CSS module one marker node there) and
    ``custom_opsets`` names the domains of the non-standard ops it emits. A graph with custom
    opsets is not given to ``onnx.checker`` (it cannot know those ops); the flavour checks it.
    """
    import torch

    from dslnet_edge.model import DSLNet

    if not isinstance(model, DSLNet):
        raise TypeError(f"export_onnx expects a dslnet_edge DSLNet, got {type(model).__name__}")
    if not isinstance(opset, int) or isinstance(opset, bool) or not 13 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be an integer in [13, {onnx.defs.onnx_opset_version()}], got {opset!r}")
    spec = model.spec
    param = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    batch = 2 if dynamic_batch else 1
    dummy = (torch.rand((batch, *spec.input_shape), generator=generator) * 255.0).to(param.device, param.dtype)
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _quiet_torchscript_exporter(), tracing or contextlib.nullcontext():
            torch.onnx.export(
                model,
                (dummy,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None,
                do_constant_folding=True,
                custom_opsets=dict(custom_opsets) if custom_opsets else None,
            )
    finally:
        model.train(was_training)
    proto = onnx.load_model_from_string(buffer.getvalue())
    _bypass_initializer_identities(proto.graph)
    drop_unused_initializers(proto.graph)
    _fix_io_shapes(proto, spec, dynamic_batch=dynamic_batch)
    set_input_spec(proto, spec)
    proto.producer_name = PRODUCER
    proto.doc_string = (
        f"DSLNet person re-identification embedding: {INPUT_NAME} float32 [N,3,{spec.height},{spec.width}] "
        f"{spec.channel_order} 0-255 -> {OUTPUT_NAME} float32 [N,{spec.feature_dim}] L2-normalized"
    )
    if not custom_opsets:  # a marked graph holds non-standard ops: the checker cannot know them
        check_onnx(proto)
    return proto


def save_onnx(proto: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``proto`` to ``path`` atomically (one self-contained file) and return the path."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output path must end in .onnx, got {path}")
    with atomic_write(path) as tmp:
        onnx.save_model(proto, tmp)
    return path


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file; raise :class:`ExportError` naming the file when it is missing or not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        proto = onnx.load_model(path)
    except Exception as exc:  # protobuf raises DecodeError and friends, with unhelpful texts
        raise ExportError(f"{path} is not a readable ONNX model (truncated or corrupt): {type(exc).__name__}") from None
    if not proto.graph.node:
        raise ExportError(f"{path} is not a readable ONNX model: its graph has no nodes")
    return proto


def check_onnx(proto: onnx.ModelProto) -> None:
    """``onnx.checker`` with a readable error."""
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise ExportError(f"exported ONNX failed onnx.checker: {first}") from None


def set_input_spec(proto: onnx.ModelProto, spec: InputSpec) -> None:
    """Store ``spec`` as JSON in ``proto.metadata_props`` (replacing an older entry)."""
    kept = [p for p in proto.metadata_props if p.key != SPEC_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=SPEC_METADATA_KEY, value=spec.to_json())


def spec_from_onnx(source: str | os.PathLike | onnx.ModelProto) -> InputSpec:
    """The :class:`InputSpec` stored in an ONNX file's (or model's) ``metadata_props``.

    The parsing is the runtime's (:func:`dslnet_edge.backends.onnxruntime_backend.spec_from_metadata`),
    so export and runtime agree on what a valid entry is; errors become :class:`ExportError`.
    """
    from dslnet_edge.backends.base import ArtifactError
    from dslnet_edge.backends.onnxruntime_backend import spec_from_metadata

    proto = source if isinstance(source, onnx.ModelProto) else load_onnx(source)
    name = "the ONNX model" if isinstance(source, onnx.ModelProto) else str(source)
    try:
        return spec_from_metadata({p.key: p.value for p in proto.metadata_props}, source=name)
    except ArtifactError as exc:
        raise ExportError(str(exc)) from None


def drop_unused_initializers(graph: onnx.GraphProto) -> list[str]:
    """Remove the initializers no node reads (and their graph-input entries); return their names.

    A traced module can leave weights the eval-mode forward never touches (an identity
    ``classifier.weight``, BatchNorm ``*.num_batches_tracked`` counters): they bloat the file and
    make ONNX Runtime print one warning per tensor on every load. Names read inside subgraphs
    (``If``/``Loop`` bodies) and the graph outputs count as used. A pure cleanup: the outputs
    stay bit-identical.
    """
    used = {o.name for o in graph.output}
    _collect_inputs(graph, used)
    unused = [i.name for i in graph.initializer if i.name not in used]
    if unused:
        dropped = set(unused)
        kept = [i for i in graph.initializer if i.name not in dropped]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        inputs = [i for i in graph.input if i.name not in dropped]
        del graph.input[:]
        graph.input.extend(inputs)
    return unused


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _collect_inputs(graph: onnx.GraphProto, used: set[str]) -> None:
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _collect_inputs(sub, used)
                used.update(o.name for o in sub.output)


def _bypass_initializer_identities(graph: onnx.GraphProto) -> None:
    """Drop the tracer's ``Identity(initializer)`` nodes; their consumers read the initializer itself.

    The exporter shares equal weights (e.g. all-zero biases) through Identity nodes, which makes
    those weights look like activations to quantizers ("bias is not an initializer") and to
    TensorRT's constant folding.
    """
    initializers = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {
        n.output[0]: n.input[0]
        for n in graph.node
        if n.op_type == "Identity" and n.input[0] in initializers and n.output[0] not in outputs
    }
    if not alias:
        return
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        node.input[:] = [alias.get(i, i) for i in node.input]
    del graph.node[:]
    graph.node.extend(kept)


def _fix_io_shapes(proto: onnx.ModelProto, spec: InputSpec, *, dynamic_batch: bool) -> None:
    """Name the batch dimension ``N`` and pin every other dimension to the contract.

    The tracer leaves the embedding width symbolic (``Divembeddings_dim_1``); TensorRT and the
    runtime want it static.
    """
    (inp,) = [i for i in proto.graph.input if i.name == INPUT_NAME]
    (out,) = [o for o in proto.graph.output if o.name == OUTPUT_NAME]
    for value, dims in ((inp, (3, spec.height, spec.width)), (out, (spec.feature_dim,))):
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        first = shape.dim.add()
        if dynamic_batch:
            first.dim_param = BATCH_DIM
        else:
            first.dim_value = 1
        for d in dims:
            shape.dim.add().dim_value = d


@contextlib.contextmanager
def _quiet_torchscript_exporter() -> Iterator[None]:
    """Silence the TorchScript exporter's deprecation notices (the choice is documented above)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        yield


# ---------------------------------------------------------------------------------------------
# checkpoint -> checked ONNX, and the CLI
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OnnxExportConfig:
    """What ``python -m export.onnx`` does; see :func:`main` for the flags."""

    checkpoint: Path = DEMO_CHECKPOINT
    out: Path = Path("dslnet.onnx")
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = True
    crops_dir: Path | None = None
    num_crops: int = 8
    num_random: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out", Path(self.out))
        if self.crops_dir is not None:
            object.__setattr__(self, "crops_dir", Path(self.crops_dir))
        if self.out.suffix.lower() != ".onnx":
            raise ValueError(f"--out must end in .onnx, got {self.out}")
        if self.num_random < 1:
            raise ValueError(f"--num-random must be >= 1, got {self.num_random}")
        if self.num_crops < 0:
            raise ValueError(f"--num-crops must be >= 0, got {self.num_crops}")


def load_export_model(checkpoint: str | os.PathLike) -> DSLNet:
    """The checkpoint's model in eval mode, with a clear error for the absent demo weights."""
    from dslnet_edge.model.checkpoint import load_model

    checkpoint = Path(checkpoint)
    if not checkpoint.exists() and checkpoint.resolve() == DEMO_CHECKPOINT:
        raise ExportError(
            f"the demo weights {DEMO_CHECKPOINT} are not there yet (the training run produces them); "
            "pass --checkpoint PATH to export your own"
        )
    return load_model(checkpoint)


def write_checked(proto: onnx.ModelProto, path: str | os.PathLike, check) -> tuple[Path, object]:
    """Write ``proto`` atomically to ``path`` only if ``check(tmp_path)`` returns a passing report.

    ``check`` gets the written temporary file and returns a report with ``passed`` and
    ``summary()``; a failing report raises :class:`ParityError` and leaves ``path`` untouched.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"ONNX output path must end in .onnx, got {path}")
    with atomic_write(path) as tmp:
        onnx.save_model(proto, tmp)
        report = check(tmp)
        if not report.passed:
            raise ParityError(f"{path.name}: {report.summary()}; nothing written")
    return path, report


def export_checked(model: DSLNet, config: OnnxExportConfig) -> Path:
    """Export ``model`` to ``config.out`` with the parity report (ONNX Runtime vs PyTorch)."""
    from export.parity import backend_runner, check_parity, ort_backend, torch_backend

    proto = onnx_model_from_torch(model, opset=config.opset, dynamic_batch=config.dynamic_batch)

    def check(tmp: Path):
        runners = {"pytorch": backend_runner(torch_backend(model)), "onnxruntime": backend_runner(ort_backend(tmp))}
        return check_parity(
            runners,
            model.spec,
            label="fp32 onnxruntime vs pytorch",
            num_random=config.num_random,
            crops_dir=config.crops_dir,
            num_crops=config.num_crops,
        )

    path, report = write_checked(proto, config.out, check)
    _log.info(report.format())
    return path


def run(config: OnnxExportConfig) -> Path:
    """Checkpoint -> checked FP32 ONNX at ``config.out``."""
    model = load_export_model(config.checkpoint)
    path = export_checked(model, config)
    _log.info(f"wrote {path} (input {INPUT_NAME} [N,3,{model.spec.height},{model.spec.width}], output {OUTPUT_NAME} "
        f"[N,{model.spec.feature_dim}], opset {config.opset})")
    return path


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m export.onnx",
        description="Export a DSLNet checkpoint to the plain FP32 ONNX, checked against PyTorch on random "
        "inputs and real crops (the export fails if they disagree).",
    )
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="checkpoint .pt (default: the demo weights)")
    parser.add_argument("--out", type=Path, default=Path("dslnet.onnx"), help="output .onnx (default: dslnet.onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--static-batch", action="store_true", help="fix the batch at 1 instead of a dynamic N")
    parser.add_argument("--crops", type=Path, default=None, help="folder of person crops for the real-crop parity "
                        "(default: CUHK03 query crops when found)")
    parser.add_argument("--num-crops", type=int, default=8, help="real crops used for parity (0 switches it off)")
    parser.add_argument("--num-random", type=int, default=4, help="random images used for parity")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one clear line on stderr and a non-zero status on any expected error."""
    from export._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error

    parser = build_parser()
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):
        return args
    try:
        config = OnnxExportConfig(
            checkpoint=args.checkpoint,
            out=args.out,
            opset=args.opset,
            dynamic_batch=not args.static_batch,
            crops_dir=args.crops,
            num_crops=args.num_crops,
            num_random=args.num_random,
        )
        with log_to_console("stdout"):
            run(config)
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
