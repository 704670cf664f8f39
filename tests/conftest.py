"""Shared test fixtures.

Real data (``../shared/data`` beside the checkout, or ``$DSLNET_DATA``) is optional: tests
that need it use the ``real_data`` fixture, which skips with a clear reason when absent.
Plain helper functions live in ``tests/testutils.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testutils import shared_data_root


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("real data not found: set DSLNET_DATA or place the data at ../shared/data (cuhk03-pair1/, videos/)")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
