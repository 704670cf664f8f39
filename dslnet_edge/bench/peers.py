"""The peer Re-ID models the bench (and ``train.peers``) set beside DSLNet: Intel Open Model Zoo, Apache-2.0.

They live in ``../shared/peers/openvino-omz`` (``--peers-dir``), never in this repository:

| model | file | runtime | input |
| --- | --- | --- | --- |
| person-reidentification-retail-0277 | ``.xml``/``.bin`` (IR) | OpenVINO | BGR 0-255, 256x128, normalization in the graph |
| person-reidentification-retail-0286 | ``.xml``/``.bin`` (IR) | OpenVINO | BGR 0-255, 256x128, normalization in the graph |
| person-reidentification-retail-0287 | ``.xml``/``.bin`` (IR) | OpenVINO | BGR 0-255, 256x128, normalization in the graph |
| person-reidentification-retail-0288 | ``.xml``/``.bin`` (IR) | OpenVINO | BGR 0-255, 256x128, normalization in the graph |
| person-reidentification-retail-0267 | ``.mvn_eps_patched.onnx`` | ONNX Runtime | RGB, ImageNet mean/std applied before the graph |

(The original 0267 ONNX gives NaN in ONNX Runtime: MeanVarianceNormalization without an epsilon;
the patched file adds it.) Each peer becomes a :class:`~dslnet_edge.backends.Backend`, so it is
timed and evaluated by exactly the code that times and evaluates DSLNet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dslnet_edge.backends.base import Backend
from dslnet_edge.spec import InputSpec

__all__ = ["PeerModel", "PEERS", "peer_backend", "NormalizingBackend"]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_IR_SPEC = InputSpec(channel_order="BGR", feature_dim=256, l2_normalized=False)


@dataclasses.dataclass(frozen=True)
class PeerModel:
    """One peer: its file (relative to the peers folder), input contract and runtime."""

    name: str
    file: str
    spec: InputSpec
    runtime: str  # "openvino" | "onnxruntime"

    @property
    def short(self) -> str:
        return "OMZ " + self.name.rsplit("-", 1)[-1]


PEERS: tuple[PeerModel, ...] = (
    PeerModel("person-reidentification-retail-0277", "person-reidentification-retail-0277.xml", _IR_SPEC, "openvino"),
    PeerModel("person-reidentification-retail-0286", "person-reidentification-retail-0286.xml", _IR_SPEC, "openvino"),
    PeerModel("person-reidentification-retail-0287", "person-reidentification-retail-0287.xml", _IR_SPEC, "openvino"),
    PeerModel("person-reidentification-retail-0288", "person-reidentification-retail-0288.xml", _IR_SPEC, "openvino"),
    PeerModel(
        "person-reidentification-retail-0267",
        "person-reidentification-retail-0267.mvn_eps_patched.onnx",
        InputSpec(channel_order="RGB", normalization_in_model=False, mean=_IMAGENET[0], std=_IMAGENET[1],
                  feature_dim=256, l2_normalized=False),
        "onnxruntime",
    ),
)


class NormalizingBackend(Backend):
    """Applies ``spec``'s mean/std before an inner backend whose graph expects normalized input."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.spec = inner.spec
        self.max_batch = inner.max_batch
        self.source = inner.source
        self.name = inner.name
        lo, hi = self.spec.pixel_range
        mean = np.asarray(self.spec.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.spec.std, np.float32).reshape(1, 3, 1, 1)
        self._scale = (1.0 / ((hi - lo) * std)).astype(np.float32)
        self._shift = (-(lo / (hi - lo)) / std - mean / std).astype(np.float32)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.infer((batch * self._scale + self._shift).astype(np.float32, copy=False))

    def close(self) -> None:
        self.inner.close()


def peer_backend(peer: PeerModel, folder: str | Path, *, threads: int = 0, precision: str = "auto") -> Backend:
    """The peer as a backend: OpenVINO at ``precision`` (``"auto"``: bf16 where the CPU has it and its
    load-time check passes; ``"f32"`` for accuracy tables), or ONNX Runtime FP32."""
    path = Path(folder) / peer.file
    if peer.runtime == "openvino":
        from dslnet_edge.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(path, spec=peer.spec, precision=precision, intra_op_threads=threads or None)
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, spec=peer.spec, intra_op_threads=threads or None)
    return NormalizingBackend(backend) if not peer.spec.normalization_in_model else backend
