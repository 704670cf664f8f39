"""Atomic writes: all or nothing, usual permissions, orphaned temporaries cleaned up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from dslnet_edge._io import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "file.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.json"]


def test_failure_inside_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.onnx"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"half-written")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_new_files_get_umask_permissions_and_replaced_files_keep_theirs(tmp_path):
    path = tmp_path / "engine.json"
    atomic_write_text(path, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    atomic_write_text(path, "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_directory_destination_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write_text(tmp_path, "x")


@pytest.mark.skipif(os.name != "posix", reason="orphan detection probes process ids (POSIX only)")
def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "gallery.db"
    # A writer that dies (SIGKILL) inside the block, leaving its temporary behind.
    code = (
        "import os, signal, sys\n"
        "from dslnet_edge._io import atomic_write\n"
        f"with atomic_write({str(path)!r}) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code])
    assert result.returncode == -9
    orphans = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(orphans) == 1
    # A temporary of a live process (this one) must survive.
    live = tmp_path / f".gallery.db.{os.getpid()}.abc.tmp"
    live.write_bytes(b"in progress")
    atomic_write_bytes(path, b"complete")
    assert path.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["gallery.db", live.name])


def test_suffix_is_kept_on_the_temporary_for_writers_that_read_the_extension(tmp_path):
    path = tmp_path / "annotated.mp4"
    with atomic_write(path, suffix=".mp4") as tmp:
        assert tmp.name.endswith(".tmp.mp4") and tmp.parent == tmp_path
        tmp.write_bytes(b"frames")
    assert path.read_bytes() == b"frames"


def test_file_sha256_reads_in_blocks(tmp_path):
    import hashlib

    from dslnet_edge._io import file_sha256

    data = np.random.default_rng(0).integers(0, 256, (3 << 20) + 17, dtype=np.uint8).tobytes()  # several 1 MiB blocks
    (tmp_path / "f.bin").write_bytes(data)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "f.bin")) == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.bin")
