"""The real command line on tiny synthetic data, and its one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "densemarks", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_synth_and_info(tmp_path):
    result = run("synth", "--out", tmp_path / "d", "--train", 12, "--test", 3, "--points", 68)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "test" / "answers.csv").is_file()
    result = run("info", "--data", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    assert "68" in result.stdout and "(66, 67)" in result.stdout
    again = run("synth", "--out", tmp_path / "d", "--train", 2, "--test", 1)
    _assert_one_line_error(again, "already exists")


def test_bad_input_gives_one_line(tmp_path):
    _assert_one_line_error(run("info", "--data", tmp_path), "landmarks.csv", "file not found")
    run("synth", "--out", tmp_path / "d", "--train", 6, "--test", 1, "--points", 30)
    train = tmp_path / "d" / "train"
    name = sorted((train / "images").iterdir())[2]
    name.write_text("garbage")
    _assert_one_line_error(run("info", "--data", tmp_path / "d"), name.name, "not an image")
    name.unlink()
    _assert_one_line_error(run("info", "--data", tmp_path / "d"), "landmarks.csv, line", "not found")
    shutil.rmtree(tmp_path / "d")
    _assert_one_line_error(run("synth", "--out", tmp_path / "e", "--points", 5), "at least")
    assert not (tmp_path / "e").exists()
