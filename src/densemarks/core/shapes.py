"""Shape statistics over a whole dataset: batched Procrustes alignment to the mean shape,
head-pose estimates (roll from the alignment; yaw and pitch proxies from the leading modes of
the aligned shapes), and the sampling weights that balance poses in training.

Shapes are (N, K, 2) float arrays in image pixels (x right, y down). Angles are in degrees;
a positive roll turns the face clockwise as seen on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    """Similarity transforms taking each shape onto the reference (least squares).

    aligned (N, K, 2): the shapes in the reference's frame; roll (N,) degrees the face is turned
    relative to the reference; scale (N,) reference size / shape size; disparity (N,): the
    squared residual with both shapes standardised to unit norm (scipy.spatial.procrustes'
    definition, in [0, 1])."""

    aligned: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    disparity: np.ndarray


BLOCK = 8192  # faces computed at a time (in float64)
FIT_FACES = 20_000  # at most this many faces (a fixed random sample) fit the shape modes


def fit_rows(count: int) -> np.ndarray:
    """The faces that shape modes are fitted on: all of them up to FIT_FACES, else a fixed
    random sample of FIT_FACES (modes of a 2K-dimensional shape space are well determined by
    that many; fitting on 393,930 faces would cost gigabytes and minutes for nothing)."""
    if count <= FIT_FACES:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, FIT_FACES, replace=False))


def align(shapes: np.ndarray, reference: np.ndarray) -> Alignment:
    """Batched orthogonal Procrustes with scaling (Umeyama 1991), no reflections: one 2x2 SVD
    per shape, BLOCK shapes at a time in float64. The aligned shapes keep the input's float32
    (a memory map of any size stays one table in memory) or are float64."""
    shapes = np.asarray(shapes)
    n = len(shapes)
    aligned = np.empty((n, *np.shape(reference)), np.float32 if shapes.dtype == np.float32 else np.float64)
    roll, scale, disparity = np.empty(n), np.empty(n), np.empty(n)
    for start in range(0, n, BLOCK):
        rows = slice(start, start + BLOCK)
        aligned[rows], roll[rows], scale[rows], disparity[rows] = _align_block(shapes[rows], reference)
    return Alignment(aligned, roll, scale, disparity)


def _align_block(shapes: np.ndarray, reference: np.ndarray):
    x = np.asarray(shapes, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=1, keepdims=True), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    x_norm = np.sqrt((xc ** 2).sum(axis=(1, 2)))
    y_norm = np.sqrt((yc ** 2).sum())
    rotation, singular = best_rotations(xc, yc)
    scale = singular / np.maximum(x_norm ** 2, 1e-12)
    aligned = scale[:, None, None] * (xc @ rotation) + y_mean
    correlation = singular / np.maximum(x_norm * y_norm, 1e-12)
    return aligned, _roll_of(rotation), scale, np.clip(1 - correlation ** 2, 0, 1)


def similarity_matrices(shapes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, 3, 3) matrices of the same least-squares similarities as `align`: each maps its shape
    (pixels of that shape) onto the reference, for use with `geometry.apply`."""
    x = np.asarray(shapes, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=1), y.mean(axis=0)
    xc, yc = x - x_mean[:, None], y - y_mean
    rotation, singular = best_rotations(xc, yc)
    scale = singular / np.maximum((xc ** 2).sum(axis=(1, 2)), 1e-12)
    linear = scale[:, None, None] * rotation.transpose(0, 2, 1)  # row form x @ R is R^T x
    out = np.zeros((len(x), 3, 3))
    out[:, :2, :2] = linear
    out[:, :2, 2] = y_mean - np.einsum("nij,nj->ni", linear, x_mean)
    out[:, 2, 2] = 1.0
    return out


def best_rotations(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations R (N, 2, 2) maximising sum_k x[n, k] @ R . y[k] (row vectors, no reflection),
    and the attained maxima (the reflection-corrected singular value sums). x (N, K, 2) and y
    (K, 2), or (N, K, 2) for one reference per shape, both centred."""
    m = np.einsum("nki,nkj->nij", x, np.broadcast_to(y, x.shape))  # (N, 2, 2) cross-covariance
    u, s, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))  # -1 would be a reflection: take the best rotation instead
    s = s.copy()
    s[:, 1] *= d
    u = u.copy()
    u[:, :, 1] *= d[:, None]
    return u @ vt, s.sum(axis=1)


def _roll_of(rotation: np.ndarray) -> np.ndarray:
    # The shape is the reference turned by -R; R's angle in row form is atan2(R[0,1], R[0,0]).
    return -np.degrees(np.arctan2(rotation[:, 0, 1], rotation[:, 0, 0]))


def generalized_procrustes(shapes: np.ndarray, iterations: int = 5) -> tuple[np.ndarray, Alignment]:
    """The mean shape (in the scale and orientation of the plain mean) and every shape aligned
    to it; the mean is re-estimated from the aligned shapes a few times. Memory: the shapes
    and one aligned copy of them (float32 for float32 shapes), whatever their number."""
    shapes = np.asarray(shapes)
    start = shapes.mean(axis=0, dtype=np.float64)
    reference = start
    for _ in range(iterations):
        total = np.zeros_like(start)
        for first in range(0, len(shapes), BLOCK):
            total += _align_block(shapes[first:first + BLOCK], reference)[0].sum(axis=0)
        mean = total / max(len(shapes), 1)
        reference = align(mean[None], start).aligned[0]  # keep the first mean's pose and size
    return reference, align(shapes, reference)


@dataclass(frozen=True)
class PoseEstimate:
    """Per face: roll (degrees), yaw and pitch proxies (standard deviations of their modes, so
    0 is the dataset's typical face); and the dataset's mean shape and point spread."""

    roll: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    disparity: np.ndarray
    mean_shape: np.ndarray  # (K, 2)
    spread: np.ndarray  # (K,) RMS distance of each aligned point from its mean, pixels of the mean


def mirror_field(field: np.ndarray, flip_index: np.ndarray) -> np.ndarray:
    """A displacement field (..., K, 2) seen in a mirror: x negated, points renamed."""
    mirrored = field[..., flip_index, :].copy()
    mirrored[..., 0] *= -1
    return mirrored


def estimate_pose(shapes: np.ndarray, flip_index: np.ndarray) -> PoseEstimate:
    """Roll from the Procrustes rotation; yaw and pitch from the aligned shapes' deviations
    from the mean. (A head both turned and nodded shows a slightly tilted outline; Procrustes
    reads part of that as roll: about 1 degree on average on the synthetic faces, tests/.)

    A turned head's deviation changes sign in a mirror (antisymmetric), a nodding head's does
    not (symmetric). Yaw: the leading principal mode of the antisymmetric parts, signed so that
    the points near the face's midline move right for positive yaw. Pitch: among the three leading
    symmetric modes, the one closest to a vertical stretch of the face, signed so that positive
    pitch stretches it. Both are proxies, in standard deviations, not degrees."""
    mean, result = generalized_procrustes(shapes)
    flip_index = np.asarray(flip_index)

    def parts(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # deviation, anti, sym (float64)
        deviation = result.aligned[rows].astype(np.float64) - mean
        anti = (deviation - mirror_field(deviation, flip_index)) / 2
        return deviation, anti, deviation - anti

    _, anti, sym = parts(fit_rows(len(result.aligned)))
    centred = mean - mean.mean(axis=0)
    yaw_mode = _leading_modes(anti, 1)[0]
    midline = np.abs(centred[:, 0]) <= np.quantile(np.abs(centred[:, 0]), 0.2)
    if yaw_mode[midline, 0].mean() < 0:
        yaw_mode = -yaw_mode
    stretch = np.zeros_like(centred)
    stretch[:, 1] = centred[:, 1]
    stretch /= max(np.linalg.norm(stretch), 1e-12)  # a flat mean shape (collinear or one point): no pitch
    modes = _leading_modes(sym, 3)
    pitch_mode = max(modes, key=lambda m: abs((m * stretch).sum()))
    if (pitch_mode * stretch).sum() < 0:
        pitch_mode = -pitch_mode
    n = len(result.aligned)
    yaw, pitch, squares = np.empty(n), np.empty(n), np.zeros(len(mean))
    for start in range(0, n, BLOCK):
        rows = slice(start, start + BLOCK)
        deviation, anti, sym = parts(rows)
        yaw[rows] = np.einsum("nki,ki->n", anti, yaw_mode)
        pitch[rows] = np.einsum("nki,ki->n", sym, pitch_mode)
        squares += (deviation ** 2).sum(axis=2).sum(axis=0)
    spread = np.sqrt(squares / max(n, 1))
    return PoseEstimate(result.roll, _standardised(yaw), _standardised(pitch), result.disparity, mean, spread)


def _leading_modes(fields: np.ndarray, count: int) -> list[np.ndarray]:
    flat = fields.reshape(len(fields), -1)
    _, _, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    return [v.reshape(fields.shape[1:]) for v in vt[:count]]


def _standardised(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean()) / max(scores.std(), 1e-12)


def pose_balanced_weights(yaw: np.ndarray, pitch: np.ndarray, bins: int = 7, max_ratio: float = 10.0) -> np.ndarray:
    """Sampling weight per face, inversely proportional to how common its (yaw, pitch) cell is
    (bins x bins cells over +-3 standard deviations), capped at max_ratio times the smallest;
    normalised to sum to one."""
    edges = np.linspace(-3, 3, bins + 1)[1:-1]
    cell = np.digitize(yaw, edges) * bins + np.digitize(pitch, edges)
    counts = np.bincount(cell, minlength=bins * bins)
    weights = 1.0 / counts[cell]
    weights = np.minimum(weights, weights.min() * max_ratio)
    return weights / weights.sum()
