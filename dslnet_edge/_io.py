"""Atomic file writes: a crash never leaves a half-written artefact behind.

Everything the project persists (checkpoints, ONNX files, engines, sidecars, galleries,
reports) goes through :func:`atomic_write`: the data is written to a temporary file in the
destination folder, flushed to disk, then moved over the destination with ``os.replace``
(atomic on POSIX and Windows). Standard library only.

Temporary files are named ``.<name>.<pid>.<random>.tmp[<suffix>]``. A writer killed mid-save (``kill -9``,
power loss) cannot remove its own; the next write to the same destination removes those whose
process is gone, so they never pile up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "file_sha256"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it over ``path``.

    The caller writes the temporary file itself (any library that takes a path works).
    ``suffix`` is appended to the temporary's name, for writers that pick the format from the
    file name (OpenCV's video writer: ``suffix=".mp4"``).
    On an exception the temporary file is removed and ``path`` is left as it was. The new
    file keeps the permissions of the file it replaces, or gets the usual ``0666 & ~umask``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # make the bytes durable before the rename
            os.fsync(f.fileno())
        os.chmod(tmp_path, _target_mode(path))
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks (ONNX files, engines, checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _target_mode(path: Path) -> int:
    """The mode the destination should end with (mkstemp creates 0600 files)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_orphaned_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp*`` files next to ``path`` whose writing process has died."""
    if os.name != "posix":  # os.kill(pid, 0) is a liveness probe only on POSIX
        return
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f"{_glob_escape(prefix)}*.tmp*"):
        pid_text = candidate.name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)
