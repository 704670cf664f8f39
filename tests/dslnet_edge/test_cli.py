"""The shared CLI helpers: every command line answers a bad argument with ONE line and status 2."""

from __future__ import annotations

import importlib

import pytest

from dslnet_edge._cli import one_line


@pytest.mark.parametrize(
    "module",
    ["dslnet_edge.model.__main__", "dslnet_edge.threshold", "train.run", "train.evaluate", "train.peers",
     "export.onnx", "export.build_engine", "export.release", "calibration.__main__", "samples.video_reid"],
)
def test_bad_argument_is_one_line(module, capsys):
    main = importlib.import_module(module).main
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "usage:" not in err
    assert "--no-such-flag" in err or "the following arguments are required" in err  # argparse reports missing ones first


@pytest.mark.parametrize(
    "exc, text",
    [(ValueError("a\n  b"), "a b"), (KeyError("missing key"), "missing key"), (RuntimeError(), "RuntimeError")],
)
def test_one_line(exc, text):
    assert one_line(exc) == text
