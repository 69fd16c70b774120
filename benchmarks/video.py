"""Benchmark: landmarks on video (issue 22), on videos whose truth is known by construction.

One annotated photo of ../shared/data/afw-photos (its largest single face; the model must be
trained without AFW's faces, `train --exclude`, as for BENCHMARKS.md's photo figures) becomes
two 640x480 videos, encoded to a file and decoded again
as part of the timed run:
- moving: 300 frames panning, zooming (0.8-1.25x) and rotating (+-20 degrees) smoothly over the
  photo; the truth is the annotation moved by each frame's matrix;
- still: the photo's face at rest for 300 frames, each frame with new sensor-like noise
  (Gaussian, sigma 4 grey levels), so every movement of the points is jitter.

Reported, side by side in one run with the same model (ONNX Runtime, `--threads`):
- the photo pipeline on the photo itself (`detect`'s default: detector box + one re-framing pass):
  NME of the face;
- the moving video through `detect VIDEO` (tracking, smoothing on): frames per second end to end
  (decode, track, landmarks, JSON Lines out), the share of frames the detector ran on, mean NME
  over frames (a frame without the face counts as a miss, reported separately); the same without
  smoothing;
- the still video: mean frame-to-frame movement of the points (pixels, and % of the
  inter-ocular distance) with smoothing and without, and their ratio.

    python benchmarks/video.py --checkpoint runs/fast_noafw/best.pt --photos ../shared/data/afw-photos
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from densemarks.analysis.metrics import per_face_nme
from densemarks.core import geometry
from densemarks.core.boxes import box_of, iou
from densemarks.data.csvio import read_photo_faces
from densemarks.data.images import load_image
from densemarks.inference.export import export_onnx
from densemarks.photos.predictor import Predictor
from densemarks.video.run import detect_video
from densemarks.video.smoothing import OneEuro
from densemarks.video.tracker import FaceTracker, TrackOptions

SIZE = (640, 480)
NORM = (36, 45)  # 68 points: outer eye corners


def trajectory(frames: int, centre: np.ndarray, face_side: float) -> np.ndarray:
    """(frames, 3, 3) photo -> frame matrices: the face's centre travels a Lissajous path over
    the middle of the frame while the view zooms and turns smoothly; the face is ~160 px."""
    t = np.arange(frames) / frames
    out = []
    for u in t:
        zoom = 160 / face_side * 1.25 ** np.sin(2 * np.pi * u)
        angle = 20 * np.sin(4 * np.pi * u)
        target = (SIZE[0] / 2 + 150 * np.sin(2 * np.pi * u), SIZE[1] / 2 + 70 * np.sin(6 * np.pi * u))
        m = geometry.translation(*target) @ geometry.rotation(angle, (0, 0)) @ geometry.scaling(zoom) \
            @ geometry.translation(-centre[0], -centre[1])
        out.append(m)
    return np.stack(out)


def write_video(path: Path, frames) -> None:
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), 30.0, SIZE)
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def tracked_points(jsonl: Path, truth: np.ndarray) -> np.ndarray:
    """(frames, K, 2): per frame the reported face whose box overlaps the truth's most (nan: none)."""
    out = np.full(truth.shape, np.nan)
    for i, line in enumerate(jsonl.read_text().splitlines()):
        faces = json.loads(line)["faces"]
        if faces:
            points = np.array([f["points"] for f in faces], dtype=np.float64)
            overlap = iou(box_of(truth[i])[None], box_of(points))[0]
            if overlap.max() > 0.3:
                out[i] = points[int(np.argmax(overlap))]
    return out


def choose_face(photos: Path, skip: int = 0):
    """The largest face of a photo with exactly one annotated face (`skip`: the next ones)."""
    table = read_photo_faces(photos / "faces.csv")
    names, counts = np.unique(table.file_names, return_counts=True)
    single = set(names[counts == 1])
    faces = [(name, np.asarray(points, dtype=np.float64), float(np.sqrt(np.prod(np.ptp(points, axis=0)))))
             for name, points in zip(table.file_names, table.points) if name in single]
    return sorted(faces, key=lambda f: -f[2])[skip]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--skip", type=int, default=0, help="use the next-largest single face instead")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--min-cutoff", type=float, default=OneEuro().min_cutoff)
    parser.add_argument("--beta", type=float, default=OneEuro().beta)
    args = parser.parse_args()
    name, truth_photo, side = choose_face(args.photos, args.skip)
    photo = load_image(args.photos / "images" / name).pixels
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx = tmp / "model.onnx"
        export_onnx(args.checkpoint, onnx)
        predictor = Predictor.from_checkpoint(args.checkpoint, detector=args.detector, backend="onnx", onnx=onnx,
                                              threads=args.threads)
        faces = predictor(photo)
        photo_points = max(faces, key=lambda f: iou(box_of(truth_photo)[None], box_of(f.points)[None])[0, 0]).points
        photo_nme = float(per_face_nme(photo_points[None], truth_photo[None], NORM)[0])

        matrices = trajectory(args.frames, truth_photo.mean(axis=0), side)
        truth = geometry.apply(matrices, np.broadcast_to(truth_photo, (args.frames, *truth_photo.shape)))
        moving = tmp / "moving.mp4"
        write_video(moving, (cv2.warpAffine(photo, m[:2], SIZE, flags=cv2.INTER_LINEAR) for m in matrices))
        rng = np.random.default_rng(0)
        rest = cv2.warpAffine(photo, matrices[0][:2], SIZE, flags=cv2.INTER_LINEAR)
        still = tmp / "still.mp4"
        write_video(still, (np.clip(rest + rng.normal(0, 4, rest.shape), 0, 255).astype(np.uint8)
                            for _ in range(args.frames)))

        rows = []
        smoothing = OneEuro(args.min_cutoff, args.beta)
        for label, options in ((f"smoothing on (min_cutoff {smoothing.min_cutoff:g}, beta {smoothing.beta:g})",
                                TrackOptions(smoothing=smoothing)),
                               ("smoothing off", TrackOptions(smoothing=None))):
            tracker = FaceTracker(predictor, options)
            out = tmp / "moving.jsonl"
            result = detect_video(tracker, moving, out, quiet=True)
            points = tracked_points(out, truth)
            found = ~np.isnan(points[:, 0, 0])
            nme = per_face_nme(points[found], truth[found], NORM)
            still_out = tmp / "still.jsonl"
            detect_video(tracker, still, still_out, quiet=True)
            still_points = tracked_points(still_out, np.broadcast_to(truth[0], truth.shape))
            steps = np.linalg.norm(np.diff(still_points, axis=0), axis=2).mean(axis=1)  # (frames-1,) px
            iod = float(np.linalg.norm(truth[0][NORM[0]] - truth[0][NORM[1]]))
            rows.append((label, result, float(nme.mean()), float(np.median(nme)), int((~found).sum()),
                         float(np.nanmean(steps)), 100 * float(np.nanmean(steps)) / iod))

    print(f"model {args.checkpoint}; photo {name} (face {side:.0f} px), {args.frames} frames of {SIZE[0]}x{SIZE[1]}; "
          f"ONNX Runtime, {args.threads} threads; detector {args.detector}")
    print(f"photo pipeline on the photo itself: NME {photo_nme:.2f}%")
    print("| video | frames/s end to end | detector on | NME % mean (median) | frames without the face | "
          "still: jitter px/frame (% IOD) |")
    print("|---|---|---|---|---|---|")
    for label, result, mean, median, missed, jitter, jitter_iod in rows:
        print(f"| {label} | {result.fps:.1f} | {100 * result.detector_calls / result.frames:.1f}% | "
              f"{mean:.2f} ({median:.2f}) | {missed} | {jitter:.3f} ({jitter_iod:.2f}%) |")
    print(f"jitter ratio smoothing on / off: {rows[0][5] / rows[1][5]:.2f}; "
          f"NME video (smoothing on) - photo: {rows[0][2] - photo_nme:+.2f} points")


if __name__ == "__main__":
    main()
