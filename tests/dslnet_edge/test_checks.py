"""The shared argument checks: what they accept (numpy integers too) and the messages they give."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dslnet_edge._checks import int_at_least, positive_int, timestamp_seconds


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_positive_int_accepts_python_and_numpy_integers_and_returns_an_int(value):
    out = positive_int(value, "top_k")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, "3", True, None, np.float32(2)])
def test_positive_int_refuses_everything_else_naming_the_argument(value):
    with pytest.raises(ValueError, match="^top_k must be a positive integer, got " + re.escape(repr(value)) + "$"):
        positive_int(value, "top_k")


def test_int_at_least_words_its_bound_and_hint():
    assert int_at_least(0, "index", 0) == 0
    with pytest.raises(ValueError, match=r"^threads must be an integer >= 0 \(0 = default\), got -1$"):
        int_at_least(-1, "threads", 0, hint=" (0 = default)")
    with pytest.raises(ValueError, match=r"^max_batch must be a positive integer or None, got 0$"):
        positive_int(0, "max_batch", hint=" or None")


def test_timestamp_seconds_takes_finite_reals_only():
    assert timestamp_seconds(np.float64(1.5)) == 1.5 and isinstance(timestamp_seconds(None), float)
    for bad in (float("nan"), True, "1"):
        with pytest.raises(ValueError, match="finite number of seconds"):
            timestamp_seconds(bad)
