"""Prediction on a test folder, the mean-shape baseline, and the Kaggle submission file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from densemarks import distributed
from densemarks.augment import LandmarkTransform, to_original
from densemarks.csvio import (RequestedPoints, read_landmarks, read_test_points, rows_for,
                              write_table)
from densemarks.dataset import LandmarkDataset, list_test_images
from densemarks.errors import DataError
from densemarks.train import (eval_config, load_checkpoint, make_loader, model_from_checkpoint,
                              predict_points)
from densemarks.tta import parse_tta, view_transform


def predict_folder(checkpoint: str | Path, data: str | Path, *, tta: str = "none",
                   batch_size: int = 32, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(file names, points (N, K, 2) in original-image pixels) for a test folder: the files of
    its test_points.csv in that order when present, else every image in images/. tta: a
    `tta.TTA_MODES` name. Under torchrun each rank predicts every world-th image and all ranks
    return the whole result."""
    mode = parse_tta(tta)
    ctx = distributed.setup()
    device = ctx.device
    model, config, scheme = model_from_checkpoint(load_checkpoint(checkpoint, device), device)
    data = Path(data)
    names, _ = list_test_images(data, scheme.num_points)
    transform = view_transform(eval_config(config), scheme.flip_index, mode)
    dataset = LandmarkDataset(data / "images", names, None, transform)
    loader = make_loader(dataset, batch_size, workers, False, 0, 0, device, ctx=ctx, pad=False)
    return names, predict_points(model, loader, config, scheme, device, mode.flip, ctx=ctx)


def mean_shape_baseline(train_points: np.ndarray, train_names: np.ndarray, train_images: Path,
                        test_names: np.ndarray, test_images: Path, transform: LandmarkTransform) -> np.ndarray:
    """Every test face gets the mean training shape, placed in the model's input frame (the
    training framing's mean shape) and mapped back through the test image's own frame. The
    reference any model must beat."""
    from densemarks.augment import sample_matrix
    from densemarks.framing import frame_training_faces
    from densemarks.images import load_image
    mean = frame_training_faces(train_images, train_names, train_points, transform.config).mean_shape
    out = [to_original(mean, sample_matrix(load_image(test_images / name), transform.config, None)[0])
           for name in test_names]
    return np.asarray(out, dtype=np.float32)


def submission_table(predictions_csv: str | Path, test_points_csv: str | Path) -> pa.Table:
    """The Kaggle file as a table: `file_name,Point_M0_X,Point_M0_Y,...`, one row per row of
    test_points.csv in its order, the k-th pair being the k-th requested point, rounded."""
    predictions = read_landmarks(predictions_csv, cache=False)
    requested = read_test_points(test_points_csv, predictions.num_points)
    rows = rows_for(predictions.file_names, requested.file_names, predictions_csv, "prediction",
                    requested_in=test_points_csv)
    points = np.asarray(predictions.points)[rows[:, None], requested.indices]  # (N, M, 2)
    values = np.rint(points.reshape(len(rows), -1)).astype(np.int64)
    m = requested.indices.shape[1]
    columns = ["file_name"] + [f"Point_M{k}_{axis}" for k in range(m) for axis in ("X", "Y")]
    arrays = [pa.array(requested.file_names.tolist())] + [pa.array(values[:, j]) for j in range(values.shape[1])]
    return pa.Table.from_arrays(arrays, names=columns)


def write_submission(predictions_csv: str | Path, test_points_csv: str | Path, out: str | Path) -> int:
    table = submission_table(predictions_csv, test_points_csv)
    check_submission_table(table, read_test_points(test_points_csv, 1 << 30))
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

