"""The compiled tokenizer agrees with the general reader, or declines and lets it decide."""

from __future__ import annotations

import io

import numpy as np
import pytest

from densemarks.data.csvio import parse_with_arrow, read_header, read_landmarks
from densemarks.data.fastcsv import parse_plain


def _parse(body: bytes, columns: int, chunk_bytes: int = 1 << 20):
    return parse_plain(io.BytesIO(body), columns, chunk_bytes=chunk_bytes)


def test_numbers_in_every_plain_form():
    body = b"a.jpg\t-12\t+3\nb.jpg\t12.5\t0.125\nc.jpg\t9999999.5\t-0.0001\n"
    names, values = _parse(body, 2)
    assert names.tolist() == ["a.jpg", "b.jpg", "c.jpg"]
    np.testing.assert_allclose(values, [[-12, 3], [12.5, 0.125], [9999999.5, -0.0001]], rtol=1e-6)
    # A coordinate of 1e7 px or more is no pixel: left to the general reader, which names its line.
    assert _parse(b"a.jpg\t1\t2\nb.jpg\t-10000000\t0\n", 2) is None


def test_crlf_missing_final_newline_and_utf8_names():
    names, values = _parse("é.jpg\t1\t2\r\nb.jpg\t3\t4".encode(), 2)
    assert names.tolist() == ["é.jpg", "b.jpg"]
    np.testing.assert_array_equal(values, [[1, 2], [3, 4]])


@pytest.mark.parametrize("body", [
    b'"a.jpg"\t1\t2\n',  # quoted name
    b"a.jpg\tnan\t2\n", b"a.jpg\t1e5\t2\n", b"a.jpg\t\t2\n", b"a.jpg\t1\t2\t3\n", b"a.jpg\t1\n",
    b"a.jpg\t1\t2\n\n", b"\t1\t2\n", b"a.jpg\t1 \t2\n", b"a.jpg\t-\t2\n", b"a.jpg\t1.2.3\t2\n",
    b"a.jpg\t" + b"9" * 19 + b"\t2\n", b"a.jpg\t0." + b"1" * 19 + b"\t2\n", b"a.jpg\t1\r\t2\n",
    b"x" * 129 + b"\t1\t2\n", b"a.jpg\t1\t2\tb.jpg\t3\t4\n", b"a.jpg\t+-1\t2\n", b"a.jpg\t1-2\t2\n",
    b"a.jpg\t.\t2\n", b"a.jpg\t1\t2\r\r\n",
])
def test_anything_else_is_declined(body):
    assert _parse(body, 2) is None


def test_chunks_split_lines_correctly():
    rng = np.random.default_rng(0)
    values = rng.integers(-999, 99999, (500, 6))
    text = "".join(f"{i:05d}.jpg\t" + "\t".join(map(str, row)) + "\n" for i, row in enumerate(values))
    for chunk in (1, 64, 100, 1000, 1 << 20):  # chunks far smaller than the text
        names, parsed = _parse(text.encode(), 6, chunk_bytes=chunk)
        assert len(names) == 500 and names[-1] == "00499.jpg"
        np.testing.assert_array_equal(parsed, values)


def test_agrees_with_pyarrow_on_random_files(tmp_path):
    rng = np.random.default_rng(1)
    for trial in range(5):
        n, k = int(rng.integers(1, 300)), int(rng.integers(1, 50))
        cells = np.round(rng.uniform(-2000, 2000, (n, 2 * k)), int(rng.integers(0, 3)))
        path = tmp_path / f"l{trial}.csv"
        header = "file_name\t" + "\t".join(f"Point_{i}_{a}" for i in range(k) for a in "XY")
        lines = [f"f{i}.jpg\t" + "\t".join(f"{v:g}" for v in row) for i, row in enumerate(cells)]
        path.write_text(header + "\n" + "\n".join(lines) + "\n")
        fast = read_landmarks(path, cache=False)
        general = parse_with_arrow(path, read_header(path), k)
        np.testing.assert_array_equal(fast.points, general.points)
        assert fast.file_names.tolist() == general.file_names.tolist()


@pytest.mark.parametrize("final_newline", [True, False])
def test_memory_mapped_file_after_a_header_of_any_length(tmp_path, final_newline):
    path = tmp_path / "landmarks.csv"
    body = "a.jpg\t1\t-2\nb.jpg\t3.5\t4" + ("\n" if final_newline else "")
    path.write_text("file_name\tPoint_0_X\tPoint_0_Y\n" + body)
    with open(path, "rb") as f:
        f.readline()
        names, values = parse_plain(f, 2, chunk_bytes=4)
    assert names.tolist() == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(values, [[1, -2], [3.5, 4]])
