"""What the export CLIs share: one clear line on stderr and a status, never a traceback."""

from __future__ import annotations

from dslnet_edge._cli import one_line, parse_args_or_status, report_error

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "report_error", "one_line"]  # the helpers: dslnet_edge._cli

#: Errors a user can cause (bad paths, bad files, bad values, a failed check, a missing optional
#: package). ``CheckpointError`` is a ``ValueError``; ONNX Runtime's errors are ``RuntimeError``s.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, TypeError, ImportError, KeyError)
