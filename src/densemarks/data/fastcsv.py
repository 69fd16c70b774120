"""A compiled tokenizer for the plain landmarks.csv body: `name<TAB>number<TAB>...<LF>`.

General CSV readers (pandas, pyarrow, polars) spend most of their time on per-column work at
1,943 columns and parse such a file at about 150 MB/s here. This one only handles the plain form
the competition writes (unquoted names, decimal numbers with optional sign and fraction, LF or
CRLF line ends). It reads the file through a memory map, runs over line-aligned chunks in
parallel and writes straight into the (N, 2K) float32 result, which may itself be a memory-mapped
cache file. Anything else in a row (quotes, exponents, "nan", a missing or extra cell, an empty
line) marks the parse as not plain, and the caller falls back to the general reader, which also
locates real errors.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os

import numpy as np
from numba import njit, prange

from densemarks.core.errors import MAX_COORDINATE

NAME_BYTES = 128
_TAB, _LF, _CR, _MINUS, _PLUS, _DOT, _ZERO = 9, 10, 13, 45, 43, 46, 48


_U = np.uint64
_LOW = _U(0x0101010101010101)
_SEVEN_F = _U(0x7F7F7F7F7F7F7F7F)
_EIGHTY = _U(0x8080808080808080)
_LF8 = _U(0x0A0A0A0A0A0A0A0A)
_POWERS = 10.0 ** np.arange(19)  # exact in float64
_TOO_LARGE = np.int64(MAX_COORDINATE)


@njit(inline="always")
def _zero_bytes(x):
    """0x80 in every byte of x that is zero, exactly (no false positives)."""
    return ~(((x & _SEVEN_F) + _SEVEN_F) | x | _SEVEN_F) & _EIGHTY


@njit(parallel=True, cache=True, nogil=True)
def _count_rows(buf, words, bounds):
    """Line ends in each chunk buf[bounds[c]:bounds[c + 1]], 8 bytes at a time (words is buf
    seen as uint64)."""
    chunks = len(bounds) - 1
    counts = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        a, z = bounds[c], bounds[c + 1]
        k = 0
        while a < z and a & 7:
            k += buf[a] == _LF
            a += 1
        while a + 8 <= z:
            k += np.int64(((_zero_bytes(words[a >> 3] ^ _LF8) >> _U(7)) * _LOW) >> _U(56))
            a += 8
        while a < z:
            k += buf[a] == _LF
            a += 1
        counts[c] = k
    return counts


@njit(cache=True, nogil=True)
def _parse_chunk(buf, i, end, row, values, names, name_lengths):
    """Parse the lines of buf[i:end] (each ends with LF) into rows from `row` on.
    False if any line is not in the plain form.

    One pass, byte by byte, one branch per byte in the common case (a digit). Measured here
    2.1x faster than finding the separators eight bytes at a time and converting each cell
    eight digits at a time (SWAR), and 1.2x faster than a digit loop per cell: the cells are
    short (1 to 4 digits), so a simple loop predicts well and does the least work.
    """
    columns = values.shape[1]
    while i < end:
        j = i
        while buf[j] > 31 and buf[j] != 34:  # the name: up to the TAB; quotes are not plain
            j += 1
        name_length = j - i
        if buf[j] != _TAB or name_length == 0 or name_length > NAME_BYTES:
            return False
        names[row, :name_length] = buf[i:j]
        name_lengths[row] = name_length
        out = values[row]
        col = 0
        j += 1
        cell = start = j  # where the cell begins; where its digits begin (after sign and dot)
        whole, fraction, negative, dotted = 0, 0.0, False, False
        while True:
            b = buf[j]
            d = np.int64(b) - _ZERO
            if np.uint64(d) < 10:
                whole = whole * 10 + d
            elif b == _TAB or b == _LF or b == _CR:
                digits = j - start
                # 18: no int64 overflow; a coordinate of MAX_COORDINATE or more goes to the general reader, which refuses it
                if digits == 0 or digits > 18 or col == columns or whole >= _TOO_LARGE:
                    return False
                value = whole + fraction
                out[col] = -value if negative else value
                col += 1
                if b != _TAB:
                    j += b == _CR
                    if buf[j] != _LF:
                        return False
                    break
                cell = start = j + 1
                whole, fraction, negative, dotted = 0, 0.0, False, False
            elif (b == _MINUS or b == _PLUS) and j == cell:
                negative = b == _MINUS
                start += 1
            elif b == _DOT and not dotted:
                dotted = True
                start += 1
                k = j + 1
                places = 0
                while True:
                    d = np.int64(buf[k]) - _ZERO
                    if np.uint64(d) > 9:
                        break
                    places = places * 10 + d
                    k += 1
                if k - j - 1 > 18:
                    return False
                fraction = places / _POWERS[k - j - 1]  # exact powers: one rounding each
                j = k
                continue
            else:
                return False
            j += 1
        if col != columns:
            return False
        i = j + 1
        row += 1
    return True


@njit(parallel=True, cache=True, nogil=True)
def _parse_rows(buf, bounds, first_row, values, names, name_lengths, ok):
    for c in prange(len(bounds) - 1):
        ok[c] = _parse_chunk(buf, bounds[c], bounds[c + 1], first_row[c], values, names,
                             name_lengths)


@njit(cache=True)
def _split_chunks(buf, start, end, chunks):
    """Bounds of up to `chunks` pieces of buf[start:end] (which ends with LF), each starting
    at a line start."""
    bounds = np.empty(chunks + 1, np.int64)
    bounds[0] = start
    n = 1
    for k in range(1, chunks):
        j = max(start + (end - start) * k // chunks, bounds[n - 1])
        while j < end and buf[j] != _LF:
            j += 1
        if j + 1 < end:
            bounds[n] = j + 1
            n += 1
    bounds[n] = end
    return bounds[: n + 1]


def _names(name_bytes: np.ndarray, name_lengths: np.ndarray) -> np.ndarray:
    width = max(1, int(name_lengths.max())) if len(name_lengths) else 1
    fixed = np.ascontiguousarray(name_bytes[:, :width]).view(f"S{width}").ravel()
    if (name_bytes[:, :width] >= 128).any():
        return np.char.decode(fixed, "utf-8")
    return fixed.astype(f"U{width}")


class NotPlain(Exception):
    """Part of the body is not in the plain form. offset: the file offset where that part
    begins (at a line start); row: the rows parsed before it."""

    def __init__(self, offset: int, row: int):
        super().__init__(f"not plain from byte {offset} (row {row})")
        self.offset, self.row = offset, row


def _text(file) -> tuple[np.ndarray, int, mmap.mmap | None]:
    """(buffer, start, mapping): the file's bytes as a uint8 array starting on an 8-byte
    boundary, where the rest of the file begins in it, and the memory map when a regular file
    was mapped (no copy; buffer index = file offset)."""
    with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
        start = file.tell()
        if os.fstat(file.fileno()).st_size <= start:
            return np.zeros(0, np.uint8), 0, None
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)  # closed with its last view
        with contextlib.suppress(AttributeError, OSError):
            mapped.madvise(mmap.MADV_SEQUENTIAL)
        return np.frombuffer(mapped, np.uint8), start, mapped
    data = np.frombuffer(file.read(), np.uint8)  # not a regular file: read it
    text = np.empty(len(data), np.uint8)  # aligned
    text[:] = data
    return text, 0, None


def _windows(text: np.ndarray, start: int, window_bytes: int) -> list[tuple[np.ndarray, int, int]] | None:
    """Line-aligned windows (buffer, begin, end) of about window_bytes covering the body. A last
    line without a line end gets a copy of its own with one. None: that line is far longer than
    a landmarks line."""
    end = len(text)
    if end > start and text[end - 1] != _LF:  # a last line without a line end: parsed apart
        window = max(start, end - (1 << 24))
        line_ends = np.flatnonzero(text[window:end] == _LF)
        if not len(line_ends) and window > start:
            return None
        end = window + int(line_ends[-1]) + 1 if len(line_ends) else start
    pieces = [(text, start, end)]
    if end < len(text):
        tail = np.empty(len(text) - end + 1, np.uint8)
        tail[:-1], tail[-1] = text[end:], _LF
        pieces.append((tail, 0, len(tail)))
    out = []
    for buf, a, z in pieces:
        if z > a:
            bounds = _split_chunks(buf, a, z, max(1, (z - a) // window_bytes))
            out += [(buf, int(bounds[i]), int(bounds[i + 1])) for i in range(len(bounds) - 1)]
    return out


def _release(mapped: mmap.mmap | None, begin: int, end: int) -> None:
    """Unmap the pages of mapped[begin:end] from this process (they stay in the page cache):
    a pass over a file of gigabytes holds one window in memory, not the whole file."""
    if mapped is None or end <= begin:
        return
    first = begin // mmap.PAGESIZE * mmap.PAGESIZE
    with contextlib.suppress(AttributeError, OSError, ValueError):
        mapped.madvise(mmap.MADV_DONTNEED, first, end - first)


def _window_rows(buf: np.ndarray, begin: int, end: int, chunk_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk bounds, rows per chunk) of one window."""
    bounds = _split_chunks(buf, begin, end, max(1, (end - begin) // chunk_bytes))
    return bounds, _count_rows(buf, buf[: len(buf) // 8 * 8].view(np.uint64), bounds)


def _parse_window(buf, bounds, counts, values, text, mapped) -> np.ndarray | None:
    """Parse one window's chunks into values (its rows), then release the window's pages
    when it lies in the mapped file `text`; the names, or None if not plain."""
    rows = int(counts.sum())
    name_bytes = np.zeros((rows, NAME_BYTES), np.uint8)
    name_lengths = np.zeros(rows, np.int64)
    first_row = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    ok = np.ones(len(bounds) - 1, dtype=np.bool_)
    _parse_rows(buf, bounds, first_row, values, name_bytes, name_lengths, ok)
    if buf is text:
        _release(mapped, int(bounds[0]), int(bounds[-1]))
    return _names(name_bytes, name_lengths) if ok.all() else None


WINDOW_BYTES = 64 << 20


def iter_plain(file, num_columns: int, window_bytes: int = WINDOW_BYTES, chunk_bytes: int = 1 << 20):
    """Parse the body of a landmarks.csv from `file` (binary, positioned after the header) one
    window of about window_bytes at a time: yields (names (n,) str, values (n, num_columns)
    float32) in file order, holding one window in memory. Raises NotPlain at the first window
    that is not in the plain form (the caller goes on from there with the general reader)."""
    text, start, mapped = _text(file)
    windows = _windows(text, start, window_bytes)
    if windows is None:
        raise NotPlain(start, 0)
    row = 0
    for buf, begin, end in windows:
        bounds, counts = _window_rows(buf, begin, end, chunk_bytes)
        values = np.empty((int(counts.sum()), num_columns), np.float32)
        names = _parse_window(buf, bounds, counts, values, text, mapped)
        if names is None:
            raise NotPlain(begin if buf is text else len(text) - len(buf) + 1 + begin, row)
        row += len(names)
        yield names, values


def parse_plain(file, num_columns: int, open_sink=None, chunk_bytes: int = 1 << 20,
                window_bytes: int = WINDOW_BYTES):
    """Parse the body of a landmarks.csv from `file` (a binary file positioned after the header).

    A real file is memory-mapped, not read, one window at a time: a first pass counts the lines,
    a second parses each window's line-aligned chunks in parallel, each into its own rows.
    Returns (names (N,) str, values (N, num_columns) float32), or None when the body is not in
    the plain form (the caller then uses the general reader). Every value parsed is finite.
    `open_sink(rows)`, when given, returns a function that takes each window's values in turn
    (writing a cache file, say), and values are not kept: None is returned in their place.
    """
    text, start, mapped = _text(file)
    windows = _windows(text, start, window_bytes)
    if windows is None:
        return None
    plans = []
    for buf, begin, end in windows:
        plans.append((buf, *_window_rows(buf, begin, end, chunk_bytes)))
        if buf is text:
            _release(mapped, begin, end)
    rows = int(sum(int(counts.sum()) for *_, counts in plans))
    if rows == 0:
        return np.zeros(0, str), np.zeros((0, num_columns), np.float32)
    sink = open_sink(rows) if open_sink is not None else None
    values = np.empty((rows, num_columns), np.float32) if sink is None else None
    names, row = [], 0
    for buf, bounds, counts in plans:
        n = int(counts.sum())
        block = values[row:row + n] if values is not None else np.empty((n, num_columns), np.float32)
        window_names = _parse_window(buf, bounds, counts, block, text, mapped)
        if window_names is None:
            return None
        if sink is not None:
            sink(block)
        names.append(window_names)
        row += n
    return np.concatenate(names), values
