"""Atomic output (write a temporary file, then rename) and the per-data cache folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _usual_mode(base: int) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.

    The temporary name keeps the suffix so libraries that pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _usual_mode(0o666))  # mkstemp makes 0600
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` (which must not exist)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _usual_mode(0o777))  # mkdtemp makes 0700
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cache_dir_for(source: str | Path) -> Path:
    """Where derived files for `source` (a CSV) live: beside it when writable, else a user cache.

    Shared datasets are often read-only; the user cache is keyed by the source's absolute path.
    """
    source = Path(source).resolve()
    # Mode bits, not os.access: as root every folder is "writable", even a read-only share.
    if source.parent.stat().st_mode & 0o222 and os.access(source.parent, os.W_OK):
        return source.parent
    root = Path(os.environ.get("DENSEMARKS_CACHE", Path.home() / ".cache" / "densemarks"))
    key = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    return folder
