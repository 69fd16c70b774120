"""A compiled tokenizer for the plain landmarks.csv body: `name<TAB>number<TAB>...<LF>`.

General CSV readers (pandas, pyarrow, polars) spend most of their time on per-column work at
1,943 columns and parse such a file at about 150 MB/s here. This one only handles the plain form
the competition writes (unquoted names, decimal numbers with optional sign and fraction, LF or
CRLF line ends), runs over line-aligned chunks in parallel, and writes straight into the
(N, 2K) float32 result. Anything else in a row (quotes, exponents, "nan", a missing or extra
cell, an empty line) marks the parse as not plain, and the caller falls back to the general
reader, which also locates real errors.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, prange

NAME_BYTES = 128
_TAB, _LF, _CR, _MINUS, _PLUS, _DOT, _ZERO = 9, 10, 13, 45, 43, 46, 48


_U = np.uint64
_LOW = _U(0x0101010101010101)
_ASCII0 = _U(0x3030303030303030)
_HIGH = _U(0xF0F0F0F0F0F0F0F0)
_SIX = _U(0x0606060606060606)
_ONES = _U(0xFFFFFFFFFFFFFFFF)
_M1 = _U(0x000000FF000000FF)
_MUL1 = _U(100 + (1000000 << 32))
_MUL2 = _U(1 + (10000 << 32))
_SEVEN_F = _U(0x7F7F7F7F7F7F7F7F)
_EIGHTY = _U(0x8080808080808080)
_CONTROL = _U(0xE0E0E0E0E0E0E0E0)
_LF8 = _U(0x0A0A0A0A0A0A0A0A)


@njit(inline="always")
def _zero_bytes(x):
    """0x80 in every byte of x that is zero, exactly (no false positives)."""
    return ~(((x & _SEVEN_F) + _SEVEN_F) | x | _SEVEN_F) & _EIGHTY


@njit(parallel=True, cache=True, nogil=True)
def _count_rows(buf, words, start, bounds):
    """Lines per chunk of text (chunk c is buf[start + bounds[c]:start + bounds[c + 1]]),
    8 bytes at a time."""
    chunks = len(bounds) - 1
    counts = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        a, z = start + bounds[c], start + bounds[c + 1]
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
        if z > start + bounds[c] and buf[z - 1] != _LF:
            k += 1  # the last line of the file has no line end
        counts[c] = k
    return counts


@njit(inline="always")
def _swar_digits(w, length):
    """Value of the first `length` (1..8) bytes of w (first byte lowest) if all are ASCII
    digits: eight bytes at once, no branch per byte. Returns (ok, value)."""
    mask = _ONES >> (_U(64) - _U(8) * _U(length))
    nondigit = (((w & _HIGH) ^ _ASCII0) | (((w + _SIX) & _HIGH) ^ _ASCII0)) & mask
    d = ((w - _ASCII0) & mask) << (_U(8) * _U(8 - length))  # as if zero-padded to 8 digits
    d = d * _U(10) + (d >> _U(8))
    d = (((d & _M1) * _MUL1) + (((d >> _U(16)) & _M1) * _MUL2)) >> _U(32)
    return nondigit == _U(0), d


@njit(inline="always")
def _load8(words, i):
    """The 8 bytes from byte i on, from two aligned 8-byte words (first byte lowest)."""
    q = i >> 3
    r = _U(8) * _U(i & 7)
    return (words[q] >> r) | ((words[q + 1] << _U(1)) << (_U(63) - r))


@njit(cache=True, nogil=True)
def _scalar_number(buf, a, z):
    """[+-]digits[.digits] spanning exactly buf[a:z]. Returns (value, ok)."""
    negative = False
    if a < z and (buf[a] == _MINUS or buf[a] == _PLUS):
        negative = buf[a] == _MINUS
        a += 1
    whole = 0
    digits = 0
    while a < z and 0 <= np.int64(buf[a]) - _ZERO <= 9:
        whole = whole * 10 + (np.int64(buf[a]) - _ZERO)
        digits += 1
        a += 1
    value = np.float64(whole)
    if a < z and buf[a] == _DOT:
        a += 1
        scale = 1.0
        while a < z and 0 <= np.int64(buf[a]) - _ZERO <= 9:
            if scale > 1e-15:  # further digits cannot change a float32
                scale *= 0.1
                value += (np.int64(buf[a]) - _ZERO) * scale
            digits += 1
            a += 1
    ok = a == z and 0 < digits <= 18  # 18 digits: no int64 overflow, no float32 inf
    return (-value if negative else value), ok


@njit(cache=True, nogil=True)
def _parse_chunk(buf, words, i, end, row, values, names, name_lengths):
    """Parse whole lines in buf[i:end] into rows from `row` on. False if not in the plain form.

    Per line: first the positions of its separators (a branch-free scan), then each cell is
    converted on its own, so conversions do not wait on each other.
    """
    columns = values.shape[1]
    seps = np.empty(columns + 2, np.int64)
    fast_limit = 8 * len(words) - 16  # 8-byte loads stay inside `words` before this
    while i < end:
        n = 0
        j = i
        line_done = False
        # Separators 8 bytes at a time: any byte below 0x20 (TAB, LF, CR, other controls) is
        # a candidate; the few candidates are then looked at one by one.
        while j < fast_limit and j < end and not line_done:
            w = _load8(words, j)
            candidates = _zero_bytes(w & _CONTROL)
            while candidates:
                lowest = candidates & (~candidates + _U(1))
                pos = j + np.int64((((lowest - _U(1)) & _LOW) * _LOW) >> _U(56)) - 1
                candidates &= candidates - _U(1)
                if pos >= end:
                    break
                b = buf[pos]
                if b == _TAB or b == _LF:
                    seps[n] = pos
                    n += 1
                    if b == _LF or n > columns:
                        line_done = True
                        break
            j += 8
        if not line_done:  # near the end of the buffer: byte by byte from the last separator
            j = seps[n - 1] + 1 if n else i
            while j < end:
                b = buf[j]
                seps[n] = j
                n += (b == _TAB) | (b == _LF)
                if b == _LF or n > columns:
                    break
                j += 1
            if j >= end:  # the file's last line has no line end
                seps[n] = end
                n += 1
        if n != columns + 1 or (seps[columns] < end and buf[seps[columns]] != _LF):
            return False
        name_length = seps[0] - i
        if name_length == 0 or name_length > NAME_BYTES:
            return False
        for q in range(name_length):
            if buf[i + q] == 34:  # quoted names: the general reader's job
                return False
            names[row, q] = buf[i + q]
        name_lengths[row] = name_length
        out = values[row]
        for col in range(columns):
            a = seps[col] + 1
            z = seps[col + 1]
            if col == columns - 1 and z > a and buf[z - 1] == _CR:
                z -= 1
            length = z - a
            done = False
            if 0 < length <= 8 and a < fast_limit:
                done, v = _swar_digits(_load8(words, a), length)
                if done:
                    out[col] = np.float64(np.int64(v))  # signed: a cheap conversion
            if not done:
                value, good = _scalar_number(buf, a, z)
                if not good:
                    return False
                out[col] = value
        i = seps[columns] + 1
        row += 1
    return True


@njit(parallel=True, cache=True, nogil=True)
def _parse_rows(buf, words, bounds, first_row, values, names, name_lengths, ok):
    for c in prange(len(bounds) - 1):
        ok[c] = _parse_chunk(buf, words, bounds[c], bounds[c + 1], first_row[c], values, names,
                             name_lengths)


def _split_chunks(text: np.ndarray, end: int, chunks: int) -> np.ndarray:
    """Bounds of about `chunks` pieces of text[:end], each starting at a line start."""
    bounds = [0]
    for k in range(1, chunks):
        nominal = end * k // chunks
        if nominal <= bounds[-1]:
            continue
        found = np.flatnonzero(text[nominal:min(end, nominal + (1 << 20))] == _LF)
        if len(found) and nominal + int(found[0]) + 1 < end:
            bounds.append(nominal + int(found[0]) + 1)
    bounds.append(end)
    return np.unique(np.asarray(bounds, dtype=np.int64))


def _names(name_bytes: np.ndarray, name_lengths: np.ndarray) -> np.ndarray:
    width = max(1, int(name_lengths.max())) if len(name_lengths) else 1
    fixed = np.ascontiguousarray(name_bytes[:, :width]).view(f"S{width}").ravel()
    if (name_bytes[:, :width] >= 128).any():
        return np.char.decode(fixed, "utf-8")
    return fixed.astype(f"U{width}")


def parse_plain(file, num_columns: int, sink=None, block_bytes: int = 64 << 20):
    """Parse the body of a landmarks.csv from `file` (a binary file positioned after the header).

    The text is read block by block into one reused buffer (memory stays bounded whatever the
    file size). Each block is split into line-aligned chunks parsed in parallel.
    Without `sink`, returns (names (N,) str, values (N, num_columns) float32). With `sink`,
    each block of values is handed to sink(block) in row order, from a writer thread while the
    next block is parsed, and sink.finish(rows) is called at the end; values returned are None.
    Returns None when the body is not in the plain form (the caller then uses the general
    reader). Every value parsed is finite.
    """
    text = np.empty(block_bytes + 64, np.uint8)  # numpy allocations are aligned; +64: lookahead
    words = text[: len(text) // 8 * 8].view(np.uint64)
    view = memoryview(text)
    names, kept, buffers = [], [], [np.empty((0, num_columns), np.float32)] * 2
    rows, carry, block, at_end = 0, 0, 0, False
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        while not at_end:
            filled = carry
            while filled < block_bytes:
                got = file.readinto(view[filled:block_bytes])
                if not got:
                    at_end = True
                    break
                filled += got
            end = filled
            if not at_end:
                last = np.flatnonzero(text[max(0, filled - (4 << 20)):filled] == _LF)
                if not len(last):
                    return None  # a line longer than the search window: not the plain form
                end = max(0, filled - (4 << 20)) + int(last[-1]) + 1
            if end == 0:
                break
            bounds = _split_chunks(text, end, 64)
            counts = _count_rows(text, words, 0, bounds)
            first_row = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            n = int(first_row[-1])
            index = block % 2 if sink is not None else 0
            if len(buffers[index]) < n:
                if pending is not None and index == (block - 1) % 2:
                    pending.result()
                buffers[index] = np.empty((n, num_columns), np.float32)
            values = buffers[index][:n] if sink is not None else np.empty((n, num_columns), np.float32)
            name_bytes = np.zeros((n, NAME_BYTES), np.uint8)
            name_lengths = np.zeros(n, np.int64)
            ok = np.ones(len(bounds) - 1, dtype=np.bool_)
            _parse_rows(text, words, bounds, first_row[:-1], values, name_bytes, name_lengths, ok)
            if pending is not None:
                pending.result()  # the other buffer is free again
                pending = None
            if not ok.all():
                return None
            names.append(_names(name_bytes, name_lengths))
            if sink is not None:
                pending = writer.submit(sink, values)
            else:
                kept.append(values)
            rows += n
            carry = filled - end
            text[:carry] = text[end:filled].copy()
            block += 1
        if pending is not None:
            pending.result()
    if sink is not None:
        sink.finish(rows)
    all_names = np.concatenate(names) if names else np.zeros(0, str)
    values = None if sink is not None else (np.concatenate(kept) if kept else np.zeros((0, num_columns), np.float32))
    return all_names, values
