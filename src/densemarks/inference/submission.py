"""The Kaggle submission: the requested points of each test face, rounded, in test_points.csv
order, checked for what Kaggle would reject before it is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from densemarks.core.errors import DataError
from densemarks.data.csvio import RequestedPoints, iter_aligned, landmark_count, read_test_points, write_table
from densemarks.core.errors import MAX_COORDINATE as MAX_PIXEL  # far below what an int64 (or Kaggle) holds


def submission_table(predictions_csv: str | Path, test_points_csv: str | Path) -> pa.Table:
    """The Kaggle file as a table: `file_name,Point_M0_X,Point_M0_Y,...`, one row per row of
    test_points.csv in its order, the k-th pair being the k-th requested point, rounded."""
    num_points = landmark_count(predictions_csv)
    requested = read_test_points(test_points_csv, 1 << 30)
    if requested.indices.max() >= num_points:
        raise DataError(predictions_csv, f"holds {num_points} points per face, but {test_points_csv} requests point "
                                         f"{int(requested.indices.max())}: predictions of another model or dataset?")
    points = np.empty((*requested.indices.shape, 2), np.float32)  # (N, M, 2)
    for at, block in iter_aligned(predictions_csv, requested.file_names, num_points, "prediction",
                                  requested_in=test_points_csv):
        chosen = block[np.arange(len(at))[:, None], requested.indices[at]]
        too_large = np.abs(chosen) > MAX_PIXEL
        if too_large.any():
            row = int(np.argwhere(too_large)[0][0])
            raise DataError(predictions_csv, f"{requested.file_names[at[row]]} has a coordinate of "
                                             f"{float(np.abs(chosen[row]).max()):.3g} px, beyond the submission's "
                                             f"+-{MAX_PIXEL:.0e} px")
        points[at] = chosen
    values = np.rint(points.reshape(len(points), -1)).astype(np.int64)
    m = requested.indices.shape[1]
    columns = ["file_name"] + [f"Point_M{k}_{axis}" for k in range(m) for axis in ("X", "Y")]
    arrays = [pa.array(requested.file_names.tolist())] + [pa.array(values[:, j]) for j in range(values.shape[1])]
    return pa.Table.from_arrays(arrays, names=columns)


def write_submission(predictions_csv: str | Path, test_points_csv: str | Path, out: str | Path) -> int:
    table = submission_table(predictions_csv, test_points_csv)
    check_submission_table(table, read_test_points(test_points_csv, 1 << 30))  # read again: independent
    write_table(out, table, delimiter=",")
    return table.num_rows


def check_submission_table(table: pa.Table, requested: RequestedPoints) -> None:
    """Header, row count and order, integer finite values: what Kaggle would reject."""
    m = requested.indices.shape[1]
    expected = ["file_name"] + [f"Point_M{k}_{axis}" for k in range(m) for axis in ("X", "Y")]
    if table.column_names != expected:
        raise DataError(None, "submission header does not match the requested point count")
    if table.num_rows != len(requested) or table.column(0).to_pylist() != requested.file_names.tolist():
        raise DataError(None, "submission rows differ from test_points.csv in number or order")
    for column in table.columns[1:]:
        if column.null_count or not pa.types.is_integer(column.type):
            raise DataError(None, "submission values must be integers")

