"""benchmarks/gpu_check.py, the prepared GPU run: what can be checked without a GPU.

It refuses clearly without CUDA (one line, status 2, nothing written), and its training-step section
runs the real training pieces (checked here on the CPU at a small size, so the one GPU run cannot die
on an API mistake). The CSS sections use the kernel checked in tests/export/test_css_triton.py.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="gpu_check needs torch")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_refuses_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: run the script itself")
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA GPU here"), lines
    assert not out.exists()


def test_the_training_step_section_runs(tmp_path):
    row = _module().train_steps(torch, "cpu", height=32, width=16, steps=1, warmup=1, amp=True, channels_last=True,
                                identities=16)
    assert row["amp"] == "off"  # no autocast on the CPU path
    assert row["losses_finite"] and math.isfinite(row["img_per_s"]) and row["img_per_s"] > 0
    assert row["batch"] == 64 and row["channels_last"] is True


def test_the_aot_section_says_why_it_is_skipped():
    if importlib.util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed: the AOT launch needs the GPU")
    assert "cuda-python is not installed" in _module().check_aot_launch(torch)["skipped"]


def test_the_css_correctness_section_runs_in_the_interpreter(monkeypatch):
    pytest.importorskip("triton", reason="the CSS kernel needs triton")
    module = _module()
    monkeypatch.setattr(module, "SHAPES", [(5, 3, 2, 1), (7, 2, 3, 2)])  # the interpreter is slow: tiny shapes
    rows = module.check_css(torch, "cpu", [2], dtypes=("fp32", "fp16"))
    assert len(rows) == 4 and all(row["passed"] for row in rows), rows
    assert all(row["max_abs_diff"] < 1e-3 for row in rows)
