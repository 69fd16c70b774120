"""Output that is checked before long work, written atomically (a temporary file renamed into
place, or `-` for standard output), run folders one process at a time, and the per-data cache
folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from densemarks.core.errors import DataError


def _usual_mode(base: int) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


STDOUT = "-"
MIN_FREE_BYTES = 1 << 20


def check_output(path: str | Path, *, folder: bool = False) -> None:
    """Raise a one-line DataError now, before any long work, when `path` cannot be written:
    a folder where a file is wanted (or the reverse), a FIFO, device or socket (never replaced),
    a parent that is a file, a folder without write permission, or a full disk. `-` (standard
    output) always passes for a file."""
    if str(path) == STDOUT and not folder:
        return
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise DataError(path, "exists and is not a folder")
        if not folder and path.is_dir():
            raise DataError(path, "is a folder; give a file name")
        if not folder and not stat.S_ISREG(path.stat().st_mode):
            raise DataError(path, "is not a regular file (a FIFO, device or socket); refusing to replace it")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(path, f"{parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(path, f"folder {parent} is not writable")
    usage = shutil.disk_usage(parent)
    if usage.total == 0:  # /proc, /sys: no disk behind them
        raise DataError(path, f"folder {parent} is on a virtual file system, not a disk: files cannot be kept there")
    if usage.free < MIN_FREE_BYTES:
        raise DataError(path, f"no space left on the disk of {parent}")


def check_not_input(outputs, inputs, *, replaces_folder: bool = False) -> None:
    """Raise a one-line DataError when an output would replace a file the command reads: the
    same file (by inode, so links count too) as an existing input. replaces_folder: the single
    output is a folder the command replaces as a whole (convert --overwrite), so no input may
    lie anywhere inside it either. None entries and `-` are skipped."""
    inputs = [Path(p) for p in inputs if p is not None and str(p) != STDOUT and Path(p).exists()]
    for out in (Path(p) for p in outputs if p is not None and str(p) != STDOUT):
        if not out.exists():
            continue
        for source in inputs:
            if os.path.samefile(out, source):
                which = "" if out.resolve() == source.resolve() else f" (the same file as {source})"
                raise DataError(out, f"is also an input of this command{which}: writing it would destroy it; "
                                     f"choose another output")
            if replaces_folder and out.is_dir() and source.resolve().is_relative_to(out.resolve()):
                raise DataError(out, f"holds an input of this command ({source}) and would be replaced "
                                     f"as a whole: choose another output folder")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.
    `-`: the file goes to standard output once it is complete. A FIFO, device or socket at
    `path` is never replaced.

    The temporary name keeps the suffix so libraries that pick a format by extension still work.
    """
    if str(path) == STDOUT:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder) / "stdout"
            yield tmp
            with open(tmp, "rb") as f:
                sys.stdout.flush()
                shutil.copyfileobj(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
        return
    path = Path(path)
    if path.is_dir() or (path.exists() and not stat.S_ISREG(path.stat().st_mode)):
        check_output(path)  # says which
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


def user_cache() -> Path:
    """The user's cache folder for densemarks: $DENSEMARKS_CACHE, else ~/.cache/densemarks."""
    return Path(os.environ.get("DENSEMARKS_CACHE", Path.home() / ".cache" / "densemarks"))


def cache_dir_for(source: str | Path) -> Path:
    """Where derived files for `source` (a CSV) live: beside it when writable, else a user cache.

    Shared datasets are often read-only; the user cache is keyed by the source's absolute path.
    """
    source = Path(source).resolve()
    # Mode bits, not os.access: as root every folder is "writable", even a read-only share.
    if source.parent.stat().st_mode & 0o222 and os.access(source.parent, os.W_OK):
        return source.parent
    key = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    folder = user_cache() / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(user_cache(), f"cannot make the cache folder for {source} ({exc.strerror}; the folder "
                        "beside it is read-only): set DENSEMARKS_CACHE to a writable folder") from None
    return folder


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold FOLDER/.lock for as long as the block runs: a second process that wants the same
    folder is refused at once. The lock is the operating system's (flock), so a process that
    crashes or is killed leaves nothing stuck. The folders this call made are removed again when
    the block ends with nothing in them but the lock (it failed before writing anything)."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(folder / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise DataError(folder, f"is in use by {holder}; wait for it, or choose another --out") from None
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        if created and [p.name for p in folder.iterdir()] == [".lock"]:
            (folder / ".lock").unlink()
            for made in created:
                try:
                    made.rmdir()
                except OSError:  # something else was put there meanwhile
                    break
