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
from tqdm import tqdm

from densemarks.data.csvio import read_photo_faces
from densemarks.core.boxes import box_of, match
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
    unreadable: list[str]  # 'photo: what is wrong' for photos that could not be read (their faces left out)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("per_face", "unreadable")} | \
            {"unreadable_photos": len(self.unreadable)}


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
    per_face, times, unreadable = [], [], []
    for name in tqdm(names, desc="photos", unit="photo", disable=quiet):
        try:
            image = load_image(folder / "images" / name)
        except DataError as exc:  # listed and left out, as `detect` does; the others still count
            unreadable.append(str(exc))
            if not quiet:
                tqdm.write(f"skipped: {exc}")
            continue
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
    if not per_face:
        raise DataError(folder / "images", f"none of the {len(names)} photos could be read: {unreadable[0]}")
    found = np.array([r["found"] for r in per_face])
    nme = np.array([r["nme"] for r in per_face])
    failures = (~found) | (np.nan_to_num(nme, nan=np.inf) > 10)
    return PhotoReport(len(names) - len(unreadable), len(per_face), int(found.sum()), float(found.mean()),
                       float(np.nanmean(nme)) if found.any() else float("nan"),
                       float(np.nanmedian(nme)) if found.any() else float("nan"),
                       float(failures.mean() * 100), float(np.median(times) * 1000), float(np.mean(times) * 1000),
                       per_face, unreadable)


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
