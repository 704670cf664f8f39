"""Plain helper functions for tests (importable as ``testutils``: pytest's pythonpath has tests/)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """``$DSLNET_DATA``, else ``../shared/data`` beside the repository, if it holds cuhk03-pair1/."""
    candidates = [os.environ.get("DSLNET_DATA"), REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "shared" / "data"]
    for c in candidates:
        if c and Path(c, "cuhk03-pair1").is_dir():
            return Path(c)
    return None


def random_crops(rng: np.random.Generator, n: int, *, min_hw=(40, 20), max_hw=(200, 100)) -> list[np.ndarray]:
    """``n`` random BGR uint8 crops of random sizes."""
    crops = []
    for _ in range(n):
        h = int(rng.integers(min_hw[0], max_hw[0] + 1))
        w = int(rng.integers(min_hw[1], max_hw[1] + 1))
        crops.append(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    return crops


def tiny_embedding_onnx(
    path: Path,
    spec=None,
    *,
    seed: int = 0,
    normalize: bool = True,
    fixed_batch: int | None = None,
    scale: float = 1.0,
    with_spec: bool = True,
) -> Path:
    """Write a real, tiny ONNX embedding model with the dslnet_edge contract (for runtime tests).

    ``images`` float32 [N,3,H,W] 0-255 -> centre (x - 127.5) -> flatten -> random projection to
    ``spec.feature_dim`` -> L2 normalization (``normalize``) -> ``embeddings``. Random crops map to
    nearly orthogonal embeddings, a crop and a slightly noisy copy to nearly identical ones, so
    matching behaves like a (very simple) Re-ID model while ONNX Runtime runs it in microseconds.
    ``scale`` multiplies the output (NaN or 0.0 make a broken model); ``with_spec=False`` leaves the
    InputSpec out of the metadata; ``fixed_batch`` pins the batch dimension.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec

    spec = spec or InputSpec(height=16, width=8, feature_dim=32)
    rng = np.random.default_rng(seed)
    flat = 3 * spec.height * spec.width
    weight = (rng.standard_normal((flat, spec.feature_dim)) / np.sqrt(flat)).astype(np.float32)
    batch = fixed_batch if fixed_batch is not None else "N"
    inits = [
        numpy_helper.from_array(np.array(127.5, np.float32), "centre"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(np.array(scale, np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Sub", ["images", "centre"], ["centred"]),
        helper.make_node("Flatten", ["centred"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weight"], ["projected"]),
        helper.make_node("Mul", ["projected", "scale"], ["scaled"]),
    ]
    if normalize:
        nodes.append(helper.make_node("LpNormalization", ["scaled"], ["embeddings"], axis=1, p=2))
    else:
        nodes.append(helper.make_node("Identity", ["scaled"], ["embeddings"]))
    graph = helper.make_graph(
        nodes,
        "tiny_embedding",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, spec.height, spec.width])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [batch, spec.feature_dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_spec:
        model.metadata_props.add(key=SPEC_METADATA_KEY, value=spec.to_json())
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save_model(model, path)
    return path


_LIMIT_THEN_EXEC = (
    "import os, resource, signal, sys; n = int(sys.argv[1]); "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def file_size_limited(command: list[str], max_bytes: int) -> list[str]:
    """``command`` run so that it cannot grow any file beyond ``max_bytes``: how the tests fill a disk.

    A real write failure from the kernel (RLIMIT_FSIZE; SIGXFSZ ignored, so ``write`` fails with
    EFBIG, "File too large", as a full disk fails it with ENOSPC), with no root, mount or tmpfs
    needed. POSIX only. A small Python sets the limit and ``exec``s the command, instead of a
    ``preexec_fn``: that would run in a fork of the test process, where libraries loaded by other
    tests (gRPC) run their fork handlers and write to the child's stderr before the ``exec``.
    ``command[0]`` must be an executable path (e.g. ``sys.executable``).
    """
    import sys

    return [sys.executable, "-c", _LIMIT_THEN_EXEC, str(max_bytes), *command]
