"""Annotated photos -> the competition layout: every face cut out as a crop with a margin, its
points in the crop's pixels, like the competition's crops (black where the crop leaves the
photo); several faces of one photo give several crops.

    OUT/train/images/<photo>_<face>.jpg, landmarks.csv, scheme.json, sources.csv
    OUT/test/...  (with test_fraction > 0: whole photos drawn by seed) images, answers.csv,
                  test_points.csv (every point), sources.csv
    OUT/problems.txt  every annotation that was left out, and why

sources.csv maps each crop back to its photo (photo, face, x0, y0, scale: photo pixel =
crop pixel / scale + x0 after the pixel-centre shift), so predictions on the crops can be
exported in the photos' pixels (`formats/export.py`).
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from densemarks.core import geometry
from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_dir
from densemarks.data.csvio import RequestedPoints, write_landmarks, write_test_points
from densemarks.data.formats.base import Annotations, FaceAnnotation, PhotoAnnotation
from densemarks.data.images import load_image
from densemarks.data.scheme import KNOWN_SCHEMES, LandmarkScheme, derive_flip_index, known_scheme

SOURCES_HEADER = ["file_name", "photo", "face", "x0", "y0", "scale"]
JPEG_QUALITY = 95


@dataclass
class ConvertSummary:
    photos: int
    faces: int
    train: int
    test: int
    num_points: int
    problems: list[str]
    scheme_note: str


@dataclass(frozen=True)
class Crop:
    """A face cut out: pixels (H, W, 3) RGB, points (K, 2) in crop pixels, and where it came
    from: crop pixel = (photo pixel - (x0, y0) + 0.5) * scale - 0.5."""

    pixels: np.ndarray
    points: np.ndarray
    x0: int
    y0: int
    scale: float


def crop_face(photo: np.ndarray, points: np.ndarray, margin: float, max_side: int = 0) -> Crop:
    """The square around the points' extent, widened by `margin` times its side on every side,
    at whole-pixel offsets; shrunk so its side is at most max_side (0: kept)."""
    low, high = points.min(0), points.max(0)
    side = float((high - low).max()) * (1 + 2 * margin)
    side = max(8, int(round(side)))
    centre = (low + high) / 2
    x0, y0 = (int(round(c - side / 2)) for c in centre)
    shift = geometry.translation(-x0, -y0)
    pixels = cv2.warpAffine(photo, shift[:2], (side, side), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    scale = 1.0
    if max_side and side > max_side:
        scale = max_side / side
        pixels = cv2.resize(pixels, (max_side, max_side), interpolation=cv2.INTER_AREA)
    matrix = geometry.scaling(scale) @ shift
    return Crop(pixels, geometry.apply(matrix, points), x0, y0, scale)


def _shape_problem(points: np.ndarray, size: tuple[int, int]) -> str | None:
    """Why a face's points cannot be cut out of a photo of `size`, or None: all at one place, or
    some further outside the photo than the face is large (a wrong photo or swapped x/y)."""
    w, h = size
    extent = float((points.max(0) - points.min(0)).max())
    if len(points) > 1 and extent < 1:
        return f"its {len(points)} points span {extent:.2g} px: not a face's shape"
    outside = np.maximum(np.maximum(-points, points - np.array([w - 1, h - 1])), 0).max(1)
    far = int((outside > extent).sum())
    return f"{far} points lie further outside the {w}x{h} photo than the face is large" if far else None


def _crop_name(photo: Path, face: FaceAnnotation, number: int, root: Path, taken: set[str]) -> str:
    try:
        parts = photo.with_suffix("").relative_to(root).parts
    except ValueError:
        parts = (photo.stem,)
    base = "__".join(parts) if parts else photo.stem
    name = f"{base}_{face.name or number}.jpg"
    while name in taken:  # two annotations of one face name: keep both, distinctly
        name = name[:-4] + "_.jpg"
    taken.add(name)
    return name


def _common_root(photos: list[PhotoAnnotation]) -> Path:
    parents = [p.image.resolve().parent for p in photos]
    if not parents:
        return Path(".")
    common = parents[0]
    for parent in parents[1:]:
        while not parent.is_relative_to(common):
            common = common.parent
    return common


def _scheme(num_points: int, shapes: np.ndarray, annotations: Annotations) -> tuple[LandmarkScheme, str]:
    base = known_scheme(num_points)
    lines = tuple(annotations.hint.lines or ())
    if annotations.hint.flip_index is not None and len(annotations.hint.flip_index) == num_points:
        return dataclasses.replace(base, flip_index=annotations.hint.flip_index, lines=lines), \
            "flip index from the left/right point names"
    flip, residual = derive_flip_index(shapes)
    unpaired = np.flatnonzero(flip[flip] != np.arange(num_points))
    flip[unpaired] = unpaired  # a point whose mirror does not map back onto it keeps its index
    scheme = dataclasses.replace(base, flip_index=flip, lines=lines)
    caution = (f"; {len(unpaired)} points found no mutual mirror partner and map onto themselves: "
               "give the flip index in scheme.json" if len(unpaired) else "")
    if num_points in KNOWN_SCHEMES:
        return scheme, (f"known {num_points}-point scheme: regions and NME pair; flip index derived from the "
                        f"mean shape{caution}")
    return scheme, caution[2:] + ("; " if caution else "") + (f"unknown {num_points}-point scheme: the flip index was derived from the mean shape (mean "
                    f"mismatch {residual:.3f} of the face radius) and no NME pair is set: check them with "
                    "`densemarks info` and edit scheme.json (norm_points, regions) if needed")


def convert(annotations: Annotations, out: str | Path, *, margin: float = 0.25, max_side: int = 0,
            test_fraction: float = 0.0, seed: int = 0, overwrite: bool = False) -> ConvertSummary:
    """Cut every face of `annotations` out into OUT in the competition layout (see the module
    docstring). Faces that cannot be used are problems, listed in OUT/problems.txt."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(out, "already exists; choose another --out or pass --overwrite")
    if not 0 <= test_fraction < 1:
        raise DataError(None, f"--test-fraction {test_fraction}: expected 0 <= fraction < 1")
    problems = list(annotations.problems)
    counts = Counter(len(f.points) for p in annotations.photos for f in p.faces)
    if not counts:
        raise DataError(None, "no usable face in the annotations" + (f"; first problem: {problems[0]}" if problems else ""))
    num_points = counts.most_common(1)[0][0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(annotations.photos))
    test_photos = set(order[:int(round(test_fraction * len(order)))].tolist())
    root = _common_root(annotations.photos)
    splits = {"train": ([], [], []), "test": ([], [], [])}  # names, points, sources rows
    taken: set[str] = set()
    with atomic_dir(out) as tmp:
        for split in splits:
            (tmp / split / "images").mkdir(parents=True)
        for index, photo in enumerate(tqdm(annotations.photos, desc="convert", unit="photo")):
            faces = []
            for number, face in enumerate(photo.faces, start=1):
                if len(face.points) != num_points:
                    problems.append(f"{face.source or photo.source}: face {number} has {len(face.points)} points; most faces have {num_points}")
                else:
                    faces.append((number, face))
            if not faces:
                continue
            try:
                image = load_image(photo.image)
            except DataError as exc:
                problems.append(f"{photo.source}: {exc}")
                continue
            split = "test" if index in test_photos else "train"
            names, points, sources = splits[split]
            for number, face in faces:
                if problem := _shape_problem(face.points, image.original_size):
                    problems.append(f"{face.source or photo.source}: face {number}: {problem}")
                    continue
                crop = crop_face(image.pixels, face.points, margin, max_side)
                name = _crop_name(photo.image, face, number, root, taken)
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop.pixels, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                (tmp / split / "images" / name).write_bytes(data.tobytes())
                names.append(name)
                points.append(crop.points)
                sources.append([name, str(photo.image), face.name or number, crop.x0, crop.y0, crop.scale])
        train_names, train_points, _ = splits["train"]
        if not train_names:
            raise DataError(None, "no face left for training" + (f"; first problem: {problems[0]}" if problems else ""))
        scheme, note = _scheme(num_points, np.asarray(train_points), annotations)
        for split, (names, points, sources) in splits.items():
            if not names:
                shutil.rmtree(tmp / split)
                continue
            write_landmarks(tmp / split / ("landmarks.csv" if split == "train" else "answers.csv"), names, np.asarray(points))
            _write_sources(tmp / split / "sources.csv", sources)
        scheme.save(tmp / "train" / "scheme.json")
        test_names = splits["test"][0]
        if test_names:
            everything = np.tile(np.arange(num_points), (len(test_names), 1))
            write_test_points(tmp / "test" / "test_points.csv", RequestedPoints(np.asarray(test_names), everything))
        (tmp / "problems.txt").write_text("".join(f"{p}\n" for p in problems))
        if out.exists():  # --overwrite: the old folder goes only once the new one is complete
            shutil.rmtree(out)
    return ConvertSummary(len(annotations.photos), len(train_names) + len(test_names), len(train_names),
                          len(test_names), num_points, problems, note)


def _write_sources(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(SOURCES_HEADER)
        writer.writerows(rows)


def read_sources(path: str | Path) -> dict[str, tuple[Path, str, float, float, float]]:
    """sources.csv: crop name -> (photo, face, x0, y0, scale)."""
    path = Path(path)
    found = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror}") from None
    if not rows or rows[0] != SOURCES_HEADER:
        raise DataError(path, f"header must be {SOURCES_HEADER}", line=1)
    for line, row in enumerate(rows[1:], start=2):
        try:
            name, photo, face, x0, y0, scale = row
            found[name] = (Path(photo), face, float(x0), float(y0), float(scale))
        except ValueError:
            raise DataError(path, "expected 6 tab-separated fields: name, photo, face, x0, y0, scale", line=line) from None
    return found


def to_photo_pixels(points: np.ndarray, x0: float, y0: float, scale: float) -> np.ndarray:
    """Crop pixels -> photo pixels (the inverse of crop_face's matrix)."""
    matrix = geometry.scaling(scale) @ geometry.translation(-x0, -y0)
    return geometry.apply(geometry.invert(matrix), points)
