"""dlib's imglab XML (the format of dlib's shape-predictor training files):

    <dataset><images>
      <image file='photos/a.jpg'>
        <box top='81' left='74' width='152' height='153'>
          <part name='00' x='101' y='107'/> ...
        </box>
      </image>
    </images></dataset>

Image names are relative to the XML's folder; parts are ordered by their name read as a number
(dlib writes '00', '01', ...; any names sort as text otherwise); coordinates are 0-based pixels.
Boxes marked ignore='1' are skipped. Parsed with defusedxml: entity expansion is refused.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import defusedxml.ElementTree as SafeET
import numpy as np

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.data.formats.base import Annotations, FaceAnnotation, PhotoAnnotation, inside, parse_points


def _number(element, key: str, where: str) -> float:
    try:
        return float(element.attrib[key])
    except KeyError:
        raise DataError(where, f"<{element.tag}> has no {key}=") from None
    except ValueError:
        raise DataError(where, f"<{element.tag}> {key}={element.attrib[key]!r} is not a number") from None


def _part_order(name: str):
    return (0, int(name), "") if name.isascii() and name.isdigit() else (1, 0, name)


def read_dlib_xml(source: Path, images: Path | None = None) -> Annotations:
    source = Path(source)
    try:
        root = SafeET.parse(source).getroot()
    except OSError as exc:
        raise DataError(source, f"cannot read: {exc.strerror}") from None
    except Exception as exc:  # ParseError, and defusedxml's refusals (entities, DTDs)
        raise DataError(source, f"not valid dlib XML: {exc}") from None
    base = Path(images) if images is not None else source.parent
    found = Annotations()
    names: list[str] | None = None
    for number, image in enumerate(root.iter("image"), start=1):
        where = f"{source}, image {number}"
        faces = []
        try:
            path = inside(base, image.attrib.get("file", ""), where)
        except DataError as exc:
            found.problems.append(str(exc))
            continue
        for box_number, box in enumerate(image.iter("box"), start=1):
            if box.attrib.get("ignore") == "1":
                continue
            at = f"{where} ({path.name}), box {box_number}"
            try:
                left, top = _number(box, "left", at), _number(box, "top", at)
                rect = (left, top, left + _number(box, "width", at), top + _number(box, "height", at))
                parts = sorted(box.iter("part"), key=lambda p: _part_order(p.attrib.get("name", "")))
                if not parts:
                    raise DataError(at, "a box without parts")
                part_names = [p.attrib.get("name", "") for p in parts]
                if len(set(part_names)) < len(part_names):
                    twice = next(n for n in part_names if part_names.count(n) > 1)
                    raise DataError(at, f"two parts named {twice!r}: which point each is cannot be told")
                if names is not None and part_names != names:
                    raise DataError(at, f"{len(parts)} parts named {part_names[:3]}..., "
                                        f"but the first box has {len(names)} named {names[:3]}...")
                points = parse_points([[_number(p, "x", at), _number(p, "y", at)] for p in parts], at)
            except DataError as exc:
                found.problems.append(str(exc))
                continue
            names = names or part_names
            faces.append(FaceAnnotation(points, box=rect))
        if faces:
            found.photos.append(PhotoAnnotation(path, faces, where))
    if not found.photos and not found.problems:
        raise DataError(source, "no <image> with <box> and <part> elements")
    return found


def write_dlib_xml(photos: list[PhotoAnnotation], out: Path, relative_to: Path | None = None) -> int:
    """One XML for every photo; image paths relative to `relative_to` (default: out's folder)
    where possible. Returns the number of faces written."""
    out = Path(out)
    base = Path(relative_to or out.parent).resolve()
    lines = ["<?xml version='1.0' encoding='ISO-8859-1'?>", "<dataset>", "<name>densemarks</name>", "<images>"]
    written = 0
    for photo in photos:
        image = Path(photo.image).resolve()
        name = image.relative_to(base) if image.is_relative_to(base) else image
        lines.append(f"  <image file={quoteattr(str(name))}>")
        for face in photo.faces:
            x0, y0, x1, y1 = face.box if face.box is not None else (*face.points.min(0), *face.points.max(0))
            lines.append(f"    <box top='{round(y0)}' left='{round(x0)}' width='{round(x1 - x0)}' height='{round(y1 - y0)}'>")
            width = max(2, len(str(len(face.points) - 1)))
            lines += [f"      <part name='{i:0{width}d}' x='{round(x)}' y='{round(y)}'/>"
                      for i, (x, y) in enumerate(np.asarray(face.points))]
            lines.append("    </box>")
            written += 1
        lines.append("  </image>")
    lines += ["</images>", "</dataset>", ""]
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(lines), encoding="iso-8859-1", errors="xmlcharrefreplace")
    return written
