"""Ensembles of prediction files: a weighted average of the points, with weights given or
fitted on validation predictions (non-negative, summing to one; optionally per region).

Fitting minimises the coordinate MSE (the competition score) of the weighted average:
w^T G w with G the Gram matrix of the members' errors, a small quadratic programme solved
with scipy's SLSQP on the simplex.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from densemarks.data.csvio import LandmarkTable, iter_aligned, read_landmarks, rows_for, write_landmarks
from densemarks.core.errors import DataError
from densemarks.data.scheme import LandmarkScheme
from densemarks.analysis.evaluate import find_scheme
from densemarks.analysis.metrics import Metrics, evaluate_points


@dataclass(frozen=True)
class EnsembleWeights:
    """weights (M,) for every point, and optionally (M,) per region name (overriding them on
    the region's points)."""

    weights: np.ndarray
    region_weights: dict[str, np.ndarray]

    def per_point(self, num_points: int, scheme: LandmarkScheme | None) -> np.ndarray:
        """(M, K) weight of each member at each point."""
        out = np.repeat(self.weights[:, None], num_points, axis=1)
        for region in (scheme.regions if scheme else ()):
            if region.name in self.region_weights:
                out[:, region.start:region.stop] = self.region_weights[region.name][:, None]
        return out


def load_members(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(file names in the first file's order, points (M, N, K, 2) float32). Every file must
    cover exactly the same faces with the same number of points."""
    first = _first(paths)
    members = np.empty((len(paths), *first.points.shape), np.float32)
    members[0] = first.points
    for m, path in enumerate(paths[1:], start=1):
        for at, points in _member(path, first, paths[0]):
            members[m, at] = points
    return first.file_names, members


def _first(paths: list[Path]) -> LandmarkTable:
    if not paths:
        raise DataError(None, "no prediction files given")
    return read_landmarks(paths[0], cache=False)


def _member(path: Path, first: LandmarkTable, first_path: Path):
    return iter_aligned(path, first.file_names, first.num_points, "prediction", requested_in=first_path,
                        same_faces_as=first_path, against=f"{first_path} has")


def average_files(paths: list[Path], weights: "EnsembleWeights", scheme: LandmarkScheme | None) -> tuple[np.ndarray, np.ndarray]:
    """(names, the weighted average (N, K, 2) float32) of prediction files, the first in
    memory and the others streamed into it: memory is one table, whatever the number of files."""
    first = _first(paths)
    per_point = weights.per_point(first.num_points, scheme).astype(np.float32)[:, :, None]  # (M, K, 1)
    total = first.points
    total *= per_point[0]
    for m, path in enumerate(paths[1:], start=1):
        for at, points in _member(path, first, paths[0]):
            total[at] += points * per_point[m]
    return first.file_names, total


def parse_weights(text: str, count: int) -> np.ndarray:
    """'1,0,2' -> normalised weights; they must be non-negative, one per file, not all zero."""
    try:
        values = np.asarray([float(v) for v in text.split(",")])
    except ValueError:
        raise DataError(None, f"--weights {text!r}: give auto or comma-separated numbers") from None
    if len(values) != count:
        raise DataError(None, f"--weights has {len(values)} values for {count} prediction files")
    total = values.sum()  # not finite when a value is not, or the values overflow together
    if (values < 0).any() or not np.isfinite(total) or total <= 0:
        raise DataError(None, f"--weights {text!r}: need non-negative numbers, not all zero")
    return values / total


def fit_simplex_weights(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Weights w >= 0, sum 1, minimising the MSE of sum_m w_m members[m] against truth.
    members (M, N, ..., 2), truth (N, ..., 2)."""
    m = len(members)
    gram = np.zeros((m, m))
    for start in range(0, members.shape[1], 4096):  # float64 a block of faces at a time
        errors = (members[:, start:start + 4096].astype(np.float64) - truth[None, start:start + 4096]).reshape(m, -1)
        gram += errors @ errors.T
    gram /= max(members[0].size, 1)
    result = minimize(lambda w: w @ gram @ w, np.full(m, 1 / m), jac=lambda w: 2 * gram @ w,
                      bounds=[(0, 1)] * m, constraints=({"type": "eq", "fun": lambda w: w.sum() - 1},),
                      method="SLSQP", options={"ftol": 1e-12, "maxiter": 200})
    w = np.clip(result.x, 0, None)
    return w / w.sum()


def fit_weights(members: np.ndarray, truth: np.ndarray, scheme: LandmarkScheme | None = None,
                per_region: bool = False) -> EnsembleWeights:
    weights = fit_simplex_weights(members, truth)
    regions = {}
    if per_region and scheme is not None:
        for region in scheme.regions:
            regions[region.name] = fit_simplex_weights(members[:, :, region.start:region.stop],
                                                       truth[:, region.start:region.stop])
    return EnsembleWeights(weights, regions)


def combine(members: np.ndarray, weights: EnsembleWeights, scheme: LandmarkScheme | None = None) -> np.ndarray:
    """The weighted average (N, K, 2) of members (M, N, K, 2)."""
    per_point = weights.per_point(members.shape[2], scheme)  # (M, K)
    return np.einsum("mnkc,mk->nkc", members, per_point).astype(np.float32)


@dataclass(frozen=True)
class ValidationFit:
    """Weights fitted on validation predictions, the scheme used, and the metrics of each
    member and of the ensemble on those same faces (optimistic for the ensemble)."""

    weights: EnsembleWeights
    scheme: LandmarkScheme
    members: list[Metrics]
    ensemble: Metrics


def fit_on_validation(val: list[Path], answers: Path, scheme_file: Path | None = None,
                      per_region: bool = False) -> ValidationFit:
    """Fit weights on the models' validation predictions (files in the same order as the
    models) against the truth in `answers` (a landmarks.csv covering those faces)."""
    names, members = load_members(val)
    truth_table = read_landmarks(answers)
    if truth_table.num_points != members.shape[2]:
        raise DataError(answers, f"{truth_table.num_points} points per face, the predictions have {members.shape[2]}")
    rows = rows_for(truth_table.file_names, names, answers, "answer", val[0])
    truth = np.asarray(truth_table.points)[rows]
    scheme = find_scheme(answers, truth.shape[1], scheme_file)
    weights = fit_weights(members, truth, scheme, per_region)
    return ValidationFit(weights, scheme, [evaluate_points(m, truth, scheme) for m in members],
                         evaluate_points(combine(members, weights, scheme), truth, scheme))


def ensemble_files(predictions: list[Path], out: Path, weights: str = "equal", answers: Path | None = None,
                   val: list[Path] | None = None, per_region: bool = False,
                   scheme_file: Path | None = None) -> tuple[EnsembleWeights, ValidationFit | None, int]:
    """`densemarks ensemble`: write the weighted average of prediction files (same faces) to
    `out`. weights: "equal", "w1,w2,..." or "auto" (fitted on `val`, the same models'
    validation predictions, default the predictions themselves, against `answers`). Returns the
    weights, the fit (auto only) and the number of faces."""
    fit, scheme = None, None
    if weights == "auto":
        if answers is None:
            raise DataError(None, "--weights auto needs --answers (the truth of the validation predictions)")
        val = val or predictions
        if len(val) != len(predictions):
            raise DataError(None, f"--val has {len(val)} files for {len(predictions)} prediction files")
        fit = fit_on_validation(val, answers, scheme_file, per_region)
        chosen, scheme = fit.weights, fit.scheme
    else:
        count = len(predictions)
        chosen = EnsembleWeights(np.full(count, 1 / count) if weights == "equal" else parse_weights(weights, count), {})
    names, average = average_files(predictions, chosen, scheme)
    write_landmarks(out, names, average)
    return chosen, fit, len(names)
