"""Annotation formats in and out: a module per format, each a reader into `base.Annotations`
(photos with their faces' points) and, where other tools read the format, a writer.
`convert` cuts the faces out into the competition layout; `export` writes predictions back.

Register a new format in READERS (and WRITERS) below: the CLI's choices come from these.
"""

from __future__ import annotations

from pathlib import Path

from densemarks.core.errors import DataError
from densemarks.core.registry import choose
from densemarks.data.formats.coco import read_coco, write_coco
from densemarks.data.formats.dlib_xml import read_dlib_xml, write_dlib_xml
from densemarks.data.formats.plain import read_plain_csv, read_plain_json
from densemarks.data.formats.pts import read_pts, write_pts
from densemarks.data.formats.wflw import read_wflw

READERS = {"pts": read_pts, "dlib": read_dlib_xml, "wflw": read_wflw, "coco": read_coco,
           "csv": read_plain_csv, "json": read_plain_json}
WRITERS = {"pts": write_pts, "dlib": write_dlib_xml, "coco": write_coco}


def guess_format(source: str | Path) -> str:
    """The reader for a source: a folder holds .pts files; otherwise by suffix (a .json file is
    COCO when it has 'images' and 'annotations', else plain)."""
    source = Path(source)
    if source.is_dir() or source.suffix.lower() == ".pts":
        return "pts"
    suffix = source.suffix.lower()
    if suffix == ".xml":
        return "dlib"
    if suffix == ".txt":
        return "wflw"
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        try:
            with open(source, encoding="utf-8-sig", errors="replace") as f:
                head = f.read(1 << 20)
        except OSError as exc:
            raise DataError(source, f"cannot read: {exc.strerror}") from None
        return "coco" if '"annotations"' in head and '"images"' in head else "json"
    if not source.exists():
        raise DataError(source, "not found")
    raise DataError(source, f"cannot tell the format from {suffix!r}; give --format ({', '.join(READERS)})")


def reader(name: str):
    return choose(READERS, name, "format")


def writer(name: str):
    return choose(WRITERS, name, "export format")
