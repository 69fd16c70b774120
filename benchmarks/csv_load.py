"""Benchmark: first load of a competition-sized landmarks.csv against pandas.read_csv, and the
cached reload. Generates the files (971 points, integer pixels) under --dir if missing.

    python benchmarks/csv_load.py [--rows 64000 393930] [--dir /tmp/densemarks-bench] [--repeats 3]

Each size: pandas and densemarks first loads alternate (`--repeats` times each, side by side in
one run; the densemarks cache is deleted before each first load) and medians are compared.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from densemarks.data.csvio import cache_files, read_landmarks, write_landmarks

POINTS = 971


def generate(path: Path, rows: int) -> None:
    if path.is_file():
        return
    rng = np.random.default_rng(0)
    names = [f"{i:032x}.jpg" for i in range(rows)]
    chunks = []
    base = rng.uniform(20, 300, (POINTS, 2)).astype(np.float32)
    for start in range(0, rows, 50_000):
        n = min(50_000, rows - start)
        chunks.append(base + rng.normal(0, 15, (n, POINTS, 2)).astype(np.float32))
    write_landmarks(path, names, np.concatenate(chunks), decimals=None)


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def clear_cache(path: Path) -> None:
    for f in cache_files(path):
        f.unlink(missing_ok=True)


def pandas_load(path: Path):
    frame = pd.read_csv(path, sep="\t")
    return frame["file_name"].to_numpy(), frame.iloc[:, 1:].to_numpy(np.float32).reshape(len(frame), -1, 2)


def densemarks_first_load(path: Path):
    clear_cache(path)
    return read_landmarks(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[64_000, 393_930])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/densemarks-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    # The tokenizer is compiled by numba on first use and cached on disk; time that apart.
    tiny = args.dir / "tiny.csv"
    write_landmarks(tiny, ["a.jpg"], np.zeros((1, POINTS, 2)), decimals=None)
    print(f"numba load/compile of the tokenizer (first call in a process): "
          f"{timed(lambda: read_landmarks(tiny, cache=False)):.2f} s")
    runs = []
    print("| rows | CSV size | pandas.read_csv (median) | densemarks first load (median) | ratio | cached reload (median) |")
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        path = args.dir / f"landmarks_{rows}.csv"
        generate(path, rows)
        pandas_times, ours = [], []
        for _ in range(args.repeats):
            pandas_times.append(timed(lambda: pandas_load(path)))
            ours.append(timed(lambda: densemarks_first_load(path)))
        reloads = []
        for _ in range(max(3, args.repeats)):
            reloads.append(timed(lambda: np.asarray(read_landmarks(path).points[-1]).sum()))
        table = read_landmarks(path)
        assert table.points.shape == (rows, POINTS, 2)
        p, o, r = (statistics.median(x) for x in (pandas_times, ours, reloads))
        size_gb = path.stat().st_size / 1e9
        print(f"| {rows:,} | {size_gb:.2f} GB | {p:.2f} s | {o:.2f} s | {p / o:.1f}x | {r * 1000:.0f} ms |",
              flush=True)
        runs.append((rows, pandas_times, ours, reloads))
    print("\nevery run (s):")
    for rows, pandas_times, ours, reloads in runs:
        print(f"  {rows:,} rows: pandas {_fmt(pandas_times)}; densemarks {_fmt(ours)}; "
              f"cached reload {_fmt(reloads, 3)}")


def _fmt(values, digits=2):
    return ", ".join(f"{v:.{digits}f}" for v in values)


if __name__ == "__main__":
    main()
