"""Synthetic faces: the competition layout, its 971-point regions, determinism."""

from __future__ import annotations

import hashlib

import numpy as np

from densemarks.data.csvio import read_landmarks, read_test_points
from densemarks.data import synth
from densemarks.data.synth import make_layout, synthesize


def test_layout_971_is_the_competitions():
    regions = {r.name: (r.start, r.stop - 1) for r in make_layout(971).scheme.regions}
    assert regions["oval_lower_a"] == (0, 63) and regions["oval_lower_b"] == (64, 127)
    assert regions["oval_upper"] == (128, 272)
    assert regions["brow_a"] == (273, 336) and regions["brow_b"] == (337, 400)
    assert regions["nose_side_a"] == (401, 463) and regions["nose_side_b"] == (464, 526)
    assert regions["nose_middle"] == (527, 586)
    assert regions["eye_a"] == (587, 713) and regions["eye_b"] == (714, 840)
    assert regions["mouth"] == (841, 968)
    flip = make_layout(971).scheme.flip_index
    assert flip[969] == 970 and flip[0] == 64 and flip[128] == 272 and flip[527] == 527
    assert flip[841] == 872  # each 32-point mouth segment reverses


def test_files_in_the_competition_layout(synth971):
    train = read_landmarks(synth971 / "train" / "landmarks.csv")
    assert len(train) == 40 and train.num_points == 971
    assert all(len(n) == 36 and n.endswith(".jpg") for n in train.file_names)
    assert sorted(p.name for p in (synth971 / "train" / "images").iterdir()) == sorted(train.file_names)
    answers = read_landmarks(synth971 / "test" / "answers.csv")
    requested = read_test_points(synth971 / "test" / "test_points.csv", 971)
    assert list(requested.file_names) == list(answers.file_names)
    assert requested.indices.shape == (8, 30)
    assert all(len(set(row)) == 30 for row in requested.indices)


def test_variety(synth971):
    from PIL import Image
    sizes = {Image.open(p).size for p in (synth971 / "train" / "images").iterdir()}
    assert len(sizes) > 30
    heights = [h for _, h in sizes]
    assert min(heights) >= 120 and sorted(heights)[-3] <= 480  # a few enlarged above 1300 px
    assert all(w < h for w, h in sizes)  # portrait, as the competition's crops


def test_same_seed_same_dataset(tmp_path):
    def digest(root):
        h = hashlib.sha1()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.name.encode() + p.read_bytes())
        return h.hexdigest()
    synthesize(tmp_path / "a", 5, 2, 68, seed=7)
    synthesize(tmp_path / "b", 5, 2, 68, seed=7)
    synthesize(tmp_path / "c", 5, 2, 68, seed=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    pts = np.asarray(read_landmarks(tmp_path / "a" / "train" / "landmarks.csv").points)
    assert pts.dtype == np.float32 and np.isfinite(pts).all()


def test_every_point_count_gets_a_valid_layout():
    for k in list(range(24, 130)) + [500, 971, 1500]:
        scheme = make_layout(k).scheme  # the scheme checks its flip index is an involution
        assert scheme.num_points == k and scheme.regions[0].start == 0
        assert scheme.regions[-1].stop == k


def _tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_workers_give_byte_identical_output(tmp_path):
    """`synth --workers N`: the faces render in N processes, in chunks; every file is the same."""
    synthesize(tmp_path / "one", train=70, test=5, num_points=68, seed=9)
    synthesize(tmp_path / "two", train=70, test=5, num_points=68, seed=9, workers=2)
    one, two = _tree_digest(tmp_path / "one"), _tree_digest(tmp_path / "two")
    assert len(one) == 70 + 5 + 4 and one == two


def test_some_crops_are_large_and_their_points_follow(monkeypatch):
    """As in the competition, a few crops are above 1300 px; enlarging keeps each point on the
    same spot of the picture (pixel centres scale with the image)."""
    layout = make_layout(971)
    image, points = synth.render_face(layout, np.random.default_rng(5))
    monkeypatch.setattr(synth, "LARGE_SHARE", 1.0)
    large, moved = synth._maybe_enlarge(image, points, np.random.default_rng(0))
    assert 1300 <= max(large.shape[:2]) <= 1700
    assert abs(large.shape[0] / image.shape[0] - large.shape[1] / image.shape[1]) < 0.01
    scale = np.array([large.shape[1] / image.shape[1], large.shape[0] / image.shape[0]])
    np.testing.assert_allclose((moved + 0.5) / scale - 0.5, points, atol=1e-9)
    monkeypatch.setattr(synth, "LARGE_SHARE", 0.0)
    same, kept = synth._maybe_enlarge(image, points, np.random.default_rng(0))
    assert same is image and kept is points
