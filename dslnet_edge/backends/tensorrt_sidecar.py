"""The engine sidecar ``<engine>.json``: one schema, written by ``export.build_engine``, read by the runtime.

An engine runs only under the TensorRT version and on the GPU it was built for and carries no
dslnet_edge input contract of its own, so ``python -m export.build_engine`` writes
:class:`EngineSidecar` beside it (``model.engine`` -> ``model.engine.json``) and
:class:`~dslnet_edge.backends.tensorrt_backend.TensorRTBackend` reads it *before* touching the
engine. This module needs neither TensorRT nor a GPU (export and dslnet_edge both import it).

Layout (``format_version`` 1)::

    {
      "format": "dslnet_edge.engine", "format_version": 1,
      "input_spec": {...},                                  # InputSpec.to_dict()
      "precision": "fp16",                                  # of the ONNX compiled: fp32 | fp16 | int8
      "tensorrt_version": "10.16.1.11",                     # trt.__version__ at build time
      "strongly_typed": true, "builder_flags": [],
      "hardware_compatibility": "none",                     # or "ampere_plus": any GPU of CC >= 8.0
      "version_compatible": false,                          # BuilderFlag.VERSION_COMPATIBLE
      "gpu": {"name": "NVIDIA H100", "compute_capability": "9.0"},
      "profile": {"input": "images", "min": [1,3,256,128], "opt": [8,...], "max": [32,...]},
      "css_plugin": {"used": false, "implementation": null, "reason": "..."}
                  | {"used": true, "implementation": "aot" | "jit", "reason": "...",
                     "name": "DSLNet_CSS", "namespace": "dslnet_edge", "version": "1",
                     "register": "export.plugin.trt_plugin:register_css_plugin"},
      "onnx": {"path": "model.fp16.onnx", "sha256": "..."}, "intermediates": {...},
      "workspace_bytes": null, "verification": {...}, "int8_gate": null, "created": "..."
    }

Every key above is written by :meth:`EngineSidecar.to_dict`; :meth:`EngineSidecar.from_dict`
reads exactly these (no other spellings) and names the file and key of anything wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dslnet_edge.backends.base import ArtifactError, ArtifactNotFoundError
from dslnet_edge.spec import InputSpec

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "EngineSidecar",
    "EnginePlugin",
    "EngineCompatibilityError",
    "sidecar_path",
    "read_engine_sidecar",
    "write_engine_sidecar",
    "check_compatibility",
]

SIDECAR_FORMAT = "dslnet_edge.engine"
SIDECAR_VERSION = 1
_HARDWARE = ("none", "ampere_plus", "same_compute_capability")
_PRECISIONS = ("fp32", "fp16", "int8")


class EngineCompatibilityError(ArtifactError):
    """The engine was built for another TensorRT version or another GPU: rebuild it on this machine."""


@dataclasses.dataclass(frozen=True)
class EnginePlugin:
    """The fused CSS plugin entry (``css_plugin``): whether the engine uses it and how it is made available.

    ``aot``: the compiled kernel is embedded in the engine (TensorRT >= 10.9), nothing to load.
    ``jit``: TensorRT calls back into Python, so ``register`` ("module:function") is imported and called
    before deserialization, as NVIDIA's quickly_deployable_plugins sample registers before it deserializes.
    """

    used: bool = False
    implementation: str | None = None
    reason: str = ""
    name: str | None = None
    namespace: str = ""
    version: str = "1"
    register: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", str(self.version))
        if not self.used:
            if self.implementation is not None or self.name is not None or self.register is not None:
                raise ValueError("an unused plugin names no implementation, name or register")
            return
        if self.implementation not in ("aot", "jit"):
            raise ValueError(f"implementation must be 'aot' or 'jit', got {self.implementation!r}")
        if not self.name:
            raise ValueError("a used plugin needs its name")
        if self.register is not None and (":" not in self.register or not all(self.register.split(":", 1))):
            raise ValueError(f"'register' must be 'module:function', got {self.register!r}")

    @property
    def embedded(self) -> bool:
        return self.used and self.implementation == "aot"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"used": self.used, "implementation": self.implementation, "reason": self.reason}
        if self.used:
            data.update(name=self.name, namespace=self.namespace, version=self.version, register=self.register)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnginePlugin:
        if not isinstance(data, Mapping):
            raise ValueError(f"must be an object, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if not isinstance(data.get("used"), bool):
            raise ValueError(f"'used' must be true or false, got {data.get('used')!r}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class EngineSidecar:
    """What ``model.engine.json`` says about its engine (see the module docstring for the layout)."""

    input_spec: InputSpec
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    profile_input: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    plugin: EnginePlugin = EnginePlugin()
    strongly_typed: bool = True
    builder_flags: tuple[str, ...] = ()
    hardware_compatibility: str = "none"
    version_compatible: bool = False
    onnx_path: str | None = None
    onnx_sha256: str | None = None
    intermediates: Mapping[str, str] = dataclasses.field(default_factory=dict)
    workspace_bytes: int | None = None
    verification: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    int8_gate: Mapping[str, Any] | None = None
    created: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input_spec, InputSpec):
            raise ValueError(f"input_spec must be an InputSpec, got {type(self.input_spec).__name__}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.tensorrt_version, str) or not version_tuple(self.tensorrt_version):
            raise ValueError(f"tensorrt_version must be a version string like '10.16.1', got {self.tensorrt_version!r}")
        if not isinstance(self.gpu_name, str) or not self.gpu_name:
            raise ValueError(f"gpu name must be a non-empty string, got {self.gpu_name!r}")
        cc = tuple(self.compute_capability)
        if len(cc) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in cc):
            raise ValueError(f"compute_capability must be (major, minor), got {self.compute_capability!r}")
        object.__setattr__(self, "compute_capability", cc)
        expected = (3, self.input_spec.height, self.input_spec.width)
        shapes = []
        for name in ("min_shape", "opt_shape", "max_shape"):
            shape = tuple(getattr(self, name))
            if (len(shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
                    or shape[0] < 1 or shape[1:] != expected):
                raise ValueError(f"profile {name[:3]} must be [N >= 1, {', '.join(map(str, expected))}], got {list(shape)}")
            object.__setattr__(self, name, shape)
            shapes.append(shape[0])
        if not shapes[0] <= shapes[1] <= shapes[2]:
            raise ValueError(f"profile batches must satisfy min <= opt <= max, got {shapes}")
        if self.hardware_compatibility not in _HARDWARE:
            raise ValueError(f"unknown hardware_compatibility {self.hardware_compatibility!r} (one of {_HARDWARE})")
        if not isinstance(self.plugin, EnginePlugin):
            raise ValueError("plugin must be an EnginePlugin")
        object.__setattr__(self, "builder_flags", tuple(self.builder_flags))

    @property
    def min_batch(self) -> int:
        return self.min_shape[0]

    @property
    def max_batch(self) -> int:
        return self.max_shape[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "input_spec": self.input_spec.to_dict(),
            "precision": self.precision,
            "tensorrt_version": self.tensorrt_version,
            "strongly_typed": self.strongly_typed,
            "builder_flags": list(self.builder_flags),
            "hardware_compatibility": self.hardware_compatibility,
            "version_compatible": self.version_compatible,
            "gpu": {"name": self.gpu_name, "compute_capability": f"{self.compute_capability[0]}.{self.compute_capability[1]}"},
            "profile": {"input": self.profile_input, "min": list(self.min_shape), "opt": list(self.opt_shape),
                        "max": list(self.max_shape)},
            "css_plugin": self.plugin.to_dict(),
            "onnx": {"path": self.onnx_path, "sha256": self.onnx_sha256},
            "intermediates": dict(self.intermediates),
            "workspace_bytes": self.workspace_bytes,
            "verification": dict(self.verification),
            "int8_gate": None if self.int8_gate is None else dict(self.int8_gate),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str) -> EngineSidecar:
        """Validate a parsed sidecar; every problem names ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise ArtifactError(f"engine sidecar {source} must hold a JSON object, found {type(data).__name__}")
        if data.get("format") != SIDECAR_FORMAT:
            raise ArtifactError(f"{source} is not a dslnet_edge engine sidecar (format {data.get('format')!r}, "
                                f"expected {SIDECAR_FORMAT!r})")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SIDECAR_VERSION:
            raise ArtifactError(f"engine sidecar {source} has format_version {version!r}; this dslnet_edge reads 1 to "
                                f"{SIDECAR_VERSION}")
        known = {"format", "format_version", "input_spec", "precision", "tensorrt_version", "strongly_typed",
                 "builder_flags", "hardware_compatibility", "version_compatible", "gpu", "profile", "css_plugin",
                 "onnx", "intermediates", "workspace_bytes", "verification", "int8_gate", "created"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArtifactError(f"engine sidecar {source} has unknown keys {unknown}")

        def entry(key: str, kind, *, required: bool = True, default=None):
            if key not in data:
                if required:
                    raise ArtifactError(f"engine sidecar {source} lacks the {key!r} entry")
                return default
            value = data[key]
            if value is not None and not isinstance(value, kind):
                raise ArtifactError(f"engine sidecar {source}: {key!r} must be {getattr(kind, '__name__', kind)}, "
                                    f"got {type(value).__name__}")
            return value

        try:
            spec = InputSpec.from_dict(entry("input_spec", Mapping))
        except ArtifactError:
            raise
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"engine sidecar {source} has an invalid input_spec: {exc}") from None
        gpu = entry("gpu", Mapping) or {}
        cc = _parse_compute_capability(gpu.get("compute_capability"))
        if not isinstance(gpu.get("name"), str) or cc is None:
            raise ArtifactError(f"engine sidecar {source} lacks the GPU it was built for "
                                "('gpu': {'name': ..., 'compute_capability': 'X.Y'})")
        profile = entry("profile", Mapping) or {}
        onnx = entry("onnx", Mapping, required=False) or {}
        try:
            plugin = EnginePlugin.from_dict(entry("css_plugin", Mapping))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"engine sidecar {source}: invalid 'css_plugin' entry: {exc}") from None
        try:
            return cls(
                input_spec=spec,
                precision=entry("precision", str),
                tensorrt_version=entry("tensorrt_version", str),
                gpu_name=gpu["name"],
                compute_capability=cc,
                profile_input=profile.get("input"),
                min_shape=_shape(profile.get("min")),
                opt_shape=_shape(profile.get("opt")),
                max_shape=_shape(profile.get("max")),
                plugin=plugin,
                strongly_typed=bool(entry("strongly_typed", bool, required=False, default=True)),
                builder_flags=tuple(entry("builder_flags", list, required=False, default=[]) or []),
                hardware_compatibility=entry("hardware_compatibility", str, required=False, default="none"),
                version_compatible=bool(entry("version_compatible", bool, required=False, default=False)),
                onnx_path=onnx.get("path"),
                onnx_sha256=onnx.get("sha256"),
                intermediates=dict(entry("intermediates", Mapping, required=False, default={}) or {}),
                workspace_bytes=entry("workspace_bytes", int, required=False),
                verification=dict(entry("verification", Mapping, required=False, default={}) or {}),
                int8_gate=entry("int8_gate", Mapping, required=False),
                created=entry("created", str, required=False),
            )
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"engine sidecar {source}: {exc}") from None


def _shape(value: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"profile shapes must be lists of 4 integers, got {value!r}")
    return tuple(value)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (the file ``export.build_engine`` writes)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_engine_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    """Read and validate the sidecar of ``engine_path``."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ArtifactNotFoundError(
            f"engine sidecar {path} does not exist; it holds the engine's input spec, TensorRT version, GPU and "
            f"plugin, and python -m export.build_engine writes it next to {Path(engine_path).name}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"engine sidecar {path} is not valid JSON (truncated or corrupt?): {exc}") from None
    return EngineSidecar.from_dict(data, source=str(path))


def write_engine_sidecar(engine_path: str | os.PathLike, sidecar: EngineSidecar) -> Path:
    """Write ``<engine>.json`` atomically; returns its path."""
    from dslnet_edge._io import atomic_write_text

    path = sidecar_path(engine_path)
    atomic_write_text(path, json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def check_compatibility(
    sidecar: EngineSidecar,
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    source: str,
) -> None:
    """Refuse an engine built for another TensorRT or GPU, before TensorRT tries to deserialize it.

    TensorRT engines are tied to the TensorRT version (major.minor.patch) and the GPU they were
    built on, unless built version-compatible (same major, runtime not older) or
    hardware-compatible (``ampere_plus``: any GPU of compute capability 8.0 or newer). The same
    compute capability with another GPU name runs but may be slower: that is a warning.
    """
    built, here = version_tuple(sidecar.tensorrt_version)[:3], version_tuple(tensorrt_version)[:3]
    rebuild = f"rebuild it here: python -m export.build_engine --onnx <model.onnx> --out {Path(source).name}"
    if sidecar.version_compatible:
        if built[:1] != here[:1] or here < built:
            raise EngineCompatibilityError(
                f"{source} was built version-compatible with TensorRT {sidecar.tensorrt_version}, which only runs on "
                f"TensorRT {built[0]}.x >= {sidecar.tensorrt_version}; this machine has TensorRT {tensorrt_version}; {rebuild}"
            )
    elif built != here:
        raise EngineCompatibilityError(
            f"{source} was built with TensorRT {sidecar.tensorrt_version} but this machine has TensorRT "
            f"{tensorrt_version}; engines only run under the TensorRT version that built them; {rebuild}"
        )
    cc_built, cc_here = tuple(sidecar.compute_capability), tuple(compute_capability)
    built_gpu = f"{sidecar.gpu_name} (compute capability {cc_built[0]}.{cc_built[1]})"
    this_gpu = f"{gpu_name} (compute capability {cc_here[0]}.{cc_here[1]})"
    if sidecar.hardware_compatibility == "ampere_plus":
        if cc_here < (8, 0):
            raise EngineCompatibilityError(
                f"{source} was built hardware-compatible for Ampere and newer GPUs; this GPU is {this_gpu}; {rebuild}"
            )
        return
    if cc_built != cc_here:
        raise EngineCompatibilityError(f"{source} was built for {built_gpu} but this GPU is {this_gpu}; {rebuild}")
    if _normalize_gpu_name(sidecar.gpu_name) != _normalize_gpu_name(gpu_name):
        warnings.warn(
            f"{source} was built on {built_gpu} and runs on {this_gpu}: same compute capability, so it runs, "
            "but its kernels were tuned for the other GPU; rebuild it here for best speed",
            RuntimeWarning,
            stacklevel=3,
        )


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _parse_compute_capability(value: Any) -> tuple[int, int] | None:
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        if major.isdigit() and minor.isdigit():
            return int(major), int(minor)
    return None


def _normalize_gpu_name(name: str) -> str:
    return " ".join(str(name).lower().replace("nvidia", "").split())
