"""``python -m dslnet_edge.bench``: the runtime speed and accuracy of DSLNet beside its peers, in one run.

* :mod:`dslnet_edge.bench.core`: the measurements (model rows, FP32 peak, gallery, video) as dicts;
* :mod:`dslnet_edge.bench.peers`: the OMZ peer models as backends;
* :mod:`dslnet_edge.bench.report`: Markdown and JSON;
* :mod:`dslnet_edge.bench.__main__`: the CLI (``build_parser -> config_from_args -> run -> main``).

Importing this package is cheap: the runtimes are imported when a measurement needs them.
"""

from __future__ import annotations

from dslnet_edge.bench.core import BenchConfig, run_bench
from dslnet_edge.bench.report import to_json, to_markdown

__all__ = ["BenchConfig", "run_bench", "to_json", "to_markdown"]
