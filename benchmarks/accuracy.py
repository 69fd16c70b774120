"""Benchmark: validation accuracy of a trained run next to the mean-shape baseline, on the run's
own validation split (its split_seed and val_fraction or fold), in original-image pixels.

    densemarks train --data ../shared/data/300w-afw-helen --out RUN --recipe fast-cpu --time-limit 30m
    python benchmarks/accuracy.py --data ../shared/data/300w-afw-helen --run RUN [--run RUN2 ...] \
        [--checkpoint last] [--fit-prior]

Prints NME, failure rate and the competition score (all points: its expected value for random
requests) for the best checkpoint, alone and with flip and multi TTA (`densemarks.inference.tta`), and
for the mean shape. The best checkpoint is the epoch with the lowest NME on this same split,
so its figure is slightly optimistic; `--checkpoint last` scores the final epoch instead.
With several runs (same validation split): each run, then their ensemble, the plain average
of their points in original pixels, in each TTA mode. Runs whose best.pt has a shape prior
(inference/shape_prior.py; or, with --fit-prior, any run: fitted here as training fits it, on
training faces only) are scored without it and with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from densemarks.analysis.metrics import evaluate_points
from densemarks.data.augment import LandmarkTransform
from densemarks.data.dataset import TrainingData, open_training_data
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.predict import mean_shape_baseline, predict_images
from densemarks.inference.shape_prior import ShapePrior
from densemarks.inference.tta import TTA_MODES
from densemarks.training.prior import prior_rows
from densemarks.training.setup import validation_split

LABELS = {"none": "no TTA", "flip": "flip TTA", "multi": "multi TTA (10 passes)"}
LABELS.update({f"{mode}+prior": f"{label} + shape prior" for mode, label in LABELS.items()})
LABELS["none+prior"] = "shape prior"


class RunPredictions(NamedTuple):
    header: str
    config: object  # TrainConfig
    val_rows: np.ndarray
    points: dict[str, np.ndarray]  # tta mode -> (N, K, 2) original pixels


def run_predictions(run: Path, data: TrainingData, checkpoint: str = "best",
                    fit_prior: bool = False) -> RunPredictions:
    """One run's best.pt or last.pt on its validation split, in every TTA mode; with its shape
    prior (fitted here as training fits it, with fit_prior, when the checkpoint has none) the
    modes also appear as "MODE+prior"."""
    state = Checkpoint.load(run / f"{checkpoint}.pt")
    config = state.config
    train_rows, val_rows = validation_split(len(data.table), config)
    names = data.table.file_names[val_rows]
    out = {mode: predict_images(state, data.images_dir, names, tta=mode, shape_prior=False) for mode in TTA_MODES}
    prior = state.shape_prior
    if prior is None and fit_prior:
        labels = np.asarray(data.table.points[train_rows])
        rows = prior_rows(config, len(train_rows))
        sample = predict_images(state, data.images_dir, data.table.file_names[train_rows[rows]], shape_prior=False)
        prior = ShapePrior.fit(labels, sample, labels[rows])
    if prior is not None:
        out.update({f"{mode}+prior": prior.apply(points) for mode, points in list(out.items())})
    history = state.history
    header = (f"run {run}: {config.model} ({config.weights}), input {config.augment.size}, "
              f"{checkpoint} checkpoint: epoch {history[-1]['epoch']} (reached after "
              f"{history[-1]['seconds'] / 60:.1f} min of training); validation split: {len(val_rows)} of "
              f"{len(data.table)} faces (split seed {config.split_seed})")
    return RunPredictions(header, config, val_rows, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, action="append", required=True,
                        help="a run folder; give several for their ensemble too")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="best.pt (lowest validation NME, slightly optimistic) or last.pt")
    parser.add_argument("--fit-prior", action="store_true",
                        help="fit a shape prior as training does for checkpoints that have none (older runs)")
    args = parser.parse_args()
    data = open_training_data(args.data)
    runs = [run_predictions(run, data, args.checkpoint, args.fit_prior) for run in args.run]
    config = runs[0].config
    train_rows, val_rows = validation_split(len(data.table), config)
    if any(not np.array_equal(r.val_rows, val_rows) for r in runs):
        raise SystemExit("the runs validate on different faces (split_seed, val_fraction or fold differ)")
    names = data.table.file_names[val_rows]
    truth = np.asarray(data.table.points[val_rows])
    rows = {}
    for i, r in enumerate(runs, 1):
        print(r.header)
        model = f"run {i} ({args.checkpoint})" if len(runs) > 1 else f"model ({args.checkpoint} checkpoint)"
        for mode, points in r.points.items():
            rows[model if mode == "none" else f"{model} + {LABELS[mode]}"] = points
    if len(runs) > 1:
        for mode in [m for m in runs[0].points if all(m in r.points for r in runs)]:
            ensemble = np.mean([r.points[mode] for r in runs], axis=0)
            rows[f"ensemble of {len(runs)} ({args.checkpoint}), {LABELS[mode]}"] = ensemble
    transform = LandmarkTransform(config.augment.evaluation(), data.scheme.flip_index)
    rows["mean shape (training split)"] = mean_shape_baseline(
        np.asarray(data.table.points[train_rows]), data.table.file_names[train_rows], data.images_dir,
        names, data.images_dir, transform)
    print("| predictions | NME (%) | failure rate >10% (%) | competition score (px^2) |")
    print("|---|---|---|---|")
    for label, pred in rows.items():
        m = evaluate_points(pred, truth, data.scheme)
        print(f"| {label} | {m.nme:.3f} | {m.failure_rate:.1f} | {m.competition_score:.2f} |")


if __name__ == "__main__":
    main()
