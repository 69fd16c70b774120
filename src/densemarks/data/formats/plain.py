"""Points per image for anything else, as CSV or JSON (0-based pixels, centres at integers).

CSV (comma, tab or semicolon separated, with a header): the first column names the image
(relative to `--images`, default the file's folder), an optional column `face` numbers several
faces of one photo, every other column is a coordinate: x0, y0, x1, y1, ...

    image,x0,y0,x1,y1,...
    a.jpg,10.5,20,...

JSON: a list of objects, or an object from image name to points (one face) or to a list of
faces:

    [{"image": "a.jpg", "points": [[10.5, 20], ...], "box": [x0, y0, x1, y1]}, ...]
    {"a.jpg": [[10.5, 20], ...], "group.jpg": [[[...], ...], [[...], ...]]}
"""

from __future__ import annotations

from pathlib import Path

from densemarks.core.errors import DataError, csv_rows
from densemarks.data.formats.base import Annotations, FaceAnnotation, inside, parse_json, parse_points


def _add(found: Annotations, root: Path, name, points, box, where: str) -> None:
    try:
        if not isinstance(name, str) or not name:
            raise DataError(where, f"image name {name!r} is not a file name")
        image = inside(root, name, where)
        face = FaceAnnotation(parse_points(points, where),
                              box=None if box is None else tuple(parse_points(box, where, expected=2).reshape(-1)))
    except DataError as exc:
        found.problems.append(str(exc))
        return
    found.add(image, face, where)


def _read_text(source: Path) -> str:
    try:
        return source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(source, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(source, f"cannot read: {exc.strerror}") from None


def read_plain_csv(source: Path, images: Path | None = None) -> Annotations:
    source = Path(source)
    text = _read_text(source)
    lines = text.splitlines()
    if not lines:
        raise DataError(source, "empty file")
    delimiter = max(",\t;", key=lines[0].count)
    header = [h.strip() for h in next(csv_rows([lines[0]], source, delimiter))]
    face_column = header.index("face") if "face" in header else None
    coordinates = [i for i in range(1, len(header)) if i != face_column]
    if not coordinates or len(coordinates) % 2:
        raise DataError(source, f"{len(coordinates)} coordinate columns after the image name: expected x, y pairs",
                        line=1)
    found = Annotations()
    root = Path(images) if images is not None else source.parent
    for line_no, row in enumerate(csv_rows(lines[1:], source, delimiter, first_line=2), start=2):
        if not row:
            continue
        where = f"{source}, line {line_no}"
        if len(row) != len(header):
            found.problem(where, f"{len(row)} columns, the header has {len(header)}")
            continue
        _add(found, root, row[0].strip(), [row[i] for i in coordinates], None, where)
    if len(lines) < 2:
        raise DataError(source, "no rows after the header (the first line is read as the header)")
    return found


def read_plain_json(source: Path, images: Path | None = None) -> Annotations:
    source = Path(source)
    data = parse_json(_read_text(source), source)
    found = Annotations()
    root = Path(images) if images is not None else source.parent
    if isinstance(data, dict):
        for name, value in data.items():
            where = f"{source}, {name!r}"
            several = isinstance(value, list) and value and isinstance(value[0], list) \
                and value[0] and isinstance(value[0][0], list)
            faces = value if several else [value]
            for face in faces:
                _add(found, root, name, face, None, where)
    elif isinstance(data, list):
        for number, item in enumerate(data):
            where = f"{source}, item {number}"
            if not isinstance(item, dict) or "points" not in item:
                found.problem(where, "expected an object with 'image' and 'points'")
                continue
            _add(found, root, item.get("image", item.get("file_name")), item["points"], item.get("box"), where)
    else:
        raise DataError(source, "expected a list of {image, points} objects or an object of image -> points")
    return found
