"""Which training faces are also in a photo set: the faces of ../shared/data/afw-photos are
AFW's, and 300w-afw-helen's training crops include AFW. A photo benchmark of a model trained on
them would measure memory, so this lists them for `train --exclude`.

A face matches when its points equal a photo face's up to a similarity transform (a crop and a
resize): the Procrustes distance of unit-norm centred shapes, computed for every pair at once
with complex numbers (|<a, b>| is the cosine of the best rotation's residual angle).

    python benchmarks/photo_overlap.py --train ../shared/data/300w-afw-helen/train \\
        --photos ../shared/data/afw-photos --out runs/afw_in_train.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from densemarks.data.csvio import read_landmarks, read_photo_faces


def unit_complex(points: np.ndarray) -> np.ndarray:
    z = points[..., 0] + 1j * points[..., 1]
    z = z - z.mean(axis=1, keepdims=True)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=0.02)
    args = parser.parse_args()
    train = read_landmarks(args.train / "landmarks.csv", cache=False)
    photos = read_photo_faces(args.photos / "faces.csv")
    a, b = unit_complex(np.asarray(photos.points, float)), unit_complex(np.asarray(train.points, float))
    distance = np.sqrt(np.maximum(0.0, 2 - 2 * np.abs(a.conj() @ b.T)))  # (photo faces, train faces)
    order = np.sort(distance, axis=1)
    matched = np.unique(distance.argmin(axis=1)[order[:, 0] < args.threshold])
    print(f"photo faces {len(a)}, training faces {len(b)}; nearest distance median {np.median(order[:, 0]):.4f} "
          f"max {order[:, 0].max():.4f}; second nearest min {order[:, 1].min():.4f}")
    print(f"{len(matched)} training faces match a photo face (distance < {args.threshold})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{name}\n" for name in train.file_names[matched]))


if __name__ == "__main__":
    main()
