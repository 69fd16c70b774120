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


def align(shapes: np.ndarray, reference: np.ndarray) -> Alignment:
    """Batched orthogonal Procrustes with scaling (Umeyama 1991), no reflections: one 2x2 SVD
    per shape, all in one call."""
    x = np.asarray(shapes, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=1, keepdims=True), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    x_norm = np.sqrt((xc ** 2).sum(axis=(1, 2)))
    y_norm = np.sqrt((yc ** 2).sum())
    rotation, singular = _best_rotation(xc, yc)
    scale = singular / np.maximum(x_norm ** 2, 1e-12)
    aligned = scale[:, None, None] * (xc @ rotation) + y_mean
    correlation = singular / np.maximum(x_norm * y_norm, 1e-12)
    return Alignment(aligned, _roll_of(rotation), scale, np.clip(1 - correlation ** 2, 0, 1))


def similarity_matrices(shapes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, 3, 3) matrices of the same least-squares similarities as `align`: each maps its shape
    (pixels of that shape) onto the reference, for use with `geometry.apply`."""
    x = np.asarray(shapes, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=1), y.mean(axis=0)
    xc, yc = x - x_mean[:, None], y - y_mean
    rotation, singular = _best_rotation(xc, yc)
    scale = singular / np.maximum((xc ** 2).sum(axis=(1, 2)), 1e-12)
    linear = scale[:, None, None] * rotation.transpose(0, 2, 1)  # row form x @ R is R^T x
    out = np.zeros((len(x), 3, 3))
    out[:, :2, :2] = linear
    out[:, :2, 2] = y_mean - np.einsum("nij,nj->ni", linear, x_mean)
    out[:, 2, 2] = 1.0
    return out


def _best_rotation(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations R (N, 2, 2) maximising sum_k x[n, k] @ R . y[k] (row vectors, no reflection),
    and the attained maxima (the reflection-corrected singular value sums)."""
    m = np.einsum("nki,kj->nij", x, y)  # (N, 2, 2) cross-covariance
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
    to it; the mean is re-estimated from the aligned shapes a few times."""
    shapes = np.asarray(shapes, dtype=np.float64)
    start = shapes.mean(axis=0)
    reference = start
    for _ in range(iterations):
        result = align(shapes, reference)
        mean = result.aligned.mean(axis=0)
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
    deviation = result.aligned - mean
    flip_index = np.asarray(flip_index)
    anti = (deviation - mirror_field(deviation, flip_index)) / 2
    sym = deviation - anti
    centred = mean - mean.mean(axis=0)
    yaw_mode = _leading_modes(anti, 1)[0]
    midline = np.abs(centred[:, 0]) <= np.quantile(np.abs(centred[:, 0]), 0.2)
    if yaw_mode[midline, 0].mean() < 0:
        yaw_mode = -yaw_mode
    stretch = np.zeros_like(centred)
    stretch[:, 1] = centred[:, 1]
    stretch /= np.linalg.norm(stretch)
    modes = _leading_modes(sym, 3)
    pitch_mode = max(modes, key=lambda m: abs((m * stretch).sum()))
    if (pitch_mode * stretch).sum() < 0:
        pitch_mode = -pitch_mode
    spread = np.sqrt((deviation ** 2).sum(axis=2).mean(axis=0))
    return PoseEstimate(result.roll, _standardised(anti, yaw_mode), _standardised(sym, pitch_mode),
                        result.disparity, mean, spread)


def _leading_modes(fields: np.ndarray, count: int) -> list[np.ndarray]:
    flat = fields.reshape(len(fields), -1)
    _, _, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    return [v.reshape(fields.shape[1:]) for v in vt[:count]]


def _standardised(fields: np.ndarray, mode: np.ndarray) -> np.ndarray:
    scores = np.einsum("nki,ki->n", fields, mode)
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
