"""Reading and writing the competition's CSV files: landmarks.csv and test_points.csv.

landmarks.csv is tab-separated: `file_name`, then `Point_i_X`, `Point_i_Y` for i = 0..K-1.
K comes from the header. Points are returned as one float32 array (N, K, 2) in original-image
pixels. The first load parses with the compiled tokenizer in `fastcsv` (pyarrow's reader for
anything not in the plain form), straight into a binary cache beside the CSV (or in the user
cache when the data folder is read-only), which makes later loads a memory map. Any parse problem
falls back to a line-by-line check that names the exact line and cell.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from densemarks.core.errors import MAX_COORDINATE, DataError, csv_rows
from densemarks.data.fastcsv import WINDOW_BYTES, NotPlain, iter_plain, parse_plain
from densemarks.core.fileio import atomic_path, cache_dir_for

CACHE_VERSION = 1
BOM = b"\xef\xbb\xbf"


def _text_source(path: Path) -> Path:
    """The file to parse for `path`: itself, or, when it starts with a UTF-8 byte-order mark or
    ends its lines with CR alone (old Mac), a plain copy in its cache folder (the same lines, so
    every message keeps its line number), made once per version of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return path  # read_header says what is wrong
    bom, cr_only = head.startswith(BOM), b"\r" in head and b"\n" not in head
    if not (bom or cr_only):
        return path
    folder = cache_dir_for(path)
    copy, key_file = folder / f".{path.name}.plain{path.suffix}", folder / f".{path.name}.plain.json"
    key = _source_key(path)
    try:
        if copy.is_file() and json.loads(key_file.read_text()) == key:
            return copy
    except (OSError, ValueError):
        pass
    with atomic_path(copy) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        first = True
        for chunk in iter(lambda: src.read(1 << 24), b""):
            if first and bom:
                chunk = chunk[len(BOM):]
            first = False
            dst.write(chunk.replace(b"\r", b"\n") if cr_only else chunk)
    with atomic_path(key_file) as tmp:
        tmp.write_text(json.dumps(key))
    return copy


def _non_utf8(path: Path) -> DataError:
    """The first line of `path` that is not UTF-8, as the error to raise."""
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(path, f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not UTF-8 text", line=line)
    return DataError(path, "not UTF-8 text")


def _renamed(exc: DataError, source: Path, path: Path) -> DataError:
    return DataError(path, exc.message, exc.line) if exc.path == str(source) else exc


@contextlib.contextmanager
def _plain_source(path: Path) -> Iterator[Path]:
    """The file to parse for `path` (`_text_source`); errors raised while parsing it name `path`."""
    source = _text_source(path)
    try:
        yield source
    except DataError as exc:
        raise _renamed(exc, source, path) from None
    except UnicodeDecodeError:
        raise _non_utf8(path) from None


def plain_text(func):
    """Read the CSV `path` (the first argument) as plain UTF-8 text with LF or CRLF line ends:
    a byte-order mark or CR-only line ends are read through `_text_source`'s copy (messages
    still name `path`); bytes that are not UTF-8 are a one-line error naming the line."""
    @functools.wraps(func)
    def wrapper(path, *args, **kwargs):
        with _plain_source(Path(path)) as source:
            return func(source, *args, **kwargs)

    @functools.wraps(func)
    def generator(path, *args, **kwargs):
        with _plain_source(Path(path)) as source:
            yield from func(source, *args, **kwargs)

    return generator if func.__code__.co_flags & 0x20 else wrapper  # 0x20: a generator function


@dataclass(frozen=True)
class LandmarkTable:
    """Faces and their points. file_names: (N,) str; points: (N, K, 2) float32, image pixels."""

    file_names: np.ndarray
    points: np.ndarray

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    def __len__(self) -> int:
        return len(self.file_names)

    def subset(self, index: np.ndarray) -> "LandmarkTable":
        return LandmarkTable(self.file_names[index], np.asarray(self.points[index]))


@dataclass(frozen=True)
class RequestedPoints:
    """The requested points per test image. indices: (N, M) int64, M the same for every row."""

    file_names: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.file_names)


def rows_for(table_names: np.ndarray, wanted: np.ndarray, path: str | Path, what: str,
             requested_in: str | Path | None = None) -> np.ndarray:
    """Row of each wanted file name in table_names, in the order of `wanted`; a DataError
    against `path` names the first one missing (and where it was requested)."""
    row_of = {name: i for i, name in enumerate(table_names)}
    missing = [n for n in wanted if n not in row_of]
    if missing:
        where = f", requested in {requested_in}" if requested_in else ""
        raise DataError(path, f"no {what} for {missing[0]}{where} ({len(missing)} of {len(wanted)} missing)")
    return np.asarray([row_of[n] for n in wanted], dtype=np.int64)


def iter_aligned(path: str | Path, names: np.ndarray, num_points: int, what: str,
                 requested_in: str | Path | None = None, same_faces_as: str | Path | None = None,
                 against: str = "the answers have") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a landmarks.csv (predictions, say) block by block as (positions, points): each
    row's position in `names` and its (n, K, 2) float32 points. Rows of other faces are skipped,
    or an error when the file must cover the same faces as `same_faces_as`. After the last block, a DataError names the first of `names`
    that had no row (and where it was requested). `against`: who expects K, for the message. Memory: one block, at any file size."""
    position = {name: i for i, name in enumerate(names)}
    seen = np.zeros(len(names), dtype=bool)
    for block in iter_landmarks(path):
        if block.num_points != num_points:
            raise DataError(path, f"{block.num_points} points per face, {against} {num_points}")
        index = np.fromiter((position.get(n, -1) for n in block.file_names), np.int64, len(block))
        if same_faces_as is not None and (index < 0).any():
            raise DataError(path, f"{block.file_names[np.argmax(index < 0)]} is not in {same_faces_as}: "
                            "files must cover the same faces")
        keep = index >= 0
        seen[index[keep]] = True
        yield index[keep], block.points[keep]
    if not seen.all():
        missing = np.flatnonzero(~seen)
        where = f", requested in {requested_in}" if requested_in else ""
        same = ": files must cover the same faces" if same_faces_as is not None else ""
        raise DataError(path, f"no {what} for {names[missing[0]]}{where} ({len(missing)} of {len(names)} missing){same}")


def point_columns(num_points: int) -> list[str]:
    """`Point_0_X, Point_0_Y, ...` for K points, in file order."""
    return [f"Point_{i}_{axis}" for i in range(num_points) for axis in ("X", "Y")]


@plain_text
def read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(path, "is a folder, not a CSV file" if path.is_dir() else "file not found")
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv_rows(f, path, delimiter="\t"), None)
    if not header or not any(h.strip() for h in header):
        raise DataError(path, "empty file: expected a tab-separated header", line=1)
    return header


def _check_landmark_header(path: Path, header: list[str]) -> int:
    """Validate the header and return K."""
    if header[0] != "file_name":
        if "," in header[0] or ";" in header[0]:
            raise DataError(path, f"the header {header[0][:40]!r}... is not tab-separated: tab-separated expected "
                                  "(the competition's layout)", line=1)
        raise DataError(path, f"first column is {header[0]!r}, expected 'file_name' "
                        "(tab-separated expected)", line=1)
    if len(header) < 3 or (len(header) - 1) % 2:
        raise DataError(path, f"header has {len(header)} columns; expected file_name and an X,Y "
                        "column pair per point", line=1)
    num_points = (len(header) - 1) // 2
    for got, want in zip(header[1:], point_columns(num_points)):
        if got != want:
            raise DataError(path, f"header column {got!r} where {want!r} was expected", line=1)
    return num_points


@plain_text
def landmark_count(path: str | Path) -> int:
    """K, the points per face of a landmarks.csv, from its header (checked)."""
    return _check_landmark_header(Path(path), read_header(Path(path)))


def cache_files(path: Path) -> tuple[Path, Path, Path]:
    """The binary cache of a landmarks.csv: points (.npy), names (.npy), and the source key (.json)."""
    folder = cache_dir_for(path)
    stem = f"{path.name}.cache"
    return folder / f"{stem}.points.npy", folder / f"{stem}.names.npy", folder / f"{stem}.json"


def _source_key(path: Path) -> dict:
    st = path.stat()
    return {"version": CACHE_VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_cache(path: Path) -> LandmarkTable | None:
    points_file, names_file, key_file = cache_files(path)
    try:
        key = json.loads(key_file.read_text())
        if key != _source_key(path):
            return None
        points = np.load(points_file, mmap_mode="r")
        names = np.load(names_file)
    except (OSError, ValueError):
        return None
    return LandmarkTable(names, points)


@plain_text
def read_landmarks(path: str | Path, *, cache: bool = True) -> LandmarkTable:
    """Load a landmarks.csv. Raises DataError naming the line and cell of any problem.

    With cache=True the points are kept in a `.npy` beside the CSV (or in the user cache when
    that folder is read-only) and later loads are a memory map, rebuilt when the CSV changes.
    """
    path = Path(path)
    header = read_header(path)
    num_points = _check_landmark_header(path, header)
    if cache and (table := _load_cache(path)) is not None:
        return table
    points_file, names_file, key_file = cache_files(path) if cache else (None, None, None)
    try:
        with contextlib.ExitStack() as stack:
            table = _parse_landmarks(path, header, num_points, points_file, stack)
            _check_unique_names(path, table.file_names)
            if names_file is not None:
                with atomic_path(names_file) as tmp, open(tmp, "wb") as f:
                    np.save(f, table.file_names, allow_pickle=False)
        if key_file is not None:  # written last: it vouches for the two arrays
            with atomic_path(key_file) as tmp:
                tmp.write_text(json.dumps(_source_key(path)))
    except OSError:
        if not cache:
            raise
        return read_landmarks(path, cache=False)  # a cache we cannot write only costs speed
    return table


def _parse_landmarks(path: Path, header: list[str], num_points: int, points_file: Path | None,
                     stack: contextlib.ExitStack) -> LandmarkTable:
    """The compiled plain-form tokenizer first, writing window by window into the cache file
    when there is one (memory: one window); pyarrow's general reader when the tokenizer
    declines."""
    with open(path, "rb") as source:
        source.readline()  # the header, already checked
        if points_file is None:
            parsed = parse_plain(source, 2 * num_points)
        else:
            tmp = points_file.with_name(f".{points_file.name}.{os.getpid()}.tmp")
            stack.callback(tmp.unlink, missing_ok=True)  # gone unless renamed into place below
            out = stack.enter_context(open(tmp, "wb"))

            def open_sink(rows: int):  # the cache file, written in order
                np.lib.format.write_array_header_1_0(out, {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                    "fortran_order": False, "shape": (rows, num_points, 2)})
                return lambda block: out.write(np.ascontiguousarray(block, np.float32).data)

            parsed = parse_plain(source, 2 * num_points, open_sink=open_sink)
    if parsed is not None:
        names, values = parsed
        _require_rows(path, names)
        if points_file is None:
            return LandmarkTable(names, values.reshape(len(names), num_points, 2))
        out.close()
        os.replace(tmp, points_file)  # the key file, written last, vouches for it
        return LandmarkTable(names, np.load(points_file, mmap_mode="r"))
    table = parse_with_arrow(path, header, num_points)
    if points_file is not None:
        with atomic_path(points_file) as tmp, open(tmp, "wb") as f:
            np.save(f, table.points, allow_pickle=False)
    return table


@plain_text
def iter_landmarks(path: str | Path, window_bytes: int = WINDOW_BYTES) -> Iterator[LandmarkTable]:
    """The faces of a landmarks.csv block by block (float32, file order), holding one block in
    memory: for files too big to hold twice (predictions at the competition's 393,930 faces).
    The same checks as `read_landmarks`, with the same messages; a name repeated across blocks
    is reported after the last block, so consumers write nothing before the end."""
    path = Path(path)
    header = read_header(path)
    num_points = _check_landmark_header(path, header)
    names: list[np.ndarray] = []
    with open(path, "rb") as source:
        source.readline()
        try:
            for block_names, values in iter_plain(source, 2 * num_points, window_bytes):
                names.append(block_names)
                yield LandmarkTable(block_names, values.reshape(len(block_names), num_points, 2))
        except NotPlain as stop:
            for table in _iter_arrow(path, header, num_points, stop.offset, stop.row):
                names.append(table.file_names)
                yield table
    if not names or not sum(len(n) for n in names):
        raise DataError(path, "no data rows after the header")
    _check_unique_names(path, np.concatenate(names))


def _arrow_options(header: list[str]):
    types = {name: pa.float32() for name in header[1:]}
    types["file_name"] = pa.string()
    return (pacsv.ParseOptions(delimiter="\t"),
            pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True))


def _iter_arrow(path: Path, header: list[str], num_points: int, offset: int, row: int) -> Iterator[LandmarkTable]:
    """pyarrow's streaming reader from byte `offset` (a line start; `row` rows came before)."""
    parse, convert = _arrow_options(header)
    with open(path, "rb") as f:
        f.seek(offset)
        try:
            reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(column_names=header, block_size=16 << 20),
                                    parse_options=parse, convert_options=convert)
            for batch in reader:
                table = _arrow_block(path, header, num_points, pa.Table.from_batches([batch]), row)
                row += len(table)
                yield table
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            _diagnose_rows(path, len(header))
            raise DataError(path, f"cannot parse: {str(exc).splitlines()[0]}") from None


def _arrow_block(path: Path, header: list[str], num_points: int, arrow: pa.Table, first_row: int) -> LandmarkTable:
    """Rows of a pyarrow table as a LandmarkTable; empty and non-finite cells are errors that
    name their line (first_row: the data rows before this table)."""
    for column_index, column in enumerate(arrow.columns):
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(path, f"empty cell in column {header[column_index]}", line=first_row + row + 2)
    names = np.asarray(arrow.column(0).to_numpy(zero_copy_only=False), dtype=str)
    # Fill the (2K, N) array column by column (contiguous writes), then one transpose copy.
    flat = np.empty((2 * num_points, arrow.num_rows), dtype=np.float32)
    for j in range(2 * num_points):
        flat[j] = arrow.column(j + 1).to_numpy()
    table = LandmarkTable(names, np.ascontiguousarray(flat.T).reshape(-1, num_points, 2))
    _check_finite(path, table, header, first_row)
    return table


def _require_rows(path: Path, names: np.ndarray) -> None:
    if len(names) == 0:
        raise DataError(path, "no data rows after the header")


def parse_with_arrow(path: Path, header: list[str], num_points: int) -> LandmarkTable:
    """The general parser (pyarrow): any quoting and number format; the fast path's fallback."""
    parse, convert = _arrow_options(header)
    try:
        arrow = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=64 << 20),
                               parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose_rows(path, len(header))
        raise DataError(path, f"cannot parse: {str(exc).splitlines()[0]}") from None
    if arrow.num_rows == 0:
        raise DataError(path, "no data rows after the header")
    return _arrow_block(path, header, num_points, arrow, 0)


def _check_finite(path: Path, table: LandmarkTable, header: list[str], first_row: int = 0) -> None:
    flat = table.points.reshape(len(table), -1)
    bad = ~(np.abs(flat) <= MAX_COORDINATE)  # nan and inf included
    if bad.any():
        row, col = np.argwhere(bad)[0]
        value = flat[row, col]
        allowed = "a finite number" if not np.isfinite(value) else f"a pixel coordinate within +-{MAX_COORDINATE:.0e}"
        raise DataError(path, f"{header[col + 1]} is {value:g}, expected {allowed} "
                        f"(file_name {table.file_names[row]})", line=first_row + int(row) + 2)


def _check_unique_names(path: Path, names: np.ndarray) -> None:
    order = np.argsort(names, kind="stable")
    repeated = np.flatnonzero(names[order][1:] == names[order][:-1])
    if repeated.size:
        rows = sorted(order[repeated + 1])
        first = int(rows[0])
        earlier = int(np.flatnonzero(names == names[first])[0])
        raise DataError(path, f"duplicate file_name {names[first]} (first seen on line "
                        f"{earlier + 2})", line=first + 2)


def _diagnose_rows(path: Path, num_columns: int) -> None:
    """Slow exact check used only after the fast parser failed: raises at the first bad line."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv_rows(f, path, delimiter="\t")
        next(rows)
        header = point_columns((num_columns - 1) // 2)
        for line, row in enumerate(rows, start=2):
            if len(row) != num_columns:
                raise DataError(path, f"{len(row)} columns, expected {num_columns}", line=line)
            for name, cell in zip(header, row[1:]):
                # The fast parsers read ASCII numbers without digit separators; Python's float
                # also takes '1_2' and other scripts' digits, which they refuse.
                try:
                    if not cell.isascii() or "_" in cell:
                        raise ValueError(cell)
                    float(cell)
                except ValueError:
                    raise DataError(path, f"{name} is {cell!r}, not a number", line=line) from None


WRITE_ROWS = 4096  # rows converted and written at a time


def write_landmarks(path: str | Path, file_names, points: np.ndarray, *, decimals: int | None = 2) -> None:
    """Write a landmarks.csv atomically. decimals=None writes rounded integers (the competition's
    own files hold integer pixels); otherwise values are rounded to that many decimals. Rows are
    converted and written WRITE_ROWS at a time: points may be a memory map of any size."""
    points = np.asarray(points)  # no copy of an array or memory map
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError(f"points must be (N, K, 2), got {points.shape}")
    names = [str(n) for n in file_names]
    if len(names) != len(points):
        raise ValueError(f"{len(names)} file names for {len(points)} point sets")
    _check_names(names)
    columns = ["file_name", *point_columns(points.shape[1])]
    kind = pa.int64() if decimals is None else pa.float32()
    schema = pa.schema([("file_name", pa.string())] + [(c, kind) for c in columns[1:]])
    with _csv_writer(path, schema, "\t") as writer:
        for start in range(0, len(names), WRITE_ROWS):
            flat = np.asarray(points[start:start + WRITE_ROWS], dtype=np.float64).reshape(-1, 2 * points.shape[1])
            values = np.rint(flat).astype(np.int64) if decimals is None else np.round(flat, decimals).astype(np.float32)
            writer.write_batch(pa.record_batch([pa.array(names[start:start + WRITE_ROWS], pa.string())]
                                               + [pa.array(values[:, j]) for j in range(values.shape[1])],
                                               schema=schema))


@contextlib.contextmanager
def _csv_writer(path: str | Path, schema: pa.Schema, delimiter: str):
    """A pyarrow CSV writer into a temporary file renamed over `path` at the end; the header is
    written by hand (pyarrow quotes header names)."""
    options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="none", include_header=False)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write((delimiter.join(schema.names) + "\n").encode())
        with pacsv.CSVWriter(f, schema, write_options=options) as writer:
            yield writer


def _check_names(names: list[str]) -> None:
    # The competition files are unquoted; names and index lists never hold a tab or newline.
    for name in names:
        if any(ch in name for ch in "\t\n\r\""):
            raise ValueError(f"file name {name!r} holds a tab, quote or newline")


def write_table(path: str | Path, table: pa.Table, delimiter: str) -> None:
    _check_names(table.column(0).to_pylist())
    with _csv_writer(path, table.schema, delimiter) as writer:
        writer.write_table(table)


@plain_text
def read_test_points(path: str | Path, num_points: int) -> RequestedPoints:
    """Load test_points.csv: `file_name`, `point_index_list` (a text list such as "[742, 385]").

    Lists are parsed as JSON, never evaluated. Every index must lie in 0..num_points-1 and every
    row must request the same number of points.
    """
    path = Path(path)
    header = read_header(path)
    if header[:2] != ["file_name", "point_index_list"] or len(header) != 2:
        raise DataError(path, f"header is {header!r}, expected ['file_name', 'point_index_list']",
                        line=1)
    names, lists = [], []
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv_rows(f, path, delimiter="\t")
        next(rows)
        for line, row in enumerate(rows, start=2):
            if len(row) != 2:
                raise DataError(path, f"{len(row)} columns, expected 2", line=line)
            try:
                value = json.loads(row[1])
            except (ValueError, RecursionError):  # not JSON, an integer of thousands of digits, [[[[...
                value = None
            if not isinstance(value, list) or not all(type(v) is int for v in value):
                raise DataError(path, f"point_index_list {row[1][:60]!r} is not a list of "
                                "integers", line=line)
            if lists and len(value) != len(lists[0]):
                raise DataError(path, f"{len(value)} indices, but line 2 has {len(lists[0])}",
                                line=line)
            if not value:
                raise DataError(path, "empty point_index_list", line=line)
            out = [v for v in value if not 0 <= v < num_points]
            if out:  # callers that check the range later pass a huge num_points: name only the sign
                problem = "is negative" if out[0] < 0 else f"out of range 0..{num_points - 1}"
                raise DataError(path, f"index {out[0]} {problem}", line=line)
            names.append(row[0])
            lists.append(value)
    if not names:
        raise DataError(path, "no data rows after the header")
    file_names = np.asarray(names, dtype=str)
    _check_unique_names(path, file_names)
    return RequestedPoints(file_names, np.asarray(lists, dtype=np.int64))


def write_test_points(path: str | Path, test_points: RequestedPoints) -> None:
    lists = ["[" + ", ".join(str(int(i)) for i in row) + "]" for row in test_points.indices]
    table = pa.table({"file_name": [str(n) for n in test_points.file_names],
                      "point_index_list": lists})
    write_table(path, table, delimiter="\t")



@dataclass(frozen=True)
class PhotoFaces:
    """Annotated faces in photos (faces.csv): several rows per photo. file_names (N,) str,
    faces (N,) int64 (the face's number within its photo), points (N, K, 2) float64 in the
    photo's pixels as displayed."""

    file_names: np.ndarray
    faces: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.file_names)


@plain_text
def read_photo_faces(path: str | Path) -> PhotoFaces:
    """Load a faces.csv: tab-separated `file_name`, `face`, then `Point_i_X`, `Point_i_Y`.
    Annotation files are small, so this checks cell by cell and names the line of any problem."""
    path = Path(path)
    header = read_header(path)
    if len(header) < 2 or header[1] != "face":
        raise DataError(path, "second column must be 'face' (file_name, face, Point_0_X, ...)", line=1)
    num_points = _check_landmark_header(path, [header[0], *header[2:]])
    names, faces, values, seen = [], [], [], {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv_rows(f, path, delimiter="\t")
        next(rows)
        for line, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise DataError(path, f"{len(row)} columns, expected {len(header)}", line=line)
            try:
                face = int(row[1])
            except ValueError:
                raise DataError(path, f"face is {row[1]!r}, not an integer", line=line) from None
            if (row[0], face) in seen:
                raise DataError(path, f"face {face} of {row[0]} repeated (first on line {seen[row[0], face]})",
                                line=line)
            seen[row[0], face] = line
            try:
                numbers = [float(cell) for cell in row[2:]]
            except ValueError:
                bad = next(i for i, cell in enumerate(row[2:]) if not _is_float(cell))
                raise DataError(path, f"{header[bad + 2]} is {row[bad + 2]!r}, not a number", line=line) from None
            if not all(np.isfinite(numbers)):
                bad = int(np.flatnonzero(~np.isfinite(numbers))[0])
                raise DataError(path, f"{header[bad + 2]} is {row[bad + 2]}, expected a finite number", line=line)
            names.append(row[0])
            faces.append(face)
            values.append(numbers)
    if not names:
        raise DataError(path, "no data rows after the header")
    return PhotoFaces(np.asarray(names, dtype=str), np.asarray(faces, dtype=np.int64),
                      np.asarray(values, dtype=np.float64).reshape(-1, num_points, 2))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
