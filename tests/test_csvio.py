"""landmarks.csv / test_points.csv: round trips, the cache, and every kind of bad row."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from densemarks.data.csvio import (RequestedPoints, iter_landmarks, parse_with_arrow, read_header,
                                   read_landmarks, read_test_points, write_landmarks, write_test_points)
from densemarks.core.errors import DataError


def _table(n=5, k=7, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"{i:032x}.jpg" for i in range(n)]
    points = rng.integers(-20, 500, (n, k, 2)).astype(np.float32)
    return names, points


def test_round_trip_any_point_count(tmp_path):
    for k in (1, 7, 971):
        names, points = _table(k=k)
        path = tmp_path / f"l{k}.csv"
        write_landmarks(path, names, points, decimals=None)
        table = read_landmarks(path, cache=False)
        assert table.num_points == k
        assert list(table.file_names) == names
        np.testing.assert_array_equal(table.points, points)
        assert table.points.dtype == np.float32


def test_header_is_the_competition_layout(tmp_path):
    names, points = _table(n=1, k=2)
    write_landmarks(tmp_path / "l.csv", names, points, decimals=None)
    lines = (tmp_path / "l.csv").read_text().splitlines()
    assert lines[0] == "file_name\tPoint_0_X\tPoint_0_Y\tPoint_1_X\tPoint_1_Y"
    assert lines[1].split("\t")[0] == names[0]
    assert all(cell.lstrip("-").isdigit() for cell in lines[1].split("\t")[1:])


def test_float_values_keep_two_decimals(tmp_path):
    write_landmarks(tmp_path / "l.csv", ["a.jpg"], np.array([[[1.234567, -0.5]]]))
    assert read_landmarks(tmp_path / "l.csv", cache=False).points[0, 0].tolist() == pytest.approx([1.23, -0.5])


def test_cache_is_used_and_rebuilt_when_the_csv_changes(tmp_path):
    names, points = _table()
    path = tmp_path / "landmarks.csv"
    write_landmarks(path, names, points, decimals=None)
    first = read_landmarks(path)
    assert (tmp_path / "landmarks.csv.cache.points.npy").is_file()
    second = read_landmarks(path)
    assert isinstance(second.points, np.memmap)  # served from the cache
    np.testing.assert_array_equal(first.points, second.points)
    points[0, 0, 0] = 12345
    write_landmarks(path, names, points, decimals=None)
    os.utime(path, ns=(1, 2))  # a different mtime even on coarse clocks
    assert read_landmarks(path).points[0, 0, 0] == 12345


def _write(tmp_path: Path, text: str, name="landmarks.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = "file_name\tPoint_0_X\tPoint_0_Y\tPoint_1_X\tPoint_1_Y\n"


@pytest.mark.parametrize("body, line, words", [
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\t2\t3\n", 3, "4 columns, expected 5"),
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\tx\t3\t4\n", 3, "Point_0_Y is 'x', not a number"),
    # Python's float reads these two; the CSV parsers do not, so the line must still be found.
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\t1_2\t3\t4\n", 3, "Point_0_Y is '1_2', not a number"),
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\t2\t\u0663\t4\n", 3, "Point_1_X is '\u0663', not a number"),
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\t2\tnan\t4\n", 3, "Point_1_X is nan"),
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\t2\t\t4\n", 3, "empty cell in column Point_1_X"),
    ("a.jpg\t1\t2\t3\t4\nb.jpg\t1\t2\t3\t4\na.jpg\t1\t2\t3\t4\n", 4, "duplicate file_name a.jpg"),
])
@pytest.mark.parametrize("reader", ["whole", "blocks"])
def test_bad_rows_name_the_line(tmp_path, body, line, words, reader):
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(DataError) as err:
        if reader == "whole":
            read_landmarks(path)
        else:  # windows of a line or two: the bad row is in a later block
            list(iter_landmarks(path, window_bytes=16))
    assert err.value.line == line
    assert words in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("odd_row", [None, 'name"quoted.jpg', "exponent"])
def test_blocks_equal_the_whole_file(tmp_path, odd_row):
    """Reading block by block gives the whole file's table, also when a row in the middle is
    not in the plain form (the rest is read by pyarrow's streaming reader from there)."""
    names, points = _table(n=300, k=5)
    path = tmp_path / "landmarks.csv"
    write_landmarks(path, names, points, decimals=None)
    if odd_row:
        lines = path.read_text().splitlines(keepends=True)
        cells = lines[150].split("\t")
        if odd_row == "exponent":
            cells[1] = "1e2"
        else:
            cells[0] = f'"{odd_row}"'.replace('"quoted', '""quoted')
        lines[150] = "\t".join(cells)
        path.write_text("".join(lines))
    whole = parse_with_arrow(path, read_header(path), 5)
    blocks = list(iter_landmarks(path, window_bytes=2000))
    assert len(blocks) > 5
    np.testing.assert_array_equal(np.concatenate([b.points for b in blocks]), whole.points)
    assert np.concatenate([b.file_names for b in blocks]).tolist() == whole.file_names.tolist()


@pytest.mark.parametrize("text, words", [
    ("", "empty file"),
    (HEADER, "no data rows"),
    ("name\tPoint_0_X\tPoint_0_Y\n", "expected 'file_name'"),
    ("file_name,Point_0_X,Point_0_Y\na.jpg,1,2\n", "tab-separated"),
    ("file_name\tPoint_0_X\tPoint_1_Y\n", "'Point_1_Y' where 'Point_0_Y'"),
    ("file_name\tPoint_0_X\n", "header has 2 columns"),
    ('file_name\t"' + "P" * 200000 + '"\n', "line 1: cannot parse: field larger than field limit"),
])
def test_bad_files(tmp_path, text, words):
    with pytest.raises(DataError, match=words):
        read_landmarks(_write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_landmarks(tmp_path / "nope.csv")


def test_test_points_round_trip(tmp_path):
    tp = RequestedPoints(np.array(["a.jpg", "b.jpg"]), np.array([[3, 0, 970], [5, 6, 7]]))
    write_test_points(tmp_path / "t.csv", tp)
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == "a.jpg\t[3, 0, 970]"
    back = read_test_points(tmp_path / "t.csv", num_points=971)
    assert list(back.file_names) == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(back.indices, tp.indices)


TP_HEADER = "file_name\tpoint_index_list\n"


@pytest.mark.parametrize("body, line, words", [
    ("a.jpg\t[1, 2]\nb.jpg\t[1, 99]\n", 3, "index 99 out of range 0..9"),
    ("a.jpg\t[1, 2]\nb.jpg\t[-1, 2]\n", 3, "index -1 is negative"),
    ("a.jpg\t[1, 2]\nb.jpg\t[1, 2, 3]\n", 3, "3 indices, but line 2 has 2"),
    ("a.jpg\t[1, 2.5]\n", 2, "not a list of integers"),
    ("a.jpg\t__import__('os').system('touch pwned')\n", 2, "not a list of integers"),
    ("a.jpg\t[1, 2]\ta\n", 2, "3 columns"),
    ("a.jpg\t[1, 2]\na.jpg\t[1, 2]\n", 3, "duplicate file_name"),
])
def test_bad_test_points(tmp_path, monkeypatch, body, line, words):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, TP_HEADER + body, "test_points.csv")
    with pytest.raises(DataError) as err:
        read_test_points(path, num_points=10)
    assert err.value.line == line
    assert words in str(err.value)
    assert not (tmp_path / "pwned").exists()  # the list text is parsed, never evaluated
