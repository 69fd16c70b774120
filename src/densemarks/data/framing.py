"""How faces sit in the model's training crops, and how to cut the same crop out of any photo.

Training crops are whole images (black borders removed, then stretched, covered or fitted to the
input size). A model only works on crops framed like those. `Framing` records that framing from
the training set, in terms of each face's landmark bounding box: the median offset of the
region the input shows from the box centre (in box widths and heights) and the region's width
and height in units of the box's geometric-mean side (so a turned head, whose box is narrow,
still gets the crop size a frontal face of its height gets, as in the training crops). It also
keeps the mean face in input pixels, which places a first guess in a detector's box. It is
stored in every checkpoint.

On a photo, `region_matrix` turns a face's points (a first guess, or a prediction) into the one
3x3 matrix from photo pixels to input pixels that frames that face as training did; with
`upright` it first turns the frame by the face's roll (from a similarity fit of the mean face),
so a tilted face is cut out upright.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemarks.core import geometry
from densemarks.core.shapes import best_rotations, similarity_matrices


@dataclass(frozen=True)
class BoxPrior:
    """Where a face's landmark bounding box sits in a detector's box: its centre shifted by
    (dx, dy) box widths and heights, its geometric-mean side `scale` times the box's."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class Framing:
    """mean_shape (K, 2) float64: the mean training face in input pixels of an input of `size`
    (height, width); region (4,): the input's region relative to a face's landmark box: centre
    offset (x in box widths, y in box heights) and width and height in box sides (sqrt(w * h))."""

    mean_shape: np.ndarray
    region: tuple[float, float, float, float]
    size: tuple[int, int]

    def to_dict(self) -> dict:
        return {"mean_shape": np.asarray(self.mean_shape, dtype=np.float64).tolist(),
                "region": [float(v) for v in self.region], "size": list(self.size)}

    @classmethod
    def from_dict(cls, d: dict) -> "Framing":
        """ValueError when the stored numbers could not frame a face (a damaged checkpoint)."""
        framing = cls(np.asarray(d["mean_shape"], dtype=np.float64), tuple(float(v) for v in d["region"]),
                      (int(d["size"][0]), int(d["size"][1])))
        if framing.mean_shape.ndim != 2 or framing.mean_shape.shape[1] != 2 or len(framing.region) != 4:
            raise ValueError(f"framing: mean shape {framing.mean_shape.shape} and region of {len(framing.region)} "
                             "numbers, expected (K, 2) and 4")
        if not (np.isfinite(framing.mean_shape).all() and np.isfinite(framing.region).all()):
            raise ValueError("framing holds NaN or infinite numbers")
        if min(framing.size) < 1 or min(framing.region[2:]) <= 0:
            raise ValueError(f"framing: input size {list(framing.size)} and region size "
                             f"{list(framing.region[2:])} must be positive")
        return framing

    def mean_face(self) -> np.ndarray:
        """The mean face undistorted: input pixels scaled back by the crop's stretch (K, 2)."""
        h, w = self.size
        _, _, rw, rh = self.region
        return self.mean_shape / (w / rw, h / rh)

    def region_matrix(self, points: np.ndarray, upright: bool = True) -> np.ndarray:
        """(N, K, 2) or (K, 2) face points in photo pixels -> (N, 3, 3) or (3, 3) matrices from
        photo pixels to input pixels that frame each face like a training crop."""
        points = np.asarray(points, dtype=np.float64)
        single = points.ndim == 2
        points = points.reshape(-1, *points.shape[-2:])
        turn = np.tile(np.eye(3), (len(points), 1, 1))
        if upright:  # the rotation part of the similarity onto the mean face, about the centroid
            linear = similarity_matrices(points, self.mean_face())[:, :2, :2]
            rotation = linear / np.sqrt(np.abs(np.linalg.det(linear)))[:, None, None]
            centre = points.mean(axis=1)
            turn[:, :2, :2] = rotation
            turn[:, :2, 2] = centre - np.einsum("nij,nj->ni", rotation, centre)
        turned = geometry.apply(turn, points)
        lo, hi = turned.min(axis=1), turned.max(axis=1)
        size = hi - lo
        side = np.sqrt(np.maximum(size[:, 0] * size[:, 1], 1e-12))
        ox, oy, w, h = self.region
        centre = (lo + hi) / 2 + size * (ox, oy)
        half = np.stack([w * side, h * side], axis=1) / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) + 0.5  # to pixel edges
        matrices = np.stack([geometry.box_to_frame(tuple(b), self.size, "stretch") for b in boxes]) @ turn
        return matrices[0] if single else matrices

    def shape_in_box(self, boxes: np.ndarray, prior: BoxPrior | None = None) -> np.ndarray:
        """Starting points for boxes (N, 4) x0, y0, x1, y1 in photo pixels: the mean face
        (undistorted by the input's stretch) with its bounding box where `prior` puts the landmark
        box (no prior: the box is the landmark box)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        shape = self.mean_face()
        lo, hi = shape.min(axis=0), shape.max(axis=0)
        unit = (shape - (lo + hi) / 2) / np.sqrt(np.prod(hi - lo))
        prior = prior or BoxPrior()
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + prior.dx * bw
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + prior.dy * bh
        s = prior.scale * np.sqrt(bw * bh)
        return unit[None] * s[:, None, None] + np.stack([cx, cy], axis=1)[:, None, :]


def turn_to_keypoints(shapes: np.ndarray, keypoints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Shapes (N, K, 2) turned about their centroids by the roll that carries their keypoints
    (`weights` (A, K) @ shape) onto `keypoints` (N, A, 2), from a least-squares similarity fit;
    faces whose keypoints hold a NaN are left as they are. A detector's box says nothing of a
    face's roll; its keypoints do."""
    shapes = np.asarray(shapes, dtype=np.float64)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    turned = shapes.copy()
    ok = np.isfinite(keypoints).all(axis=(1, 2))
    if ok.any():
        seen = np.einsum("ak,nkd->nad", weights, shapes[ok])
        rotation, _ = best_rotations(seen - seen.mean(axis=1, keepdims=True),
                                     keypoints[ok] - keypoints[ok].mean(axis=1, keepdims=True))
        centre = shapes[ok].mean(axis=1, keepdims=True)
        turned[ok] = (shapes[ok] - centre) @ rotation + centre  # row form: x @ R turns x onto y
    return turned


def measure_framing(matrices: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> Framing:
    """Framing from training faces: matrices (N, 3, 3) original pixels -> input pixels (the
    evaluation geometry: no rotation, no jitter) and the faces' points (N, K, 2) in original
    pixels. Medians, so a few odd crops do not move it."""
    matrices = np.asarray(matrices, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    h, w = size
    corners = geometry.apply(np.linalg.inv(matrices), np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]])[None])
    region_lo, region_hi = corners.min(axis=1), corners.max(axis=1)  # (N, 2) each, pixel edges
    lo, hi = points.min(axis=1), points.max(axis=1)
    box = np.maximum(hi - lo, 1e-9)
    side = np.sqrt(box[:, 0] * box[:, 1])
    offset = ((region_lo + region_hi) / 2 - (lo + hi) / 2) / box
    extent = (region_hi - region_lo) / side[:, None]
    region = (*np.median(offset, axis=0), *np.median(extent, axis=0))
    framed = geometry.apply(matrices, points)
    return Framing(framed.mean(axis=0), tuple(float(v) for v in region), (int(h), int(w)))
