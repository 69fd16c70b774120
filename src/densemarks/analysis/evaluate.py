"""Evaluate prediction files against the truth: alignment by file name, checks, a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from densemarks.data.csvio import iter_aligned, read_landmarks, read_test_points, rows_for
from densemarks.core.errors import DataError
from densemarks.analysis.metrics import Metrics, MetricSums
from densemarks.data.scheme import LandmarkScheme, known_scheme, read_scheme_file


def find_scheme(answers: Path, num_points: int, scheme_file: Path | None = None) -> LandmarkScheme:
    """The scheme for metrics: a given file, else scheme.json beside the answers or in the
    sibling train/ folder, else the known scheme for the point count (NME needs its pair)."""
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
