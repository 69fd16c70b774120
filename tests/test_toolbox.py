"""The experiment toolbox through the real CLI: ensemble, k-fold, clean, analyze."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from densemarks.data.csvio import read_landmarks, write_landmarks
from densemarks.data.dataset import fold_indices
from densemarks.core.errors import DataError
from densemarks.inference.ensemble import fit_simplex_weights, parse_weights

from conftest import one_line_error, run_cli


def run(*args):
    return run_cli(*args, check=False, timeout=600)


def ok(*args):
    return run_cli(*args, timeout=600)


@pytest.fixture()
def truth(synth68):
    table = read_landmarks(synth68 / "train" / "landmarks.csv")
    return table.file_names, np.asarray(table.points, dtype=np.float64)


def test_fit_weights_hand_cases():
    truth = np.zeros((10, 5, 2))
    noise = np.random.default_rng(0).normal(size=truth.shape)
    # Opposite errors cancel: half and half is exact.
    np.testing.assert_allclose(fit_simplex_weights(np.stack([truth + noise, truth - noise]), truth), [0.5, 0.5], atol=1e-6)
    # A perfect member takes all the weight.
    np.testing.assert_allclose(fit_simplex_weights(np.stack([truth + noise, truth]), truth), [0, 1], atol=1e-6)
    # Independent errors of variance 1 and 4: inverse-variance weights 0.8 / 0.2, near enough.
    rng = np.random.default_rng(1)
    big = np.zeros((4000, 5, 2))
    w = fit_simplex_weights(np.stack([big + rng.normal(size=big.shape), big + 2 * rng.normal(size=big.shape)]), big)
    np.testing.assert_allclose(w, [0.8, 0.2], atol=0.02)


@pytest.mark.parametrize("text", ["1,-1", "0,0", "1,nan", "1e308,1e308", "a,b"])
def test_given_weights_that_are_not_a_weighting_are_refused(text):
    """1e308 twice summed to inf and normalised to zeros: every point averaged to (0, 0)."""
    with pytest.raises(DataError, match="--weights"):
        parse_weights(text, 2)
    np.testing.assert_allclose(parse_weights("1e300,3e300", 2), [0.25, 0.75])


def test_ensemble_command(tmp_path, truth, synth68):
    names, points = truth
    rng = np.random.default_rng(0)
    a, b = points + rng.normal(0, 1, points.shape), points + rng.normal(0, 3, points.shape)
    write_landmarks(tmp_path / "a.csv", names, a)
    write_landmarks(tmp_path / "b.csv", names[::-1], b[::-1])  # another order: aligned by name
    ok("ensemble", tmp_path / "a.csv", tmp_path / "b.csv", "--out", tmp_path / "first.csv", "--weights", "1,0")
    first = read_landmarks(tmp_path / "first.csv", cache=False)
    np.testing.assert_array_equal(first.file_names, names)
    np.testing.assert_allclose(first.points, np.round(a, 2), atol=1e-6)

    ok("ensemble", tmp_path / "a.csv", tmp_path / "b.csv", "--out", tmp_path / "auto.csv", "--weights", "auto",
       "--answers", synth68 / "train" / "landmarks.csv", "--per-region")
    auto = np.asarray(read_landmarks(tmp_path / "auto.csv", cache=False).points)
    error = {name: np.abs(p - points).mean() for name, p in (("a", a), ("auto", auto))}
    assert error["auto"] < error["a"]  # 1/9 of the weight on b still helps

    one_line_error(run("ensemble", tmp_path / "a.csv", tmp_path / "b.csv", "--out", tmp_path / "x.csv",
                       "--weights", "1"), "2 prediction files")
    write_landmarks(tmp_path / "short.csv", names[:-1], a[:-1])
    one_line_error(run("ensemble", tmp_path / "a.csv", tmp_path / "short.csv", "--out", tmp_path / "x.csv"),
                   "short.csv", "same faces")
    write_landmarks(tmp_path / "k.csv", names, a[:, :30])
    one_line_error(run("ensemble", tmp_path / "a.csv", tmp_path / "k.csv", "--out", tmp_path / "x.csv"),
                   "k.csv", "30 points")
    assert not (tmp_path / "x.csv").exists()


def test_fold_indices_partition():
    vals = [fold_indices(23, 4, i, seed=7) for i in range(4)]
    merged = np.sort(np.concatenate([v for _, v in vals]))
    np.testing.assert_array_equal(merged, np.arange(23))
    for train, val in vals:
        assert not set(train) & set(val) and len(train) + len(val) == 23
    np.testing.assert_array_equal(fold_indices(23, 4, 1, seed=7)[1], vals[1][1])


def _corrupt(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Typical annotation mistakes: a jaw point dragged off, left and right eyes swapped, a
    mouth shifted by half the face."""
    bad = points.copy()
    size = points[:, 0].max() - points[:, 0].min()
    kind = rng.integers(3)
    if kind == 0:
        bad[5:9] += rng.normal(0, 0.25 * size, (4, 2))
    elif kind == 1:
        bad[36:42], bad[42:48] = points[42:48].copy(), points[36:42].copy()
    else:
        bad[48:68] += [0.3 * size, 0.0]
    return bad


@pytest.mark.slow
def test_kfold_clean_analyze(synth68, tmp_path):
    import torch

    data = tmp_path / "data"
    shutil.copytree(synth68 / "train", data / "train")
    table = read_landmarks(data / "train" / "landmarks.csv", cache=False)
    names, points = table.file_names, np.asarray(table.points, dtype=np.float64)
    rng = np.random.default_rng(3)
    corrupted = rng.choice(len(names), 3, replace=False)
    noisy = points.copy()
    for i in corrupted:
        noisy[i] = _corrupt(points[i], rng)
    write_landmarks(data / "train" / "landmarks.csv", names, noisy)
    # the copied binary cache is stale now: it must be rebuilt, not read
    np.testing.assert_allclose(read_landmarks(data / "train" / "landmarks.csv").points, noisy, atol=0.006)

    # k-fold with a tiny model: every face predicted once, by the fold that did not train on it.
    tiny = ["model=resnet18", "weights=none", "augment.size=[32,32]", "epochs=1", "batch_size=16", "threads=2"]
    ok("train", "--data", data, "--out", tmp_path / "kf", "--recipe", "fast-cpu", "--folds", 3, *tiny)
    oof = read_landmarks(tmp_path / "kf" / "oof.csv", cache=False)
    np.testing.assert_array_equal(oof.file_names, names)
    ok("merge-folds", tmp_path / "kf" / "fold2", tmp_path / "kf" / "fold0", tmp_path / "kf" / "fold1",
       "--out", tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "kf" / "oof.csv").read_bytes()
    one_line_error(run("merge-folds", tmp_path / "kf" / "fold0", tmp_path / "kf" / "fold0",
                       "--out", tmp_path / "x.csv"), "missing [1, 2]")
    # fold 1's checkpoint edited to validate fold 0's faces: refused, not merged into empty rows
    shutil.copytree(tmp_path / "kf" / "fold1", tmp_path / "edited")
    state = torch.load(tmp_path / "edited" / "last.pt", weights_only=True)
    state["split"]["val_rows"] = torch.load(tmp_path / "kf" / "fold0" / "last.pt", weights_only=True)["split"]["val_rows"]
    torch.save(state, tmp_path / "edited" / "last.pt")
    one_line_error(run("merge-folds", tmp_path / "kf" / "fold0", tmp_path / "edited", tmp_path / "kf" / "fold2",
                       "--out", tmp_path / "x.csv"), "do not cover the")
    assert not (tmp_path / "x.csv").exists()

    # The finder, from shapes alone and with out-of-fold predictions (here: the clean labels
    # plus noise, standing in for a good model), puts the corrupted faces first.
    ok("clean", "--data", data, "--out", tmp_path / "clean", "--top", 0.05)
    ranked = (tmp_path / "clean" / "ranked.csv").read_text().splitlines()[1:]
    top = {line.split(",")[0] for line in ranked[:3]}
    assert top == set(names[corrupted])
    good = points + rng.normal(0, 1.0, points.shape)
    write_landmarks(tmp_path / "oof.csv", names, good)
    ok("clean", "--data", data, "--out", tmp_path / "clean2", "--oof", tmp_path / "oof.csv")
    ranked = (tmp_path / "clean2" / "ranked.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in ranked[:3]} == set(names[corrupted])
    assert (tmp_path / "clean2" / "worst.png").stat().st_size > 10_000
    excluded = (tmp_path / "clean" / "exclude.txt").read_text().split()
    assert len(excluded) == 3 and set(excluded) == set(names[corrupted])

    # Training without them, pose-balanced.
    ok("train", "--data", data, "--out", tmp_path / "ex", "--recipe", "fast-cpu", "--exclude",
       tmp_path / "clean" / "exclude.txt", "sampler=pose_balanced", "record_samples=true", *tiny)
    trained_on = {line.split("\t")[1] for line in (tmp_path / "ex" / "samples" / "rank0.txt").read_text().splitlines()}
    assert trained_on and not trained_on & set(excluded)

    ok("analyze", "--data", data, "--out", tmp_path / "report")
    for name in ("poses.csv", "poses.png", "mean_shape.png", "spread.png", "image_sizes.png",
                 "outliers.csv", "points.csv", "summary.json"):
        assert (tmp_path / "report" / name).stat().st_size > 100, name
