"""Benchmark: validation accuracy of a trained run next to the mean-shape baseline, on the run's
own validation split (its split_seed and val_fraction or fold), in original-image pixels.

    densemarks train --data ../shared/data/300w-afw-helen --out RUN --recipe fast-cpu --time-limit 30m
    python benchmarks/accuracy.py --data ../shared/data/300w-afw-helen --run RUN

Prints NME, failure rate and the competition score (all points: its expected value for random
requests) for the best checkpoint, alone and with flip and multi TTA (`densemarks.tta`), and
for the mean shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from densemarks.augment import LandmarkTransform
from densemarks.dataset import LandmarkDataset
from densemarks.metrics import evaluate_points
from densemarks.predict import mean_shape_baseline
from densemarks.train import (_training_data, eval_config, load_checkpoint, make_loader,
                              model_from_checkpoint, predict_points, validation_split)
from densemarks.tta import parse_tta, view_transform


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device("cpu")
    state = load_checkpoint(args.run / "best.pt", device)
    model, config, _ = model_from_checkpoint(state, device)
    data = _training_data(args.data)
    scheme = data.scheme
    train_rows, val_rows = validation_split(len(data.table), config)
    names = data.table.file_names[val_rows]
    truth = np.asarray(data.table.points[val_rows])
    transform = LandmarkTransform(eval_config(config), scheme.flip_index)

    def predict(mode: str) -> np.ndarray:
        tta = parse_tta(mode)
        dataset = LandmarkDataset(data.images_dir, names, None,
                                  view_transform(eval_config(config), scheme.flip_index, tta))
        loader = make_loader(dataset, 32, 0, False, 0, 0, device)
        return predict_points(model, loader, config, scheme, device, flip_tta=tta.flip)

    rows = {
        "model (best checkpoint)": predict("none"),
        "model + flip TTA": predict("flip"),
        "model + multi TTA (10 passes)": predict("multi"),
        "mean shape (training split)": mean_shape_baseline(
            np.asarray(data.table.points[train_rows]), data.table.file_names[train_rows], data.images_dir,
            names, data.images_dir, transform),
    }
    history = state["history"]
    print(f"run {args.run}: {config.model} ({config.weights}), input {config.augment.size}, "
          f"best epoch {state['best_epoch']} (reached after {history[-1]['seconds'] / 60:.1f} min of training); "
          f"validation split: {len(val_rows)} of {len(data.table)} faces (split seed {config.split_seed})")
    print("| predictions | NME (%) | failure rate >10% (%) | competition score (px^2) |")
    print("|---|---|---|---|")
    for label, pred in rows.items():
        m = evaluate_points(pred, truth, scheme)
        print(f"| {label} | {m.nme:.3f} | {m.failure_rate:.1f} | {m.competition_score:.2f} |")


if __name__ == "__main__":
    main()
