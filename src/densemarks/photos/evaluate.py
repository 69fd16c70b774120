"""The photo pipeline measured on annotated photos (a folder with `images/` and `faces.csv`,
several annotated faces per photo, not necessarily every face).

An annotated face is found when a detection matches it: detections and faces are paired one to
one (Hungarian assignment, scipy) by the overlap (IoU) of the face's landmark bounding box with
the box where the detector's prior puts the landmarks, at least `min_iou`. Detections of faces
nobody annotated are ignored. NME is over the found faces; the failure rate counts a missed
face as a failure, as a user who gets no points would.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from densemarks.data.csvio import read_photo_faces
from densemarks.core.errors import DataError
from densemarks.data.dataset import check_images_exist
from densemarks.data.images import load_image
from densemarks.analysis.metrics import check_norm_distances, per_face_nme
from densemarks.analysis.viz import draw_faces, save_rgb
from densemarks.core.fileio import atomic_path


@dataclass(frozen=True)
class PhotoReport:
    photos: int
    faces: int
    found: int
    recall: float  # found / faces
    nme: float  # percent, mean over found faces
    nme_median: float
    failure_rate: float  # percent of all annotated faces: missed, or NME > 10%
    ms_per_photo: float  # median, detection + landmarks (decoding the file excluded)
    ms_per_photo_mean: float
    per_face: list[dict]

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "per_face"}


def box_of(points: np.ndarray) -> np.ndarray:
    """(..., K, 2) -> (..., 4) bounding boxes x0, y0, x1, y1."""
    return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) -> (N, M) intersection over union."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def match(truth_boxes: np.ndarray, detected_boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs (truth row, detection row) maximising total IoU, each at least min_iou."""
    if len(truth_boxes) == 0 or len(detected_boxes) == 0:
        return []
    overlap = iou(truth_boxes, detected_boxes)
    rows, cols = linear_sum_assignment(-overlap)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if overlap[r, c] >= min_iou]


def evaluate_photos(predictor, folder: str | Path, *, min_iou: float = 0.4, limit: int | None = None,
                    norm_points: tuple[int, int] | None = None, quiet: bool = False,
                    on_photo=None) -> PhotoReport:
    """Run `predictor` (photos.Predictor) on every annotated photo of `folder`.
    on_photo(name, rgb, faces, truth points): called per photo (for drawing)."""
    folder = Path(folder)
    table = read_photo_faces(folder / "faces.csv")
    k = predictor.framing.mean_shape.shape[0]
    if table.points.shape[1] != k:
        raise DataError(folder / "faces.csv", f"{table.points.shape[1]} points per face, the model predicts {k}")
    norm_points = norm_points or predictor.norm_points
    if norm_points is None:
        raise DataError(None, "the model's scheme names no normalising points for NME")
    names = list(dict.fromkeys(table.file_names.tolist()))[:limit]
    check_images_exist(folder / "faces.csv", folder / "images", np.asarray(names))  # names inside images/ only
    check_norm_distances(folder / "faces.csv", table.file_names, table.points, norm_points)
    per_face, times = [], []
    for name in tqdm(names, desc="photos", unit="photo", disable=quiet):
        image = load_image(folder / "images" / name)
        rows = np.flatnonzero(table.file_names == name)
        truth = table.points[rows]
        started = time.perf_counter()
        faces = predictor(image)
        times.append(time.perf_counter() - started)
        starts = predictor.framing.shape_in_box(np.stack([f.box for f in faces]), predictor.detector.box_prior) \
            if faces else np.zeros((0, k, 2))
        pairs = dict(match(box_of(truth), box_of(starts), min_iou))
        for i, row in enumerate(rows):
            record = {"file_name": name, "face": int(table.faces[row]), "found": i in pairs, "nme": float("nan")}
            if i in pairs:
                record["nme"] = float(per_face_nme(faces[pairs[i]].points[None], truth[i][None], norm_points)[0])
                record["score"] = faces[pairs[i]].score
            per_face.append(record)
        if on_photo is not None:
            on_photo(name, image.pixels, faces, list(truth))
    found = np.array([r["found"] for r in per_face])
    nme = np.array([r["nme"] for r in per_face])
    failures = (~found) | (np.nan_to_num(nme, nan=np.inf) > 10)
    return PhotoReport(len(names), len(per_face), int(found.sum()), float(found.mean()),
                       float(np.nanmean(nme)) if found.any() else float("nan"),
                       float(np.nanmedian(nme)) if found.any() else float("nan"),
                       float(failures.mean() * 100), float(np.median(times) * 1000), float(np.mean(times) * 1000),
                       per_face)


def write_photo_report(report: PhotoReport, drawn: list[tuple], out: str | Path, count: int = 12) -> None:
    """out/per_face.csv, out/report.json and out/examples.png (the first `count` photos with
    the annotations in red, boxes and predicted points in yellow and green)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "per_face.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, ["file_name", "face", "found", "nme", "score"], delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(report.per_face)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report.summary(), indent=2))
    tiles = []
    for name, pixels, faces, truth in drawn[:count]:
        image = draw_faces(pixels, faces, truth)
        scale = 320 / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
        tile = np.zeros((320, 320, 3), np.uint8)
        tile[: image.shape[0], : image.shape[1]] = image
        tiles.append(tile)
    if tiles:
        while len(tiles) % 4:
            tiles.append(np.zeros_like(tiles[0]))
        save_rgb(out / "examples.png", np.vstack([np.hstack(tiles[r:r + 4]) for r in range(0, len(tiles), 4)]))
