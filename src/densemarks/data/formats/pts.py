"""iBUG / 300-W `.pts` files beside their photos: `photo.pts` for one face, `photo_1.pts`,
`photo_2.pts`, ... for several.

    version: 1
    n_points:  68
    {
    x y
    ...
    }

Coordinates in `.pts` files are 1-based (the first pixel's centre is 1, as in Matlab); they are
read and written 0-based here (x - 1, y - 1), as menpo and the 300-W tools do.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.data.formats.base import Annotations, FaceAnnotation, PhotoAnnotation, find_image, parse_points

_FACE_SUFFIX = re.compile(r"^(.*)_(\d+)$")


def read_pts_file(path: Path) -> np.ndarray:
    """(K, 2) float64, 0-based, from one `.pts` file; DataError naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="strict").splitlines()
    except UnicodeDecodeError:
        raise DataError(path, "not a text file (bad UTF-8)") from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror}") from None
    header = {}
    start = None
    for line_no, line in enumerate(lines, start=1):
        text = line.strip()
        if text == "{":
            start = line_no
            break
        if ":" in text:
            key, _, value = text.partition(":")
            header[key.strip().lower()] = value.strip()
        elif text:
            raise DataError(path, f"expected 'key: value' or '{{', got {text[:40]!r}", line=line_no)
    if start is None:
        raise DataError(path, "no '{' opening the point list")
    try:
        count = int(header.get("n_points", ""))
    except ValueError:
        raise DataError(path, f"n_points is {header.get('n_points')!r}, not an integer") from None
    rows = []
    for line_no in range(start + 1, len(lines) + 1):
        text = lines[line_no - 1].strip()
        if text == "}":
            break
        parts = text.split()
        if len(parts) != 2:
            raise DataError(path, f"expected 'x y', got {text[:40]!r}", line=line_no)
        rows.append(parse_points(parts, f"{path}, line {line_no}")[0])
    else:
        raise DataError(path, "no '}' closing the point list")
    if len(rows) != count:
        raise DataError(path, f"{len(rows)} points, but n_points says {count}")
    return np.asarray(rows) - 1.0


def write_pts_file(path: Path, points: np.ndarray) -> None:
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(points, dtype=np.float64))
    with atomic_path(path) as tmp:
        tmp.write_text(f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n")


def read_pts(source: Path, images: Path | None = None) -> Annotations:
    """Every `.pts` file under `source` (a folder, searched recursively, or one file) with the
    photo beside it (or under `images`, same relative folder)."""
    source = Path(source)
    files = sorted(source.rglob("*.pts")) if source.is_dir() else [source]
    if not files:
        raise DataError(source, "no .pts files found")
    found = Annotations()
    by_image: dict[Path, list[FaceAnnotation]] = {}
    sources: dict[Path, str] = {}
    for path in files:
        relative = path.parent.relative_to(source) if source.is_dir() else Path()
        folder = path.parent if images is None else Path(images) / relative
        image, face = find_image(folder, path.stem), None
        match = _FACE_SUFFIX.match(path.stem)
        if image is None and match:
            image, face = find_image(folder, match.group(1)), match.group(2)
        if image is None:
            found.problem(path, f"no image {path.stem}.jpg/.png/... beside it")
            continue
        try:
            points = read_pts_file(path)
        except DataError as exc:
            found.problems.append(str(exc))
            continue
        by_image.setdefault(image, []).append(FaceAnnotation(points, name=face, source=str(path)))
        sources.setdefault(image, str(path))
    found.photos = [PhotoAnnotation(image, faces, sources[image]) for image, faces in by_image.items()]
    return found


def write_pts(photos: list[PhotoAnnotation], out: Path) -> int:
    """One `.pts` per face into the folder `out`: `stem.pts` for a photo with one face, else
    `stem_1.pts`, `stem_2.pts`, ... Returns the number of files written."""
    out = Path(out)
    files: dict[str, tuple[Path, np.ndarray]] = {}
    for photo in photos:
        stem = Path(photo.image).stem
        for i, face in enumerate(photo.faces, start=1):
            name = f"{stem}.pts" if len(photo.faces) == 1 else f"{stem}_{i}.pts"
            if name in files:  # photos of one name in different folders: checked before writing any
                raise DataError(out / name, f"faces of both {files[name][0]} and {photo.image} would be "
                                            "written to this file; export them in separate runs")
            files[name] = (Path(photo.image), face.points)
    out.mkdir(parents=True, exist_ok=True)
    for name, (_, points) in files.items():
        write_pts_file(out / name, points)
    return len(files)
