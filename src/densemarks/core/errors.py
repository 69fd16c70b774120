"""The one exception type for bad input: the CLI prints it as a single line and exits non-zero;
and the csv module's rows with its own errors turned into it."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_COORDINATE = 1e7  # pixels: no face crop or photo is this large; a larger number is a broken file
MAX_SEED = 2**32 - 1  # numpy's generators take no negative seed, torch's none past 64 bits
MAX_THREADS = 1024  # a larger thread count is a typo (10**20 hung torch), not a machine
MAX_WORKERS = 256  # processes (loader workers, synth renderers): each is a whole interpreter


class DataError(Exception):
    """Bad input, located as precisely as we can: file, line (1-based, header is line 1), what."""

    def __init__(self, path: str | Path | None, message: str = "", line: int | None = None):
        if isinstance(path, str) and not message:
            # rebuilt from one text: unpickled (DataError(str(e))), or re-raised in the main
            # process from a DataLoader worker (DataError(its traceback text))
            path, message = None, _from_worker(path) if path.startswith(_WORKER) else path
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = self.path or ""
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}" if where else message)


def last_line(exc: BaseException, limit: int = 160) -> str:
    """The last line of a library's exception message (where torch and friends say what was
    wrong), cut to `limit` characters, for a one-line error; the type's name when it is empty."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:limit]


_WORKER = "Caught DataError in DataLoader worker"
_PREFIX = f"{__name__}.DataError: "


def _from_worker(text: str) -> str:
    """The original one-line message out of the traceback text a DataLoader worker sends."""
    found = [line[len(_PREFIX):] for line in text.splitlines() if line.startswith(_PREFIX)]
    return (found[-1] if found else text.splitlines()[-1]) + " (in a data loader process)"


def csv_rows(lines: Iterable[str], path: str | Path, delimiter: str = ",", first_line: int = 1) -> Iterator[list[str]]:
    """The csv module's rows of `lines` (a file or a list of lines, the first of them line
    `first_line` of `path`); its own errors (a field over its size limit, a NUL byte) as a
    DataError naming the line."""
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        yield from reader
    except csv.Error as exc:
        raise DataError(path, f"cannot parse: {exc}", line=first_line + reader.line_num - 1) from None


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """The whole number in environment variable `name` (`default` when it is unset or empty)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise DataError(None, f"environment variable {name}={text!r}: expected a whole number") from None
    if value < minimum:
        raise DataError(None, f"environment variable {name}={value}: expected at least {minimum}")
    return value
