"""``python -m dslnet_edge.model`` prints the summary; bad arguments give one line."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "dslnet_edge.model", *args], capture_output=True, text=True)


def test_json_summary_reports_budget_and_hyper_parameters():
    result = run("--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert abs(summary["parameters"] - 1.9e6) / 1.9e6 <= 0.05
    assert abs(summary["macs"] - 825e6) / 825e6 <= 0.10
    assert summary["config"]["num_layers"] == 6 and summary["config"]["reduction"] == 16
    assert summary["stage_shapes"]["stage3"] == [1, 516, 16, 8]
    assert summary["spec"]["height"] == 256


def test_text_summary_and_variant_flags():
    result = run("--attention", "none", "--no-dense")
    assert result.returncode == 0, result.stderr
    assert "attention=none" in result.stdout and "dense=False" in result.stdout
    assert "multiply-adds" in result.stdout


def test_bad_size_is_one_line_not_a_traceback():
    result = run("--height", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: InputSpec.height must be a positive integer, got 0"]
