"""Landmark metrics as pure functions of predicted and true points in original-image pixels.

competition score: mean over images of the squared error of each requested coordinate (x and y
taken as separate values), unnormalised, so large images weigh more. Without requested points
it is taken over all points, which is its expected value for randomly requested ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from densemarks.core.errors import DataError

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


def check_norm_distances(path, names: np.ndarray, truth: np.ndarray, norm_points: tuple[int, int] | None,
                         rows: np.ndarray | None = None) -> None:
    """NME divides by the distance between the two normalising points of each true face: a face
    whose two points coincide is an error in the truth (line = its row in the file + 2), not an
    infinite NME. rows: the file rows of `names` and `truth` when they are a subset."""
    if norm_points is None:
        return
    a, b = norm_points
    block_faces = 8192  # faces at a time: the truth may be a memory map of any size
    for start in range(0, len(truth), block_faces):
        pair = np.asarray(truth[start:start + block_faces][:, [a, b]], np.float64)
        zero = np.flatnonzero(np.linalg.norm(pair[:, 0] - pair[:, 1], axis=1) < 1e-6)
        if zero.size:
            face = start + int(zero[0])
            line = (face if rows is None else int(rows[face])) + 2
            raise DataError(path, f"{names[face]}: normalising points {a} and {b} coincide, so NME is undefined",
                            line=line)


def competition_score(pred: np.ndarray, truth: np.ndarray, requested: np.ndarray | None = None) -> float:
    """Mean over faces of the mean squared coordinate error of the requested points."""
    if requested is not None:
        rows = np.arange(len(pred))[:, None]
        pred, truth = pred[rows, requested], truth[rows, requested]
    return float(((pred - truth) ** 2).mean(axis=(1, 2)).mean())


def evaluate_points(pred: np.ndarray, truth: np.ndarray, scheme: LandmarkScheme,
                    requested: np.ndarray | None = None) -> Metrics:
    """All metrics for (N, K, 2) predictions against the truth, in original-image pixels."""
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"predictions {np.shape(pred)} and truth {np.shape(truth)} differ in shape")
    total = MetricSums(scheme)
    total.add(pred, truth, requested)
    return total.metrics()


class MetricSums:
    """Every metric is a mean over faces: sums of per-face values, added block by block (in
    float64, ROWS faces at a time), so that faces can stream from a file of any size."""

    ROWS = 8192

    def __init__(self, scheme: LandmarkScheme):
        self.scheme = scheme
        self.faces = 0
        self.score = self.full = self.nme = self.failures = 0.0
        self.regions = {region.name: 0.0 for region in scheme.regions} if scheme.norm_points else {}

    def add(self, pred: np.ndarray, truth: np.ndarray, requested: np.ndarray | None = None) -> None:
        for start in range(0, len(pred), self.ROWS):
            rows = slice(start, start + self.ROWS)
            self._add(pred[rows], truth[rows], None if requested is None else requested[rows])

    def _add(self, pred: np.ndarray, truth: np.ndarray, requested: np.ndarray | None) -> None:
        pred = np.asarray(pred, dtype=np.float64)
        truth = np.asarray(truth, dtype=np.float64)
        n = len(pred)
        self.faces += n
        self.full += competition_score(pred, truth) * n if n else 0.0
        self.score += competition_score(pred, truth, requested) * n if n else 0.0
        if self.scheme.norm_points is None or not n:
            return
        a, b = self.scheme.norm_points
        norm = np.maximum(np.linalg.norm(truth[:, a] - truth[:, b], axis=1), 1e-9)
        distance = np.linalg.norm(pred - truth, axis=2)  # (N, K), once for all regions
        faces = distance.mean(axis=1) / norm * 100
        self.nme += float(faces.sum())
        self.failures += float((faces > FAILURE_NME).sum())
        for region in self.scheme.regions:
            self.regions[region.name] += float((distance[:, region.start:region.stop].mean(axis=1) / norm).sum() * 100)

    def metrics(self) -> Metrics:
        n = max(self.faces, 1)
        has_nme = self.scheme.norm_points is not None
        return Metrics(
            faces=self.faces, competition_score=self.score / n, squared_distance_score=2 * self.score / n,
            full_mse=self.full / n, nme=self.nme / n if has_nme else None,
            failure_rate=self.failures / n * 100 if has_nme else None,
            region_nme={name: total / n for name, total in self.regions.items()},
        )
