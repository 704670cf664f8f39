"""A disk that fills up while a CLI saves a gallery: one line, status 1, the previous gallery intact.

The full disk is real, not a mock: the CLI runs in a subprocess whose file-size limit
(``testutils.file_size_limited``) makes the kernel refuse the gallery's writes part way.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from testutils import file_size_limited, tiny_embedding_onnx

from dslnet_edge.spec import InputSpec

pytestmark = pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")


def _crops(root, identities: int, per_identity: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(identities):
        folder = root / f"person{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_identity):
            assert cv2.imwrite(str(folder / f"{k}.png"), rng.integers(0, 256, (32, 16, 3), dtype=np.uint8))
    return root


def test_enroll_on_a_full_disk_is_one_line_and_keeps_the_old_gallery(tmp_path):
    model = tiny_embedding_onnx(tmp_path / "tiny.onnx", InputSpec(height=32, width=16, feature_dim=512))
    gallery = tmp_path / "gallery.db"
    cmd = [sys.executable, "-m", "samples.enroll", "--gallery", str(gallery), "--model", str(model)]
    first = subprocess.run([*cmd, "--crops", str(_crops(tmp_path / "few", 1, 2))], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = gallery.read_bytes()
    assert len(before) < 48 << 10  # fits under the limit below; the next gallery (12 x 8 x 2 KiB embeddings) does not
    many = _crops(tmp_path / "many", 12, 8, seed=1)
    full = subprocess.run(file_size_limited([*cmd, "--crops", str(many), "--replace"], 64 << 10), capture_output=True,
                          text=True, timeout=300)
    assert gallery.read_bytes() == before  # the old gallery is intact (atomic save)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".gallery.db")) == []  # no temporary left
    assert full.returncode == 1
    assert "Traceback" not in full.stderr and full.stderr.count("\n") == 1 and full.stderr.startswith("error: "), full.stderr
