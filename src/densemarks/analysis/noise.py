"""The label-noise finder: training faces ranked by how likely their points are wrong.

Two signals, each turned into a robust z-score (distance from the median in units of
1.4826 MAD): the out-of-fold error of a model that never saw the face (when predictions are
given), and the residual of the face's shape after Procrustes alignment to the mean shape and
removal of the leading modes of shape variation (needs no model). The plain Procrustes
residual is reported too, but it mostly ranks turned heads, not wrong labels. The ranking
score is the mean of the z-scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from densemarks.data.csvio import iter_aligned, write_table
from densemarks.analysis.viz import prediction_grid
from densemarks.core.fileio import atomic_path
from densemarks.data.dataset import TrainingData, open_training_data
from densemarks.core.errors import DataError
from densemarks.analysis.metrics import per_face_nme
from densemarks.core.shapes import BLOCK, fit_rows, generalized_procrustes


@dataclass(frozen=True)
class NoiseRanking:
    """Faces from most to least suspicious. residual and shape_residual: see
    `procrustes_residuals`; oof_nme: % NME of the out-of-fold prediction (NaN without)."""

    file_names: np.ndarray
    rows: np.ndarray  # row in landmarks.csv of each ranked face
    score: np.ndarray
    residual: np.ndarray
    shape_residual: np.ndarray
    oof_nme: np.ndarray
    oof_points: np.ndarray | None  # (N, K, 2) the out-of-fold predictions, in landmarks.csv order (rows)


def robust_z(values: np.ndarray) -> np.ndarray:
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median))
    return (values - median) / max(mad, 1e-12)


def procrustes_residuals(points: np.ndarray, norm_points: tuple[int, int] | None,
                         explained: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(plain, shape-model) residuals per face, in % of the mean shape's normalising distance
    (or of its RMS radius without a pair). plain: mean point distance to the mean shape after
    alignment. shape-model: the same after also removing the leading principal modes that
    explain `explained` of the aligned shapes' variance (pose, expression; at most one mode per
    ten faces), as an active shape model would: what remains is what no plausible face
    explains. The modes are fitted again without the 10% least likely faces, twice, so that
    wrong labels do not become modes of their own."""
    mean, result = generalized_procrustes(points)
    if norm_points is not None:
        unit = np.linalg.norm(mean[norm_points[0]] - mean[norm_points[1]])
    else:
        unit = np.sqrt(((mean - mean.mean(axis=0)) ** 2).sum(axis=1).mean())
    unit = max(unit, 1e-12)

    def deviation(rows) -> np.ndarray:  # (n, 2K) float64
        return (result.aligned[rows].astype(np.float64) - mean).reshape(-1, mean.size)

    def mean_distance(flat: np.ndarray) -> np.ndarray:
        return np.linalg.norm(flat.reshape(len(flat), -1, 2), axis=2).mean(axis=1) / unit * 100

    flat = deviation(fit_rows(len(points)))  # the modes are fitted on at most FIT_FACES faces
    inliers = np.ones(len(flat), dtype=bool)
    for _ in range(3):  # trimmed PCA: wrong labels must not become modes of their own
        centre = flat[inliers].mean(axis=0)
        _, singular, vt = np.linalg.svd(flat[inliers] - centre, full_matrices=False)
        share = np.cumsum(singular ** 2) / max((singular ** 2).sum(), 1e-12)
        count = min(int(np.searchsorted(share, explained)) + 1, max(1, int(inliers.sum()) // 10))
        modes = vt[:count]
        scores = (flat - centre) @ modes.T
        rest = (flat - centre) - scores @ modes
        # How unlikely each face is under the model (scores in standard deviations plus the
        # residual in its typical size); the 10% least likely are left out of the next fit.
        off_model = (rest ** 2).sum(axis=1)
        unlikely = ((scores / np.maximum(scores[inliers].std(axis=0), 1e-12)) ** 2).sum(axis=1) \
            + off_model / max(off_model[inliers].mean(), 1e-12)
        inliers = unlikely <= np.quantile(unlikely, 0.9)
    plain, shape = np.empty(len(points)), np.empty(len(points))
    for start in range(0, len(points), BLOCK):  # every face against the last fit
        rows = slice(start, start + BLOCK)
        face = deviation(rows)
        plain[rows] = mean_distance(face)
        face -= centre
        shape[rows] = mean_distance(face - (face @ modes.T) @ modes)
    return plain, shape


def rank_faces(data: TrainingData, oof: Path | None = None) -> NoiseRanking:
    points = data.table.points  # float32, a memory map: never copied whole
    names = data.table.file_names
    residual, shape_residual = procrustes_residuals(points, data.scheme.norm_points)
    score = robust_z(shape_residual)
    oof_nme = np.full(len(names), np.nan)
    oof_points = None
    if oof is not None:
        norm = data.scheme.norm_points
        if norm is None:
            raise DataError(oof, "the scheme has no normalising pair; out-of-fold NME needs one")
        oof_points = np.empty(points.shape, np.float32)
        for at, block in iter_aligned(oof, names, data.scheme.num_points, "out-of-fold prediction",
                                      requested_in=data.csv_path, against="the data has"):
            oof_points[at] = block
        oof_nme = np.concatenate([per_face_nme(oof_points[s:s + 4096].astype(np.float64),
                                                np.asarray(points[s:s + 4096], np.float64), norm)
                                  for s in range(0, len(names), 4096)])
        score = (score + robust_z(oof_nme)) / 2
    order = np.argsort(-score, kind="stable")
    return NoiseRanking(names[order], order, score[order], residual[order], shape_residual[order], oof_nme[order],
                        oof_points)


def write_ranking(ranking: NoiseRanking, out: Path) -> None:
    table = pa.table({
        "file_name": pa.array(ranking.file_names.tolist()),
        "rank": pa.array(np.arange(1, len(ranking.rows) + 1)),
        "score": pa.array(np.round(ranking.score, 4)),
        "procrustes_residual": pa.array(np.round(ranking.residual, 4)),
        "shape_model_residual": pa.array(np.round(ranking.shape_residual, 4)),
        "oof_nme": pa.array(np.round(ranking.oof_nme, 4)),
    })
    write_table(out, table, delimiter=",")


def clean_report(data: str | Path, out: str | Path, oof: Path | None = None, top: float = 0.01,
                 gallery: int = 24) -> tuple[NoiseRanking, int]:
    """`densemarks clean`: rank the training faces of `data` and write OUT/ranked.csv,
    OUT/exclude.txt (the top share, for `train --exclude`) and OUT/worst.png (labels in green,
    out-of-fold predictions in red). Returns the ranking and the number of faces excluded."""
    training = open_training_data(data)
    ranking = rank_faces(training, oof)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_ranking(ranking, out / "ranked.csv")
    count = int(round(top * len(ranking.rows)))
    with atomic_path(out / "exclude.txt") as tmp:
        tmp.write_text("".join(f"{n}\n" for n in ranking.file_names[:count]))
    shown = ranking.rows[:gallery]
    predicted = None if ranking.oof_points is None else ranking.oof_points[shown]
    captions = [f"#{i + 1} {n[:18]} z={s:.1f}" for i, (n, s) in
                enumerate(zip(ranking.file_names[:gallery], ranking.score[:gallery]))]
    prediction_grid(training.images_dir, ranking.file_names[:gallery],
                    np.asarray(training.table.points)[shown], out / "worst.png", truth=predicted,
                    count=gallery, columns=6, captions=captions)
    return ranking, count
