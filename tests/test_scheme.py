"""The scheme as data: derived flip index, involution checks, files that override."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densemarks.data.csvio import read_landmarks
from densemarks.core.errors import DataError
from densemarks.data.scheme import (LandmarkScheme, check_flip_index, derive_flip_index, known_scheme,
                               read_flip_index, read_scheme_file, resolve_scheme)
from densemarks.data.synth import make_layout

from conftest import SHARED_300W


@pytest.mark.parametrize("fixture", ["synth971", "synth68"])
def test_derived_flip_index_matches_the_construction(request, fixture):
    root = request.getfixturevalue(fixture)
    table = read_landmarks(root / "train" / "landmarks.csv")
    truth = make_layout(table.num_points).scheme.flip_index
    derived, residual = derive_flip_index(np.asarray(table.points))
    check_flip_index(derived, table.num_points)
    agree = (derived == truth).mean()
    assert agree > 0.97, f"only {agree:.1%} of points match the true flip index"
    assert residual < 0.05


def test_flipped_mean_shape_is_the_mean_shape():
    # Hand-made symmetric shape: pairs (0, 1), (2, 3) and a midline point 4.
    shape = np.array([[-1.0, 0], [1, 0], [-0.5, 1], [0.5, 1], [0, 2]])
    shapes = shape + np.random.default_rng(0).normal(0, 0.01, (50, 5, 2))
    flip, _ = derive_flip_index(shapes)
    assert flip.tolist() == [1, 0, 3, 2, 4]


def test_non_involution_is_rejected():
    with pytest.raises(ValueError, match="not an involution"):
        check_flip_index(np.array([1, 2, 0]), 3)
    with pytest.raises(ValueError, match="permutation"):
        check_flip_index(np.array([0, 0, 1]), 3)


def test_flip_index_file_formats(tmp_path):
    (tmp_path / "a.json").write_text("[1, 0, 2]")
    (tmp_path / "b.txt").write_text("1 0\n2\n")
    assert read_flip_index(tmp_path / "a.json", 3).tolist() == [1, 0, 2]
    assert read_flip_index(tmp_path / "b.txt", 3).tolist() == [1, 0, 2]
    (tmp_path / "c.txt").write_text("1 2 0")
    with pytest.raises(DataError, match="involution"):
        read_flip_index(tmp_path / "c.txt", 3)
    for name, text, words in [("d.json", "[1.9, 0.2, 2]", "entry '1.9' is not an integer"),  # int() would truncate
                              ("e.json", "[" * 100000 + "]" * 100000, "entry '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' is"),
                              ("f.json", '{"flip": [1, 0, 2]}', "a JSON object without a flip_index entry")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as caught:
            read_flip_index(tmp_path / name, 3)
        assert words in str(caught.value) and len(str(caught.value)) - len(str(tmp_path / name)) < 80


def test_resolution_order(synth68, tmp_path):
    csv = synth68 / "train" / "landmarks.csv"
    points = np.asarray(read_landmarks(csv).points)
    from_file = resolve_scheme(csv, points)  # scheme.json written by synth
    assert from_file.norm_points == (66, 67)
    assert [r.name for r in from_file.regions][:2] == ["oval_lower_a", "oval_lower_b"]
    flip = list(range(68))
    (tmp_path / "flip.json").write_text(json.dumps(flip))
    overridden = resolve_scheme(csv, points, flip_index_file=tmp_path / "flip.json", norm_points=(0, 1))
    assert overridden.flip_index.tolist() == flip and overridden.norm_points == (0, 1)


def test_known_scheme_without_scheme_file(synth68, tmp_path):
    # A plain 68-point dataset (no scheme.json) gets the iBUG regions and eye-corner NME pair.
    csv = tmp_path / "landmarks.csv"
    csv.write_bytes((synth68 / "train" / "landmarks.csv").read_bytes())
    scheme = resolve_scheme(csv, np.asarray(read_landmarks(csv).points))
    assert scheme.norm_points == (36, 45)
    assert (tmp_path / "landmarks.csv.flip_index.json").is_file()  # cached beside the data


def test_scheme_round_trip(tmp_path):
    scheme = make_layout(971).scheme
    scheme.save(tmp_path / "s.json")
    back = LandmarkScheme.from_dict(json.loads((tmp_path / "s.json").read_text()))
    assert back.norm_points == (969, 970) and back.regions == scheme.regions
    np.testing.assert_array_equal(back.flip_index, scheme.flip_index)

REAL_68 = SHARED_300W


@pytest.mark.skipif(not (REAL_68 / "landmarks.csv").is_file(), reason=f"needs the 300-W crops at {REAL_68}")
def test_derived_flip_index_on_real_faces_is_the_ibug_mirror_map():
    ibug = (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
            + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
            + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])
    flip, residual = derive_flip_index(np.asarray(read_landmarks(REAL_68 / "landmarks.csv", cache=False).points))
    assert flip.tolist() == ibug


def test_keypoint_weights_give_eye_centres_and_mouth_corners_image_left_first():
    rng = np.random.default_rng(0)
    shape = rng.uniform(0, 100, (68, 2))
    shape[36:42, 0] += 200  # the scheme's "right" eye lies image-right here: the order follows x
    weights = known_scheme(68).keypoint_weights(shape)
    mouth = shape[48:60]
    expected = [shape[42:48].mean(0), shape[36:42].mean(0), mouth[mouth[:, 0].argmin()], mouth[mouth[:, 0].argmax()]]
    np.testing.assert_allclose(weights @ shape, expected)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_keypoint_weights_take_pupils_and_need_named_regions():
    shape = np.random.default_rng(1).uniform(0, 100, (98, 2))
    weights = known_scheme(98).keypoint_weights(shape)
    pupils = sorted([96, 97], key=lambda i: shape[i, 0])
    np.testing.assert_array_equal(weights[:2].argmax(axis=1), pupils)
    assert known_scheme(30).keypoint_weights(shape[:30]) is None  # one region, "all"
    layout = make_layout(971).scheme  # the synthetic faces' regions: eye_a, eye_b, mouth
    assert layout.keypoint_weights(np.random.default_rng(2).uniform(0, 100, (971, 2))) is not None


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", "a JSON list, expected an object"),
    ('{"flip_index": [0, 1]}', "no 'num_points' entry"),
    ("{", "invalid scheme: Expecting property name"),
    # each entry checked for its type and range (a slip once gave a traceback, a silently
    # truncated number, or region NMEs over the wrong points)
    ('{"num_points": "2", "flip_index": [0, 1]}', 'num_points: "2" is not a whole number'),
    ('{"num_points": 2, "flip_index": [0.0, 1]}', "flip_index[0]: 0.0 is not a whole number"),
    ('{"num_points": 2, "flip_index": [0, 1], "norm_points": [0]}', "norm_points: [0] is not a list of 2"),
    ('{"num_points": 2, "flip_index": [0, 1], "norm_points": [1, 1]}', "two different points are needed"),
    ('{"num_points": 2, "flip_index": [0, 1], "norm_points": [0, 1.5]}', "norm_points[1]: 1.5 is not a whole"),
    ('{"num_points": 2, "flip_index": [0, 1], "regions": [{"name": "a", "start": 0, "stop": 3}]}',
     "region 'a': points 0 to 3 (exclusive) is not a non-empty range within 0..2"),
    ('{"num_points": 2, "flip_index": [0, 1], "regions": [{"name": "a", "start": 1, "stop": 1}]}', "non-empty"),
    ('{"num_points": 2, "flip_index": [0, 1], "regions": [{"name": "a", "start": 0, "stop": 1}, '
     '{"name": "a", "start": 1, "stop": 2}]}', "region 'a' is named twice"),
    ('{"num_points": 2, "flip_index": [0, 1], "regions": ["eyes"]}', "regions[0]: expected an object"),
    ('{"num_points": 2, "flip_index": [0, 1], "lines": [1, 2]}', "lines[0]: 1 is not a list of 2"),
    ('{"num_points": 2, "flip_index": [0, 1], "norm_point": [0, 1]}',
     "unknown entry 'norm_point' (did you mean 'norm_points'?)"),
])
def test_scheme_files_that_are_not_a_scheme(tmp_path, text, words):
    (tmp_path / "scheme.json").write_text(text)
    with pytest.raises(DataError, match="scheme.json") as err:
        read_scheme_file(tmp_path / "scheme.json", 2)
    assert words in str(err.value)
