"""The landmark scheme as data: number of points, flip index, NME normalising pair, regions.

Nothing else in densemarks branches on the number of points; it asks the scheme. Well-known
schemes (the competition's 971 points, iBUG's 68) are entries in a table, not code paths.
The flip index can be derived from data: mirror the mean shape and solve a linear assignment.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path, cache_dir_for


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    stop: int  # exclusive


@dataclass(frozen=True)
class LandmarkScheme:
    """flip_index[i] is the point that point i becomes after a horizontal mirror of the image.

    norm_points: the two points whose distance normalises NME (None when unknown).
    regions: contiguous index ranges, each drawn as a line through its points in order.
    lines: extra point pairs to draw (a COCO skeleton, for example); empty for most schemes.
    """

    num_points: int
    flip_index: np.ndarray
    norm_points: tuple[int, int] | None = None
    regions: tuple[Region, ...] = field(default_factory=tuple)
    lines: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def __post_init__(self):
        check_flip_index(self.flip_index, self.num_points)
        if self.norm_points is not None:
            if not all(0 <= p < self.num_points for p in self.norm_points):
                raise ValueError(f"norm_points {list(self.norm_points)} out of range for {self.num_points} points")
            if self.norm_points[0] == self.norm_points[1]:
                raise ValueError(f"norm_points {list(self.norm_points)}: two different points are needed "
                                 "(NME divides by their distance)")
        names = set()
        for region in self.regions:
            if not 0 <= region.start < region.stop <= self.num_points:
                raise ValueError(f"region {region.name!r}: points {region.start} to {region.stop} (exclusive) "
                                 f"is not a non-empty range within 0..{self.num_points}")
            if region.name in names:
                raise ValueError(f"region {region.name!r} is named twice")
            names.add(region.name)
        if any(not 0 <= p < self.num_points for line in self.lines for p in line):
            raise ValueError(f"a line's point lies outside 0..{self.num_points - 1}")

    def keypoint_weights(self, mean_shape: np.ndarray) -> np.ndarray | None:
        """(4, K) weights that make a face's points (K, 2) into a face detector's keypoints: the
        eye centres, then the mouth corners, each pair image-left first (on `mean_shape`, an
        upright mean face). Eyes: the `pupils` region's two points, or the centres of the two
        regions named eye*; mouth corners: the leftmost and rightmost points of `mouth_outer`
        (or `mouth`). None when the scheme's regions do not name them."""
        named = {r.name: np.arange(r.start, r.stop) for r in self.regions}
        if len(named.get("pupils", ())) == 2:
            eyes = [[i] for i in named["pupils"]]
        else:
            eyes = [list(v) for k, v in named.items() if k.startswith("eye")]
        mouth = named.get("mouth_outer", named.get("mouth"))
        if len(eyes) != 2 or mouth is None or len(mouth) < 2:
            return None
        x = np.asarray(mean_shape, dtype=np.float64)[:, 0]
        eyes.sort(key=lambda group: x[group].mean())
        groups = [*eyes, [mouth[np.argmin(x[mouth])]], [mouth[np.argmax(x[mouth])]]]
        weights = np.zeros((4, self.num_points))
        for row, group in enumerate(groups):
            weights[row, group] = 1.0 / len(group)
        return weights

    def to_dict(self) -> dict:
        return {
            "num_points": self.num_points,
            "norm_points": None if self.norm_points is None else list(self.norm_points),
            "regions": [{"name": r.name, "start": r.start, "stop": r.stop} for r in self.regions],
            "flip_index": [int(i) for i in self.flip_index],
            "lines": [[int(a), int(b)] for a, b in self.lines],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LandmarkScheme":
        """The scheme of `to_dict`'s layout (a scheme.json, a checkpoint's copy); ValueError
        naming the entry when one has the wrong type or an impossible value; KeyError when
        num_points or flip_index is missing."""
        norm = data.get("norm_points")
        if norm is not None:
            norm = tuple(_whole(v, f"norm_points[{i}]") for i, v in enumerate(_list(norm, "norm_points", 2)))
        regions = []
        for i, r in enumerate(_list(data.get("regions", []), "regions")):
            if not isinstance(r, dict) or not isinstance(r.get("name"), str):
                raise ValueError(f"regions[{i}]: expected an object with a text name, a start and a stop")
            regions.append(Region(r["name"], _whole(r.get("start"), f"regions[{i}].start"),
                                  _whole(r.get("stop"), f"regions[{i}].stop")))
        lines = tuple(tuple(_whole(v, f"lines[{i}][{j}]") for j, v in enumerate(_list(line, f"lines[{i}]", 2)))
                      for i, line in enumerate(_list(data.get("lines", []), "lines")))
        return cls(
            num_points=_whole(data["num_points"], "num_points"),
            flip_index=np.asarray([_whole(v, f"flip_index[{i}]")
                                   for i, v in enumerate(_list(data["flip_index"], "flip_index"))], dtype=np.int64),
            norm_points=norm,
            regions=tuple(regions),
            lines=lines,
        )

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict()))


SCHEME_KEYS = {"num_points", "flip_index", "norm_points", "regions", "lines"}  # to_dict's

# Schemes we know by their point count: regions (name, start, stop) and the NME pair.
KNOWN_SCHEMES: dict[int, dict] = {
    971: {  # reconstructed by competition participants (shared/docs/competition.md)
        "norm_points": (969, 970),
        "regions": [("oval_lower_a", 0, 64), ("oval_lower_b", 64, 128), ("oval_upper", 128, 273),
                    ("brow_a", 273, 337), ("brow_b", 337, 401), ("nose_side_a", 401, 464),
                    ("nose_side_b", 464, 527), ("nose_middle", 527, 587), ("eye_a", 587, 714),
                    ("eye_b", 714, 841), ("mouth", 841, 969), ("pupils", 969, 971)],
    },
    68: {  # iBUG 300-W; NME by the outer eye corners
        "norm_points": (36, 45),
        "regions": [("jaw", 0, 17), ("brow_right", 17, 22), ("brow_left", 22, 27),
                    ("nose_bridge", 27, 31), ("nose_base", 31, 36), ("eye_right", 36, 42),
                    ("eye_left", 42, 48), ("mouth_outer", 48, 60), ("mouth_inner", 60, 68)],
    },
    98: {  # WFLW; NME by the outer eye corners ("inter-ocular", as WFLW's papers report it)
        "norm_points": (60, 72),
        "regions": [("contour", 0, 33), ("brow_right", 33, 42), ("brow_left", 42, 51),
                    ("nose_bridge", 51, 55), ("nose_base", 55, 60), ("eye_right", 60, 68),
                    ("eye_left", 68, 76), ("mouth_outer", 76, 88), ("mouth_inner", 88, 96),
                    ("pupils", 96, 98)],
    },
}


def check_flip_index(flip_index: np.ndarray, num_points: int) -> None:
    """A flip index must be a permutation of 0..K-1 that is its own inverse."""
    flip_index = np.asarray(flip_index)
    if flip_index.shape != (num_points,):
        raise ValueError(f"flip index has shape {flip_index.shape}, expected ({num_points},)")
    if not np.array_equal(np.sort(flip_index), np.arange(num_points)):
        raise ValueError("flip index is not a permutation of the point indices")
    bad = np.flatnonzero(flip_index[flip_index] != np.arange(num_points))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"flip index is not an involution: point {i} -> {int(flip_index[i])} -> "
                         f"{int(flip_index[flip_index[i]])}")


def normalise_shapes(shapes: np.ndarray) -> np.ndarray:
    """Centre each shape on its centroid and scale it to unit RMS radius. (N, K, 2) -> same."""
    centred = shapes - shapes.mean(axis=1, keepdims=True)
    radius = np.sqrt((centred ** 2).sum(axis=2).mean(axis=1))
    return centred / np.maximum(radius, 1e-9)[:, None, None]


def derive_flip_index(shapes: np.ndarray) -> tuple[np.ndarray, float]:
    """Flip index from training shapes (N, K, 2): mirror the mean normalised shape about its
    vertical symmetry axis and match each mirrored point to an original one (linear assignment).

    Returns the index and the mean residual of the match (in units of the shape's RMS radius).
    The axis is re-estimated once from the first match, so a face off-centre in its crops does
    not bias the assignment.
    """
    mean = normalise_shapes(np.asarray(shapes, dtype=np.float64)).mean(axis=0)
    axis_x = 0.0
    for _ in range(2):
        mirrored = mean.copy()
        mirrored[:, 0] = 2 * axis_x - mirrored[:, 0]
        _, flip = linear_sum_assignment(cdist(mirrored, mean))
        axis_x = float((mean[:, 0] + mean[flip, 0]).mean() / 2)
    residual = float(np.linalg.norm(mirrored - mean[flip], axis=1).mean())
    return flip.astype(np.int64), residual


def read_flip_index(path: str | Path, num_points: int) -> np.ndarray:
    """A flip index file: a JSON list of K integers, or K whitespace-separated integers."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(path, f"cannot read flip index: {exc.strerror}") from None
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        values = text.split()
    if isinstance(values, dict):
        if "flip_index" not in values:
            raise DataError(path, "a JSON object without a flip_index entry")
        values = values["flip_index"]
    if not isinstance(values, list):  # one number as text ("0" for K = 1), or not a flip index at all
        values = text.split()
    try:
        flip = np.asarray([_integer(v) for v in values], dtype=np.int64)
        check_flip_index(flip, num_points)
    except ValueError as exc:
        raise DataError(path, str(exc)) from None
    return flip


def _whole(value, what: str) -> int:
    """A JSON integer (not a float, which int() would truncate; not true or false)."""
    if type(value) is not int:
        raise ValueError(f"{what}: {json.dumps(value)[:40]} is not a whole number")
    if abs(value) > 2 ** 62:
        raise ValueError(f"{what}: {str(value)[:20]}... is out of range")
    return value


def _list(value, what: str, length: int | None = None) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        wanted = f"a list of {length}" if length is not None else "a list"
        raise ValueError(f"{what}: {json.dumps(value)[:40]} is not {wanted}")
    return value


def _integer(value) -> int:
    """A flip index entry: a JSON integer or the text of one (never a float, which int() would
    truncate)."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.strip().removeprefix("-").isdigit():
        return int(value)
    raise ValueError(f"flip index entry {str(value)[:40]!r} is not an integer")


def known_scheme(num_points: int, flip_index: np.ndarray | None = None) -> LandmarkScheme:
    """KNOWN_SCHEMES' regions and NME pair for the point count (one region and no pair for an
    unknown count); flip_index None: the identity (metrics need no flip)."""
    known = KNOWN_SCHEMES.get(num_points, {})
    return LandmarkScheme(
        num_points=num_points,
        flip_index=np.arange(num_points) if flip_index is None else flip_index,
        norm_points=known.get("norm_points"),
        regions=tuple(Region(*r) for r in known.get("regions", [("all", 0, num_points)])),
    )


def read_scheme_file(path: Path, num_points: int) -> LandmarkScheme | None:
    """A scheme.json with num_points points, or None when the file is not there."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, expected an object (num_points, flip_index, ...)")
        unknown = sorted(set(data) - SCHEME_KEYS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], SCHEME_KEYS, n=1)
            raise ValueError(f"unknown entry {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; known: {', '.join(sorted(SCHEME_KEYS))}")
        if _whole(data["num_points"], "num_points") != num_points:
            raise ValueError(f"num_points {data['num_points']} but the data has {num_points}")
        return LandmarkScheme.from_dict(data)
    except KeyError as exc:
        raise DataError(path, f"invalid scheme: no {exc} entry") from None
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"invalid scheme: {exc}") from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror}") from None
    except RecursionError:
        raise DataError(path, "invalid scheme: nested too deeply") from None


def resolve_scheme(landmarks_csv: str | Path, shapes: np.ndarray, *,
                   flip_index_file: str | Path | None = None,
                   norm_points: tuple[int, int] | None = None) -> LandmarkScheme:
    """The scheme of a dataset, most specific source first.

    1. `scheme.json` beside landmarks.csv (written by `densemarks synth`, or by hand);
    2. otherwise KNOWN_SCHEMES for the point count, with a flip index derived from the shapes
       and cached beside the CSV (or in the user cache when that folder is read-only).
    A flip index file and explicit norm points override either.
    """
    landmarks_csv = Path(landmarks_csv)
    num_points = int(shapes.shape[1])
    scheme = read_scheme_file(landmarks_csv.parent / "scheme.json", num_points)
    if scheme is None:
        scheme = known_scheme(num_points, _cached_flip_index(landmarks_csv, shapes))
    if flip_index_file is not None:
        scheme = dataclasses.replace(scheme, flip_index=read_flip_index(flip_index_file, num_points))
    if norm_points is not None:
        scheme = dataclasses.replace(scheme, norm_points=tuple(norm_points))
    return scheme


def _cached_flip_index(landmarks_csv: Path, shapes: np.ndarray) -> np.ndarray:
    st = landmarks_csv.stat()
    key = f"{st.st_size}-{st.st_mtime_ns}"
    cache = cache_dir_for(landmarks_csv) / f"{landmarks_csv.name}.flip_index.json"
    try:
        data = json.loads(cache.read_text())
        if data["source"] == key:
            return np.asarray(data["flip_index"], dtype=np.int64)
    except (OSError, ValueError, KeyError):
        pass
    flip, _ = derive_flip_index(shapes)
    try:
        check_flip_index(flip, shapes.shape[1])
    except ValueError as exc:
        raise DataError(landmarks_csv, f"derived {exc}; give one with --flip-index FILE") from None
    try:
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps({"source": key, "flip_index": flip.tolist()}))
    except OSError:
        pass
    return flip
