"""COCO keypoint JSON: `images`, `annotations` (keypoints as x, y, v triples, bbox as x, y, w, h)
and `categories` (keypoint names, skeleton). COCO keypoints are pixel indices, the same
convention as densemarks (pixel centres at integers).

Read: the keypoints of one category (`category`, default the first with keypoints), or, for
COCO-WholeBody files, the 68 face points (`face_kpts`, `face_box`, only where `face_valid`).
A face with any unlabelled point (v = 0) is a problem, not a face. The category's left/right
keypoint names give the flip index and its skeleton the drawing lines.

Write: with a reference annotation file, COCO's results format (a list of image_id,
category_id, keypoints, score: what COCO's evaluation reads); without one, a complete dataset
file that `read_coco` reads back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.data.formats.base import (Annotations, FaceAnnotation, PhotoAnnotation, SchemeHint,
                                          flip_from_names, inside, parse_json, parse_numbers, parse_points)


def _load(source: Path) -> dict:
    try:
        text = Path(source).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(source, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(source, f"not valid JSON: {exc}") from None
    data = parse_json(text, source)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError(source, "not a COCO file: expected an object with 'images' and 'annotations' lists")
    return data


def _keypoint_category(data: dict, source: Path, category: str | None) -> dict:
    categories = [c for c in data.get("categories", []) if isinstance(c, dict)]
    with_points = [c for c in categories if c.get("keypoints")]
    if category is not None:
        chosen = [c for c in categories if c.get("name") == category or str(c.get("id")) == category]
        if not chosen:
            raise DataError(source, f"no category {category!r}; there are: "
                                    + ", ".join(str(c.get("name")) for c in categories))
        return chosen[0]
    if not with_points:
        raise DataError(source, "no category with keypoints")
    return with_points[0]


def _box(values, where: str) -> tuple[float, float, float, float] | None:
    if not values:
        return None
    x, y, w, h = parse_points(values, where, expected=2).reshape(-1)
    return (x, y, x + w, y + h)


def read_coco(source: Path, images: Path | None = None, category: str | None = None) -> Annotations:
    source = Path(source)
    data = _load(source)
    root = Path(images) if images is not None else source.parent
    whole_body = category is None and any("face_kpts" in a for a in data["annotations"] if isinstance(a, dict))
    found = Annotations()
    if not whole_body:
        chosen = _keypoint_category(data, source, category)
        names = _keypoint_names(chosen, source)
        lines = _skeleton(chosen, len(names), source)
        found.hint = SchemeHint(point_names=names or None, flip_index=flip_from_names(names) if names else None,
                                lines=lines or None)
    files = _image_files(data, source)
    for number, ann in enumerate(data["annotations"]):
        where = f"{source}, annotations[{number}]"
        if not isinstance(ann, dict):
            found.problem(where, "not an object")
            continue
        if whole_body:
            if not ann.get("face_valid", True) or not ann.get("face_kpts"):
                continue
            values, box_values = ann["face_kpts"], ann.get("face_box")
        else:
            if ann.get("category_id") != chosen.get("id") or not ann.get("keypoints"):
                continue
            values, box_values = ann["keypoints"], ann.get("bbox")
        try:
            if not _is_id(ann.get("image_id")) or ann["image_id"] not in files:
                raise DataError(where, f"image_id {ann.get('image_id')!r} is not in 'images'")
            triples = parse_numbers(values, where)
            if triples.size % 3:
                raise DataError(where, f"{triples.size} keypoint values: not x, y, v triples")
            triples = triples.reshape(-1, 3)
            unlabelled = int((triples[:, 2] == 0).sum())
            if unlabelled:
                raise DataError(where, f"{unlabelled} of {len(triples)} keypoints unlabelled (v = 0)")
            image = inside(root, str(files[ann["image_id"]]), where)
            face = FaceAnnotation(triples[:, :2].copy(), box=_box(box_values, where))
        except DataError as exc:
            found.problems.append(str(exc))
            continue
        found.add(image, face, where)
    return found


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _image_files(data: dict, source: Path) -> dict:
    """Image id -> file name; an id given to two different files is an error (which file
    would its faces be on?)."""
    files = {}
    for number, image in enumerate(data["images"]):
        if isinstance(image, dict) and _is_id(image.get("id")) and "file_name" in image:
            known = files.setdefault(image["id"], image["file_name"])
            if known != image["file_name"]:
                raise DataError(source, f"images[{number}]: id {image['id']!r} is also the id of {known!r}")
    return files


def _keypoint_names(category: dict, source: Path) -> list[str]:
    names = category.get("keypoints") or []
    if not isinstance(names, list):
        raise DataError(source, f"category {category.get('name')!r}: keypoints must be a list of names")
    return [str(n) for n in names]


def _skeleton(category: dict, count: int, source: Path) -> list[tuple[int, int]]:
    """The category's skeleton as 0-based point pairs (pairs naming no keypoint are dropped)."""
    pairs = category.get("skeleton") or []
    try:
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise ValueError
        pairs = [(int(a), int(b)) for a, b in pairs]
    except (TypeError, ValueError):
        raise DataError(source, f"category {category.get('name')!r}: skeleton must be a list of "
                                "[a, b] pairs of 1-based keypoint numbers") from None
    return [(a - 1, b - 1) for a, b in pairs if 0 < a <= count and 0 < b <= count]


def write_coco(photos: list[PhotoAnnotation], out: Path, reference: Path | None = None,
               images_root: Path | None = None) -> int:
    """COCO keypoints of every face: results against `reference` (image ids by file name), or
    a complete dataset file with names relative to `images_root`. Returns the faces written."""
    out = Path(out)
    faces = [(photo, face) for photo in photos for face in photo.faces]
    if reference is not None:
        data = _load(Path(reference))
        ids = {str(Path(str(name))): i for i, name in _image_files(data, Path(reference)).items()}
        ids_by_name = {Path(name).name: i for name, i in ids.items()}
        category = _keypoint_category(data, Path(reference), None)["id"]
        results = []
        for photo, face in faces:
            key = _relative(photo.image, images_root)
            image_id = ids.get(key, ids_by_name.get(Path(photo.image).name))
            if image_id is None:
                raise DataError(reference, f"no image {key!r} in 'images'")
            results.append({"image_id": image_id, "category_id": category,
                            "keypoints": _triples(face.points), "score": 1.0})
        text = json.dumps(results)
    else:
        k = len(faces[0][1].points) if faces else 0
        image_ids = {str(p.image): i for i, p in enumerate(photos, start=1)}
        text = json.dumps({
            "images": [{"id": image_ids[str(p.image)], "file_name": _relative(p.image, images_root)} for p in photos],
            "annotations": [{"id": n, "image_id": image_ids[str(photo.image)], "category_id": 1, "iscrowd": 0,
                             "num_keypoints": len(face.points), "keypoints": _triples(face.points),
                             "bbox": _xywh(face)} for n, (photo, face) in enumerate(faces, start=1)],
            "categories": [{"id": 1, "name": "face", "keypoints": [f"point_{i}" for i in range(k)], "skeleton": []}],
        })
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return len(faces)


def _relative(image: Path, root: Path | None) -> str:
    image = Path(image)
    if root is not None and image.resolve().is_relative_to(Path(root).resolve()):
        return str(image.resolve().relative_to(Path(root).resolve()))
    return image.name if root is not None else str(image)


def _triples(points: np.ndarray) -> list[float]:
    points = np.asarray(points, dtype=np.float64)
    return np.column_stack([points.round(2), np.full(len(points), 2.0)]).reshape(-1).tolist()


def _xywh(face: FaceAnnotation) -> list[float]:
    x0, y0, x1, y1 = face.box if face.box is not None else (*face.points.min(0), *face.points.max(0))
    return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]
