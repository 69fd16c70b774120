"""The geometric convention: hand-computed matrices, inverses and the black-border box."""

from __future__ import annotations

import numpy as np

from densemarks.core import geometry
from densemarks.data.images import content_box
def test_scaling_maps_pixel_edges_exactly():
    # A 4-pixel-wide image scaled by 2 spans 8 pixels: edge -0.5 -> -0.5, edge 3.5 -> 7.5.
    m = geometry.scaling(2.0)
    np.testing.assert_allclose(geometry.apply(m, np.array([[-0.5, -0.5], [3.5, 3.5]])),
                               [[-0.5, -0.5], [7.5, 7.5]])


def test_hflip_mirrors_columns_and_is_its_own_inverse():
    m = geometry.hflip(10)
    np.testing.assert_allclose(geometry.apply(m, np.array([[0.0, 3.0], [9.0, 1.0]])), [[9, 3], [0, 1]])
    np.testing.assert_allclose(m @ m, np.eye(3))


def test_rotation_by_90_degrees_about_a_centre():
    m = geometry.rotation(90, (5.0, 5.0))
    # Counter-clockwise on screen (y down): a point right of the centre moves above it.
    np.testing.assert_allclose(geometry.apply(m, np.array([[7.0, 5.0]])), [[5.0, 3.0]], atol=1e-12)


def test_box_to_frame_cover_centres_and_crops():
    # A 100 x 200 (w x h) box onto 50 x 50: scale 0.5, the box's vertical centre at the centre.
    m = geometry.box_to_frame((0, 0, 100, 200), (50, 50), "cover")
    corners = geometry.apply(m, np.array([[-0.5, 99.5], [99.5, 99.5]]))
    np.testing.assert_allclose(corners, [[-0.5, 24.5], [49.5, 24.5]])


def test_box_to_frame_fit_and_stretch():
    fit = geometry.box_to_frame((0, 0, 100, 200), (50, 50), "fit")
    np.testing.assert_allclose(fit[0, 0], 0.25)
    stretch = geometry.box_to_frame((0, 0, 100, 200), (50, 50), "stretch")
    np.testing.assert_allclose([stretch[0, 0], stretch[1, 1]], [0.5, 0.25])


def test_apply_batched_matches_loop():
    rng = np.random.default_rng(0)
    mats = np.stack([geometry.rotation(a, (3, 4)) @ geometry.scaling(s) for a, s in [(10, 1.5), (-40, 0.7)]])
    pts = rng.normal(size=(2, 5, 2))
    batched = geometry.apply(mats, pts)
    for i in range(2):
        np.testing.assert_allclose(batched[i], geometry.apply(mats[i], pts[i]))


def test_content_box_skips_black_borders_only_at_the_edges():
    image = np.zeros((10, 12, 3), np.uint8)
    image[2:8, 3:10] = 100
    image[5, 6] = 0  # dark inside the content stays inside
    image[0, 0] = 9  # at most the threshold: still border
    assert content_box(image, 9) == (3, 2, 10, 8)
    assert content_box(np.zeros((4, 5, 3), np.uint8), 9) == (0, 0, 5, 4)


def test_content_box_agrees_with_full_row_and_column_maxima():
    rng = np.random.default_rng(3)
    for _ in range(200):
        h, w = rng.integers(1, 60, size=2)
        image = rng.integers(0, 10, (h, w, 3), dtype=np.uint8)  # all dark (threshold 9) ...
        bright = rng.random((h, w)) < rng.choice([0.0, 0.01, 0.3])
        image[bright, rng.integers(0, 3)] = 200  # ... but for scattered bright pixels
        rows = np.flatnonzero(image.max(axis=(1, 2)) > 9)
        cols = np.flatnonzero(image.max(axis=(0, 2)) > 9)
        expected = (0, 0, w, h) if not len(rows) else (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        assert content_box(image, 9) == expected
        assert content_box(image[:, :, 0], 9) == content_box(image[:, :, :1], 9)
        flipped = image[::-1, ::-1]  # a strided view: the box mirrors
        assert content_box(flipped, 9) == (w - expected[2], h - expected[3], w - expected[0], h - expected[1])
