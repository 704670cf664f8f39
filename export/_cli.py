"""What the export CLIs share: a user error is one clear line on stderr and a status; a bug keeps its traceback."""

from __future__ import annotations

from dslnet_edge._cli import EXPECTED_ERRORS, log_to_console, one_line, parse_args_or_status, report_error

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "report_error", "one_line", "log_to_console"]  # all from dslnet_edge._cli
