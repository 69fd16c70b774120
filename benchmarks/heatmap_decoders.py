"""Benchmark: heatmap decoders on a trained heatmap run's validation split (no TTA), each
standing in for the default (`argmax`, the refined argmax) in the head's decoder registry, so
that every one goes through the same `predict` path, crops and geometry.

    python benchmarks/heatmap_decoders.py --data ../shared/data/300w-afw-helen --run RUN [--run RUN2 ...]

Decoders: the refined argmax (one Newton step on the log map); the same after a Gaussian blur
of the predicted maps that keeps their peak (DARK's modulation, Zhang et al. 2020) with sigma
1, 1.5 and 2 map pixels; soft-argmax restricted to the 3x3 and 5x5 window around the peak;
the head's global soft-argmax (`integral`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from densemarks.analysis.metrics import evaluate_points
from densemarks.data.dataset import open_training_data
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.predict import predict_images
from densemarks.models.heads import heatmap
from densemarks.training.setup import validation_split

REFINED = heatmap.refined_argmax


def modulated(sigma: float):
    """DARK's modulation: blur each map with a Gaussian of `sigma`, rescale to its old peak,
    then the refined argmax."""
    radius = int(np.ceil(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()

    def decode(maps: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        b, k, h, w = maps.shape
        m = maps.float().clamp_min(0).reshape(b * k, 1, h, w)
        peak = m.flatten(1).amax(1).view(-1, 1, 1, 1)
        m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
        m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))
        m = m * peak / m.flatten(1).amax(1).view(-1, 1, 1, 1).clamp_min(1e-9)
        return REFINED(m.view(b, k, h, w))
    return decode


def local_soft_argmax(radius: int):
    """The centre of mass of the (non-negative) map within `radius` pixels of its peak."""
    def decode(maps: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        b, k, h, w = maps.shape
        index = maps.float().flatten(2).argmax(2)
        y, x = index // w, index % w
        ys, xs = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
        near = ((ys - y[..., None, None]).abs() <= radius) & ((xs - x[..., None, None]).abs() <= radius)
        m = maps.float().clamp_min(0) * near
        mass = m.sum((2, 3)).clamp_min(1e-9)
        return torch.stack([(m * xs).sum((2, 3)) / mass, (m * ys).sum((2, 3)) / mass], -1)
    return decode


DECODERS = {"refined argmax (default)": REFINED, "modulated, sigma 1": modulated(1.0),
            "modulated, sigma 1.5": modulated(1.5), "modulated, sigma 2": modulated(2.0),
            "soft-argmax, 3x3 window": local_soft_argmax(1), "soft-argmax, 5x5 window": local_soft_argmax(2),
            "soft-argmax, whole map (integral)": heatmap.soft_argmax}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, action="append", required=True, help="a heatmap run folder")
    args = parser.parse_args()
    data = open_training_data(args.data)
    registry = dict(heatmap.DECODERS)
    print("| run | " + " | ".join(DECODERS) + " |")
    print("|---|" + "---|" * len(DECODERS))
    for run in args.run:
        state = Checkpoint.load(run / "best.pt")
        if state.config.head != "heatmap":
            raise SystemExit(f"{run}: head={state.config.head}, not heatmap")
        _, val_rows = validation_split(len(data.table), state.config)
        names, truth = data.table.file_names[val_rows], np.asarray(data.table.points[val_rows])
        cells = []
        for decode in DECODERS.values():
            heatmap.DECODERS[state.config.heatmap_decode] = decode
            points = predict_images(state, data.images_dir, names, tta="none")
            cells.append(f"{evaluate_points(points, truth, data.scheme).nme:.3f}")
        heatmap.DECODERS.update(registry)
        print(f"| {run} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
