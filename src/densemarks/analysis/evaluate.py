"""Evaluate prediction files against the truth: alignment by file name, checks, a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from densemarks.data.csvio import iter_aligned, read_landmarks, read_test_points, rows_for
from densemarks.core.errors import DataError
from densemarks.analysis.metrics import Metrics, MetricSums, check_norm_distances, per_face_nme
from densemarks.analysis.viz import comparison_grid
from densemarks.data.scheme import LandmarkScheme, known_scheme, read_scheme_file


def find_scheme(answers: Path, num_points: int, scheme_file: Path | None = None) -> LandmarkScheme:
    """The scheme for metrics: a given file, else scheme.json beside the answers or in the
    sibling train/ folder, else the known scheme for the point count (NME needs its pair)."""
    if scheme_file is not None and not Path(scheme_file).is_file():
        raise DataError(scheme_file, "scheme file not found" if not Path(scheme_file).exists() else "not a file")
    candidates = [scheme_file] if scheme_file else [answers.parent / "scheme.json",
                                                     answers.parent.parent / "train" / "scheme.json"]
    for path in candidates:
        scheme = read_scheme_file(Path(path), num_points)
        if scheme is not None:
            return scheme
    return known_scheme(num_points)


def evaluate_files(predictions: list[Path], answers: Path, points: Path | None = None,
                   scheme_file: Path | None = None) -> dict[Path, Metrics]:
    """Metrics of each predictions file against the answers (of the faces in `points`, the
    test_points.csv, when given, on its requested points). The answers are held in memory; each
    predictions file streams through, so its size does not matter."""
    truth = read_landmarks(answers, cache=False)
    scheme = find_scheme(answers, truth.num_points, scheme_file)
    check_norm_distances(answers, truth.file_names, truth.points, scheme.norm_points)
    names, truth_rows, requested = truth.file_names, np.arange(len(truth)), None
    if points is not None:
        tp = read_test_points(points, truth.num_points)
        names, requested = tp.file_names, tp.indices
        truth_rows = rows_for(truth.file_names, names, answers, "answer", points)
    results = {}
    for path in predictions:
        total = MetricSums(scheme)
        for at, pred in iter_aligned(path, names, truth.num_points, "prediction"):
            total.add(pred, truth.points[truth_rows[at]], None if requested is None else requested[at])
        results[path] = total.metrics()
    return results


def draw_evaluation(predictions: Path, answers: Path, out: Path, images: Path | None = None,
                    scheme_file: Path | None = None, count: int = 6) -> float:
    """Save `out`: the first `count` faces and the worst one, truth beside prediction, regions as
    lines, each captioned with its NME (mean point error in pixels without an NME pair).
    Images from `images` (default: images/ beside the answers). Returns the worst error."""
    truth = read_landmarks(answers, cache=False)
    scheme = find_scheme(answers, truth.num_points, scheme_file)
    images = Path(images) if images is not None else Path(answers).parent / "images"

    def error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        if scheme.norm_points is not None:
            return per_face_nme(pred, true, scheme.norm_points)
        return np.linalg.norm(pred - true, axis=2).mean(axis=1)

    unit = "%" if scheme.norm_points is not None else " px"
    shown, worst = [], None
    for at, pred in iter_aligned(predictions, truth.file_names, truth.num_points, "prediction"):
        true = np.asarray(truth.points[at], np.float64)
        errors = error(np.asarray(pred, np.float64), true)
        for i in np.flatnonzero(at < count):
            shown.append((int(at[i]), (str(truth.file_names[at[i]]), true[i], pred[i], f"NME {errors[i]:.1f}{unit}")))
        j = int(np.argmax(errors))
        if worst is None or errors[j] > worst[0]:
            worst = (float(errors[j]), (str(truth.file_names[at[j]]), true[j], pred[j], f"worst: {errors[j]:.1f}{unit}"))
    comparison_grid(images, [face for _, face in sorted(shown, key=lambda s: s[0])], scheme, out, worst=worst[1])
    return worst[0]


def metrics_table(results: dict[Path, Metrics]) -> Table:
    table = Table(title="evaluation")
    table.add_column("metric")
    for path in results:
        table.add_column(Path(path).name, justify="right")

    def row(label, getter, fmt):
        values = [getter(m) for m in results.values()]
        table.add_row(label, *["-" if v is None else fmt.format(v) for v in values])

    row("faces", lambda m: m.faces, "{}")
    row("competition score (coordinate MSE, px^2)", lambda m: m.competition_score, "{:.2f}")
    row("squared-distance score (2x)", lambda m: m.squared_distance_score, "{:.2f}")
    row("MSE over all points (px^2)", lambda m: m.full_mse, "{:.2f}")
    row("NME (%)", lambda m: m.nme, "{:.3f}")
    row("failure rate, NME > 10% (%)", lambda m: m.failure_rate, "{:.1f}")
    regions = next(iter(results.values())).region_nme
    for name in regions:
        row(f"  NME {name} (%)", lambda m, n=name: m.region_nme.get(n), "{:.3f}")
    return table
