"""``python -m export.onnx``: a checked export, and one clear line for every error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from export.onnx import DEMO_CHECKPOINT, main, spec_from_onnx


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def test_export_with_parity_report(checkpoint, model, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["--checkpoint", str(checkpoint), "--out", str(out), "--num-random", "2", "--num-crops", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "PASSED" in stdout and f"wrote {out}" in stdout
    assert spec_from_onnx(out) == model.spec


def test_the_library_logs_and_prints_nothing(checkpoint, tmp_path, capsys, caplog):
    from export.onnx import OnnxExportConfig, run

    caplog.set_level("INFO", logger="export")
    out = tmp_path / "lib.onnx"
    run(OnnxExportConfig(checkpoint=checkpoint, out=out, num_random=2, num_crops=0))
    assert capsys.readouterr() == ("", "")
    assert any("PASSED" in m for m in caplog.messages) and any(m.startswith(f"wrote {out}") for m in caplog.messages)


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["--checkpoint", "{tmp}/missing.pt"], 1, "does not exist"),
        (["--checkpoint", "{tmp}/garbage.pt"], 1, "could not be read"),
        (["--checkpoint", "{ckpt}", "--out", "{tmp}/m.txt"], 1, "--out must end in .onnx"),
        (["--checkpoint", "{ckpt}", "--num-random", "0"], 1, "--num-random must be >= 1"),
        (["--checkpoint", "{ckpt}", "--crops", "{tmp}/nowhere"], 1, "crops folder"),
        (["--bogus"], 2, "unrecognized arguments: --bogus"),
        (["--opset", "many"], 2, "invalid int value"),
    ],
)
def test_errors_are_one_line(checkpoint, tmp_path, capsys, argv, status, message):
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    argv = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "m.onnx")] if "--out" not in argv else argv) == status
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_absent_demo_weights(capsys, tmp_path, monkeypatch):
    """A package without its demo weights (e.g. built without package data) says so in one line."""
    import export.onnx

    absent = tmp_path / "weights" / "dslnet_cuhk03.pt"
    monkeypatch.setattr(export.onnx, "DEMO_CHECKPOINT", absent)
    assert main(["--checkpoint", str(absent), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "demo weights" in _one_line_error(capsys)


@pytest.mark.skipif(not DEMO_CHECKPOINT.exists(), reason=f"the demo weights {DEMO_CHECKPOINT} are not there")
def test_default_exports_the_demo_weights(capsys, tmp_path):
    out = tmp_path / "demo.onnx"
    assert main(["--out", str(out), "--num-random", "1", "--num-crops", "0"]) == 0
    assert "PASSED" in capsys.readouterr().out
    from dslnet_edge.model.checkpoint import load_model

    assert spec_from_onnx(out) == load_model(DEMO_CHECKPOINT).spec


def test_no_traceback_through_python_m():
    result = subprocess.run([sys.executable, "-m", "export.onnx", "--checkpoint", "/nonexistent/x.pt"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
