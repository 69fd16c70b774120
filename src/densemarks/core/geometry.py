"""The one geometric convention of densemarks.

Points are continuous (x, y) pixel coordinates with pixel centres at integers (OpenCV's
convention: pixel (row r, column c) covers [c - 0.5, c + 0.5) x [r - 0.5, r + 0.5)).
Every geometric step is a 3x3 float64 matrix mapping source pixels to target pixels; steps
compose by matrix product (`later @ earlier`), an image is warped once with the composite, points
move by the same matrix, and the inverse brings predictions back to original-image pixels.
"""

from __future__ import annotations

import math

import numpy as np


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float | None = None) -> np.ndarray:
    """Scale about pixel edge (0, 0): an image of width W scaled by s spans width s*W exactly."""
    sy = sx if sy is None else sy
    # In edge coordinates (e = c + 0.5) this is a plain scale; convert in and out.
    return translation(-0.5, -0.5) @ np.diag([sx, sy, 1.0]) @ translation(0.5, 0.5)


def rotation(degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """Rotate by `degrees` counter-clockwise as seen on screen (y points down) about `centre`."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = centre
    return translation(cx, cy) @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ translation(-cx, -cy)


def hflip(width: int) -> np.ndarray:
    """Mirror an image of `width` pixels: column c goes to column width - 1 - c."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def box_to_frame(box: tuple[float, float, float, float], out_size: tuple[int, int],
                 mode: str = "cover") -> np.ndarray:
    """Map a box (x0, y0, x1, y1) in pixel-edge coordinates onto an output of (height, width).

    mode: "cover" scales the box to cover the output and centres it (the part that overflows
    is cropped); "fit" scales it to fit inside (black bars); "stretch" scales each axis alone.
    """
    sx, sy, tx, ty = frame_scale_offset(box, out_size, mode)
    return np.array([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]])


def frame_scale_offset(box: tuple[float, float, float, float], out_size: tuple[int, int],
                       mode: str = "cover") -> tuple[float, float, float, float]:
    """`box_to_frame` as plain numbers (sx, sy, tx, ty): x -> sx * x + tx, y -> sy * y + ty."""
    x0, y0, x1, y1 = box
    out_h, out_w = out_size
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    if mode == "cover":
        sx = sy = max(sx, sy)
    elif mode == "fit":
        sx = sy = min(sx, sy)
    elif mode != "stretch":
        raise ValueError(f"unknown crop mode {mode!r}; use cover, fit or stretch")
    # In edge coordinates (e = c + 0.5) the box centre goes to the output centre; written out
    # in centre coordinates: translation(-0.5, -0.5) @ edge @ translation(0.5, 0.5).
    ex, ey = (x0 + x1) / 2, (y0 + y1) / 2
    return sx, sy, out_w / 2 - sx * ex + 0.5 * sx - 0.5, out_h / 2 - sy * ey + 0.5 * sy - 0.5


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Move points (..., 2) by a 3x3 matrix (or a batch (..., 3, 3) matching the leading dims)."""
    matrix = np.asarray(matrix)
    linear = matrix[..., :2, :2]
    offset = matrix[..., :2, 2]
    if matrix.ndim == 2:
        return points @ linear.T + offset
    return np.einsum("...ij,...kj->...ki", linear, points) + offset[..., None, :]


def invert(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(matrix)


def to_original(points: np.ndarray, matrix: np.ndarray, flipped: bool | np.ndarray = False,
                flip_index: np.ndarray | None = None) -> np.ndarray:
    """Bring points in input pixels back to original-image pixels: rename the points of
    flipped samples through the flip index, then apply each matrix's inverse.

    points (K, 2) or (..., K, 2); matrix (3, 3) or (..., 3, 3); flipped a bool or (...) bools.
    """
    points = np.asarray(points, dtype=np.float64)
    flipped = np.asarray(flipped)
    if flipped.any():
        if flip_index is None:
            raise ValueError("flipped samples need the flip index to restore point order")
        points = np.where(flipped[..., None, None], points[..., flip_index, :], points)
    return apply(invert(np.asarray(matrix, dtype=np.float64)), points)
