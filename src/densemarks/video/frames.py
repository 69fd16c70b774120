"""Frames in order from a video file (any container OpenCV's FFmpeg reads) or a folder of
numbered images, decoded in a thread beside the caller.

    source = open_video("talk.mp4")        # or a folder: frame_0001.png, frame_0002.png, ...
    for frame in source:                   # Frame(index, time, pixels (H, W, 3) uint8 RGB | None, error)
        ...

A frame that cannot be decoded comes as `pixels=None` with its error, and the frames after it
still come: one bad packet or file does not end the video. A file that is not a video at all is
one DataError when it is opened.
"""

from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import cv2
import numpy as np

from densemarks.core.errors import DataError
from densemarks.data.images import load_image

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp"}
FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STATED_SLACK = 2  # frames: containers that estimate their frame count (mkv, webm) can be off by this
DEFAULT_FPS = 30.0  # for a folder of frames, and a container that does not say
MAX_BAD_RUN = 5  # undecodable packets in a row before the rest of a video file counts as lost


@dataclass(frozen=True)
class Frame:
    """index: 0-based position in the video; time: seconds from its start; pixels: (H, W, 3)
    uint8 RGB, or None when this frame could not be decoded (error says why)."""

    index: int
    time: float
    pixels: np.ndarray | None
    error: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    """size (width, height) of the first frame; frames: the count the container states (None
    for a stream that does not say, or an estimate that may be off by a few)."""

    path: Path
    fps: float
    size: tuple[int, int]
    frames: int | None


def is_video(path: str | Path) -> bool:
    """A video file by its suffix (folders of frames are videos only when the caller says so)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def open_video(path: str | Path, fps: float | None = None) -> "VideoFile | FrameFolder":
    """A frame source for a video file or a folder of numbered frames; `fps` overrides the
    container's rate (and sets a folder's, default 30)."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, fps or DEFAULT_FPS)
    if not path.is_file():
        raise DataError(path, "video not found")
    return VideoFile(path, fps)


class VideoFile:
    """A video file through OpenCV's FFmpeg backend."""

    def __init__(self, path: Path, fps: float | None = None):
        self.path = path
        capture = self._open()
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise DataError(path, "not a video OpenCV can read (no frame could be decoded)")
            rate = fps or capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        rate = rate if rate and np.isfinite(rate) and 0 < rate <= 1000 else DEFAULT_FPS
        self.info = VideoInfo(path, float(rate), (first.shape[1], first.shape[0]), count if count > 0 else None)

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise DataError(self.path, "not a video OpenCV can read (no decoder for this file; "
                            f"videos: {', '.join(sorted(VIDEO_SUFFIXES))}, or a folder of numbered frames)")
        return capture

    def __iter__(self) -> Iterator[Frame]:
        capture = self._open()
        fps, size, stated = self.info.fps, self.info.size, self.info.frames
        index, failed = 0, 0  # failed: undecodable packets since the last good frame
        try:
            while True:
                if not capture.grab():
                    # FFmpeg fails on an undecodable packet and goes on after it; past the end,
                    # or in a truncated file, it keeps failing without moving.
                    failed += 1
                    if stated is None or index + failed > stated or failed >= MAX_BAD_RUN:
                        break
                    continue
                for lost in range(index, index + failed):
                    yield Frame(lost, lost / fps, None, f"{self.path}: frame {lost} could not be decoded")
                index, failed = index + failed, 0
                ok, bgr = capture.retrieve()
                msec = capture.get(cv2.CAP_PROP_POS_MSEC)
                time = msec / 1000 if np.isfinite(msec) and (msec > 0 or index == 0) else index / fps
                if not ok or bgr is None or (bgr.shape[1], bgr.shape[0]) != size:
                    yield Frame(index, time, None, f"{self.path}: frame {index} could not be decoded")
                else:
                    yield Frame(index, time, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
            if stated is not None and stated - index > STATED_SLACK:
                yield Frame(index, index / fps, None, f"{self.path}: frames {index} to {stated - 1} could not be "
                            "decoded (the file ends early: truncated or damaged?)")
        finally:
            capture.release()


class FrameFolder:
    """Images in a folder, in the order of the last number in their names (frame_9 before frame_10)."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        files = [p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")]
        numbered = [(int(m[-1]), p) for p in files if (m := re.findall(r"\d+", p.stem))]
        if not numbered:
            raise DataError(path, "no numbered frames in folder (expected names like frame_0001.png)")
        if len(numbered) < len(files):
            unnumbered = sorted(set(files) - {p for _, p in numbered})
            raise DataError(unnumbered[0], "frame name has no number (frames are ordered by the number in their names)")
        numbers = [n for n, _ in numbered]
        if len(set(numbers)) < len(numbers):
            dup = sorted(p.name for n, p in numbered if numbers.count(n) > 1)[:2]
            raise DataError(path, f"two frames have the same number: {' and '.join(dup)}")
        self.files = [p for _, p in sorted(numbered)]
        first = load_image(self.files[0]).pixels
        self.info = VideoInfo(path, float(fps), (first.shape[1], first.shape[0]), len(self.files))

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            try:
                pixels = load_image(file).pixels[..., :3]
            except DataError as exc:
                yield Frame(index, index / self.info.fps, None, str(exc))
                continue
            if (pixels.shape[1], pixels.shape[0]) != self.info.size:
                yield Frame(index, index / self.info.fps, None,
                            f"{file}: frame is {pixels.shape[1]}x{pixels.shape[0]}, the video is "
                            f"{self.info.size[0]}x{self.info.size[1]}")
                continue
            yield Frame(index, index / self.info.fps, np.ascontiguousarray(pixels))


T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """The same items, produced by a thread up to `depth` ahead (decoding beside the model:
    OpenCV's decoder and ONNX Runtime release the GIL). An error in the producer is raised here;
    leaving the loop early stops the producer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="densemarks-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
