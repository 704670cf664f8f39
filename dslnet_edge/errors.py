"""The root of the project's own errors.

Every error the library raises on purpose (a bad file, a bad value, a failed check) is a
:class:`DslnetError`, whatever package raises it: ``dslnet_edge`` (BackendError, ArtifactError,
GalleryError, CheckpointError, ImageReadError, EmbeddingError, ...), ``train`` (ConfigError,
DatasetError, TeacherError), ``export`` (ExportError, BuildError, ...), ``calibration``
(CalibrationError, GateFailure) and ``samples`` (VideoError, DetectorError, CropFolderError).
Each keeps its historical second base (``ValueError`` or ``RuntimeError``), so code that catches
those still catches it. The command lines turn a ``DslnetError`` into one line
(:data:`dslnet_edge._cli.EXPECTED_ERRORS`); anything else is a bug and shows its traceback.

    >>> from dslnet_edge.errors import DslnetError
    >>> from dslnet_edge.gallery import GalleryError
    >>> issubclass(GalleryError, DslnetError) and issubclass(GalleryError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["DslnetError", "MissingDependencyError"]


class DslnetError(Exception):
    """An error the project raises on purpose; its message is meant for the user, on one line."""


class MissingDependencyError(DslnetError, ImportError):
    """An optional package a feature needs is not installed; the message says which and how to get it."""
