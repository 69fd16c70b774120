"""The README's picture: a model's faces in a photo, each region drawn as a line, cut around
the faces and enlarged so the points can be seen.

    python benchmarks/readme_picture.py --checkpoint RUN/best.pt --photo astronaut.png --out docs/astronaut.jpg

docs/astronaut.jpg: the accurate-cpu recipe trained on the 300-W crops of ../shared (val NME
4.4%), on scikit-image's `astronaut.png` (Eileen Collins, a NASA photo in the public domain).
"""

from __future__ import annotations

import argparse
import dataclasses

import cv2
import numpy as np

from densemarks.analysis.viz import draw_faces, save_rgb
from densemarks.data.images import load_image
from densemarks.data.scheme import known_scheme
from densemarks.photos.predictor import Predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--photo", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--side", type=int, default=480, help="side of the picture in pixels")
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint(args.checkpoint, threads=1)
    image = load_image(args.photo)
    faces = predictor(image)
    # the current region table of the point count (older checkpoints carry coarser regions)
    scheme = dataclasses.replace(known_scheme(predictor.scheme.num_points), flip_index=predictor.scheme.flip_index)
    boxes = np.array([f.box for f in faces])
    x0, y0 = boxes[:, :2].min(0)
    x1, y1 = boxes[:, 2:].max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * max(x1 - x0, y1 - y0)
    h, w = image.pixels.shape[:2]
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    crop = image.pixels[top:int(min(h, cy + half)), left:int(min(w, cx + half))]
    scale = args.side / max(crop.shape[:2])
    crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    # enlarge the photo first, then draw: lines stay thin (pixel centres: (p + 0.5) * s - 0.5)
    move = lambda p: (np.asarray(p, np.float64).reshape(-1, 2) - [left, top] + 0.5) * scale - 0.5
    moved = [dataclasses.replace(f, box=move(f.box).reshape(-1), points=move(f.points)) for f in faces]
    save_rgb(args.out, draw_faces(crop, moved, scheme=scheme))
    print(f"{len(faces)} face(s) -> {args.out}")


if __name__ == "__main__":
    main()
