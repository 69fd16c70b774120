"""Pictures people would rather look at than numbers: points drawn on faces, in a grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densemarks.core.fileio import atomic_path
from densemarks.data.images import load_image


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


def prediction_grid(images_dir: Path, names, points: np.ndarray, out: Path, truth: np.ndarray | None = None,
                    columns: int = 4, count: int = 12, tile: tuple[int, int] = (240, 300),
                    captions: list[str] | None = None) -> None:
    """Save a PNG grid of the first `count` faces with their points (green) and, if given, a
    second set beneath (red: the truth, or a model's prediction), each tile captioned."""
    tiles = []
    for i, name in enumerate(list(names)[:count]):
        image = load_image(images_dir / name).pixels
        drawn = draw_points(image, points[i], truth=None if truth is None else truth[i])
        h, w = drawn.shape[:2]
        scale = min(tile[0] / w, tile[1] / h)
        resized = cv2.resize(drawn, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((tile[1], tile[0], 3), np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        if captions is not None:
            cv2.putText(canvas, captions[i], (4, tile[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(canvas)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)])
    with atomic_path(out) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def draw_faces(pixels: np.ndarray, faces, truth: list[np.ndarray] | None = None) -> np.ndarray:
    """A copy of an RGB photo with each face's box (yellow) and points (green); truth point sets
    (red) beneath when given. faces: objects with .box (4,) and .points (K, 2)."""
    image = draw_points(pixels, np.zeros((0, 2)))
    for pts in truth or []:
        image = draw_points(image, np.zeros((0, 2)), truth=pts)
    thickness = max(1, round(min(image.shape[:2]) / 300))
    for face in faces:
        x0, y0, x1, y1 = np.round(face.box).astype(int)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), (255, 220, 0), thickness, cv2.LINE_AA)
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
