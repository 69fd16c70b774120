"""Test-time augmentation: the views of each face the model sees, and how they are combined.

none: the face once. flip: also its mirror; the mirror's maps (or points) are mirrored back,
renamed through the flip index and averaged with the first. multi: flip in each of five
framings, the face as is, rotated by -10 and +10 degrees and zoomed by 0.95 and 1.05 about the
crop's centre (inside the training augmentation's range): ten passes. Each framing is one more
matrix applied after the crop's own (`view_matrices`), so every view is warped once from the
decoded image, and its points go back to original pixels through its own inverse before the
views are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemarks import geometry
from densemarks.augment import AugmentConfig, LandmarkTransform
from densemarks.errors import DataError


@dataclass(frozen=True)
class Tta:
    flip: bool
    views: tuple[tuple[float, float], ...]  # (degrees counter-clockwise, zoom) about the centre

    @property
    def passes(self) -> int:
        return len(self.views) * (2 if self.flip else 1)


AS_IS = ((0.0, 1.0),)
TTA_MODES = {
    "none": Tta(False, AS_IS),
    "flip": Tta(True, AS_IS),
    "multi": Tta(True, AS_IS + ((-10.0, 1.0), (10.0, 1.0), (0.0, 0.95), (0.0, 1.05))),
}


def parse_tta(name: str) -> Tta:
    if name not in TTA_MODES:
        raise DataError(None, f"--tta {name!r}: choose {', '.join(TTA_MODES)}")
    return TTA_MODES[name]


def view_matrices(views: tuple[tuple[float, float], ...], size: tuple[int, int]) -> np.ndarray:
    """(V, 3, 3): input pixels -> view pixels, each a rotation and zoom about the centre of an
    input of size (H, W), the point the training jitter turns about too."""
    h, w = size
    centre = ((w - 1) / 2, (h - 1) / 2)
    out = []
    for degrees, zoom in views:
        zoom_about_centre = geometry.translation(*centre) @ np.diag([zoom, zoom, 1.0]) \
            @ geometry.translation(-centre[0], -centre[1])
        out.append(geometry.rotation(degrees, centre) @ zoom_about_centre)
    return np.stack(out)


def view_transform(config: AugmentConfig, flip_index: np.ndarray, tta: Tta) -> LandmarkTransform:
    """The evaluation transform that gives each face tta's framings (one: the plain crop)."""
    views = view_matrices(tta.views, config.size) if len(tta.views) > 1 else None
    return LandmarkTransform(config, flip_index, views=views)
