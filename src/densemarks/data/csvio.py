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
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from densemarks.core.errors import DataError
from densemarks.data.fastcsv import parse_plain
from densemarks.core.fileio import atomic_path, cache_dir_for

CACHE_VERSION = 1


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


def point_columns(num_points: int) -> list[str]:
    """`Point_0_X, Point_0_Y, ...` for K points, in file order."""
    return [f"Point_{i}_{axis}" for i in range(num_points) for axis in ("X", "Y")]


def read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(path, "file not found")
    with open(path, newline="") as f:
        header = next(csv.reader(f, delimiter="\t"), None)
    if not header or not any(h.strip() for h in header):
        raise DataError(path, "empty file: expected a tab-separated header", line=1)
    return header


def _check_landmark_header(path: Path, header: list[str]) -> int:
    """Validate the header and return K."""
    if header[0] != "file_name":
        raise DataError(path, f"first column is {header[0]!r}, expected 'file_name' "
                        "(is the file tab-separated?)", line=1)
    if len(header) < 3 or (len(header) - 1) % 2:
        raise DataError(path, f"header has {len(header)} columns; expected file_name and an X,Y "
                        "column pair per point", line=1)
    num_points = (len(header) - 1) // 2
    for got, want in zip(header[1:], point_columns(num_points)):
        if got != want:
            raise DataError(path, f"header column {got!r} where {want!r} was expected", line=1)
    return num_points


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
    """The compiled plain-form tokenizer first, parsing straight into the memory-mapped cache
    file when there is one; pyarrow's general reader when the tokenizer declines."""
    with open(path, "rb") as source:
        source.readline()  # the header, already checked
        if points_file is None:
            parsed = parse_plain(source, 2 * num_points)
        else:
            tmp = points_file.with_name(f".{points_file.name}.{os.getpid()}.tmp")
            stack.callback(tmp.unlink, missing_ok=True)  # gone unless renamed into place below

            def open_output(rows: int) -> np.ndarray:  # the cache file itself, memory-mapped
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                shape=(rows, num_points, 2))
                return out.reshape(rows, 2 * num_points)

            parsed = parse_plain(source, 2 * num_points, open_output=open_output)
    if parsed is not None:
        names, values = parsed
        _require_rows(path, names)
        if points_file is None:
            return LandmarkTable(names, values.reshape(len(names), num_points, 2))
        del parsed, values  # unmapped; the kernel writes the pages back in its own time
        os.replace(tmp, points_file)  # the key file, written last, vouches for it
        return LandmarkTable(names, np.load(points_file, mmap_mode="r"))
    table = parse_with_arrow(path, header, num_points)
    if points_file is not None:
        with atomic_path(points_file) as tmp, open(tmp, "wb") as f:
            np.save(f, table.points, allow_pickle=False)
    return table


def _require_rows(path: Path, names: np.ndarray) -> None:
    if len(names) == 0:
        raise DataError(path, "no data rows after the header")


def parse_with_arrow(path: Path, header: list[str], num_points: int) -> LandmarkTable:
    """The general parser (pyarrow): any quoting and number format; the fast path's fallback."""
    types = {name: pa.float32() for name in header[1:]}
    types["file_name"] = pa.string()
    try:
        arrow = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=64 << 20),
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""],
                                                strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose_rows(path, len(header))
        raise DataError(path, f"cannot parse: {str(exc).splitlines()[0]}") from None
    if arrow.num_rows == 0:
        raise DataError(path, "no data rows after the header")
    for column_index, column in enumerate(arrow.columns):
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(path, f"empty cell in column {header[column_index]}", line=row + 2)
    names = np.asarray(arrow.column(0).to_numpy(zero_copy_only=False), dtype=str)
    # Fill the (2K, N) array column by column (contiguous writes), then one transpose copy.
    flat = np.empty((2 * num_points, arrow.num_rows), dtype=np.float32)
    for j in range(2 * num_points):
        flat[j] = arrow.column(j + 1).to_numpy()
    del arrow
    table = LandmarkTable(names, np.ascontiguousarray(flat.T).reshape(-1, num_points, 2))
    _check_finite(path, table, header)
    return table


def _check_finite(path: Path, table: LandmarkTable, header: list[str]) -> None:
    flat = table.points.reshape(len(table), -1)
    bad = ~np.isfinite(flat)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(path, f"{header[col + 1]} is {flat[row, col]}, expected a finite number "
                        f"(file_name {table.file_names[row]})", line=int(row) + 2)


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
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        header = point_columns((num_columns - 1) // 2)
        for line, row in enumerate(reader, start=2):
            if len(row) != num_columns:
                raise DataError(path, f"{len(row)} columns, expected {num_columns}", line=line)
            for name, cell in zip(header, row[1:]):
                try:
                    float(cell)
                except ValueError:
                    raise DataError(path, f"{name} is {cell!r}, not a number", line=line) from None


def write_landmarks(path: str | Path, file_names, points: np.ndarray, *, decimals: int | None = 2) -> None:
    """Write a landmarks.csv atomically. decimals=None writes rounded integers (the competition's
    own files hold integer pixels); otherwise values are rounded to that many decimals."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError(f"points must be (N, K, 2), got {points.shape}")
    names = [str(n) for n in file_names]
    if len(names) != len(points):
        raise ValueError(f"{len(names)} file names for {len(points)} point sets")
    flat = points.reshape(len(points), -1)
    if decimals is None:
        values = np.rint(flat).astype(np.int64)
    else:
        values = np.round(flat, decimals).astype(np.float32)
    columns = ["file_name", *point_columns(points.shape[1])]
    arrays = [pa.array(names, pa.string())] + [pa.array(values[:, j]) for j in range(values.shape[1])]
    write_table(path, pa.Table.from_arrays(arrays, names=columns), delimiter="\t")


def write_table(path: str | Path, table: pa.Table, delimiter: str) -> None:
    # The competition files are unquoted; names and index lists never hold a tab or newline.
    for name in table.column(0).to_pylist():
        if any(ch in name for ch in "\t\n\r\""):
            raise ValueError(f"file name {name!r} holds a tab, quote or newline")
    options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="none", include_header=False)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write((delimiter.join(table.column_names) + "\n").encode())  # pyarrow quotes headers
        pacsv.write_csv(table, f, write_options=options)


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
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for line, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise DataError(path, f"{len(row)} columns, expected 2", line=line)
            try:
                value = json.loads(row[1])
            except json.JSONDecodeError:
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
            if out:
                raise DataError(path, f"index {out[0]} out of range 0..{num_points - 1}", line=line)
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


def read_photo_faces(path: str | Path) -> PhotoFaces:
    """Load a faces.csv: tab-separated `file_name`, `face`, then `Point_i_X`, `Point_i_Y`.
    Annotation files are small, so this checks cell by cell and names the line of any problem."""
    path = Path(path)
    header = read_header(path)
    if len(header) < 2 or header[1] != "face":
        raise DataError(path, "second column must be 'face' (file_name, face, Point_0_X, ...)", line=1)
    num_points = _check_landmark_header(path, [header[0], *header[2:]])
    names, faces, values, seen = [], [], [], {}
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)
        for line, row in enumerate(reader, start=2):
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
