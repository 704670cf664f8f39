"""Every docstring example in the packages runs as a test (``>>>`` lines found by scanning the sources).

A module with examples is found by its text, so an example added anywhere is run from then on;
``python -m pytest tests/test_doctests.py`` runs them all.
"""

from __future__ import annotations

import doctest
import importlib

import pytest
from testutils import REPO_ROOT

PACKAGES = ("dslnet_edge", "train", "export", "calibration", "samples")


def _modules_with_examples() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return found


MODULES = _modules_with_examples()


def test_the_modules_named_in_the_issue_are_covered():
    assert {"dslnet_edge.metrics", "samples.detect", "train.loop", "dslnet_edge.images"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has '>>>' in its source but doctest found no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
