"""Fixtures for the export tests: one tiny DSLNet (six CSS modules, 32x16 input) exported once per session.

The tiny model keeps every structural property export cares about (stem, three stages of two
DSL blocks, six CSS modules with six streams each, the 512-d L2-normalized head) at a size where
tracing and ONNX Runtime take milliseconds. torch runs single-threaded here: on the shared 2-core
machine, intra-op threads on tiny tensors cost 10x more in contention than they gain.
"""

from __future__ import annotations

import os
from pathlib import Path

# Triton decides at import time whether @triton.jit functions (its own standard library included)
# run in the CPU interpreter: set it before anything in this test session imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

import onnx
import pytest

torch = pytest.importorskip("torch", reason="export needs torch (pip install 'dslnet-edge[export]')")

from dslnet_edge.model import DSLNet, build_dslnet  # noqa: E402
from dslnet_edge.spec import InputSpec  # noqa: E402

TINY_SPEC = InputSpec(height=32, width=16)
TINY_CHANNELS = (16, 32, 48, 64)


def tiny_model(seed: int = 0, **overrides) -> DSLNet:
    torch.manual_seed(seed)
    return build_dslnet(num_classes=10, channels=TINY_CHANNELS, spec=TINY_SPEC, **overrides).eval()


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def make_model():
    """``make_model(seed=0, **build_dslnet overrides)`` -> a fresh tiny DSLNet in eval mode."""
    return tiny_model


@pytest.fixture(scope="session")
def model() -> DSLNet:
    return tiny_model()


@pytest.fixture(scope="session")
def onnx_path(model, tmp_path_factory) -> Path:
    from export.onnx import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def plugin_proto(model) -> onnx.ModelProto:
    from export.plugin.graph import plugin_model_from_torch

    return plugin_model_from_torch(model)


@pytest.fixture(scope="session")
def checkpoint(model, tmp_path_factory) -> Path:
    from dslnet_edge.model.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, inference_only=True)
