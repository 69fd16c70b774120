"""Benchmark: what the toolbox buys on a fixed validation split: flip TTA, an ensemble of
several runs over the best single one, and training without the noise finder's top faces
(issue 5).

    densemarks train --data DATA --out R0 --recipe fast-cpu epochs=40 seed=0      # and seed=1, seed=2
    densemarks clean --data DATA --out CLEAN --top 0.01
    densemarks train --data DATA --out RC --recipe fast-cpu epochs=40 seed=0 --exclude CLEAN/exclude.txt
    python benchmarks/toolbox_gains.py --data DATA --runs R0 R1 R2 --cleaned RC --reference R0

All runs must share the validation split (split_seed, val_fraction). Each best checkpoint
predicts the validation faces with and without flip TTA. The ensemble averages the runs with
equal weights, and with weights fitted by `densemarks.inference.ensemble` on one half of the faces and
scored on the other (both ways, then pooled): fitting and scoring on the same faces would
flatter it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from densemarks.analysis.metrics import evaluate_points, per_face_nme
from densemarks.data.dataset import open_training_data
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.ensemble import EnsembleWeights, combine, fit_weights
from densemarks.inference.predict import predict_images
from densemarks.training.setup import validation_split


def predict_run(run: Path, data) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    state = Checkpoint.load(run / "best.pt")
    _, val_rows = validation_split(len(data.table), state.config)
    names = data.table.file_names[val_rows]
    plain = predict_images(state, data.images_dir, names)
    flipped = predict_images(state, data.images_dir, names, tta="flip")
    return val_rows, plain, flipped, {"epoch": state.resume.best_epoch, "config": state.config}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--cleaned", type=Path)
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    data = open_training_data(args.data)
    scheme = data.scheme
    predictions, rows = {}, None
    for run in args.runs + ([args.cleaned, args.reference] if args.cleaned else []):
        if run in predictions:
            continue
        val_rows, plain, flipped, info = predict_run(run, data)
        if rows is not None and not np.array_equal(rows, val_rows):
            raise SystemExit(f"{run} has another validation split")
        rows = val_rows
        predictions[run] = (plain, flipped, info)
    truth = np.asarray(data.table.points[rows], dtype=np.float64)

    def nme(pred: np.ndarray) -> float:
        return evaluate_points(pred, truth, scheme).nme

    print(f"validation split: {len(rows)} of {len(data.table)} faces; NME in % of the "
          f"normalising distance {scheme.norm_points}")
    print("| predictions | NME (%) | NME with flip TTA (%) |")
    print("|---|---|---|")
    singles = {}
    for run in args.runs:
        plain, flipped, info = predictions[run]
        singles[run] = nme(plain)
        print(f"| {run.name} (best epoch {info['epoch']}) | {nme(plain):.3f} | {nme(flipped):.3f} |")
    best = min(singles, key=singles.get)
    members = {tta: np.stack([predictions[r][tta] for r in args.runs]).astype(np.float64) for tta in (0, 1)}
    equal = EnsembleWeights(np.full(len(args.runs), 1 / len(args.runs)), {})
    print(f"| ensemble of {len(args.runs)}, equal weights | {nme(combine(members[0], equal)):.3f} | "
          f"{nme(combine(members[1], equal)):.3f} |")
    fitted = [_cross_fitted(members[t], truth, scheme) for t in (0, 1)]
    print(f"| ensemble of {len(args.runs)}, weights fitted on the other half (per region) | "
          f"{nme(fitted[0]):.3f} | {nme(fitted[1]):.3f} |")
    plain_best, flip_best, _ = predictions[best]
    print(f"\nbest single run: {best.name}. Gains (negative: NME went down):")
    print(f"- flip TTA on the best single run: {nme(flip_best) - nme(plain_best):+.3f}")
    mean_tta = np.mean([nme(predictions[r][1]) - nme(predictions[r][0]) for r in args.runs])
    print(f"- flip TTA, mean over the runs: {mean_tta:+.3f}")
    print(f"- equal-weight ensemble over the best single run: {nme(combine(members[0], equal)) - nme(plain_best):+.3f} "
          f"(with TTA on both: {nme(combine(members[1], equal)) - nme(flip_best):+.3f})")
    if args.cleaned:
        cleaned, reference = predictions[args.cleaned], predictions[args.reference]
        print(f"- training without the noise finder's top faces ({args.cleaned.name} vs {args.reference.name}, "
              f"same seed): {nme(cleaned[0]) - nme(reference[0]):+.3f} "
              f"(with TTA: {nme(cleaned[1]) - nme(reference[1]):+.3f}); "
              f"{nme(cleaned[0]):.3f} vs {nme(reference[0]):.3f}")
        faces = per_face_nme(cleaned[0], truth, scheme.norm_points) - per_face_nme(reference[0], truth, scheme.norm_points)
        print(f"  per face: better on {int((faces < 0).sum())}, worse on {int((faces > 0).sum())} of {len(faces)}")


def _cross_fitted(members: np.ndarray, truth: np.ndarray, scheme) -> np.ndarray:
    """Weights fitted per region on one half, applied to the other, both ways."""
    order = np.random.default_rng(0).permutation(len(truth))
    halves = np.array_split(order, 2)
    out = np.empty(members.shape[1:], dtype=np.float32)
    for fit_on, apply_to in ((halves[0], halves[1]), (halves[1], halves[0])):
        weights = fit_weights(members[:, fit_on], truth[fit_on], scheme, per_region=True)
        out[apply_to] = combine(members[:, apply_to], weights, scheme)
    return out


if __name__ == "__main__":
    main()
