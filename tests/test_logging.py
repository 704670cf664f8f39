"""Library code logs through ``logging`` and prints nothing; CLIs show the log lines on the console."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from dslnet_edge._cli import PROJECT_LOGGERS, log_to_console

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("dslnet_edge", "train", "export", "calibration")
#: Functions that may print: a CLI's ``main`` writes its results, the CLI helpers write the one error line.
MAY_PRINT = {"main", "error", "report_error"}
#: Whole files that may print, with the reason.
MAY_PRINT_FILES = {
    "export/deepstream_probe.py": "a standalone DeepStream probe program written next to the config, not library code",
}


def _calls_print(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print" for n in ast.walk(node))


def library_prints(root: Path = REPO) -> list[str]:
    """``print`` calls outside a CLI's ``main`` and ``log=print``-style parameters, as 'file:line: what'."""
    found = []
    for package in LIBRARY:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if path.name == "__main__.py" or rel in MAY_PRINT_FILES:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))

            def visit(node: ast.AST, function: str | None, rel: str = rel) -> None:
                for child in ast.iter_child_nodes(node):
                    name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        args = child.args
                        defaults = list(zip(args.args[len(args.args) - len(args.defaults):], args.defaults))
                        defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                        for arg, default in defaults:
                            if _calls_print(default) or (isinstance(default, ast.Name) and default.id == "print"):
                                found.append(f"{rel}:{child.lineno}: parameter {arg.arg} defaults to print")
                    if (isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id == "print"
                            and function not in MAY_PRINT):
                        found.append(f"{rel}:{child.lineno}: print() in {function or 'module level'}")
                    visit(child, name)

            visit(tree, None)
    return found


def test_library_code_logs_instead_of_printing():
    assert library_prints() == []


def test_the_check_sees_a_print_and_a_log_print_parameter(tmp_path):
    (tmp_path / "export").mkdir()
    for package in LIBRARY:
        (tmp_path / package).mkdir(exist_ok=True)
    (tmp_path / "export" / "x.py").write_text(
        "def run(config, *, log=print):\n    log('a')\n\ndef helper():\n    print('b')\n\ndef main():\n    print('ok')\n"
    )
    assert library_prints(tmp_path) == ["export/x.py:1: parameter log defaults to print", "export/x.py:5: print() in helper"]


def test_log_to_console_shows_the_project_lines_and_leaves_nothing_behind(capsys):
    log = logging.getLogger("export.some_module")
    log.info("not shown outside the block")
    with log_to_console("stdout"):
        log.info("wrote model.onnx")
        logging.getLogger("dslnet_edge.backends").warning("falling back to f32")
        logging.getLogger("somebody.else").info("a third-party line")
    log.info("not shown after the block")
    captured = capsys.readouterr()
    assert captured.out == "wrote model.onnx\n"
    assert captured.err == "falling back to f32\n"
    assert all(not logging.getLogger(n).handlers for n in PROJECT_LOGGERS)
    with log_to_console("stderr"):
        logging.getLogger("train.loop").info("epoch 1/3: loss 2.3")
    assert capsys.readouterr() == ("", "epoch 1/3: loss 2.3\n")
    with pytest.raises(ValueError, match="stdout"):
        with log_to_console("nowhere"):
            pass

