"""dslnet_edge: DSLNet person re-identification from training to TensorRT deployment.

``import dslnet_edge`` needs neither torch nor TensorRT: heavy modules load on first use.

Quick start::

    import dslnet_edge
    matcher = dslnet_edge.Matcher(dslnet_edge.Engine())   # bundled weights, ONNX Runtime CPU
    matches = matcher.match(frame_crops)                   # list[dslnet_edge.Match]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dslnet_edge.spec import InputSpec

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors
    from dslnet_edge.comparison import compare
    from dslnet_edge.engine import Engine
    from dslnet_edge.gallery import Gallery
    from dslnet_edge.matcher import Match, Matcher
    from dslnet_edge.preprocessing import preprocess
    from dslnet_edge.threshold import calibrate_threshold

__version__ = "0.1.0"

# name -> module that defines it; imported lazily on first attribute access. A public name is never
# also a submodule's name: importing a submodule sets the package attribute of its name, which
# would then hide the function (hence preprocessing.py for preprocess, comparison.py for compare).
_LAZY = {
    "preprocess": "dslnet_edge.preprocessing",
    "Engine": "dslnet_edge.engine",
    "Matcher": "dslnet_edge.matcher",
    "Match": "dslnet_edge.matcher",
    "Gallery": "dslnet_edge.gallery",
    "calibrate_threshold": "dslnet_edge.threshold",
    "compare": "dslnet_edge.comparison",
}

__all__ = [
    "InputSpec",
    "__version__",
    "preprocess",
    "Engine",
    "Matcher",
    "Match",
    "Gallery",
    "calibrate_threshold",
    "compare",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dslnet_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
