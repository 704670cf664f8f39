"""Every public name of ``dslnet_edge`` and ``calibration`` is the function or class its docs name,
whatever was imported before (a submodule of the same name once replaced the function).

Each check runs in a fresh interpreter, so the import order is exactly the one under test.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = r'''
import importlib, inspect, pkgutil, sys, types

import numpy as np

order, package_name = sys.argv[1], sys.argv[2]
package = importlib.import_module(package_name)


def import_every_submodule():
    for info in pkgutil.walk_packages(package.__path__, package_name + "."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def check_names():
    for name in package.__all__:
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), f"{package_name}.{name} is the module {value.__name__}, not the documented {name}"
        if name.startswith("__"):
            continue
        assert getattr(value, "__name__", None) == name, f"{package_name}.{name} is {value!r}"
        home = importlib.import_module(value.__module__)
        assert getattr(home, name) is value, f"{package_name}.{name} is not {value.__module__}.{name}"
        assert name in dir(package)


if order == "submodules-first":
    import_every_submodule()
    check_names()
else:
    check_names()
    import_every_submodule()
    check_names()

if package_name == "dslnet_edge":  # the documented calls work
    spec = package.InputSpec(height=4, width=2)
    batch = package.preprocess([np.zeros((8, 4, 3), np.uint8)], spec)
    assert batch.shape == (1, 3, 4, 2)
    def flat(x):
        return x.reshape(len(x), -1)

    result = package.compare({"a": flat, "b": flat}, [batch])
    assert result.passed, result
else:
    params = inspect.signature(package.quantize).parameters
    assert list(params)[:3] == ["fp32_onnx", "crops_dir", "out"], list(params)
print("ok")
'''


@pytest.mark.parametrize("order", ["submodules-first", "names-first"])
@pytest.mark.parametrize("package", ["dslnet_edge", "calibration"])
def test_public_names_are_what_the_docs_say_in_any_import_order(package, order):
    result = subprocess.run([sys.executable, "-c", CHECK, order, package], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_lazy_names_are_declared_for_type_checkers():
    """Each lazily loaded public name also has a TYPE_CHECKING import, so editors and mypy see it."""
    import ast
    from pathlib import Path

    for package in ("dslnet_edge", "calibration"):
        tree = ast.parse(Path(__import__(package).__file__).read_text())
        declared = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                for stmt in node.body:
                    if isinstance(stmt, ast.ImportFrom):
                        declared |= {alias.asname or alias.name for alias in stmt.names}
        lazy = set(__import__(package)._LAZY)
        assert lazy <= set(__import__(package).__all__), f"{package}: lazy names missing from __all__"
        assert lazy <= declared, f"{package}: no TYPE_CHECKING import for {sorted(lazy - declared)}"
