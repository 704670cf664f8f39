"""Small argument checks shared by the runtime modules (one definition each). Standard library only."""

from __future__ import annotations

import math
import numbers
import time

__all__ = ["timestamp_seconds", "int_at_least", "positive_int"]


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


def int_at_least(value: object, name: str, low: int, *, hint: str = "") -> int:
    """``value`` as an ``int`` when it is an integer (numpy's too; bools refused) ``>= low``, else
    ``ValueError`` naming ``name`` (``hint`` is added after the requirement, e.g. ``" or None"``).

    >>> int_at_least(0, "index", 0)
    0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        need = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {need}{hint}, got {value!r}")
    return int(value)


def positive_int(value: object, name: str, *, hint: str = "") -> int:
    """:func:`int_at_least` with ``low = 1``.

    >>> positive_int(3, "draws")
    3
    """
    return int_at_least(value, name, 1, hint=hint)
