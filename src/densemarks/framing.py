"""How faces sit in the model's training crops, and how to cut the same crop out of any photo.

Training crops are whole images (black borders removed, then stretched, covered or fitted to the
input size). A model only works on crops framed like those. `Framing` records that framing from
the training set: the mean shape in network-input pixels and the median aspect (width / height,
in original pixels) of the image region the input covers. It is stored in every checkpoint.

On a photo, `region_matrix` fits the mean shape onto a face's points (a similarity: shift,
scale, in-plane rotation; least squares over all points) and returns the one 3x3 matrix from
photo pixels to input pixels that frames that face as training did (upright, even when the face
is tilted in the photo). `shape_in_box` gives the starting points for a detector box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densemarks import geometry
from densemarks.shapes import similarity_matrices


@dataclass(frozen=True)
class Framing:
    """mean_shape (K, 2) float64: the mean training face in input pixels of an input of `size`
    (height, width); aspect: median width / height of the original-image region an input shows."""

    mean_shape: np.ndarray
    aspect: float
    size: tuple[int, int]

    def to_dict(self) -> dict:
        return {"mean_shape": np.asarray(self.mean_shape, dtype=np.float64).tolist(),
                "aspect": float(self.aspect), "size": list(self.size)}

    @classmethod
    def from_dict(cls, d: dict) -> "Framing":
        return cls(np.asarray(d["mean_shape"], dtype=np.float64), float(d["aspect"]),
                   (int(d["size"][0]), int(d["size"][1])))

    def _metric_to_input(self) -> np.ndarray:
        """Region units (pixel edges; height 1, width aspect) -> input pixels."""
        h, w = self.size
        return geometry.translation(-0.5, -0.5) @ np.diag([w / self.aspect, float(h), 1.0])

    def mean_shape_metric(self) -> np.ndarray:
        """The mean shape in region units: undistorted, so a similarity can fit it to a face."""
        return geometry.apply(geometry.invert(self._metric_to_input()), self.mean_shape)

    def region_matrix(self, points: np.ndarray) -> np.ndarray:
        """(N, K, 2) or (K, 2) face points in photo pixels -> (N, 3, 3) or (3, 3) matrices from
        photo pixels to input pixels that frame each face like a training crop."""
        points = np.asarray(points, dtype=np.float64)
        single = points.ndim == 2
        to_metric = similarity_matrices(points.reshape(-1, *points.shape[-2:]), self.mean_shape_metric())
        matrices = self._metric_to_input() @ to_metric
        return matrices[0] if single else matrices

    def shape_in_box(self, boxes: np.ndarray, centre_shift: tuple[float, float] = (0.0, 0.0),
                     scale: float = 1.0) -> np.ndarray:
        """Starting points for detector boxes (N, 4) x0, y0, x1, y1 in photo pixels: the mean
        shape with its bounding box centred on the box (moved by centre_shift times the box's
        width and height) and its geometric-mean side equal to scale times the box's."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        shape = self.mean_shape_metric()
        lo, hi = shape.min(axis=0), shape.max(axis=0)
        side = np.sqrt(np.prod(hi - lo))
        unit = (shape - (lo + hi) / 2) / side  # bounding box centred at 0, geometric side 1
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + centre_shift[0] * bw
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + centre_shift[1] * bh
        s = scale * np.sqrt(bw * bh)
        return unit[None] * s[:, None, None] + np.stack([cx, cy], axis=1)[:, None, :]


def measure_framing(matrices: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> Framing:
    """Framing from training faces: matrices (N, 3, 3) original pixels -> input pixels (the
    evaluation geometry, no jitter) and the faces' points (N, K, 2) in original pixels."""
    matrices = np.asarray(matrices, dtype=np.float64)
    framed = geometry.apply(matrices, np.asarray(points, dtype=np.float64))
    h, w = size
    # The input's width and height measured in original pixels (no rotation at evaluation).
    widths = w / np.abs(matrices[:, 0, 0])
    heights = h / np.abs(matrices[:, 1, 1])
    return Framing(framed.mean(axis=0), float(np.median(widths / heights)), (int(h), int(w)))


def frame_training_faces(images_dir: Path, file_names: np.ndarray, points: np.ndarray, config,
                         store=None, limit: int | None = None, seed: int = 0) -> Framing:
    """`measure_framing` over training images (at most `limit` of them, drawn with `seed`):
    each is decoded once for its black-border box. config: the evaluation `AugmentConfig`."""
    from densemarks.augment import LandmarkTransform, sample_matrix
    from densemarks.images import load_image

    rows = np.arange(len(file_names))
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    min_size = LandmarkTransform(config).min_decode_size()
    matrices = []
    for row in rows:
        name = str(file_names[row])
        image = store.image(name) if store is not None else load_image(Path(images_dir) / name, min_size=min_size)
        matrices.append(sample_matrix(image, config, None)[0])
    return measure_framing(np.asarray(matrices), np.asarray(points)[rows], config.size)
