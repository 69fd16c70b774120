"""The one exception type for bad input: the CLI prints it as a single line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input, located as precisely as we can: file, line (1-based, header is line 1), what."""

    def __init__(self, path: str | Path | None, message: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = self.path or ""
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}" if where else message)
