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


def train_folds(data_dir: str | Path, config: TrainConfig, out: str | Path, **kwargs) -> Path:
    """Train fold 0..K-1 into OUT/fold{i} and merge their predictions into OUT/oof.csv.
    A fold whose run already finished (its last.pt at the final epoch) is kept."""
    out = Path(out)
    runs = []
    for fold in range(config.folds):
        run = out / f"fold{fold}"
        runs.append(run)
        if (run / "last.pt").is_file() and Checkpoint.load(run / "last.pt").epoch + 1 >= config.epochs:
            continue
        train(data_dir, dataclasses.replace(config, fold=fold), run, **kwargs)
    merge_out_of_fold(runs, out / "oof.csv")
    return out / "oof.csv"


def merge_out_of_fold(runs: list[Path], out: str | Path) -> int:
    """Concatenate RUN/val_predictions.csv of each fold run in the original row order; every
    fold of the same split must be there exactly once. Returns the number of faces."""
    splits, prints, tables = [], [], []
    for run in map(Path, runs):
        state = Checkpoint.load(run / "last.pt")
        split = state.split
        if split is None or split.folds < 2:
            raise DataError(run, "not a k-fold run (train with --folds K --fold i)")
        splits.append(split)
        prints.append(state.fingerprint)
        tables.append(read_landmarks(run / "val_predictions.csv", cache=False))
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
    rows = np.concatenate([s.val_rows for s in splits])
    names = np.concatenate([t.file_names for t in tables])
    points = np.concatenate([np.asarray(t.points) for t in tables])
    order = np.argsort(rows)
    write_landmarks(out, names[order], points[order])
    return len(order)
