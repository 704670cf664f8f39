"""Triton Inference Server client backend: embed through a server, ``Engine("grpc://host:8001/dslnet")``.

The URL names the protocol, the server and the model: ``grpc://host:port/model`` or
``http://host:port/model`` (optionally ``/model/version``). The model is one that
``python -m export.triton_repo`` wrote (``dslnet`` on TensorRT or ONNX Runtime, or
``dslnet_python``): it takes ``images`` float32 ``[N, 3, H, W]`` and returns ``embeddings``, and
its config carries the InputSpec (parameter ``dslnet_input_spec``), so the
:class:`~dslnet_edge.engine.Engine` preprocesses exactly as the model expects and everything
downstream (``Matcher``, the samples) works unchanged. ``max_batch`` is the model's
``max_batch_size``; larger calls are split by the Engine and the server's dynamic batcher
merges requests from many clients.

Needs ``tritonclient`` (``pip install "dslnet-edge[triton-client]"``), imported when a backend
is built. gRPC calls may come from several threads at once; the HTTP client is not
thread-safe, so the Engine serializes its calls.
"""

from __future__ import annotations

import json
import urllib.parse

import numpy as np

from dslnet_edge.backends.base import ArtifactError, Backend, BackendError
from dslnet_edge.spec import InputSpec

__all__ = ["TritonClientBackend", "parse_triton_url", "SCHEMES", "SPEC_PARAMETER"]

#: URL schemes this backend serves (``Engine`` sends URLs with these schemes here).
SCHEMES = ("grpc", "http")
#: The model-config parameter holding the InputSpec JSON (written by ``export.triton_repo``).
SPEC_PARAMETER = "dslnet_input_spec"


def parse_triton_url(url: str) -> tuple[str, str, str, str]:
    """``grpc://host:port/model[/version]`` -> ``(scheme, "host:port", model, version)``; ``ValueError`` otherwise."""
    parsed = urllib.parse.urlsplit(str(url))
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.scheme not in SCHEMES or not parsed.hostname or not 1 <= len(parts) <= 2 or parsed.query or parsed.fragment:
        raise ValueError(
            f"not a Triton model URL: {url!r}; expected grpc://host:port/model or http://host:port/model "
            "(optionally /model/version)"
        )
    try:
        port = parsed.port or (8001 if parsed.scheme == "grpc" else 8000)
    except ValueError as exc:
        raise ValueError(f"not a Triton model URL: {url!r}: {exc}") from None
    version = parts[1] if len(parts) == 2 else ""
    if version and not version.isdigit():
        raise ValueError(f"Triton model version must be a number, got {version!r} in {url!r}")
    return parsed.scheme, f"{parsed.hostname}:{port}", parts[0], version


class TritonClientBackend(Backend):
    """Runs the model on a Triton Inference Server (see the module docstring).

    Args:
        url: ``grpc://host:port/model`` or ``http://host:port/model[/version]``.
        max_batch: cap below the model's ``max_batch_size``.
        timeout_s: per-request network timeout.
        device: accepted for symmetry with the other backends; the server decides (must be None).
    """

    name = "triton"

    def __init__(self, url, *, max_batch: int | None = None, timeout_s: float = 30.0, device: str | None = None):
        if device is not None:
            raise ValueError(f"device={device!r} does not apply to a Triton server URL: the server's model config decides")
        self.source = str(url)
        self.scheme, self.address, self.model, self.version = parse_triton_url(self.source)
        self.timeout_s = float(timeout_s)
        self.thread_safe = self.scheme == "grpc"  # the gevent-based HTTP client is not thread-safe
        client_module = _import_client(self.scheme)
        self._client_module = client_module
        try:
            self._client = client_module.InferenceServerClient(url=self.address)
            ready = self._client.is_model_ready(self.model, self.version)
        except Exception as exc:  # tritonclient raises its own exception types, and OSError for a refused connection
            raise BackendError(f"cannot reach the Triton server at {self.source}: {_message(exc)}") from None
        if not ready:
            raise BackendError(f"the Triton server at {self.address} has no ready model {self.model!r} ({self.source})")
        config = self._model_config()
        self.spec = _spec_from_config(config, self.source)
        inputs, outputs = config.get("input", []), config.get("output", [])
        if len(inputs) != 1 or len(outputs) != 1 or inputs[0].get("data_type") != "TYPE_FP32":
            raise ArtifactError(
                f"{self.source}: the model must take one float32 input (images) and return one output (embeddings); "
                f"it has inputs {[i.get('name') for i in inputs]} and outputs {[o.get('name') for o in outputs]} "
                "(a *_crops model takes raw crops: call it with tritonclient directly)"
            )
        self._input, self._output = inputs[0]["name"], outputs[0]["name"]
        server_max = int(config.get("max_batch_size", 0)) or None
        if server_max is None:
            raise ArtifactError(f"{self.source}: the model has max_batch_size 0 (no batch dimension); expected a batching model")
        self.max_batch = server_max if max_batch is None else min(server_max, max_batch)

    def _model_config(self) -> dict:
        try:
            if self.scheme == "grpc":
                return self._client.get_model_config(self.model, self.version, as_json=True)["config"]
            return self._client.get_model_config(self.model, self.version)
        except Exception as exc:
            raise BackendError(f"cannot read the model config of {self.source}: {_message(exc)}") from None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        m = self._client_module
        request = m.InferInput(self._input, list(batch.shape), "FP32")
        request.set_data_from_numpy(np.ascontiguousarray(batch))
        wanted = [m.InferRequestedOutput(self._output)]
        try:
            if self.scheme == "grpc":
                result = self._client.infer(self.model, [request], model_version=self.version, outputs=wanted,
                                            client_timeout=self.timeout_s)
            else:
                result = self._client.infer(self.model, [request], model_version=self.version, outputs=wanted)
        except Exception as exc:
            raise BackendError(f"{self.source}: inference failed on the server: {_message(exc)}") from None
        return result.as_numpy(self._output)

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()


def _spec_from_config(config: dict, source: str) -> InputSpec:
    text = (config.get("parameters", {}).get(SPEC_PARAMETER) or {}).get("string_value")
    if not text:
        raise ArtifactError(
            f"{source}: the model config has no {SPEC_PARAMETER!r} parameter (the InputSpec); write the repository "
            "with python -m export.triton_repo"
        )
    try:
        return InputSpec.from_dict(json.loads(text))
    except ValueError as exc:
        raise ArtifactError(f"{source}: the model config's {SPEC_PARAMETER} is invalid: {exc}") from None


def _message(exc: BaseException) -> str:
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def _import_client(scheme: str):
    try:
        if scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise BackendError(
            f"the Triton client backend needs tritonclient ({exc}); pip install 'dslnet-edge[triton-client]'"
        ) from None
    return module
