"""Predictions -> photos with faces, for the writers of other tools' formats.

Two kinds of prediction file are read:
- a landmarks.csv-layout CSV from `densemarks predict` (one face per image of a test folder).
  With the folder's sources.csv (written by `densemarks convert`) each crop's points go back
  to its photo's pixels and the faces of one photo are grouped again; without it every image
  is a photo with one face.
- the `.json` of `densemarks detect` (photos, each with boxes and points in photo pixels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from densemarks.core.errors import DataError
from densemarks.data.csvio import iter_landmarks
from densemarks.data.formats.base import FaceAnnotation, PhotoAnnotation, parse_points
from densemarks.data.formats.convert import read_sources, to_photo_pixels


def photos_from_predictions(predictions: str | Path, images: str | Path | None = None,
                            sources: str | Path | None = None) -> list[PhotoAnnotation]:
    predictions = Path(predictions)
    if predictions.suffix.lower() == ".json":
        return _photos_from_detect(predictions)
    images = Path(images) if images is not None else predictions.parent / "images"
    crops = read_sources(sources) if sources is not None else None
    by_photo: dict[Path, PhotoAnnotation] = {}
    for block in iter_landmarks(predictions):
        for row, (name, points) in enumerate(zip(block.file_names, np.asarray(block.points, np.float64))):
            if crops is None:
                by_photo[images / name] = PhotoAnnotation(images / name, [FaceAnnotation(points)], str(predictions))
                continue
            if name not in crops:
                raise DataError(sources, f"no row for {name!r} of {predictions}")
            photo, face, x0, y0, scale = crops[name]
            annotation = FaceAnnotation(to_photo_pixels(points, x0, y0, scale), name=face)
            if photo in by_photo:
                by_photo[photo].faces.append(annotation)
            else:
                by_photo[photo] = PhotoAnnotation(photo, [annotation], str(predictions))
    return list(by_photo.values())


def _photos_from_detect(path: Path) -> list[PhotoAnnotation]:
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read detect's JSON: {exc}") from None
    except RecursionError:
        raise DataError(path, "cannot read detect's JSON: nested too deeply") from None
    if not isinstance(records, list):
        raise DataError(path, "expected the list `densemarks detect` writes")
    photos = []
    for number, record in enumerate(records):
        where = f"{path}, photo {number}"
        if not isinstance(record, dict) or "file" not in record or not isinstance(record.get("faces"), list):
            raise DataError(where, "expected an object with 'file' and 'faces'")
        if not all(isinstance(f, dict) and "points" in f and "box" in f for f in record["faces"]):
            raise DataError(where, "expected faces as objects with 'box' and 'points'")
        faces = [FaceAnnotation(parse_points(f["points"], where),
                                box=tuple(parse_points(f["box"], where, expected=2).reshape(-1)))
                 for f in record["faces"]]
        photos.append(PhotoAnnotation(Path(record["file"]), faces, where))
    return photos
