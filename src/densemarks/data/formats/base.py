"""What every annotation format reads into and writes from: photos, each with its faces' points.

Points are (K, 2) float64 in the photo's pixels as displayed, pixel centres at integers (the
convention of `core/geometry`); each reader converts its format's own convention (1-based
`.pts`, for example) on the way in and each writer back on the way out. A broken annotation
is a `problem` of the file it came from, not an exception: a reader keeps going and the
converter reports every problem in its summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from densemarks.core.errors import MAX_COORDINATE, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class FaceAnnotation:
    """points (K, 2) float64 in photo pixels; box (x0, y0, x1, y1) in photo pixels when the
    format gives one; name: the face's own name where the format has one (`name_N.pts`);
    source: its own annotation file, where each face has one."""

    points: np.ndarray
    box: tuple[float, float, float, float] | None = None
    name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True)
class PhotoAnnotation:
    """One photo and its faces; `source` names the annotation (file, or file and line)."""

    image: Path
    faces: list[FaceAnnotation]
    source: str


@dataclass(frozen=True)
class SchemeHint:
    """What a format says about its points beyond their coordinates: names, a flip index from
    left/right names or pairs, and drawing lines (pairs of point indices)."""

    point_names: list[str] | None = None
    flip_index: np.ndarray | None = None
    lines: list[tuple[int, int]] | None = None


@dataclass
class Annotations:
    """Everything a reader found: photos, per-file problems, and what it knows of the scheme."""

    photos: list[PhotoAnnotation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hint: SchemeHint = field(default_factory=SchemeHint)
    _photo_of: dict[Path, int] = field(default_factory=dict, repr=False)

    def add(self, image: Path, face: FaceAnnotation, source: str) -> None:
        """A face of `image`: added to its photo, which is new the first time the image is named."""
        if image in self._photo_of:
            self.photos[self._photo_of[image]].faces.append(face)
        else:
            self._photo_of[image] = len(self.photos)
            self.photos.append(PhotoAnnotation(image, [face], source))

    @property
    def faces(self) -> int:
        return sum(len(p.faces) for p in self.photos)

    def problem(self, where: str | Path, what: str) -> None:
        self.problems.append(f"{where}: {what}")


def parse_json(text: str, source: Path):
    """A JSON document; DataError naming `source` when it is not JSON or nests deeper than the
    parser's recursion allows."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(source, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DataError(source, "not valid JSON: nested too deeply") from None


def parse_numbers(values, where: str | Path) -> np.ndarray:
    """A flat float64 array of finite pixel coordinates (numbers, or text of numbers as CSV
    holds them; not JSON's true/false); DataError naming `where` otherwise."""
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if any(type(v) is bool for v in np.asarray(values, dtype=object).reshape(-1)):
            raise TypeError
    except (TypeError, ValueError, OverflowError):
        raise DataError(where, "coordinates are not all numbers") from None
    if not np.isfinite(array).all():
        raise DataError(where, "a coordinate is NaN or infinite")
    if array.size and np.abs(array).max() > MAX_COORDINATE:
        raise DataError(where, f"a coordinate of {np.abs(array).max():.3g} px, beyond +-{MAX_COORDINATE:.0e}")
    return array


def parse_points(values, where: str | Path, expected: int | None = None) -> np.ndarray:
    """A flat or (K, 2) sequence of numbers as (K, 2) float64; DataError naming `where` when the
    values are not numbers, not finite, odd in number, or not `expected` points."""
    array = parse_numbers(values, where)
    if array.size % 2:
        raise DataError(where, f"{array.size} coordinates: not x, y pairs")
    points = array.reshape(-1, 2)
    if expected is not None and len(points) != expected:
        raise DataError(where, f"{len(points)} points, expected {expected}")
    if len(points) == 0:
        raise DataError(where, "no points")
    return points


def find_image(folder: Path, stem: str) -> Path | None:
    """The image beside an annotation: `stem` with any usual image suffix, or None."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def inside(root: Path, relative: str, where: str) -> Path:
    """root/relative, refusing absolute names and `..` that would leave root."""
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(where, f"image name {relative!r} must be relative to {root}, without '..'")
    return root / path


def flip_from_names(names: list[str]) -> np.ndarray | None:
    """A flip index from point names that say left/right (`left_eye` <-> `right_eye`, `l_ear`
    <-> `r_ear`); None unless every side-named point finds its partner."""
    index = {n.lower(): i for i, n in enumerate(names)}
    swaps = (("left", "right"), ("right", "left"))
    flip = np.arange(len(names))
    sided = False
    for i, name in enumerate(n.lower() for n in names):
        for a, b in swaps:
            if a in name:
                partner = index.get(name.replace(a, b))
                if partner is None:
                    return None
                flip[i] = partner
                sided = True
                break
    if not sided or not np.array_equal(flip[flip], np.arange(len(names))):
        return None
    return flip
