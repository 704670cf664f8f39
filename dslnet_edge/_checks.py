"""Small argument checks shared by the runtime modules (one definition each). Standard library only."""

from __future__ import annotations

import math
import numbers
import time

__all__ = ["timestamp_seconds", "positive_int"]


def timestamp_seconds(timestamp: float | None) -> float:
    """``timestamp`` as float seconds (now when None); any finite real number, numpy scalars included.

    >>> timestamp_seconds(12), timestamp_seconds(1.5)
    (12.0, 1.5)
    """
    if timestamp is None:
        return time.time()
    if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real) or not math.isfinite(timestamp):
        raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
    return float(timestamp)


def positive_int(value: object, name: str) -> int:
    """``value`` when it is an integer >= 1 (bools refused), else ``ValueError`` naming ``name``.

    >>> positive_int(3, "draws")
    3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
