"""Landmark metrics as pure functions of predicted and true points in original-image pixels.

competition score: mean over images of the squared error of each requested coordinate (x and y
taken as separate values), unnormalised, so large images weigh more. Without requested points
it is taken over all points, which is its expected value for randomly requested ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from densemarks.data.scheme import LandmarkScheme

FAILURE_NME = 10.0  # percent


@dataclass(frozen=True)
class Metrics:
    faces: int
    competition_score: float  # coordinate MSE of the requested (or all) points, pixels^2
    squared_distance_score: float  # the same as squared point distance: 2x the above
    full_mse: float  # coordinate MSE over all points, pixels^2
    nme: float | None  # mean over faces of mean point distance / normalising distance, percent
    failure_rate: float | None  # share of faces with NME above FAILURE_NME, percent
    region_nme: dict[str, float]  # NME restricted to each region of the scheme, percent

    def to_dict(self) -> dict:
        return asdict(self)


def per_face_nme(pred: np.ndarray, truth: np.ndarray, norm_points: tuple[int, int]) -> np.ndarray:
    """(N,) percent: mean point distance over the distance between the two normalising points."""
    a, b = norm_points
    norm = np.linalg.norm(truth[:, a] - truth[:, b], axis=1)
    return np.linalg.norm(pred - truth, axis=2).mean(axis=1) / np.maximum(norm, 1e-9) * 100


def competition_score(pred: np.ndarray, truth: np.ndarray, requested: np.ndarray | None = None) -> float:
    """Mean over faces of the mean squared coordinate error of the requested points."""
    if requested is not None:
        rows = np.arange(len(pred))[:, None]
        pred, truth = pred[rows, requested], truth[rows, requested]
    return float(((pred - truth) ** 2).mean(axis=(1, 2)).mean())


def evaluate_points(pred: np.ndarray, truth: np.ndarray, scheme: LandmarkScheme,
                    requested: np.ndarray | None = None) -> Metrics:
    """All metrics for (N, K, 2) predictions against the truth, in original-image pixels."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"predictions {pred.shape} and truth {truth.shape} differ in shape")
    score = competition_score(pred, truth, requested)
    nme = failure = None
    regions: dict[str, float] = {}
    if scheme.norm_points is not None:
        faces = per_face_nme(pred, truth, scheme.norm_points)
        nme, failure = float(faces.mean()), float((faces > FAILURE_NME).mean() * 100)
        a, b = scheme.norm_points
        norm = np.maximum(np.linalg.norm(truth[:, a] - truth[:, b], axis=1), 1e-9)
        distance = np.linalg.norm(pred - truth, axis=2)  # (N, K), once for all regions
        for region in scheme.regions:
            per_face = distance[:, region.start:region.stop].mean(axis=1) / norm
            regions[region.name] = float(per_face.mean() * 100)
    return Metrics(
        faces=len(pred), competition_score=score, squared_distance_score=2 * score,
        full_mse=competition_score(pred, truth), nme=nme, failure_rate=failure, region_nme=regions,
    )
