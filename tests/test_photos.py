"""The photo pipeline: detection, framing like the training crops, prediction, points back in
photo pixels; EXIF orientation; ONNX Runtime against torch; the detect / export /
evaluate-photos commands. One small model is trained once for the module."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from densemarks.core.errors import DataError
from densemarks.data.csvio import read_landmarks
from densemarks.data.images import load_image
from densemarks.analysis.metrics import per_face_nme
from densemarks.data.augment import LandmarkTransform, sample_matrix, warp
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference import export
from densemarks.inference.export import cached_onnx, export_onnx
from densemarks.inference.tta import TTA_MODES
from densemarks.core.geometry import apply, box_to_frame, rotation, translation
from densemarks.inference.predict import predict_folder, predict_images
from densemarks.photos.detect import create_detector
from densemarks.photos.predictor import Predictor
from conftest import one_line_error, run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("facenet_pytorch", reason="the default detector (make detectors installs it)")

CANVAS = (560, 760)  # photo height, width


@pytest.fixture(scope="module")
def model(trained68):
    return trained68 / "best.pt"


@pytest.fixture(scope="module")
def photo(faces68, tmp_path_factory):
    """Two synthetic test faces pasted onto a textured canvas: (path, truth (2, 68, 2), their
    rows in the test set)."""
    test = faces68 / "test"
    answers = read_landmarks(test / "answers.csv", cache=False)
    detector = create_detector("mtcnn")
    rng = np.random.default_rng(0)
    canvas = rng.integers(90, 160, size=(*CANVAS, 3), dtype=np.uint8)
    truth, rows, placed = [], [], 0
    origins = [(40, 30), (400, 120)]
    for row, (name, points) in enumerate(zip(answers.file_names, answers.points)):
        face = load_image(test / "images" / name).pixels
        h, w = face.shape[:2]
        if h > 400 or w > 330 or len(detector(face)) != 1:
            continue  # a face the detector sees on its own, small enough to paste
        x, y = origins[placed]
        canvas[y:y + h, x:x + w] = face
        truth.append(np.asarray(points, dtype=np.float64) + (x, y))
        rows.append(row)
        placed += 1
        if placed == 2:
            break
    assert placed == 2, "not enough detectable synthetic faces"
    path = tmp_path_factory.mktemp("photo") / "two_faces.png"
    Image.fromarray(canvas).save(path)
    return path, np.stack(truth), rows


@pytest.fixture(scope="module")
def own_nme(model, photo, faces68):
    """The model's NME (%) on the two pasted faces in their own images (the test-folder path):
    this small model's own error on them, what the photo pipeline should come close to."""
    _, _, rows = photo
    test = faces68 / "test"
    _, own = predict_folder(model, test, workers=0)
    return per_face_nme(own[rows], read_landmarks(test / "answers.csv", cache=False).points[rows], (36, 45))


def _matched_nme(faces, truth):
    """NME (%) of each true face against the predicted face nearest to it."""
    centres = np.array([f.points.mean(axis=0) for f in faces])
    out = []
    for t in truth:
        nearest = faces[int(np.argmin(np.linalg.norm(centres - t.mean(axis=0), axis=1)))]
        out.append(per_face_nme(nearest.points[None], t[None], (36, 45))[0])
    return np.array(out)


def test_finds_both_faces_and_places_their_points(model, photo, own_nme):
    path, truth, rows = photo
    predictor = Predictor.from_checkpoint(model)
    faces = predictor(path)
    assert len(faces) == 2
    nme = _matched_nme(faces, truth)
    # The mean face placed by the detector box alone: what the model must improve on.
    start = predictor.framing.shape_in_box(np.stack([f.box for f in faces]))
    baseline = _matched_nme([type(faces[0])(f.box, s, f.score) for f, s in zip(faces, start)], truth)
    # The photo pipeline must stay close to the model's error on the faces' own images; a wrong
    # frame or a wrong way back to photo pixels costs far more than the margin.
    print("photo NME", nme, "own images", own_nme, "mean face in the box", baseline)
    assert np.all(nme < own_nme + 10), (nme, own_nme)
    assert np.all(nme < baseline), (nme, baseline)
    for mode in ("flip", "multi"):
        seen_more = Predictor.from_checkpoint(model, tta=mode)(path)
        assert np.all(_matched_nme(seen_more, truth) < own_nme + 10), mode


def _rolled(photo, degrees: float, tmp_path):
    """The photo turned by `degrees` about its centre on a canvas grown to hold it all, and its
    truth turned alike."""
    path, truth, _ = photo
    h, w = CANVAS
    turned = Image.open(path).rotate(degrees, resample=Image.BILINEAR, expand=True, fillcolor=(120, 120, 120))
    rolled = tmp_path / f"rolled{degrees:g}.png"
    turned.save(rolled)
    # both anticlockwise on screen; the canvas grows about the centre
    turn = translation((turned.width - w) / 2, (turned.height - h) / 2) @ rotation(degrees, ((w - 1) / 2, (h - 1) / 2))
    return rolled, apply(turn, truth.reshape(-1, 2)).reshape(truth.shape)


def test_mtcnn_keypoints_sit_on_the_eyes_and_mouth_corners(model, photo):
    path, truth, _ = photo
    predictor = Predictor.from_checkpoint(model)
    detections = predictor.detector(load_image(path).pixels)
    assert len(detections) == 2 and all(d.keypoints.shape == (4, 2) for d in detections)
    for t in truth:
        expected = predictor.keypoint_weights @ t
        nearest = min(detections, key=lambda d: np.linalg.norm(d.keypoints - expected))
        eyes = np.linalg.norm(expected[0] - expected[1])
        assert np.linalg.norm(nearest.keypoints[:2] - expected[:2], axis=1).max() < 0.2 * eyes, (nearest, expected)
        # The synthetic mouths' corners sit about 0.45 eye distances below MTCNN's (its mouth is a
        # real face's): the roll, which is all the keypoints are used for, agrees within 8 degrees
        # (these faces are rolled about 11).
        z, w = (expected - expected.mean(0)) @ (1, 1j), (nearest.keypoints - nearest.keypoints.mean(0)) @ (1, 1j)
        assert abs(np.degrees(np.angle(np.sum(np.conj(z) * w)))) < 8, (nearest, expected)


def test_keypoints_turn_the_first_crop_of_a_rolled_face(model, photo, tmp_path):
    """One pass on faces rolled by 15 degrees more: framed upright by MTCNN's keypoints, the points
    are better than from the box alone (an axis-aligned crop the model never trained on)."""
    rolled, truth = _rolled(photo, 15, tmp_path)
    errors = {}
    for keypoints in (True, False):
        faces = Predictor.from_checkpoint(model, refine=0, keypoints=keypoints)(rolled)
        assert len(faces) == 2
        errors[keypoints] = _matched_nme(faces, truth)
    print("rolled 15 degrees, one pass: NME with keypoints", errors[True], "box only", errors[False])
    assert errors[True].mean() < errors[False].mean(), errors


def test_one_pass_when_keypoints_turned_the_crop_else_two(model, photo):
    path, _, _ = photo
    image = load_image(path)
    for keypoints, boxes_only, refine, passes in ((True, False, None, 1), (False, False, None, 2),
                                                  (True, True, None, 2), (True, False, 2, 3)):
        predictor = Predictor.from_checkpoint(model, keypoints=keypoints, refine=refine)
        detections = predictor.detector(image.pixels)
        calls = []
        landmarker = predictor.landmarker
        predictor.landmarker = lambda crops: calls.append(len(crops)) or landmarker(crops)
        given = np.stack([d.box for d in detections]) if boxes_only else detections
        assert len(predictor.predict_faces(image, given)) == 2
        assert calls == [2] * passes, (keypoints, boxes_only, refine, calls)


def test_exif_rotated_photo_gives_the_upright_points(model, photo, tmp_path):
    path, _, _ = photo
    upright = np.asarray(Image.open(path))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise; viewers turn it back
    rotated = tmp_path / "rotated.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(rotated, exif=exif)
    assert load_image(rotated).original_size == (upright.shape[1], upright.shape[0])
    predictor = Predictor.from_checkpoint(model)
    a = sorted(predictor(path), key=lambda f: f.box[0])
    b = sorted(predictor(rotated), key=lambda f: f.box[0])
    assert len(a) == len(b) == 2
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fb.points, fa.points, atol=1e-3)


@pytest.mark.parametrize("run_name", ["trained68", "simcc68", pytest.param("heatmap68", marks=pytest.mark.heavy)])
def test_onnx_runtime_equals_torch(run_name, request, photo, tmp_path):
    """Every head exports with its decoding and gives the torch points on a photo."""
    model = request.getfixturevalue(run_name) / "best.pt"
    path, _, _ = photo
    onnx = tmp_path / "model.onnx"
    result = run_cli("export", "--checkpoint", model, "--out", onnx)
    assert onnx.is_file() and "max difference" in result.stdout
    torch_faces = Predictor.from_checkpoint(model)(path)
    onnx_faces = Predictor.from_checkpoint(model, backend="onnx", onnx=onnx)(path)
    assert len(torch_faces) == len(onnx_faces) == 2
    for a, b in zip(torch_faces, onnx_faces):
        # 1e-3 of the 96 px crop, in photo pixels (the crops here are at most 4x larger)
        assert np.abs(b.points - a.points).max() < 1e-3 * 96 * 4


def test_export_writes_the_opset_asked_for_or_nothing(trained68, tmp_path):
    """torch's exporter wrote opset 18 when asked for one it cannot convert to, and said it had
    written the file; an opset newer than the installed onnx knows is refused before exporting
    (torch's converter logged a traceback for it)."""
    import onnx
    model = trained68 / "best.pt"
    export_onnx(model, tmp_path / "a.onnx", opset=20)
    assert [o.version for o in onnx.load(str(tmp_path / "a.onnx")).opset_import if o.domain == ""] == [20]
    with pytest.raises(DataError, match="opset 40: the installed onnx .* knows opsets up to .*; nothing written"):
        export_onnx(model, tmp_path / "b.onnx", opset=40)
    assert not (tmp_path / "b.onnx").exists()


def test_the_cached_export_is_made_once_per_checkpoint_opset_and_graph(trained68, tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEMARKS_CACHE", str(tmp_path))
    checkpoint = trained68 / "best.pt"
    first, made = cached_onnx(checkpoint)
    assert made and first.is_relative_to(tmp_path) and first.is_file()
    assert cached_onnx(checkpoint) == (first, False)
    monkeypatch.setattr(export, "GRAPH_REVISION", export.GRAPH_REVISION + 1)  # code that exports otherwise
    second, made = cached_onnx(checkpoint)
    assert made and second != first
    beside = tmp_path / "copy.pt"  # an export the user wrote beside the checkpoint comes first
    beside.write_bytes(checkpoint.read_bytes())
    export_onnx(beside, beside.with_suffix(".onnx"))
    assert cached_onnx(beside) == (beside.with_suffix(".onnx"), False)


@pytest.mark.parametrize("tta", list(TTA_MODES))
@pytest.mark.parametrize("run_name", ["trained68", "heatmap68", "simcc68"])
def test_a_test_crop_as_a_photo_gives_the_points_of_predict(run_name, tta, request, faces68):
    """One test-time path: a test image handed to the photo Predictor with its crop's frame
    gives the points `predict` gives on the test folder, for every head and TTA mode."""
    model = request.getfixturevalue(run_name) / "best.pt"
    test = faces68 / "test"
    state = Checkpoint.load(model)
    names = read_landmarks(test / "answers.csv", cache=False).file_names[:3]
    expected = predict_images(state, test / "images", names, tta=tta)
    predictor = Predictor.from_checkpoint(model, detector=None, tta=tta)
    geometry = LandmarkTransform(state.config.augment.evaluation())
    for i in range(len(names)):
        # decoded as the test folder decodes it (reduced-size JPEG decoding where it applies)
        image = load_image(test / "images" / names[i], min_size=geometry.min_decode_size())
        frame = sample_matrix(image, geometry.config, None)[0]
        np.testing.assert_allclose(predictor.predict_framed(image, frame[None])[0], expected[i], atol=0.02)


def test_given_boxes_and_a_photo_without_faces(model, photo, own_nme, tmp_path):
    path, truth, _ = photo
    predictor = Predictor.from_checkpoint(model, detector=None)
    boxes = np.concatenate([truth.min(axis=1), truth.max(axis=1)], axis=1)
    faces = predictor.predict_faces(path, boxes)
    # On average over the two faces (each moves by a few points between trainings of this
    # small model): given boxes, the pipeline is about as accurate as the model on its crops.
    assert _matched_nme(faces, truth).mean() < own_nme.mean() + 5, (_matched_nme(faces, truth), own_nme)
    blank = tmp_path / "blank.jpg"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(blank)
    assert Predictor.from_checkpoint(model)(blank) == []


def test_detect_command_writes_json_csv_and_pictures(model, photo, tmp_path):
    path, _, _ = photo
    blank = tmp_path / "photos" / "blank.png"
    blank.parent.mkdir()
    Image.fromarray(np.full((120, 160, 3), 40, np.uint8)).save(blank)
    result = run_cli("detect", path, blank.parent, "--checkpoint", model, "--out", tmp_path / "faces.json",
                        "--draw", tmp_path / "drawn")
    records = json.loads((tmp_path / "faces.json").read_text())
    assert [len(r["faces"]) for r in records] == [2, 0]
    assert len(records[0]["faces"][0]["points"]) == 68 and "no face found in 1 photo" in result.stdout
    assert (tmp_path / "drawn" / "two_faces.jpg").stat().st_size > 1000
    run_cli("detect", path, "--checkpoint", model, "--out", tmp_path / "faces.csv")
    lines = (tmp_path / "faces.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("file_name\tface\tscore\tbox_x0")
    bad = run_cli("detect", path, "--checkpoint", model, "--out", tmp_path / "x.json", "--detector", "mtnn",
                     check=False)
    one_line_error(bad, "did you mean 'mtcnn'")
    missing = run_cli("detect", tmp_path / "nope.jpg", "--checkpoint", model, "--out", tmp_path / "y.json",
                         check=False)
    one_line_error(missing, "nope.jpg")
    assert not (tmp_path / "y.json").exists()


def test_evaluate_photos_command(model, photo, own_nme, tmp_path):
    path, truth, _ = photo
    folder = tmp_path / "photos"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / path.name).write_bytes(path.read_bytes())
    header = ["file_name", "face"] + [f"Point_{i}_{a}" for i in range(68) for a in "XY"]
    rows = ["\t".join(header)] + ["\t".join([path.name, str(i)] + [f"{v:.2f}" for v in t.ravel()])
                                  for i, t in enumerate(truth)]
    (folder / "faces.csv").write_text("\n".join(rows) + "\n")
    result = run_cli("evaluate-photos", "--checkpoint", model, "--data", folder, "--out", tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["faces"] == 2 and report["found"] == 2 and report["recall"] == 1.0
    assert report["nme"] < own_nme.mean() + 5 and report["ms_per_photo"] > 0, (report["nme"], own_nme)
    assert (tmp_path / "report" / "examples.png").is_file() and "recall" in result.stdout
    # An unreadable photo is listed and left out; the others are still measured; exit 1.
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    broken_row = "\t".join(["broken.png", "0"] + [f"{v:.2f}" for v in truth[0].ravel()])
    (folder / "faces.csv").write_text("\n".join(rows + [broken_row]) + "\n")
    partial = run_cli("evaluate-photos", "--checkpoint", model, "--data", folder, "--out", tmp_path / "r2", check=False)
    assert partial.returncode == 1 and "broken.png" in partial.stderr.strip().splitlines()[-1], partial.stderr
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["faces"] == 2 and report["photos"] == 1 and report["unreadable_photos"] == 1
    # A wrong annotation file is a one-line error naming its line.
    (folder / "faces.csv").write_text("\n".join(rows[:2] + [rows[2].replace("\t1\t", "\tone\t", 1)]) + "\n")
    bad = run_cli("evaluate-photos", "--checkpoint", model, "--data", folder, check=False)
    one_line_error(bad, "line 3", "face is 'one'")


def test_region_crop_equals_warping_the_whole_photo(model, photo):
    path, truth, _ = photo
    predictor = Predictor.from_checkpoint(model, detector=None)
    image = load_image(path)
    # Faces framed as the pipeline does, and boxes from tiny (upsampled) to the whole photo
    # (shrunk by the pyramid), partly outside the photo.
    matrices = [predictor.framing.region_matrix(t) for t in truth]
    matrices += [box_to_frame(b, predictor.framing.size, "stretch")
                 for b in [(100, 100, 130, 140), (-200, -50, 500, 600), (0, 0, CANVAS[1], CANVAS[0]), (700, 500, 900, 700)]]
    for m in matrices:
        whole = warp(image, m, predictor.framing.size)[..., :3].astype(int)
        assert np.abs(predictor.crop(image, m).astype(int) - whole).max() <= 1


def test_checkpoint_without_framing_or_onnx_file_is_a_clear_error(model, photo, tmp_path):
    import torch
    path, _, _ = photo
    state = torch.load(model, weights_only=True)
    del state["framing"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    result = run_cli("detect", path, "--checkpoint", old, "--out", tmp_path / "f.json", check=False)
    one_line_error(result, "no framing")
    result = run_cli("detect", path, "--checkpoint", model, "--backend", "onnx", "--onnx", tmp_path / "none.onnx",
                        "--out", tmp_path / "g.json", check=False)
    one_line_error(result, "none.onnx", "no such ONNX file", "densemarks export")
    assert not (tmp_path / "f.json").exists() and not (tmp_path / "g.json").exists()


def test_detect_survives_bad_photos_and_keeps_names_apart(model, photo, tmp_path):
    """One unreadable photo, a tiny one, a bomb and two photos named alike: every other photo
    is processed and written; the bad ones are listed in the output and on screen; exit 1."""
    path, _, _ = photo
    folder = tmp_path / "batch"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    for target in (folder / "a" / "x.png", folder / "b" / "x.png", folder / "a" / "x.jpg"):
        Image.open(path).save(target)
    (folder / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    Image.fromarray(np.full((10, 10, 3), 90, np.uint8)).save(folder / "a" / "tiny.png")
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(folder / "a" / "dot.png")
    result = run_cli("detect", folder / "a", folder / "b", "--checkpoint", model, "--out", tmp_path / "f.json",
                     "--draw", tmp_path / "drawn", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1 photo(s) could not be read" in result.stderr and "broken.jpg" in result.stderr
    records = {r["file"]: r for r in json.loads((tmp_path / "f.json").read_text())}
    assert len(records) == 6
    assert records[str(folder / "a" / "broken.jpg")]["faces"] is None and "broken.jpg" in records[str(folder / "a" / "broken.jpg")]["error"]
    assert records[str(folder / "a" / "tiny.png")]["faces"] == [] and records[str(folder / "a" / "dot.png")]["faces"] == []
    assert all(len(records[str(p)]["faces"]) == 2 for p in (folder / "a" / "x.png", folder / "b" / "x.png", folder / "a" / "x.jpg"))
    drawn = sorted(p.name for p in (tmp_path / "drawn").iterdir())
    assert {"a__x_png.jpg", "b__x_png.jpg", "a__x_jpg.jpg"} <= set(drawn) and len(drawn) == 5
    run_cli("detect", folder / "a", "--checkpoint", model, "--out", tmp_path / "f.csv", check=False)
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert rows[0].endswith("\terror") and any(r.startswith(str(folder / "a" / "broken.jpg")) and "not" in r for r in rows)
