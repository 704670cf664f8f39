"""The input contract: one frozen dataclass that travels with every artefact.

``InputSpec`` says what pixels a model expects and what it returns. It is written
into checkpoints (``checkpoint["input_spec"]``), into ONNX ``metadata_props`` (key
``dslnet_edge.input_spec``) and into the JSON sidecar next to every TensorRT engine.
Everything downstream (preprocessing, calibration, the runtime) reads it from the
artefact; nothing hard-codes sizes, channel order or mean/std.

Standard library only: importing this module must stay cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["InputSpec", "SPEC_METADATA_KEY", "SPEC_FORMAT_VERSION"]

#: Key under which the spec is stored in ONNX ``metadata_props`` and sidecars.
SPEC_METADATA_KEY = "dslnet_edge.input_spec"
#: Bumped when a field changes meaning; readers refuse newer versions.
SPEC_FORMAT_VERSION = 1

_CHANNEL_ORDERS = ("RGB", "BGR")
_INTERPOLATIONS = ("linear", "area", "cubic", "nearest")
_PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a DSLNet artefact expects as input and produces as output.

    Attributes:
        height, width: network input size in pixels (Table 1: 256x128).
        channel_order: channel order of the tensor the model takes ("RGB").
        pixel_range: (low, high) of the pixel values the model takes; the model
            normalizes internally, so the runtime feeds raw 0-255 pixels.
        mean, std: per-channel normalization, in the 0-1 range, in ``channel_order``.
            Informational for the runtime: the model applies it inside the graph
            (``normalization_in_model``).
        normalization_in_model: True when mean/std are applied inside the network.
        interpolation: resize used by preprocessing ("linear" = cv2.INTER_LINEAR).
        feature_dim: length of the embedding the model returns.
        l2_normalized: whether the returned embeddings have unit L2 norm.
        precision: numeric precision of the artefact ("fp32", "fp16", "int8").
    """

    height: int = 256
    width: int = 128
    channel_order: str = "RGB"
    pixel_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    normalization_in_model: bool = True
    interpolation: str = "linear"
    feature_dim: int = 512
    l2_normalized: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # Coerce sequences (JSON gives lists) to tuples so the dataclass stays hashable.
        object.__setattr__(self, "pixel_range", tuple(float(v) for v in self.pixel_range))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name in ("height", "width", "feature_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"InputSpec.{name} must be a positive integer, got {value!r}")
        if self.channel_order not in _CHANNEL_ORDERS:
            raise ValueError(
                f"InputSpec.channel_order must be one of {_CHANNEL_ORDERS}, got {self.channel_order!r}"
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"InputSpec.interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}"
            )
        if self.precision not in _PRECISIONS:
            raise ValueError(f"InputSpec.precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if len(self.pixel_range) != 2 or not self.pixel_range[0] < self.pixel_range[1]:
            raise ValueError(f"InputSpec.pixel_range must be (low, high) with low < high, got {self.pixel_range!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"InputSpec.{name} must be 3 finite numbers, got {values!r}")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"InputSpec.std must be positive, got {self.std!r}")
        for name in ("normalization_in_model", "l2_normalized"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"InputSpec.{name} must be a bool, got {getattr(self, name)!r}")

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict, with ``format_version`` added."""
        out = dataclasses.asdict(self)
        for key in ("pixel_range", "mean", "std"):
            out[key] = list(out[key])
        out["format_version"] = SPEC_FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`; unknown keys and newer format versions are errors."""
        if not isinstance(data, Mapping):
            raise ValueError(f"InputSpec must be a mapping, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("format_version", SPEC_FORMAT_VERSION)
        if not isinstance(version, int) or version > SPEC_FORMAT_VERSION:
            raise ValueError(
                f"InputSpec format_version {version!r} is newer than this dslnet_edge "
                f"understands ({SPEC_FORMAT_VERSION}); upgrade dslnet_edge"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"InputSpec has unknown fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> InputSpec:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"InputSpec JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> InputSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one network input."""
        return (3, self.height, self.width)
