"""Landmarks on video: frames from files and folders, the One Euro filter, tracking (ids, faces
entering and leaving, a frame without a face, an undecodable frame), `detect VIDEO` with its
JSON Lines and drawn video. The videos are made here from a synthetic test face."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from densemarks.analysis.metrics import per_face_nme
from densemarks.core.errors import DataError
from densemarks.data.csvio import read_landmarks
from densemarks.data.images import load_image
from densemarks.video.frames import open_video, prefetch
from densemarks.video.smoothing import OneEuro, OneEuroFilter
from conftest import one_line_error, run_cli

CANVAS = (320, 480)  # height, width
FPS = 25.0


def test_one_euro_keeps_a_still_point_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    truth = np.array([[100.0, 50.0], [140.0, 60.0]])
    raw, smooth = [], []
    f = OneEuroFilter(OneEuro(min_cutoff=1.0, beta=10.0))
    assert np.array_equal(f(truth, 0.0, 100.0), truth)  # the first value passes unchanged
    for i in range(1, 200):
        noisy = truth + rng.normal(0, 1.0, truth.shape)
        raw.append(noisy)
        smooth.append(f(noisy, i / 30, 100.0))
    step = lambda x: np.linalg.norm(np.diff(np.array(x), axis=0), axis=2).mean()  # noqa: E731
    assert step(smooth) < step(raw) / 3
    assert np.abs(np.mean(smooth[50:], axis=0) - truth).max() < 0.3  # no bias at rest
    # A face moving fast (2 face sizes a second): the speed opens the filter, the lag stays small.
    f = OneEuroFilter(OneEuro(min_cutoff=1.0, beta=10.0))
    slow = OneEuroFilter(OneEuro(min_cutoff=1.0, beta=0.0))
    for i in range(60):
        moving = truth + (200.0 * i / 30, 0.0)
        fast_out, slow_out = f(moving, i / 30, 100.0), slow(moving, i / 30, 100.0)
    lag, lag_without_beta = (moving - fast_out)[0, 0], (moving - slow_out)[0, 0]
    assert 0 < lag < lag_without_beta / 3, (lag, lag_without_beta)


def test_prefetch_keeps_order_raises_and_stops_early():
    assert list(prefetch(range(50), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("decoder broke")

    with pytest.raises(ValueError, match="decoder broke"):
        list(prefetch(broken()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    started = time.perf_counter()
    for item in prefetch(endless(), depth=2):
        if item == 3:
            break
    assert time.perf_counter() - started < 2 and len(produced) < 10
    assert not [t for t in threading.enumerate() if t.name == "densemarks-decode" and t.is_alive()]


def test_frame_folders_go_by_number_and_skip_a_broken_file(tmp_path):
    for n in (10, 2, 1):
        Image.fromarray(np.full((24, 32, 3), n * 10, np.uint8)).save(tmp_path / f"frame_{n}.png")
    (tmp_path / "frame_5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    source = open_video(tmp_path, fps=10)
    frames = list(source)
    assert source.info.size == (32, 24) and source.info.frames == 4
    assert [int(f.pixels[0, 0, 0]) if f.pixels is not None else None for f in frames] == [10, 20, None, 100]
    assert "frame_5.png" in frames[2].error and frames[3].time == pytest.approx(0.3)


# Tracking, with a small trained model and the default detector.

@pytest.fixture(scope="module")
def model(trained68):
    return trained68 / "best.pt"


@pytest.fixture(scope="module")
def face(faces68):
    """A synthetic test face the detector finds wherever these tests put it (synthetic faces
    are found unevenly), 150 px high: (pixels, points (68, 2))."""
    pytest.importorskip("facenet_pytorch", reason="the default detector (make installs it)")
    from densemarks.photos.detect import create_detector

    test = faces68 / "test"
    answers = read_landmarks(test / "answers.csv", cache=False)
    detector = create_detector("mtcnn")
    for name, points in zip(answers.file_names, answers.points):
        pixels = load_image(test / "images" / name).pixels
        scale = 150 / pixels.shape[0]
        small = cv2.resize(pixels, (round(pixels.shape[1] * scale), 150), interpolation=cv2.INTER_AREA)
        probes, _ = scene((small, points), 4, lambda i: True, lambda i: [((20, 40), (110, 60), (200, 90), (260, 120))[i]])
        jpeg = [cv2.imdecode(cv2.imencode(".jpg", p)[1], cv2.IMREAD_UNCHANGED) for p in probes]  # as MJPG stores them
        if all(len(detector(p)) == 1 for p in jpeg):
            return small, np.asarray(points, dtype=np.float64) * scale
    pytest.fail("no synthetic test face the detector finds")


def background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(60, 190, size=(*CANVAS, 3), dtype=np.uint8), (0, 0), 3)


def scene(face, frames: int, visible, places) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Frames with the face pasted at places(i) (a list of (x, y)) where visible(i): (frames,
    truth per frame: a list of (68, 2) arrays)."""
    pixels, points = face
    h, w = pixels.shape[:2]
    out, truth = [], []
    for i in range(frames):
        frame = background()
        shown = []
        for x, y in (places(i) if visible(i) else []):
            frame[y:y + h, x:x + w] = pixels
            shown.append(points + (x, y))
        out.append(frame)
        truth.append(shown)
    return out, truth


def write_mjpg(path, frames) -> None:
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (CANVAS[1], CANVAS[0]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def break_frame(path, index: int) -> None:
    """Wreck one MJPG frame's JPEG header: FFmpeg cannot decode that frame, the rest are fine."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    data[starts[index]:starts[index] + 300] = bytes(300)
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_detect_video_tracks_a_face_through_entering_a_gap_a_broken_frame_and_leaving(model, face, tmp_path):
    frames, truth = scene(face, 30, lambda i: 3 <= i <= 22 and i != 16, lambda i: [(40 + 6 * i, 60 + i)])
    clip = tmp_path / "clip.avi"
    write_mjpg(clip, frames)
    break_frame(clip, 12)
    out, drawn = tmp_path / "faces.jsonl", tmp_path / "drawn.mp4"
    result = run_cli("detect", clip, "--checkpoint", model, "--out", out, "--draw", drawn)
    assert "1 frame(s) could not be decoded" in result.stderr and "frame 12" in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(30))
    assert records[12]["faces"] == [] and "frame 12" in records[12]["error"]
    assert records[4]["time"] == pytest.approx(4 / FPS, abs=1e-3)
    with_face = [i for i, r in enumerate(records) if r["faces"]]
    # No face before it enters or after it leaves, nor on the frame without it; found again
    # within the search interval (5 frames) after entering and after the gap.
    assert not set(with_face) & {0, 1, 2, 16, *range(23, 30)}, with_face
    assert {*range(5, 12), *range(13, 16), *range(21, 23)} <= set(with_face), with_face
    assert {f["id"] for r in records for f in r["faces"]} == {0}  # one face, one id, across the gap too
    assert sum(r["detector"] for r in records) <= 12
    nme = [per_face_nme(np.array(records[i]["faces"][0]["points"])[None], truth[i][0][None], (36, 45))[0]
           for i in with_face]
    # The same frames through the photo pipeline (detector box and a re-framing pass every frame):
    # tracking must not drift away from what the model does on each frame alone.
    from densemarks.photos.predictor import Predictor

    predictor = Predictor.from_checkpoint(model)
    alone = [per_face_nme(predictor(frames[i])[0].points[None], truth[i][0][None], (36, 45))[0] for i in with_face]
    print("tracked NME", np.mean(nme), "photo pipeline per frame", np.mean(alone))
    # The suite's 20-epoch model is weak (about 20% NME), and every tracked frame frames the next
    # crop from its points: one more re-framing pass a frame, so its error settles where that
    # model's re-framing leads (tracked 29.1% against 20.8% alone on one machine, within 8
    # points on another). Broken trackers ran further away on the suite's models: 42.8% against
    # 27.4% (crops framed where the face was, the moving-face test) and 33% -> 76% in 10 frames
    # (a model shrinking the face, without the drift check).
    assert np.mean(nme) < np.mean(alone) + 12, (np.mean(nme), np.mean(alone))
    video = cv2.VideoCapture(str(drawn))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS, abs=0.01)
    assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (CANVAS[1], CANVAS[0])
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 30


@pytest.mark.slow
def test_tracker_api_follows_two_faces_with_their_own_ids(model, face):
    from densemarks.photos.predictor import Predictor
    from densemarks.video.tracker import FaceTracker, TrackOptions

    frames, truth = scene(face, 24, lambda i: True, lambda i: [(20 + 2 * i, 40), (260 - 2 * i, 120)])
    tracker = FaceTracker(Predictor.from_checkpoint(model), TrackOptions(detect_every=10))
    results = list(tracker.track(frames, fps=FPS))
    assert [len(r.faces) for r in results] == [2] * 24
    def side(shown, f):  # which face (0: left, 1: right) the points sit on
        return int(np.argmin([np.linalg.norm(t.mean(axis=0) - f.points.mean(axis=0)) for t in shown]))

    first = {f.id: side(truth[0], f) for f in results[0].faces}
    assert sorted(first) == [0, 1]
    for r, shown in zip(results, truth):
        assert {f.id: side(shown, f) for f in r.faces} == first
    assert [r.detector for r in results].count(True) == tracker.detector_calls == 3  # frames 0, 10, 20
    assert tracker.frames == 24


@pytest.mark.slow
def test_a_moving_face_is_tracked_as_well_as_a_still_one(model, face):
    """Each crop is framed ahead of the face by its recent velocity: framed where it was, the
    face sits off-centre by a frame's movement and a weak model's error grows frame by frame
    (this model here: 42.8% NME moving against 27.4% still framed where it was; 29.2% against
    27.3% framed ahead)."""
    from densemarks.photos.predictor import Predictor
    from densemarks.video.tracker import FaceTracker, TrackOptions

    predictor = Predictor.from_checkpoint(model)
    with pytest.raises(DataError, match="velocity_weight must be between 0 and 1"):
        FaceTracker(predictor, TrackOptions(velocity_weight=1.5))
    with pytest.raises(DataError, match="max_drift is a size ratio"):
        FaceTracker(predictor, TrackOptions(max_drift=0.9))
    # The drift check is off here (its own test is below): this weak model grows a still face by
    # up to 10% in a few frames (the suite's model of 12-07), and the check then rightly calls the
    # detector every fourth frame, which is not what this test measures.
    tracker = FaceTracker(predictor, TrackOptions(smoothing=None, max_drift=2.0))
    errors = []
    for place in (lambda i: [(100, 70)], lambda i: [(40 + 6 * i, 60 + i)]):  # still; 6 px a frame
        frames, truth = scene(face, 16, lambda i: True, place)
        tracker.reset()
        results = list(tracker.track(frames, fps=FPS))
        assert tracker.detector_calls == 2  # frames 0 and 15: followed, not found again each frame
        errors.append(np.mean([per_face_nme(r.faces[0].points[None], t[0][None], (36, 45))[0]
                               for r, t in zip(results, truth)]))
    print("tracked NME still, moving", errors)
    # Framed where the face was, the moving face's error was 1.56x the still one's (42.8% against
    # 27.4%, the suite's model of then); framed ahead, 1.07x then and 1.26x with today's model.
    assert errors[1] < 1.35 * errors[0], errors



@pytest.mark.slow
def test_a_model_that_shrinks_the_face_is_caught_by_the_drift_check(model, face):
    """A model whose points sit inside the face shrinks it further each frame when framed from
    its own points; the tracker doubts a face that drifted more than max_drift from the size the
    detector gave it and re-frames it from the detector. The shrinking model here answers every
    crop with the mean training face in it, shrunk by 7% about its centre: so it shrinks by the
    same rule whatever the trained model would say (a good model undoes a 7% shrink of its own
    points: the next crop shows the face larger)."""
    from densemarks.core import geometry
    from densemarks.photos.predictor import Predictor
    from densemarks.video.tracker import FaceTracker, TrackOptions, face_size

    predictor = Predictor.from_checkpoint(model)
    mean_face = predictor.framing.mean_shape

    def shrinking(photo, matrices, crops=None):
        points = np.stack([geometry.apply(np.linalg.inv(m), mean_face) for m in matrices])
        centre = points.mean(axis=1, keepdims=True)
        return centre + 0.93 * (points - centre)

    predictor.predict_framed = shrinking
    frames, _ = scene(face, 16, lambda i: True, lambda i: [(100, 70)])
    detected = float(face_size(predictor(frames[0])[0].points))
    sizes = {}
    for drift in (1.1, np.inf):
        tracker = FaceTracker(predictor, TrackOptions(smoothing=None, max_drift=drift))
        sizes[drift] = [float(face_size(r.faces[0].points)) / detected for r in tracker.track(frames, fps=FPS)]
        calls = tracker.detector_calls
    print("size / detected size, with and without the drift check", sizes)
    assert min(sizes[1.1]) > 1 / 1.1 - 0.02, sizes[1.1]
    assert sizes[np.inf][-2] < 0.85 and calls == 2, sizes[np.inf]  # without it: 0.80 by frame 14; detector at 0 and 15

def test_not_a_video_and_wrong_outputs_are_one_clear_line(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("this is not a video\n")
    checkpoint = tmp_path / "best.pt"  # never reached: the video is checked first
    bad = run_cli("detect", fake, "--checkpoint", checkpoint, "--out", tmp_path / "faces.jsonl", check=False)
    one_line_error(bad, "clip.mp4", "not a video")
    bad = run_cli("detect", fake, "--checkpoint", checkpoint, "--out", tmp_path / "faces.json", check=False)
    one_line_error(bad, ".jsonl")
    assert not (tmp_path / "faces.jsonl").exists() and not (tmp_path / "faces.json").exists()


@pytest.mark.slow
def test_a_folder_of_frames_is_a_video_with_the_video_flag(model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in (1, 2, 10):
        Image.fromarray(background(n)).save(frames / f"f{n}.png")
    out = tmp_path / "faces.jsonl"
    result = run_cli("detect", frames, "--video", "--fps", 10, "--checkpoint", model, "--out", out,
                     "--draw", tmp_path / "drawn.avi")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["frame"], r["time"], r["faces"]) for r in records] == [(0, 0.0, []), (1, 0.1, []), (2, 0.2, [])]
    assert "3 frames, 0 faces" in result.stdout
    assert cv2.VideoCapture(str(tmp_path / "drawn.avi")).get(cv2.CAP_PROP_FRAME_COUNT) == 3
    mixed = run_cli("detect", frames / "f1.png", tmp_path / "clip.mp4", "--checkpoint", model, "--out", out, check=False)
    one_line_error(mixed, "one video per call")
