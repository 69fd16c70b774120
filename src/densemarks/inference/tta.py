"""Test-time augmentation: the views of each face the model sees, and the one function that
combines them, for test folders, validation, photos and exported models alike.

none: the face once. flip: also its mirror. multi: flip in each of five framings, the face as
is, rotated by -10 and +10 degrees and zoomed by 0.95 and 1.05 about the crop's centre (inside
the training augmentation's range): ten passes.

Every pass is a matrix: original pixels -> the pixels the network saw. A framing is one more
matrix after the crop's own (`view_matrices`), so each view is warped once from the decoded
image; a mirror is the network input flipped left to right, i.e. `geometry.hflip` after that.
`average_views` maps each pass's points back through its own inverse (renaming a mirrored
pass's points through the scheme's flip index first) and averages them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemarks.core import geometry
from densemarks.core.registry import choose


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


def parse_tta(name: str | Tta) -> Tta:
    return name if isinstance(name, Tta) else choose(TTA_MODES, name, "test-time augmentation")


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


def with_mirrors(to_input: np.ndarray, mirrored: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The passes of a flip TTA: to_input (P, N, 3, 3) and mirrored (P, N) of the passes as
    warped, followed by the same passes with the input mirrored: (2P, N, 3, 3), (2P, N). The
    caller runs the network on its inputs, then on the same inputs flipped left to right."""
    flipped = geometry.hflip(width) @ to_input
    return np.concatenate([to_input, flipped]), np.concatenate([mirrored, ~mirrored])


def average_views(points: np.ndarray, to_input: np.ndarray, mirrored: np.ndarray | bool,
                  flip_index: np.ndarray) -> np.ndarray:
    """Points in original pixels from P passes over N faces.

    points (P, N, K, 2): each pass's prediction in the pixels of the input it saw;
    to_input (P, N, 3, 3): original pixels -> that input; mirrored (P, N) (or broadcastable)
    bool: the pass saw the face mirrored, so its point i is the face's point flip_index[i].
    Returns (N, K, 2) float64: each pass renamed, mapped back by its inverse, averaged.
    """
    mirrored = np.broadcast_to(np.asarray(mirrored, dtype=bool), np.shape(points)[:2])
    return geometry.to_original(points, to_input, mirrored, flip_index).mean(axis=0)
