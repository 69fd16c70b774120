"""WFLW's annotation lists (`list_98pt_rect_attr_train.txt`, ..._test.txt): a face per line,

    x0 y0 ... x97 y97  box_x0 box_y0 box_x1 box_y1  pose expression illumination make-up occlusion blur  image

whitespace-separated, coordinates 0-based pixels of the photo, the image name relative to the
WFLW_images folder (`--images`; default: the list's folder). A photo with several faces has
several lines; the six attributes (0 or 1) are kept per face.
"""

from __future__ import annotations

from pathlib import Path

from densemarks.core.errors import DataError
from densemarks.data.formats.base import Annotations, FaceAnnotation, inside, parse_points

WFLW_POINTS = 98
ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")


def read_wflw(source: Path, images: Path | None = None) -> Annotations:
    source = Path(source)
    root = Path(images) if images is not None else source.parent
    found = Annotations()
    columns = 2 * WFLW_POINTS + 4 + len(ATTRIBUTES) + 1
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(source, "not a text file (bad UTF-8)") from None
    except OSError as exc:
        raise DataError(source, f"cannot read: {exc.strerror}") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{source}, line {line_no}"
        try:
            if len(parts) != columns:
                raise DataError(where, f"{len(parts)} fields, expected {columns} (196 coordinates, "
                                       "4 box, 6 attributes, image)")
            points = parse_points(parts[:2 * WFLW_POINTS], where)
            box = tuple(parse_points(parts[2 * WFLW_POINTS:2 * WFLW_POINTS + 4], where).reshape(-1))
            image = inside(root, parts[-1], where)
        except DataError as exc:
            found.problems.append(str(exc))
            continue
        attributes = dict(zip(ATTRIBUTES, parts[2 * WFLW_POINTS + 4:-1]))
        face = FaceAnnotation(points, box=box, attributes=attributes)
        found.add(image, face, where)
    if not found.photos and not found.problems:
        raise DataError(source, "no annotation lines")
    return found
