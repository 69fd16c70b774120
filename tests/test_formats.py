"""Annotation formats: each reader on small files written here (several faces in one photo,
broken annotations that become problems rather than failures), round trips with the writers,
`convert` cutting crops whose points sit on the same pixels as in the photo, and a 300-W-style
`.pts` folder through convert, train, predict and export-points on the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import one_line_error, run_cli
from densemarks.core.errors import DataError
from densemarks.data.csvio import read_landmarks
from densemarks.data.formats import guess_format
from densemarks.data.formats.base import FaceAnnotation, PhotoAnnotation, flip_from_names, parse_numbers
from densemarks.data.formats.coco import read_coco, write_coco
from densemarks.data.formats.convert import convert, crop_face, read_sources, to_photo_pixels
from densemarks.data.formats.dlib_xml import read_dlib_xml, write_dlib_xml
from densemarks.data.formats.export import photos_from_predictions
from densemarks.data.formats.plain import read_plain_csv, read_plain_json
from densemarks.data.formats.pts import read_pts, read_pts_file, write_pts, write_pts_file
from densemarks.data.formats.wflw import read_wflw
from densemarks.data.images import load_image
from densemarks.data.scheme import read_scheme_file


def _photos(synth68: Path, folder: Path, count: int = 6) -> list[PhotoAnnotation]:
    """Photos made of synthetic 68-point faces: each photo pastes two crops side by side on a
    grey canvas (two faces), except the last, which holds one. Points in photo pixels."""
    table = read_landmarks(synth68 / "train" / "landmarks.csv")
    crops = [load_image(synth68 / "train" / "images" / name).pixels for name in table.file_names]
    fits = [i for i, c in enumerate(crops) if c.shape[0] <= 480 and c.shape[1] <= 480]  # not the few enlarged
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for p in range(count):
        faces, canvas = [], np.full((500, 1000, 3), 90, np.uint8)
        for slot in range(2 if p < count - 1 else 1):
            i = fits[2 * p + slot]
            crop = crops[i]
            x0, y0 = 10 + 490 * slot, 10
            canvas[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
            faces.append(FaceAnnotation(np.asarray(table.points[i], np.float64) + [x0, y0]))
        path = folder / f"photo{p}.png"
        cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        photos.append(PhotoAnnotation(path, faces, str(path)))
    return photos


def _same(a: list[PhotoAnnotation], b: list[PhotoAnnotation], atol: float) -> None:
    by_name = {Path(p.image).name: p for p in b}
    assert sorted(by_name) == sorted(Path(p.image).name for p in a)
    for photo in a:
        other = by_name[Path(photo.image).name]
        assert len(other.faces) == len(photo.faces)
        for f, g in zip(photo.faces, other.faces):
            np.testing.assert_allclose(g.points, f.points, atol=atol)


def test_pts_file_is_one_based_and_round_trips(tmp_path):
    path = tmp_path / "a.pts"
    path.write_text("version: 1\nn_points:  3\n{\n1 1\n10.5 20\n3 4\n}\n")
    np.testing.assert_allclose(read_pts_file(path), [[0, 0], [9.5, 19], [2, 3]])
    write_pts_file(tmp_path / "b.pts", read_pts_file(path))
    np.testing.assert_allclose(read_pts_file(tmp_path / "b.pts"), read_pts_file(path))


@pytest.mark.parametrize("text, words", [
    ("version: 1\nn_points: 3\n{\n1 1\n2 2\n}\n", ["2 points", "n_points says 3"]),
    ("version: 1\nn_points: 2\n{\n1 1\n2 x\n}\n", ["line 5", "not all numbers"]),
    ("version: 1\nn_points: 2\n{\n1 1\n2 2\n", ["no '}'"]),
    ("n_points: many\n{\n}\n", ["n_points", "not an integer"]),
    ("hello\n", ["expected 'key: value'"]),
])
def test_broken_pts_files_say_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_pts_file(path)
    assert str(path) in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_pts_export_refuses_two_photos_of_one_name_before_writing(tmp_path):
    face = FaceAnnotation(np.array([[1.0, 2.0], [3.0, 4.0]]))
    photos = [PhotoAnnotation(tmp_path / "a" / "img.jpg", [face], "x"), PhotoAnnotation(tmp_path / "b" / "img.png", [face], "y")]
    with pytest.raises(DataError, match=r"img.pts: faces of both .*a/img.jpg and .*b/img.png"):
        write_pts(photos, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pts_folder_with_several_faces_and_broken_files(synth68, tmp_path):
    photos = _photos(synth68, tmp_path / "w")
    assert write_pts(photos, tmp_path / "w") == 11
    assert (tmp_path / "w" / "photo0_2.pts").is_file() and (tmp_path / "w" / "photo5.pts").is_file()
    (tmp_path / "w" / "nophoto.pts").write_text((tmp_path / "w" / "photo5.pts").read_text())
    (tmp_path / "w" / "photo1_3.pts").write_text("version: 1\nn_points: 68\n{\n1 1\n}\n")
    found = read_pts(tmp_path / "w")
    assert found.faces == 11 and len(found.photos) == 6
    assert len(found.problems) == 2
    assert any("nophoto.pts" in p and "no image" in p for p in found.problems)
    assert any("photo1_3.pts" in p and "1 points" in p for p in found.problems)
    _same(photos, found.photos, atol=1e-3)


def test_dlib_xml_round_trip_and_problems(synth68, tmp_path):
    photos = _photos(synth68, tmp_path / "p", count=3)
    rounded = [PhotoAnnotation(p.image, [FaceAnnotation(np.round(f.points)) for f in p.faces], p.source) for p in photos]
    assert write_dlib_xml(rounded, tmp_path / "p" / "faces.xml") == 5
    found = read_dlib_xml(tmp_path / "p" / "faces.xml")
    assert found.problems == []
    _same(rounded, found.photos, atol=0)
    text = (tmp_path / "p" / "faces.xml").read_text(encoding="iso-8859-1")
    broken = text.replace("x='", "x='oops", 1).replace('file="photo1.png"', 'file="../photo1.png"')
    (tmp_path / "p" / "broken.xml").write_text(broken, encoding="iso-8859-1")
    found = read_dlib_xml(tmp_path / "p" / "broken.xml")
    assert found.faces == 2 and len(found.problems) == 2
    assert any("'oops" in p and "not a number" in p for p in found.problems)
    assert any("'..'" in p for p in found.problems)


def test_dlib_xml_refuses_entity_expansion(tmp_path):
    bomb = ("<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;'>"
            "<!ENTITY c '&b;&b;&b;&b;&b;&b;'>]><dataset><name>&c;</name></dataset>")
    (tmp_path / "bomb.xml").write_text(bomb)
    with pytest.raises(DataError, match="not valid dlib XML"):
        read_dlib_xml(tmp_path / "bomb.xml")


def test_wflw_lines_with_two_faces_in_a_photo(synth68, tmp_path):
    rng = np.random.default_rng(0)
    faces = [rng.uniform(20, 300, (98, 2)) for _ in range(3)]
    line = lambda pts, name, attrs="0 1 0 0 1 0": " ".join(f"{v:.3f}" for v in pts.ravel()) + " 10 10 300 300 " + attrs + " " + name
    text = "\n".join([line(faces[0], "sub/a.jpg"), line(faces[1], "sub/a.jpg"), line(faces[2], "b.jpg", "0 1"),
                      line(faces[2], "/etc/c.jpg")])
    (tmp_path / "list.txt").write_text(text + "\n")
    found = read_wflw(tmp_path / "list.txt", images=tmp_path / "imgs")
    assert [len(p.faces) for p in found.photos] == [2]
    assert found.photos[0].image == tmp_path / "imgs" / "sub" / "a.jpg"
    np.testing.assert_allclose(found.photos[0].faces[1].points, faces[1], atol=1e-3)
    assert found.photos[0].faces[0].attributes["expression"] == "1"
    assert found.photos[0].faces[0].box == (10, 10, 300, 300)
    assert len(found.problems) == 2
    assert "line 3" in found.problems[0] and "fields, expected 207" in found.problems[0]
    assert "line 4" in found.problems[1] and "relative" in found.problems[1]


def test_coco_round_trip_results_and_whole_body(synth68, tmp_path):
    photos = _photos(synth68, tmp_path / "p", count=3)
    assert write_coco(photos, tmp_path / "p" / "gt.json", images_root=tmp_path / "p") == 5
    found = read_coco(tmp_path / "p" / "gt.json")
    assert found.problems == []
    _same(photos, found.photos, atol=0.01)
    # results against a reference: COCO's own image ids and category
    data = json.loads((tmp_path / "p" / "gt.json").read_text())
    for image in data["images"]:
        image["id"] += 100
    for ann in data["annotations"]:
        ann["image_id"] += 100
    (tmp_path / "ref.json").write_text(json.dumps(data))
    write_coco(photos, tmp_path / "results.json", reference=tmp_path / "ref.json", images_root=tmp_path / "p")
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted({r["image_id"] for r in results}) == [101, 102, 103]
    assert len(results[0]["keypoints"]) == 68 * 3
    # WholeBody: the face points, only where face_valid; an unlabelled point is a problem
    body = {"images": [{"id": 1, "file_name": "photo0.png"}], "categories": [{"id": 1, "name": "person", "keypoints": ["nose"]}],
            "annotations": [
                {"image_id": 1, "category_id": 1, "keypoints": [1, 1, 2], "face_valid": True,
                 "face_box": [10, 10, 300, 300], "face_kpts": _triples(photos[0].faces[0].points)},
                {"image_id": 1, "category_id": 1, "keypoints": [1, 1, 2], "face_valid": False, "face_kpts": [0] * 204},
                {"image_id": 1, "category_id": 1, "keypoints": [1, 1, 2], "face_valid": True,
                 "face_kpts": _triples(photos[0].faces[1].points, unlabelled=4)}]}
    (tmp_path / "p" / "body.json").write_text(json.dumps(body))
    found = read_coco(tmp_path / "p" / "body.json")
    assert found.faces == 1 and found.photos[0].faces[0].box == (10, 10, 310, 310)
    assert len(found.problems) == 1 and "annotations[2]" in found.problems[0] and "4 of 68" in found.problems[0]


def _triples(points, unlabelled=0):
    v = np.full(len(points), 2.0)
    v[:unlabelled] = 0
    return np.column_stack([points, v]).ravel().tolist()


def test_coco_category_names_give_flip_and_skeleton_lines(tmp_path):
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]
    assert flip_from_names(names).tolist() == [0, 2, 1, 4, 3]
    assert flip_from_names(["left_eye", "nose"]) is None  # a left without its right
    data = {"images": [{"id": 7, "file_name": "x.jpg"}],
            "categories": [{"id": 3, "name": "face5", "keypoints": names, "skeleton": [[1, 2], [1, 3]]}],
            "annotations": [{"image_id": 7, "category_id": 3, "keypoints": [5, 5, 2, 3, 3, 2, 7, 3, 2, 1, 4, 1, 9, 4, 1]},
                            {"image_id": 8, "category_id": 3, "keypoints": [0] * 15}]}
    (tmp_path / "k.json").write_text(json.dumps(data))
    assert guess_format(tmp_path / "k.json") == "coco"
    found = read_coco(tmp_path / "k.json")
    assert found.hint.flip_index.tolist() == [0, 2, 1, 4, 3] and found.hint.lines == [(0, 1), (0, 2)]
    assert found.faces == 1 and "image_id 8" in found.problems[0]
    with pytest.raises(DataError, match="no category 'cat'"):
        read_coco(tmp_path / "k.json", category="cat")


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["categories"][0].update(skeleton=[[1, 2, 3]]), "skeleton must be a list of [a, b] pairs"),
    (lambda d: d["categories"][0].update(skeleton=[["a", "b"]]), "skeleton must be a list of [a, b] pairs"),
    (lambda d: d["categories"][0].update(skeleton=5), "skeleton must be a list of [a, b] pairs"),
    (lambda d: d["categories"][0].update(keypoints="abc"), "keypoints must be a list of names"),
    # Which photo would image 7's faces be on? Not silently the last one listed.
    (lambda d: d["images"].append({"id": 7, "file_name": "y.jpg"}), "images[1]: id 7 is also the id of 'x.jpg'"),
])
def test_coco_files_with_broken_categories_or_images_are_refused(tmp_path, edit, words):
    data = {"images": [{"id": 7, "file_name": "x.jpg"}],
            "categories": [{"id": 3, "name": "face3", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2]]}],
            "annotations": [{"image_id": 7, "category_id": 3, "keypoints": [5, 5, 2, 3, 3, 2, 7, 3, 2]}]}
    edit(data)
    (tmp_path / "k.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        read_coco(tmp_path / "k.json")
    assert words in str(err.value) and "k.json" in str(err.value)


def test_coco_ids_that_are_not_numbers_or_names_are_problems_not_tracebacks(tmp_path):
    data = {"images": [{"id": [1], "file_name": "x.jpg"}, {"id": 7, "file_name": "y.jpg"}],
            "categories": [{"id": 3, "name": "face3", "keypoints": ["a", "b", "c"]}],
            "annotations": [{"image_id": [1], "category_id": 3, "keypoints": [5, 5, 2, 3, 3, 2, 7, 3, 2]},
                            {"image_id": 7, "category_id": 3, "keypoints": [5, 5, 2, 3, 3, 2, 7, 3, 2]}]}
    (tmp_path / "k.json").write_text(json.dumps(data))
    found = read_coco(tmp_path / "k.json")
    assert found.faces == 1 and "annotations[0]: image_id [1] is not in 'images'" in found.problems[0]


def test_plain_csv_and_json(tmp_path):
    (tmp_path / "p.csv").write_text("image,face,x0,y0,x1,y1,x2,y2\na.jpg,1,1,2,3,4,5,6\na.jpg,2,7,8,9,10,11,12\n"
                                    "b.jpg,1,1,2,3\nc.jpg,1,1,2,3,nan,5,6\n")
    found = read_plain_csv(tmp_path / "p.csv")
    assert found.faces == 2 and len(found.photos) == 1
    np.testing.assert_allclose(found.photos[0].faces[1].points, [[7, 8], [9, 10], [11, 12]])
    assert "line 4" in found.problems[0] and "line 5" in found.problems[1] and "NaN" in found.problems[1]
    (tmp_path / "p.json").write_text(json.dumps({"a.jpg": [[1, 2], [3, 4]], "g.jpg": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}))
    found = read_plain_json(tmp_path / "p.json")
    assert [len(p.faces) for p in found.photos] == [1, 2]
    (tmp_path / "q.json").write_text(json.dumps([{"image": "a.jpg", "points": [[1, 2], [3, 4]], "box": [0, 0, 5, 5]},
                                                 {"file_name": "b.jpg"}]))
    found = read_plain_json(tmp_path / "q.json")
    assert found.photos[0].faces[0].box == (0, 0, 5, 5) and "item 1" in found.problems[0]


def test_crop_keeps_points_on_the_same_pixels(tmp_path):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    points = np.array([[5.0, 7.0], [120.0, 40.0], [60.0, 150.0], [395.0, 290.0]])
    crop = crop_face(photo, points, margin=0.3)
    assert crop.x0 < 0 and crop.y0 < 0  # leaves the photo: black there, like the competition's crops
    for (x, y), (cx, cy) in zip(points.astype(int), np.round(crop.points).astype(int)):
        assert (crop.pixels[cy, cx] == photo[y, x]).all()
    assert (crop.pixels[0, 0] == 0).all()
    small = crop_face(photo, points, margin=0.3, max_side=100)
    assert small.pixels.shape == (100, 100, 3)
    np.testing.assert_allclose(to_photo_pixels(small.points, small.x0, small.y0, small.scale), points, atol=1e-9)


def test_convert_writes_the_competition_layout(synth68, tmp_path):
    photos = _photos(synth68, tmp_path / "w", count=6)
    write_pts(photos, tmp_path / "w")
    (tmp_path / "w" / "photo2_3.pts").write_text((tmp_path / "w" / "photo2_1.pts").read_text()
                                                  .replace("n_points:  68", "n_points:  3").split("{")[0]
                                                  + "{\n1 1\n2 2\n3 3\n}\n")
    far = photos[3].faces[0].points + [5000, 0]
    write_pts_file(tmp_path / "w" / "photo3_1.pts", far)
    summary = convert(read_pts(tmp_path / "w"), tmp_path / "out", margin=0.2, test_fraction=0.34, seed=1)
    assert summary.num_points == 68 and summary.faces == 10 and summary.test > 0
    assert len(summary.problems) == 2
    assert any("photo2_3.pts" in p and "3 points" in p for p in summary.problems)
    assert any("photo3_1.pts" in p and "further outside" in p for p in summary.problems)
    assert (tmp_path / "out" / "problems.txt").read_text().count("\n") == 2
    train = read_landmarks(tmp_path / "out" / "train" / "landmarks.csv")
    answers = read_landmarks(tmp_path / "out" / "test" / "answers.csv")
    assert len(train) + len(answers) == 10
    photos_of = lambda names: {n.split("_")[0] for n in names}
    assert not photos_of(train.file_names) & photos_of(answers.file_names)  # whole photos per split
    scheme = read_scheme_file(tmp_path / "out" / "train" / "scheme.json", 68)
    assert scheme.norm_points == (36, 45) and "known 68-point scheme" in summary.scheme_note
    assert (scheme.flip_index[scheme.flip_index] == np.arange(68)).all()  # derived from 7 faces: an involution
    sources = read_sources(tmp_path / "out" / "train" / "sources.csv")
    truth = {(Path(p.image).name, str(i)): f.points for p in photos for i, f in enumerate(p.faces, start=1)}
    for name, points in zip(train.file_names, train.points):
        photo, face, x0, y0, scale = sources[name]
        np.testing.assert_allclose(to_photo_pixels(points, x0, y0, scale), truth[(photo.name, face)], atol=0.01)
    with pytest.raises(DataError, match="already exists"):
        convert(read_pts(tmp_path / "w"), tmp_path / "out")


def test_convert_of_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 1\n{\n1 1\n}\n")
    with pytest.raises(DataError, match="no usable face.*no image"):
        convert(read_pts(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("values, words", [
    ([True, 2.0], "not all numbers"), ([[1, 2], [3]], "not all numbers"), (["1", "x"], "not all numbers"),
    ([1e300, 5.0], "1e+300 px, beyond +-1e+07"), ([float("nan"), 1], "NaN or infinite"),
])
def test_annotation_coordinates_must_be_pixel_numbers(values, words):
    with pytest.raises(DataError) as caught:
        parse_numbers(values, "here")
    assert str(caught.value).startswith("here: ") and words in str(caught.value)
    np.testing.assert_array_equal(parse_numbers(["1", 2.5], "here"), [1, 2.5])  # CSV's text of numbers is fine


def test_hostile_annotation_files_give_one_line_errors_or_problems(tmp_path):
    deep = "[" * 100000 + "]" * 100000
    for reader in (read_plain_json, read_coco):
        (tmp_path / "deep.json").write_text(deep)
        with pytest.raises(DataError, match="nested too deeply"):
            reader(tmp_path / "deep.json")
    (tmp_path / "h.csv").write_text("image,x0,y0\n")
    with pytest.raises(DataError, match="no rows after the header"):
        read_plain_csv(tmp_path / "h.csv")
    (tmp_path / "big.csv").write_text('image,x0,y0\na.jpg,"' + "1" * 200000 + '",2\n')
    with pytest.raises(DataError, match=r"big.csv, line 2: cannot parse: field larger than field limit"):
        read_plain_csv(tmp_path / "big.csv")
    parts = "".join(f"<part name='{n}' x='{i}' y='{i}'/>" for i, n in enumerate(["00", "01", "01"]))
    (tmp_path / "d.xml").write_text(f"<dataset><images><image file='a.jpg'><box top='0' left='0' width='9' "
                                    f"height='9'>{parts}</box></image></images></dataset>")
    assert "two parts named '01'" in read_dlib_xml(tmp_path / "d.xml").problems[0]


def test_convert_leaves_out_a_face_whose_points_all_coincide(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((100, 100, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((100, 100, 3), 90, np.uint8))
    shape = np.array([[20.0, 30], [70, 30], [45, 60], [45, 80]])
    write_pts_file(tmp_path / "a.pts", shape)
    write_pts_file(tmp_path / "b.pts", np.full((4, 2), 50.0))
    summary = convert(read_pts(tmp_path), tmp_path / "out")
    assert summary.faces == 1
    assert len(summary.problems) == 1 and "b.pts: face 1: its 4 points span 0 px" in summary.problems[0]


@pytest.mark.slow
def test_pts_folder_converts_trains_predicts_and_exports_on_the_cli(synth68, tmp_path, torch_home):
    """A 300-W-style folder (.pts beside photos, several faces per photo) through the CLI."""
    photos = _photos(synth68, tmp_path / "w", count=20)
    write_pts(photos, tmp_path / "w")
    data = tmp_path / "data"
    result = run_cli("convert", tmp_path / "w", "--out", data, "--test-fraction", "0.2", "--max-side", "256")
    assert "39 faces with 68 points from 20 photos" in result.stdout.replace("\n", " ")
    run = tmp_path / "run"
    run_cli("train", "--data", data, "--out", run, "--recipe", "fast-cpu", "epochs=2", "augment.size=[64,64]",
            "batch_size=8", "threads=2", torch_home=torch_home)
    run_cli("predict", "--checkpoint", run / "best.pt", "--data", data / "test", "--out", tmp_path / "preds.csv")
    run_cli("evaluate", "--predictions", tmp_path / "preds.csv", "--answers", data / "test" / "answers.csv")
    run_cli("export-points", tmp_path / "preds.csv", "--format", "pts", "--out", tmp_path / "exported",
            "--sources", data / "test" / "sources.csv")
    test_photos = {photo.name for photo, *_ in read_sources(data / "test" / "sources.csv").values()}
    exported = read_pts(tmp_path / "exported", images=tmp_path / "w")
    assert {Path(p.image).name for p in exported.photos} == test_photos
    # the truth exported the same way lands on the original annotations, in the photos' pixels
    run_cli("export-points", data / "test" / "answers.csv", "--format", "pts", "--out", tmp_path / "truth",
            "--sources", data / "test" / "sources.csv")
    back = read_pts(tmp_path / "truth", images=tmp_path / "w")
    _same([p for p in photos if p.image.name in test_photos], back.photos, atol=0.02)
    one_line_error(run_cli("convert", tmp_path / "nothing.xyz", "--out", tmp_path / "o2", check=False), "nothing.xyz")
    one_line_error(run_cli("export-points", tmp_path / "preds.csv", "--format", "yaml", "--out", tmp_path / "o3", check=False),
                   "unknown export format", "pts")


@pytest.mark.parametrize("text, words", [
    ("{", "cannot read detect's JSON"),
    ('{"a": 1}', "expected the list"),
    ('[{"file": "a.jpg"}]', "photo 0: expected an object with 'file' and 'faces'"),
    ('[{"file": "a.jpg", "faces": [[1, 2]]}]', "photo 0: expected faces as objects with 'box' and 'points'"),
    ('[{"file": "a.jpg", "faces": [{"box": [1, 2, 3], "points": [[1, 2]]}]}]', "3 coordinates: not x, y pairs"),
])
def test_detect_json_that_export_points_cannot_read(tmp_path, text, words):
    (tmp_path / "d.json").write_text(text)
    with pytest.raises(DataError) as err:
        photos_from_predictions(tmp_path / "d.json")
    assert words in str(err.value) and "d.json" in str(err.value)
