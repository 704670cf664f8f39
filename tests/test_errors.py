"""One root for the project's errors, and CLIs that report user errors in one line but never hide a bug."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sqlite3

import pytest

from dslnet_edge._cli import EXPECTED_ERRORS
from dslnet_edge.errors import DslnetError, MissingDependencyError

PACKAGES = ("dslnet_edge", "train", "export", "calibration", "samples")
#: Exception classes that are not errors for users (internal control flow).
NOT_USER_ERRORS = {"dslnet_edge._cli._ArgError": "parse_args_or_status's private signal"}


def project_exception_classes():
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names = [package_name] + [i.name for i in pkgutil.walk_packages(package.__path__, package_name + ".")]
        for name in names:
            module = importlib.import_module(name)
            for cls in vars(module).values():
                if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name:
                    found.append(cls)
    return found


def test_every_project_error_is_a_dslnet_error_and_keeps_its_old_base():
    classes = project_exception_classes()
    names = {f"{c.__module__}.{c.__qualname__}" for c in classes}
    # the walk must reach the errors of every package, or the check would pass vacuously
    for expected in ("dslnet_edge.backends.base.BackendError", "train.config.ConfigError", "export.contract.ExportError",
                     "calibration.errors.CalibrationError", "samples.video.VideoError"):
        assert expected in names
    stray = [n for n, c in zip(sorted(names), sorted(classes, key=lambda c: f"{c.__module__}.{c.__qualname__}"))
             if not issubclass(c, DslnetError) and n not in NOT_USER_ERRORS]
    assert stray == []
    from calibration.errors import GateFailure
    from dslnet_edge.backends.base import ArtifactNotFoundError, BackendError
    from dslnet_edge.gallery import GalleryFileError
    from train.loop import TrainingDivergedError

    assert issubclass(BackendError, RuntimeError) and issubclass(GateFailure, RuntimeError)
    assert issubclass(GalleryFileError, ValueError)
    assert issubclass(ArtifactNotFoundError, FileNotFoundError)
    assert issubclass(TrainingDivergedError, FloatingPointError)


def test_expected_errors_are_the_users_not_the_bugs():
    for user in (DslnetError, MissingDependencyError, ValueError, OSError, FileNotFoundError, sqlite3.OperationalError):
        assert issubclass(user, EXPECTED_ERRORS)
    assert issubclass(MissingDependencyError, ImportError)  # a missing optional package names itself
    for bug in (TypeError, KeyError, AttributeError, IndexError, RuntimeError, NameError, ZeroDivisionError,
                ModuleNotFoundError):
        assert not issubclass(bug, EXPECTED_ERRORS)


class _Bug(TypeError):
    pass


def _raise_bug(*args, **kwargs):
    raise _Bug("a bug deep inside")


def _raise_user_error(*args, **kwargs):
    raise DslnetError("the file\n  x.onnx is not a model")


#: (CLI module, the function its main calls inside its try, an argv that reaches it)
CLIS = [
    ("export.onnx", "run", ["--checkpoint", "c.pt", "--out", "m.onnx"]),
    ("export.build_engine", "build", ["--onnx", "m.onnx", "--out", "m.engine"]),
    ("export.triton_repo", "config_from_args", ["--engine", "m.engine", "--out", "repo"]),
    ("export.deepstream", "config_from_args", ["--engine", "m.engine", "--out", "ds"]),
    ("calibration.__main__", "config_from_args", ["--onnx", "m.onnx", "--crops", "crops"]),
    ("train.run", "config_from_args", []),
    ("train.evaluate", "EvalConfig", ["--model", "m.onnx", "--data-root", "data"]),
    ("dslnet_edge.threshold", "calibrate_from_folders", ["--model", "m.onnx", "--data-root", "data"]),
    ("dslnet_edge.bench.__main__", "config_from_args", []),
    ("dslnet_edge.model.__main__", "build_dslnet", []),
    ("samples.video_reid", "config_from_args", ["--video", "v.mp4"]),
    ("samples.multi_camera", "config_from_args", ["--video", "v.mp4"]),
]


@pytest.mark.parametrize("module_name, function, argv", CLIS, ids=[c[0] for c in CLIS])
def test_a_bug_is_not_swallowed_into_one_line(module_name, function, argv, monkeypatch, tmp_path, capsys):
    module = importlib.import_module(module_name)
    assert hasattr(module, function), f"{module_name} has no {function}: update this test"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, function, _raise_bug)
    with pytest.raises(_Bug, match="a bug deep inside"):
        module.main(argv)


@pytest.mark.parametrize("module_name, function, argv", CLIS, ids=[c[0] for c in CLIS])
def test_a_user_error_is_one_line(module_name, function, argv, monkeypatch, tmp_path, capsys):
    module = importlib.import_module(module_name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, function, _raise_user_error)
    assert module.main(argv) != 0
    err = capsys.readouterr().err
    assert err == "error: the file x.onnx is not a model\n"
