"""Triton Python-backend model serving DSLNet through ``dslnet_edge.Engine`` (any backend).

``python -m export.triton_repo`` copies this file as ``model.py`` into the ``<name>_python`` and
``<name>_crops`` models; it runs inside Triton's Python backend stub, never in this package
(``triton_python_backend_utils`` exists only there). Config parameters (written by the exporter):

* ``model_file``: the artefact beside this file (``.onnx``, ``.engine`` + sidecar, ``.pt``);
* ``device``: ``cpu`` or ``cuda``;
* ``input``: ``images`` (float32 ``[N, 3, H, W]``, preprocessed) or ``crops`` (uint8
  ``[n, h, w, 3]`` BGR; preprocessed here by ``dslnet_edge``'s one preprocessing function).

Tensors cross the stub through DLPack (``np.from_dlpack`` / ``Tensor.from_dlpack``), not
``as_numpy()`` / ``Tensor(name, array)``: the stub of the ``nvidia-pytriton`` wheel is built
against NumPy 1.x, and under NumPy 2 those two read and write zero-filled buffers (measured:
inputs arrive as zeros, outputs leave empty). DLPack works under both.

Requests that the dynamic batcher hands over together are embedded in one pass (one
``Engine.embed`` call for crops; chunks of the engine's max batch for images); each request
gets its own rows back, or its own error.
"""

import json
from pathlib import Path

import numpy as np

pb_utils = None  # triton_python_backend_utils, imported in initialize(): it exists only inside the stub


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils

        import dslnet_edge

        pb_utils = triton_python_backend_utils

        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        device = params.get("device", "cpu")
        self.input = params.get("input", "images")
        self.engine = dslnet_edge.Engine(folder / params["model_file"], device=device)

    def execute(self, requests):
        arrays, errors = [], {}
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.input)
            array = None if tensor is None else np.from_dlpack(tensor)
            problem = self._check(array)
            if problem:
                errors[i] = problem
                arrays.append(None)
            else:
                arrays.append(array)
        good = [a for a in arrays if a is not None]
        embeddings = []
        if good:
            try:
                embeddings = self._embed(good)
            except Exception as exc:  # one bad batch must not kill the model: every request gets the error
                errors.update({i: f"{type(exc).__name__}: {exc}" for i, a in enumerate(arrays) if a is not None})
        responses, start = [], 0
        for i, array in enumerate(arrays):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(errors[i])))
                continue
            rows = embeddings[start : start + len(array)]
            start += len(array)
            output = pb_utils.Tensor.from_dlpack("embeddings", np.ascontiguousarray(rows))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses

    def _check(self, array):
        spec = self.engine.spec
        if array is None:
            return f"the request has no {self.input!r} input"
        if self.input == "crops":
            if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
                return f"crops must be uint8 [n, h, w, 3] BGR with n, h, w >= 1, got {array.dtype} {list(array.shape)}"
            return None
        if array.dtype != np.float32 or array.ndim != 4 or tuple(array.shape[1:]) != spec.input_shape:
            return f"images must be float32 [N, {', '.join(map(str, spec.input_shape))}], got {array.dtype} {list(array.shape)}"
        return None

    def _embed(self, arrays):
        if self.input == "crops":
            return self.engine.embed([crop for array in arrays for crop in array])
        batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        backend, step = self.engine.backend, self.engine.max_batch
        raw = np.concatenate([backend.infer(np.ascontiguousarray(batch[s : s + step])) for s in range(0, len(batch), step)])
        norms = np.linalg.norm(raw.astype(np.float64), axis=1, keepdims=True)
        if not np.isfinite(raw).all() or (norms < 1e-12).any():
            raise ValueError("the model returned NaN/inf or all-zero embeddings")
        return (raw / norms).astype(np.float32)

    def finalize(self):
        self.engine.close()
