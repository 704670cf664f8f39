"""Runtime speed: now ``python -m dslnet_edge.bench`` (this script forwards its arguments there).

The loose numbers this script used to print (ONNX Runtime embeddings/s by batch, gallery search
by size) are columns of the bench's one side-by-side run: every CPU backend and precision beside
the peers, Rank-1/mAP, the measured FP32 peak, gallery search numpy vs faiss at 1k/100k/1M, and
end-to-end video by stage, as Markdown and JSON.

    python benchmarks/bench_runtime.py --quick        # = python -m dslnet_edge.bench --quick
"""

from __future__ import annotations

import sys

from dslnet_edge.bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
