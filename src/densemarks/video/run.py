"""`densemarks detect VIDEO`: every frame's tracked faces as JSON Lines, and optionally the
video with its faces drawn.

One JSON object per frame, in order:
    {"frame": 0, "time": 0.0, "detector": true,
     "faces": [{"id": 0, "box": [x0, y0, x1, y1], "score": 0.99, "points": [[x, y], ...]}]}
and for a frame that could not be decoded {"frame": 7, "time": 0.23, "faces": [], "error": "..."}.
Both files are written under temporary names and renamed when the video is done.
"""

from __future__ import annotations

import contextlib
import json
import time as clock
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from densemarks.analysis.viz import draw_faces
from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.video.frames import FrameFolder, VideoFile, open_video, prefetch
from densemarks.video.tracker import FaceTracker, FrameFaces

# The codec each container gets (OpenCV's FFmpeg writer): widely playable and always built in.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


@dataclass(frozen=True)
class VideoResult:
    """frames: frames read; skipped: those that could not be decoded (their errors in
    `errors`); faces: face-frames reported; tracks: distinct face ids; detector_calls: frames
    the detector ran on; seconds: wall time from the first frame to the last line written."""

    frames: int
    skipped: int
    faces: int
    tracks: int
    detector_calls: int
    seconds: float
    errors: list[str]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def frame_record(frame: FrameFaces) -> dict:
    record = {"frame": frame.index, "time": round(frame.time, 4), "detector": frame.detector,
              "faces": [{"id": f.id, "box": np.round(f.box, 2).tolist(), "score": round(float(f.score), 4),
                         "points": np.round(f.points, 2).tolist()} for f in frame.faces]}
    if frame.error:
        record["error"] = frame.error
    return record


def detect_video(tracker: FaceTracker, video: "str | Path | VideoFile | FrameFolder", out: str | Path, *, draw: str | Path | None = None,
                 fps: float | None = None, quiet: bool = False) -> VideoResult:
    """Track faces through `video` (a file or a folder of numbered frames, or `open_video`'s
    source for one), writing JSON Lines
    to `out` and, with `draw`, the video with its faces drawn (same size and frame rate)."""
    out = Path(out)
    if out.suffix.lower() != ".jsonl":
        raise DataError(out, "video output must end in .jsonl (one JSON line per frame)")
    if draw is not None and Path(draw).suffix.lower() not in FOURCC:
        raise DataError(draw, f"drawn video must end in one of {', '.join(FOURCC)}")
    source = open_video(video, fps) if isinstance(video, (str, Path)) else video
    info = source.info
    tracker.reset()
    scheme = tracker.predictor.scheme
    ids, errors = set(), []
    faces = skipped = frames = 0
    start = clock.perf_counter()
    with contextlib.ExitStack() as stack:
        lines = open(stack.enter_context(atomic_path(out)), "w")
        stack.callback(lines.close)
        writer = stack.enter_context(_video_writer(draw, info.fps, info.size)) if draw is not None else None
        progress = stack.enter_context(tqdm(total=info.frames, desc="frames", unit="frame", disable=quiet))
        last = np.zeros((info.size[1], info.size[0], 3), np.uint8)
        for frame in prefetch(source):
            result = tracker.step(frame)
            frames += 1
            progress.update()
            if result.error:
                skipped += 1
                errors.append(result.error)
                if not quiet:
                    tqdm.write(f"skipped: {result.error}")
            faces += len(result.faces)
            ids.update(f.id for f in result.faces)
            lines.write(json.dumps(frame_record(result)) + "\n")
            if writer is not None:
                # An undecodable frame is drawn as the last good one: the drawn video keeps the timing.
                last = last if frame.pixels is None else draw_tracked(frame.pixels, result, scheme)
                writer.write(cv2.cvtColor(last, cv2.COLOR_RGB2BGR))
    seconds = clock.perf_counter() - start
    return VideoResult(frames, skipped, faces, len(ids), tracker.detector_calls, seconds, errors)


def draw_tracked(pixels: np.ndarray, frame: FrameFaces, scheme) -> np.ndarray:
    """A copy of the frame with its faces drawn as `detect` draws photos, each with its id."""
    image = draw_faces(pixels, frame.faces, scheme=scheme)
    for face in frame.faces:
        x0, y0 = int(face.box[0]), int(face.box[1])
        cv2.putText(image, str(face.id), (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 220, 0), 1,
                    cv2.LINE_AA)
    return image


@contextlib.contextmanager
def _video_writer(path: str | Path, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """A VideoWriter on a temporary name beside `path` (same suffix: it picks the container),
    renamed onto `path` when the block ends without error."""
    with atomic_path(path) as tmp:
        fourcc = cv2.VideoWriter_fourcc(*FOURCC[Path(path).suffix.lower()])
        writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, fourcc, fps, size)
        if not writer.isOpened():
            raise DataError(path, "OpenCV cannot write this kind of video here")
        try:
            yield writer
        finally:
            writer.release()
