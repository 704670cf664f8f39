"""``python -m calibration``: the gate report on success, exit 3 with the numbers on a failed gate, and every
error as one clear line (never a traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from testutils import REPO_ROOT, tiny_embedding_onnx

from calibration.__main__ import GATE_FAILED, main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_success_prints_the_gate_report(fp32_onnx, calib_dir, holdout_dir, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    status = main(["--onnx", str(fp32_onnx), "--crops", str(calib_dir), "--holdout", str(holdout_dir),
                   "--num-images", "12", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "INT8 accuracy gate: PASSED" in captured.out and "Rank-1 fp32" in captured.out
    assert f"wrote {out} and {out.with_name('m.int8.gate.json')}" in captured.out
    assert out.is_file() and out.with_name("m.int8.calibration.json").is_file() and captured.err == ""


def test_default_out_and_options(fp32_onnx, calib_dir, holdout_dir, tmp_path, capsys):
    import shutil

    onnx_copy = tmp_path / "model.onnx"
    shutil.copy(fp32_onnx, onnx_copy)
    status = main(["--onnx", str(onnx_copy), "--crops", str(calib_dir), "--holdout", str(holdout_dir),
                   "--num-images", "8", "--method", "percentile", "--percentile", "99.9", "--exclude", "^/stem/",
                   "--no-cache", "--max-rank1-drop", "50", "--num-holdout", "24"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert (tmp_path / "model.int8.onnx").is_file() and not (tmp_path / "model.int8.calibration.json").exists()
    assert "percentile calibration on 8 crops" in captured.out and "held-out crops: 24" in captured.out


def test_gate_failure_exits_3_with_the_numbers(fp32_onnx, calib_dir, holdout_dir, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    status = main(["--onnx", str(fp32_onnx), "--crops", str(calib_dir), "--holdout", str(holdout_dir),
                   "--num-images", "8", "--min-mean-cosine", "1.0", "--out", str(out)])
    assert status == GATE_FAILED == 3
    line = _one_line(capsys)
    assert line.startswith("error: INT8 gate FAILED (mean cosine") and "(>= 1.0)" in line and "Rank-1" in line
    assert not out.exists() and out.with_name("m.int8.gate.json").is_file()


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["--onnx", "{tmp}/missing.onnx", "--crops", "{calib}"], 1, "does not exist"),
        (["--onnx", "{tmp}/corrupt.onnx", "--crops", "{calib}"], 1, "not a readable ONNX model"),
        (["--onnx", "{tmp}/nospec.onnx", "--crops", "{calib}"], 1, "no 'dslnet_edge.input_spec' entry"),
        (["--onnx", "{onnx}", "--crops", "{tmp}/nowhere"], 1, "crops folder"),
        (["--onnx", "{onnx}", "--crops", "{tmp}/empty"], 1, "holds no images"),
        (["--onnx", "{onnx}", "--crops", "{tmp}/bad"], 1, "could not be decoded as an image"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--num-images", "0"], 1, "num_images must be a positive integer"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--num-images", "500"], 1, "none would be left for the accuracy gate"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--exclude", "(oops"], 1, "not a valid regular expression"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--max-rank1-drop", "300"], 1, "fraction in [0, 1]"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--out", "{tmp}/m.engine"], 1, "must end in .onnx"),
        (["--crops", "{calib}"], 2, "the following arguments are required: --onnx"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--method", "kl"], 2, "invalid choice"),
        (["--onnx", "{onnx}", "--crops", "{calib}", "--unknown-flag"], 2, "unrecognized arguments: --unknown-flag"),
    ],
)
def test_errors_are_one_line(argv, status, message, fp32_onnx, calib_dir, people, tmp_path, capsys):
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    tiny_embedding_onnx(tmp_path / "nospec.onnx", with_spec=False)
    (tmp_path / "empty").mkdir()
    people(tmp_path / "bad", range(1), per_camera=1)
    (tmp_path / "bad" / "0001_c1s1_000000_00.jpg").write_bytes(b"not a jpeg")
    argv = [a.format(tmp=tmp_path, onnx=fp32_onnx, calib=calib_dir) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "m.int8.onnx")]
    if "500" not in argv:  # judge on the calibration folder itself: every case fails before the gate
        argv += ["--holdout", str(calib_dir)]
    assert main(argv) == status
    assert message in _one_line(capsys)
    assert not (tmp_path / "m.int8.onnx").exists()


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--num-images" in out and "--holdout" in out and "minmax,entropy,percentile" in out


def test_python_m_calibration_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "calibration", "--onnx", str(tmp_path / "missing.onnx"), "--crops", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "missing.onnx" in result.stderr
