"""Framing: the mean training face in the input frame, and the crop that reproduces it on photos."""

import numpy as np

from densemarks.core import geometry
from densemarks.data.framing import Framing, measure_framing, turn_to_keypoints
from densemarks.core.shapes import similarity_matrices


def _shape(k=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(20, 80, size=(k, 2))


def test_similarity_matrices_recover_a_known_transform():
    ref = _shape()
    m = geometry.translation(30, -12) @ geometry.rotation(25, (0, 0)) @ np.diag([1.7, 1.7, 1.0])
    moved = geometry.apply(m, ref)
    back = similarity_matrices(moved[None], ref)[0]
    np.testing.assert_allclose(back @ m, np.eye(3), atol=1e-9)


def test_region_matrix_frames_a_tilted_face_like_training():
    # Training: every face has the same shape, boxes of aspect 0.8 stretched to 64 x 64.
    shape = _shape()
    size = (64, 64)
    boxes = [(0, 0, 80, 100), (10, 5, 50, 55), (3, 7, 43, 57)]
    matrices, points = [], []
    for x0, y0, x1, y1 in boxes:
        box_m = geometry.box_to_frame((x0, y0, x1, y1), size, "stretch")
        # the face fills its box the same way each time
        placed = geometry.apply(geometry.invert(box_m), geometry.apply(geometry.box_to_frame((0, 0, 80, 100), size, "stretch"), shape))
        matrices.append(box_m)
        points.append(placed)
    framing = measure_framing(np.asarray(matrices), np.asarray(points), size)
    lo, hi = points[0].min(axis=0), points[0].max(axis=0)
    side = np.sqrt(np.prod(hi - lo))
    np.testing.assert_allclose(framing.region[2:], (80 / side, 100 / side), rtol=1e-9)
    # Region centre (39.5, 49.5): the box (0, 0, 80, 100) is in pixel edges, points in centres.
    np.testing.assert_allclose(framing.region[:2], ((39.5 - (lo[0] + hi[0]) / 2) / (hi - lo)[0],
                                                    (49.5 - (lo[1] + hi[1]) / 2) / (hi - lo)[1]), atol=1e-9)
    # A photo: the face turned by 30 degrees, twice as large, elsewhere.
    photo = geometry.translation(400, 250) @ geometry.rotation(30, (0, 0)) @ np.diag([2.0, 2.0, 1.0])
    face = geometry.apply(photo, points[0])
    to_input = framing.region_matrix(face)
    np.testing.assert_allclose(geometry.apply(to_input, face), framing.mean_shape, atol=1e-6)
    # Batched form agrees; without `upright` the frame stays aligned with the photo's axes.
    np.testing.assert_allclose(framing.region_matrix(face[None])[0], to_input)
    axis_aligned = framing.region_matrix(face, upright=False)
    assert abs(axis_aligned[0, 1]) < 1e-12 and abs(axis_aligned[1, 0]) < 1e-12


def test_shape_in_box_centres_the_mean_shape():
    framing = Framing(_shape(), (0.0, -0.1, 1.2, 1.5), (64, 64))
    start = framing.shape_in_box(np.array([[100, 200, 180, 300]]))[0]
    lo, hi = start.min(axis=0), start.max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, (140, 250), atol=1e-9)
    # Undistorted: the mean face's box keeps its proportions in region units.
    face = framing.mean_face()
    (fw, fh) = face.max(axis=0) - face.min(axis=0)
    np.testing.assert_allclose((hi - lo)[0] / (hi - lo)[1], fw / fh, rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.prod(hi - lo)), np.sqrt(80 * 100), rtol=1e-9)
    d = Framing.from_dict(framing.to_dict())
    np.testing.assert_allclose(d.mean_shape, framing.mean_shape)


def test_turn_to_keypoints_gives_the_keypoints_roll_and_nothing_else():
    shape = _shape(k=12)
    weights = np.zeros((4, 12))
    weights[np.arange(4), [0, 3, 5, 9]] = 1.0
    centre = shape.mean(axis=0)
    # The detector's keypoints: the face turned 25 degrees, larger and elsewhere, a little noisy.
    grow = geometry.translation(*centre) @ geometry.scaling(1.6) @ geometry.translation(*-centre)
    seen = geometry.translation(40, -7) @ geometry.rotation(25, tuple(centre)) @ grow
    keypoints = geometry.apply(seen, weights @ shape) + np.random.default_rng(0).normal(0, 0.01, (4, 2))
    turned = turn_to_keypoints(shape[None], keypoints[None], weights)[0]
    np.testing.assert_allclose(turned, geometry.apply(geometry.rotation(25, tuple(centre)), shape), atol=0.05)
    # No keypoints (NaN): the shape as it was.
    np.testing.assert_array_equal(turn_to_keypoints(shape[None], np.full((1, 4, 2), np.nan), weights)[0], shape)
