"""A Gaussian shape prior on a model's points: what the rest of a face says about each point.

A model's K points for one face, x, are taken as a plausible face s plus independent errors:
x = s + e, with s ~ N(mean, Sigma) in the frame of the training faces' Procrustes mean (each
face's position, size and roll removed by its least-squares similarity to that mean), and
e ~ N(0, diag(v)), v each coordinate's error variance, measured on training faces the model
predicted. The output is the posterior mean of s, taken back to the face's own frame:

    s = mean + Sigma (Sigma + diag(v))^-1 (x - mean)

(a Wiener filter: one fixed 2K x 2K matrix). Points the model places with little error stay
nearly where it put them; noisy ones (the jaw's) move toward where the rest of the face puts
them. On the 300-W validation split this takes accurate-cpu from 3.77, 3.78, 3.74% to 3.69,
3.69, 3.66% NME (seeds 0-2), v from the model's own training faces, nothing fitted on
validation (BENCHMARKS.md).

Sigma is the training faces' covariance shrunk toward a multiple of the identity by Ledoit and
Wolf's rule (scikit-learn), so that with fewer faces than coordinates (971 points, 1,942
coordinates) no direction gets zero variance and no prediction is forced into the few faces'
span. Stored in the checkpoint (`to_dict`) as the mean, Sigma's leading modes (at most
MAX_MODES) and one variance for all other directions, and v: small even at 971 points.
Schemes of more than MAX_POINTS points get no prior (the matrix would not be small). At 971
points a face costs 1,942^2 multiply-adds; at 68 points 0.012 ms a face in a batch, 0.06 ms alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from densemarks.core.shapes import BLOCK, fit_rows, generalized_procrustes, similarity_matrices

MAX_MODES = 256  # leading modes of Sigma kept; the rest as one variance
MAX_POINTS = 1024  # more points than this: no prior (its matrix is (2K)^2)


@dataclass(frozen=True)
class ShapePrior:
    """mean (K, 2) the Procrustes mean of the training faces (in its pixels); modes (M, 2K) and
    variances (M,) Sigma's leading eigenvectors and eigenvalues; rest: the mean eigenvalue of
    the other directions; noise (2K,) the model's error variance per coordinate (x0, y0, x1, ...),
    in the mean's frame."""

    mean: np.ndarray
    modes: np.ndarray
    variances: np.ndarray
    rest: float
    noise: np.ndarray

    @classmethod
    def fit(cls, truth: np.ndarray, predicted: np.ndarray, predicted_truth: np.ndarray) -> "ShapePrior":
        """truth (N, K, 2): the training faces' labels (a fixed sample of `shapes.FIT_FACES` at
        most); predicted (M, K, 2): the model's points for M of them, predicted_truth their labels.
        Any pixel frame, the same for all three."""
        from sklearn.covariance import ledoit_wolf_shrinkage  # only training needs scikit-learn (0.5 s to import)

        truth = np.asarray(truth[fit_rows(len(truth))], dtype=np.float64)  # a memory map stays on disk
        mean, aligned = generalized_procrustes(truth)
        centred = aligned.aligned.reshape(len(truth), -1) - mean.reshape(1, -1)
        n, dims = centred.shape
        # Ledoit-Wolf: the sample covariance shrunk toward a multiple of the identity, so that
        # directions few faces vary in (at 971 points, more dimensions than faces) keep some variance
        shrink = ledoit_wolf_shrinkage(centred, assume_centered=True)
        level = (centred ** 2).sum() / n / dims  # the identity's multiple: the mean variance
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)  # Sigma's eigenvectors, no (2K)^2 matrix
        eigen = singular ** 2 / n
        kept = min(MAX_MODES, len(eigen))
        rest = (1 - shrink) * eigen[kept:].sum() / max(dims - kept, 1) + shrink * level
        variances = (1 - shrink) * eigen[:kept] + shrink * level
        matrices = similarity_matrices(predicted, mean)  # each prediction's frame, as in `apply`
        errors = (_to(matrices, predicted) - _to(matrices, predicted_truth)).reshape(len(predicted), -1)
        noise = np.maximum((errors ** 2).mean(axis=0), 1e-12)
        return cls(mean, vt[:kept], variances, float(rest), noise)

    @cached_property
    def gain(self) -> np.ndarray:
        """Sigma (Sigma + diag(noise))^-1, (2K, 2K) float64, computed at the first use."""
        modes = np.asarray(self.modes, dtype=np.float64)
        # The remaining directions (orthogonal to the kept modes) share `rest`.
        sigma = modes.T @ np.diag(np.asarray(self.variances, dtype=np.float64) - self.rest) @ modes
        sigma += self.rest * np.eye(modes.shape[1])
        return np.linalg.solve(sigma + np.diag(self.noise), sigma).T  # both symmetric

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points (N, K, 2) or (K, 2), any pixel frame -> the same shape, float32: each face's
        posterior mean, in its own frame (non-finite faces are returned unchanged). BLOCK faces
        at a time: 393,930 faces of 971 points take no more memory than 8,192."""
        points = np.asarray(points)
        single = points.ndim == 2
        points = points.reshape(-1, *self.mean.shape)
        out = np.empty(points.shape, np.float32)
        for start in range(0, len(points), BLOCK):
            out[start:start + BLOCK] = self._apply(points[start:start + BLOCK].astype(np.float64))
        return out[0] if single else out

    def _apply(self, x: np.ndarray) -> np.ndarray:
        finite = np.isfinite(x).all(axis=(1, 2))
        out = x.copy()
        if finite.any():
            matrices = similarity_matrices(x[finite], self.mean)
            deviation = _to(matrices, x[finite]).reshape(finite.sum(), -1) - self.mean.reshape(1, -1)
            posterior = (self.mean.reshape(1, -1) + deviation @ self.gain.T).reshape(-1, *self.mean.shape)
            out[finite] = _to(np.linalg.inv(matrices), posterior)
        return out

    def to_dict(self) -> dict:
        """Tensors and numbers only (checkpoints load with weights_only=True)."""
        return {"mean": torch.from_numpy(np.asarray(self.mean, np.float64)),
                "modes": torch.from_numpy(np.asarray(self.modes, np.float32)),
                "variances": torch.from_numpy(np.asarray(self.variances, np.float64)),
                "rest": float(self.rest), "noise": torch.from_numpy(np.asarray(self.noise, np.float64))}

    @classmethod
    def from_dict(cls, d: dict, num_points: int) -> "ShapePrior":
        """ValueError when the stored arrays do not fit together or with num_points."""
        prior = cls(*(np.asarray(torch.as_tensor(d[k]), dtype=np.float64) for k in ("mean", "modes", "variances")),
                    float(d["rest"]), np.asarray(torch.as_tensor(d["noise"]), dtype=np.float64))
        n = 2 * num_points
        if (prior.mean.shape != (num_points, 2) or prior.modes.ndim != 2 or prior.modes.shape[1] != n
                or prior.variances.shape != (len(prior.modes),) or prior.noise.shape != (n,)):
            raise ValueError(f"shape prior: mean {prior.mean.shape}, modes {prior.modes.shape}, variances "
                             f"{prior.variances.shape}, noise {prior.noise.shape} for {num_points} points")
        arrays = (prior.mean, prior.modes, prior.variances, prior.noise)
        if not (all(np.isfinite(a).all() for a in arrays) and np.isfinite(prior.rest)
                and (prior.noise > 0).all() and prior.rest >= 0 and (prior.variances >= 0).all()):
            raise ValueError("shape prior: non-finite or negative numbers")
        return prior


def _to(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, K, 2) through (N, 3, 3) similarity matrices."""
    return np.einsum("nij,nkj->nki", matrices[:, :2, :2], points) + matrices[:, None, :2, 2]


__all__ = ["MAX_POINTS", "ShapePrior"]
