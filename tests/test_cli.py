"""The real command line on tiny synthetic data, and its one-line errors."""

from __future__ import annotations

import re
import shutil

from conftest import one_line_error, run_cli


def test_synth_and_info(tmp_path):
    run_cli("synth", "--out", tmp_path / "d", "--train", 12, "--test", 3, "--points", 68)
    assert (tmp_path / "d" / "test" / "answers.csv").is_file()
    result = run_cli("info", "--data", tmp_path / "d")
    rows = {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"│ ([^│]+?) +│ ([^│]+?) +│", result.stdout)}
    assert rows["faces"] == "12" and rows["points per face"] == "68", rows
    assert rows["NME normalising points"] == "(66, 67)", rows  # synth's pupils, from its scheme.json
    one_line_error(run_cli("synth", "--out", tmp_path / "d", "--train", 2, "--test", 1, check=False), "already exists")


def test_bad_input_gives_one_line(tmp_path):
    one_line_error(run_cli("info", "--data", tmp_path, check=False), "landmarks.csv", "file not found")
    run_cli("synth", "--out", tmp_path / "d", "--train", 6, "--test", 1, "--points", 30)
    train = tmp_path / "d" / "train"
    name = sorted((train / "images").iterdir())[2]
    name.write_text("garbage")
    one_line_error(run_cli("info", "--data", tmp_path / "d", check=False), name.name, "not an image")
    name.unlink()
    one_line_error(run_cli("info", "--data", tmp_path / "d", check=False), "landmarks.csv, line", "not found")
    shutil.rmtree(tmp_path / "d")
    one_line_error(run_cli("synth", "--out", tmp_path / "e", "--points", 5, check=False), "at least")
    assert not (tmp_path / "e").exists()
