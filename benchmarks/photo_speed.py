"""Benchmark: milliseconds per face for the landmark step at batch 1, torch against ONNX Runtime,
and one model against another, side by side in one run, on real faces (detector boxes are not
timed here).

Two figures per backend and thread count, medians over `--repeats` faces:
- network: one uint8 crop through normalisation, the network and its decoding (InferenceModel);
- landmark step: what `Predictor.landmarks` does per face: the affine crop from the photo,
  the network step above, the points mapped back, once per pass (1 + refine passes).

Several checkpoints are measured in alternation (`--rounds`, each model once per round and
configuration); the table gives each model's median over rounds and, after the first model, the
median (and range) of each round's ratio to the first model's landmark step at the first refine.

    python benchmarks/photo_speed.py --checkpoint runs/fast/best.pt [runs/accurate/best.pt ...] \
        --photos ../shared/data/afw-photos [--threads 2] [--backends onnx] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from densemarks.data.csvio import read_photo_faces
from densemarks.inference.export import export_onnx
from densemarks.data.images import load_image
from densemarks.photos.predictor import Predictor


def median_ms(fn, items, warmup: int = 10) -> float:
    for item in items[:warmup]:
        fn(item)
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(predictor: Predictor, faces: list, refines: list[int], size: tuple[int, int]) -> list[float]:
    """[network, landmark step at each refine], ms per face (medians over the faces)."""
    h, w = size
    crops = [np.random.default_rng(i).integers(0, 256, (1, h, w, 3), dtype=np.uint8) for i in range(len(faces))]
    times = [median_ms(predictor.landmarker, crops)]
    for refine in refines:
        predictor.refine = refine
        times.append(median_ms(lambda face: predictor.landmarks(face[0], face[1]), faces))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=200, help="faces timed per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--refine", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    parser.add_argument("--rounds", type=int, default=1, help="alternating measurements of every model")
    args = parser.parse_args()
    table = read_photo_faces(args.photos / "faces.csv")
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table), size=min(args.repeats, len(table)), replace=False)
    images = {name: load_image(args.photos / "images" / name) for name in set(table.file_names[rows])}
    faces = [(images[table.file_names[r]], table.points[r][None]) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for i, checkpoint in enumerate(args.checkpoint):
            onnx = Path(tmp) / f"model{i}.onnx"
            export = export_onnx(checkpoint, onnx)
            models.append((checkpoint, onnx, export.input_size))
            print(f"model {checkpoint}: input {export.input_size[0]}x{export.input_size[1]}, "
                  f"ONNX max difference {export.max_abs_diff:.2e} px")
        print(f"{len(faces)} faces of {args.photos}; medians of {args.rounds} alternating round(s)")
        steps = " | ".join(f"landmark step, refine={r}" for r in args.refine)
        print(f"| model | backend | threads | network | {steps} | ratio to the first model |  (ms per face)")
        print("|---|---|---|---|" + "---|" * len(args.refine) + "---|")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for backend in args.backends:
                predictors = [Predictor.from_checkpoint(c, detector=None, backend=backend, onnx=o, threads=threads)
                              for c, o, _ in models]
                rounds = [[measure(p, faces, args.refine, size) for p, (_, _, size) in zip(predictors, models)]
                          for _ in range(args.rounds)]
                for m, (checkpoint, _, _) in enumerate(models):
                    cells = [f"{statistics.median(r[m][j] for r in rounds):.2f}" for j in range(1 + len(args.refine))]
                    ratios = [r[m][1] / r[0][1] for r in rounds]
                    ratio = "" if m == 0 else f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                    print(f"| {checkpoint} | {backend} | {threads} | {' | '.join(cells)} | {ratio} |")


if __name__ == "__main__":
    main()
