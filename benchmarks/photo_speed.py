"""Benchmark: milliseconds per face for the landmark step at batch 1, torch against ONNX Runtime,
side by side in one run, on real faces (detector boxes are not timed here).

Two figures per backend and thread count, medians over `--repeats` faces:
- network: one uint8 crop through normalisation, the network and its decoding (InferenceModel);
- landmark step: what `Predictor.landmarks` does per face: the affine crop from the photo,
  the network step above, the points mapped back, once per pass (1 + refine passes).

    python benchmarks/photo_speed.py --checkpoint runs/fast/best.pt --photos ../shared/data/afw-photos
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--refine", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    table = read_photo_faces(args.photos / "faces.csv")
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table), size=min(args.repeats, len(table)), replace=False)
    images = {name: load_image(args.photos / "images" / name) for name in set(table.file_names[rows])}
    faces = [(images[table.file_names[r]], table.points[r][None]) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "model.onnx"
        export = export_onnx(args.checkpoint, onnx)
        h, w = export.input_size
        print(f"model {args.checkpoint}, input {h}x{w}, ONNX max difference {export.max_abs_diff:.2e} px; "
              f"{len(faces)} faces of {args.photos}")
        steps = " | ".join(f"landmark step, refine={r}" for r in args.refine)
        print(f"| backend | threads | network | {steps} |  (ms per face, medians)")
        print("|---|---|---|" + "---|" * len(args.refine))
        for threads in args.threads:
            torch.set_num_threads(threads)
            for backend in ("torch", "onnx"):
                predictor = Predictor.from_checkpoint(args.checkpoint, detector=None, backend=backend,
                                                      onnx=onnx, threads=threads)
                crops = [np.random.default_rng(i).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
                         for i in range(len(faces))]
                network = median_ms(predictor.landmarker, crops)
                cells = []
                for refine in args.refine:
                    predictor.refine = refine
                    cells.append(f"{median_ms(lambda face: predictor.landmarks(face[0], face[1]), faces):.2f}")
                print(f"| {backend} | {threads} | {network:.2f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
