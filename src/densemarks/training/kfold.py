"""k-fold training: every fold in its own run folder, and the folds' validation predictions
merged into one out-of-fold file covering every training face once, in landmarks.csv order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from densemarks.recipes.config import TrainConfig
from densemarks.data.csvio import read_landmarks, write_landmarks
from densemarks.core.errors import DataError
from densemarks.inference.checkpoint import Checkpoint
from densemarks.training.loop import train


def train_folds(data_dir: str | Path, config: TrainConfig, out: str | Path, keep_finished: bool = True,
                **kwargs) -> Path:
    """Train fold 0..K-1 into OUT/fold{i} and merge their predictions into OUT/oof.csv.
    A fold whose run already finished (its last.pt at the final epoch) is kept (keep_finished),
    one that did not is trained again from the start."""
    out = Path(out)
    runs = []
    for fold in range(config.folds):
        run = out / f"fold{fold}"
        runs.append(run)
        if keep_finished and (run / "last.pt").is_file() and \
                Checkpoint.load(run / "last.pt").epoch + 1 >= config.epochs:
            continue
        train(data_dir, dataclasses.replace(config, fold=fold), run, **kwargs)
    merge_out_of_fold(runs, out / "oof.csv")
    return out / "oof.csv"


def merge_out_of_fold(runs: list[Path], out: str | Path) -> int:
    """Concatenate RUN/val_predictions.csv of each fold run in the original row order; every
    fold of the same split must be there exactly once. Returns the number of faces."""
    splits, prints, predictions = [], [], []
    for run in map(Path, runs):
        state = Checkpoint.load(run / "last.pt")
        split = state.split
        if split is None or split.folds < 2:
            raise DataError(run, "not a k-fold run (train with --folds K --fold i)")
        splits.append(split)
        prints.append(state.fingerprint)
        predictions.append(run / "val_predictions.csv")
    first = splits[0]
    for run, split, fingerprint in zip(runs, splits, prints):
        if (split.folds, split.split_seed, split.faces, fingerprint) != \
                (first.folds, first.split_seed, first.faces, prints[0]):
            raise DataError(run, "fold run from a different split (folds, split_seed or data differ)")
    seen = sorted(s.fold for s in splits)
    if seen != list(range(first.folds)):
        missing = sorted(set(range(first.folds)) - set(seen))
        repeated = sorted({f for f in seen if seen.count(f) > 1})
        raise DataError(None, f"folds of {first.folds}: missing {missing}, repeated {repeated}")
    covered = np.bincount(np.concatenate([s.val_rows for s in splits]), minlength=first.faces)
    if (covered != 1).any():
        raise DataError(None, f"the folds' validation rows do not cover the {first.faces} faces once each "
                        f"({int((covered == 0).sum())} faces in no fold, {int((covered > 1).sum())} in several)")
    # Each fold's table goes straight to its rows: memory is the merged table and one fold.
    names, points = np.empty(first.faces, dtype=object), None
    for split, path in zip(splits, predictions):
        table = read_landmarks(path, cache=False)
        if len(table) != len(split.val_rows):
            raise DataError(path, f"{len(table)} faces, the fold validates {len(split.val_rows)}")
        if points is None:
            points = np.empty((first.faces, table.num_points, 2), np.float32)
        elif table.num_points != points.shape[1]:
            raise DataError(path, f"{table.num_points} points per face, {predictions[0]} has {points.shape[1]}")
        names[split.val_rows] = table.file_names
        points[split.val_rows] = table.points
    write_landmarks(out, names, points)
    return len(names)
