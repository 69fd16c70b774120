"""Pictures people would rather look at than numbers: points drawn on faces, in a grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densemarks.core.fileio import atomic_path
from densemarks.data.images import load_image
from densemarks.data.scheme import LandmarkScheme

TRUTH_COLOUR = (255, 60, 60)
PREDICTION_COLOUR = (40, 230, 40)
CAPTION_BAR = 18  # pixels under each tile of `comparison_grid`


def draw_points(pixels: np.ndarray, points: np.ndarray, colour=(0, 255, 0), truth: np.ndarray | None = None) -> np.ndarray:
    """A copy of an RGB image with points (K, 2) as dots; truth, if given, in red beneath."""
    image = np.ascontiguousarray(pixels).copy()
    radius = max(1, round(min(image.shape[:2]) / 150))
    for pts, col in ((truth, (255, 40, 40)), (points, colour)):
        if pts is None:
            continue
        for x, y in np.round(pts).astype(int):
            cv2.circle(image, (int(x), int(y)), radius, col, -1, cv2.LINE_AA)
    return image


def region_polylines(points: np.ndarray, scheme: LandmarkScheme) -> list[tuple[np.ndarray, bool]]:
    """Each region of the scheme as (polyline (M, 2), closed) pieces through its points in
    order: a region is cut where a step is over 3x its median step (the synthetic mouth's
    segments, an eye's two passes), and closed where its ends meet (eyes, lips). Regions of
    fewer than 3 points (pupils) are left as dots. The scheme's extra lines come as pairs."""
    pieces = []
    for region in scheme.regions:
        pts = np.asarray(points[region.start:region.stop], dtype=np.float64)
        if len(pts) < 3:
            continue
        steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        typical = max(float(np.median(steps)), 1e-6)
        cuts = np.flatnonzero(steps > 3 * typical) + 1
        parts = np.split(pts, cuts)
        for part in parts:
            closed = len(parts) == 1 and len(part) >= 4 and np.linalg.norm(part[-1] - part[0]) < 2 * typical
            if len(part) >= 2:
                pieces.append((part, bool(closed)))
    pieces += [(np.asarray(points)[[a, b]], False) for a, b in scheme.lines]
    return pieces


def draw_shape(pixels: np.ndarray, points: np.ndarray, scheme: LandmarkScheme, colour) -> np.ndarray:
    """A copy of an RGB image with the face drawn as its regions' lines, and the points of
    regions too short for a line (pupils) as dots."""
    image = np.ascontiguousarray(pixels).copy()
    thickness = max(1, round(min(image.shape[:2]) / 250))
    for piece, closed in region_polylines(points, scheme):
        cv2.polylines(image, [np.round(piece * 16).astype(np.int32)], closed, colour, thickness, cv2.LINE_AA, shift=4)
    short = [i for r in scheme.regions if r.stop - r.start < 3 for i in range(r.start, r.stop)]
    for x, y in np.round(np.asarray(points)[short]).astype(int):
        cv2.circle(image, (int(x), int(y)), thickness + 1, colour, -1, cv2.LINE_AA)
    return image


def _tile(drawn: np.ndarray, tile: tuple[int, int], caption: str | None, caption_colour=(255, 255, 0)) -> np.ndarray:
    h, w = drawn.shape[:2]
    scale = min(tile[0] / w, tile[1] / h)
    resized = cv2.resize(drawn, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((tile[1] + CAPTION_BAR, tile[0], 3), np.uint8)  # the caption below, never on the face
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    if caption:
        cv2.putText(canvas, caption, (4, tile[1] + CAPTION_BAR - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, caption_colour, 1,
                    cv2.LINE_AA)
    return canvas


def comparison_grid(images_dir: Path, faces: list[tuple[str, np.ndarray, np.ndarray, str]], scheme: LandmarkScheme,
                    out: Path, worst: tuple[str, np.ndarray, np.ndarray, str] | None = None,
                    tile: tuple[int, int] = (220, 260)) -> None:
    """Save a PNG of faces as pairs of tiles, the truth (red lines) beside the prediction
    (green lines), two pairs a row; then the worst face's pair, captioned in red.
    faces: (image name, truth (K, 2), prediction (K, 2), caption) in original-image pixels."""
    pairs = []
    for (name, truth, pred, caption), is_worst in [(f, False) for f in faces] + ([(worst, True)] if worst else []):
        image = load_image(images_dir / name).pixels
        colour = (255, 80, 80) if is_worst else (255, 255, 0)
        pairs.append(np.hstack([_tile(draw_shape(image, truth, scheme, TRUTH_COLOUR), tile, "truth", colour),
                                _tile(draw_shape(image, pred, scheme, PREDICTION_COLOUR), tile, caption, colour)]))
    if len(pairs) % 2:
        pairs.append(np.zeros_like(pairs[0]))
    grid = np.vstack([np.hstack(pairs[r:r + 2]) for r in range(0, len(pairs), 2)])
    save_rgb(out, grid)


def prediction_grid(images_dir: Path, names, points: np.ndarray, out: Path, truth: np.ndarray | None = None,
                    columns: int = 4, count: int = 12, tile: tuple[int, int] = (240, 300),
                    captions: list[str] | None = None) -> None:
    """Save a PNG grid of the first `count` faces with their points (green) and, if given, a
    second set beneath (red: the truth, or a model's prediction), each tile captioned."""
    tiles = []
    for i, name in enumerate(list(names)[:count]):
        image = load_image(images_dir / name).pixels
        drawn = draw_points(image, points[i], truth=None if truth is None else truth[i])
        tiles.append(_tile(drawn, tile, None if captions is None else captions[i]))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)])
    save_rgb(out, grid)


def draw_faces(pixels: np.ndarray, faces, truth: list[np.ndarray] | None = None,
               scheme: LandmarkScheme | None = None) -> np.ndarray:
    """A copy of an RGB photo with each face's box (yellow) and points (green), its regions as
    lines when the scheme is given; truth point sets (red) beneath when given.
    faces: objects with .box (4,) and .points (K, 2)."""
    image = draw_points(pixels, np.zeros((0, 2)))
    for pts in truth or []:
        image = draw_points(image, np.zeros((0, 2)), truth=pts)
    thickness = max(1, round(min(image.shape[:2]) / 300))
    for face in faces:
        x0, y0, x1, y1 = np.round(face.box).astype(int)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), (255, 220, 0), thickness, cv2.LINE_AA)
        if scheme is not None:
            image = draw_shape(image, face.points, scheme, PREDICTION_COLOUR)
        image = draw_points(image, face.points)
    return image


def save_rgb(path: Path, pixels: np.ndarray) -> None:
    """Write an RGB array as an image file (format from the suffix), atomically."""
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(Path(path).suffix or ".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode {path}")
        tmp.write_bytes(encoded.tobytes())


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no screen)."""
    import matplotlib  # heavy (about a second): loaded only when a figure is drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (see above)
    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Write a figure as PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
