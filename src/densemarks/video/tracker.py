"""Faces followed through a video: each tracked face is framed from its points in the previous
frame (as the photo pipeline's re-framing pass frames it from a first guess), moved on by the
centroid's recent velocity (framed where it was, a moving face sits off-centre by a
frame's movement, and a model's error then grows frame by frame), so the detector is needed only
now and then.

    tracker = FaceTracker(Predictor.from_checkpoint("runs/fast/best.pt", backend="onnx"))
    for frame in tracker.track(frames, fps=30):   # frames: RGB arrays (H, W, 3) uint8, or video.frames.Frame
        for face in frame.faces:                  # TrackedFace: id, box, points (K, 2), score
            ...

The detector runs on the first frame, every `detect_every` frames (faces that entered), every
`search_every` frames while no face is tracked, and at once on any frame where a track is in
doubt: most of its points left the frame, it jumped further than a face moves in a frame, its
size jumped or drifted from the size the detector last gave it (a model whose points sit a
little inside the face shrinks it by framing from them, frame after frame), or its crop stopped
looking like the last one (normalised cross-correlation of small grey thumbnails, both framed
the same way: a face that vanished, a cut). A detector call matches detections to tracks one to
one by box overlap (Hungarian assignment): matched tracks keep their ids (and take the
detector's framing if in doubt or drifted), a doubted track the detector does not find ends, a
confident one ends after `max_misses` such calls in a row, and unmatched detections start
tracks, taking the id of a track that ended within `remember` frames less than a face size away
(a face behind a passing hand, a frame without it) or a new one. The points reported are
smoothed per track by a One Euro filter; the framing always uses the unsmoothed points, so
smoothing never feeds its lag back into the crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np

from densemarks.core.boxes import box_of, iou, match
from densemarks.core.errors import DataError
from densemarks.photos.detect import Detection
from densemarks.photos.predictor import Predictor, as_loaded
from densemarks.video.frames import DEFAULT_FPS, Frame
from densemarks.video.smoothing import OneEuro, OneEuroFilter


@dataclass(frozen=True)
class TrackOptions:
    """detect_every: frames between detector calls while every track is confident;
    search_every: the same while no face is tracked; min_visible: share of a face's points
    inside the frame below which its track is doubted; max_step: centroid movement in one frame,
    in face sizes, above which it is doubted; max_scale_step: size ratio between frames above
    which it is doubted; max_drift: size ratio to the face as the detector last framed it above
    which it is doubted (a model whose points sit a little inside or outside the face shrinks or
    grows it by framing from them frame after frame); min_similarity: correlation of the face's
    crop with its crop in the previous frame below which it is doubted; max_misses: detector
    calls in a row that do not find a confident track before it ends; remember: frames an ended
    track's id can be taken again by a face found near where it was; min_iou: box overlap for a
    detection to be a track's face; velocity_weight: the newest step's weight in the running
    average of a face's velocity that frames its next crop ahead (0: framed where it was; 1: the
    last step alone, which follows a moving face best but turns the points' noise into framing
    noise: on a still face 1 had 1.35x the unsmoothed jitter of 0, 0.25 had 1.04x;
    BENCHMARKS.md); smoothing: the One Euro filter's parameters, None for raw points."""

    detect_every: int = 15
    search_every: int = 5
    min_visible: float = 0.6
    max_step: float = 0.5
    max_scale_step: float = 1.4
    max_drift: float = 1.1
    min_similarity: float = 0.5
    max_misses: int = 2
    remember: int = 30
    min_iou: float = 0.3
    velocity_weight: float = 0.25
    smoothing: OneEuro | None = field(default_factory=OneEuro)


@dataclass(frozen=True)
class TrackedFace:
    """id: stable across the frames of one track; box (4,): the points' bounding box x0, y0,
    x1, y1; points (K, 2) in frame pixels (smoothed when smoothing is on); score: the detector's
    confidence when it last found this face; detected: it found it in this frame."""

    id: int
    box: np.ndarray
    points: np.ndarray
    score: float
    detected: bool


@dataclass(frozen=True)
class FrameFaces:
    """The faces of one frame; detector: the detector ran on it; error: why the frame was
    skipped (it could not be decoded), else None."""

    index: int
    time: float
    faces: list[TrackedFace]
    detector: bool
    error: str | None = None


THUMBNAIL = 24  # pixels: the side of the grey thumbnails compared between frames


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 crop -> (THUMBNAIL**2,) grey values, zero mean, unit length: the dot
    product of two is their normalised cross-correlation."""
    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (THUMBNAIL, THUMBNAIL),
                      interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-6)


def _ratio(a: float, b: float) -> float:
    """How far apart two sizes are, as a factor >= 1."""
    return max(a / max(b, 1e-9), b / max(a, 1e-9))


def face_size(points: np.ndarray) -> np.ndarray:
    """(..., K, 2) -> (...): the geometric-mean side of the points' bounding box, in pixels."""
    extent = points.max(axis=-2) - points.min(axis=-2)
    return np.sqrt(np.maximum(extent[..., 0] * extent[..., 1], 1e-12))


class _Track:
    def __init__(self, track_id: int, points: np.ndarray, score: float, smoothing: OneEuro | None, time: float):
        self.id = track_id
        self.points = points  # unsmoothed, frame pixels: frames the next crop
        self.velocity = np.zeros(2)  # of the points' centroid, pixels per second: moves that crop along
        self.time = time  # of the frame the points are from
        self.score = score
        self.anchor = float(face_size(points))  # its size as the detector last framed it
        self.misses = 0
        self.detected = True
        self.thumbnail: np.ndarray | None = None  # this frame framed by its points, for the next frame
        self.filter = OneEuroFilter(smoothing) if smoothing else None

    def move(self, points: np.ndarray, time: float, weight: float) -> None:
        """Followed to `points` in the frame at `time`: the step joins the centroid's velocity, a
        running average with the newest step's `weight`."""
        if time > self.time:
            step = (points.mean(axis=0) - self.points.mean(axis=0)) / (time - self.time)
            self.velocity += weight * (step - self.velocity)
        self.points, self.time = points, time

    def place(self, points: np.ndarray, time: float) -> None:
        """Put at `points` by the detector (a face found again, a cut): no velocity known."""
        self.points, self.time, self.velocity = points, time, np.zeros(2)

    def ahead(self, time: float) -> np.ndarray:
        """The points moved on to `time` at the centroid's recent velocity: where to frame the crop."""
        return self.points + self.velocity * (time - self.time)


class FaceTracker:
    """Tracks faces through consecutive frames of one video with a photo `Predictor` (its
    detector, framing and landmark model; its `refine` passes apply to newly detected faces).
    `reset()` before another video."""

    def __init__(self, predictor: Predictor, options: TrackOptions | None = None):
        if predictor.detector is None:
            raise DataError(None, "tracking needs a predictor with a detector")
        self.predictor = predictor
        self.options = options or TrackOptions()
        if self.options.detect_every < 1 or self.options.search_every < 1:
            raise DataError(None, "detect_every and search_every must be at least 1 frame")
        if not 0 <= self.options.velocity_weight <= 1:
            raise DataError(None, f"velocity_weight must be between 0 and 1, not {self.options.velocity_weight}")
        if not self.options.max_drift >= 1:
            raise DataError(None, f"max_drift is a size ratio, at least 1, not {self.options.max_drift}")
        self.reset()

    def reset(self) -> None:
        self.tracks: list[_Track] = []
        self.next_id = 0
        self.ended: list[tuple[int, int, np.ndarray]] = []  # (frame ended, id, points) of recent tracks
        self.since_detector: int | None = None  # frames since the detector's last call
        self.detector_calls = 0
        self.frames = 0

    def track(self, frames: Iterable[Frame | np.ndarray], fps: float = DEFAULT_FPS) -> Iterator[FrameFaces]:
        """FrameFaces for each frame, in order. frames: RGB arrays (H, W, 3) uint8 (times from
        `fps`) or `Frame`s; a Frame without pixels (undecodable) is passed on with its error and
        leaves the tracks as they were."""
        for position, frame in enumerate(frames):
            if not isinstance(frame, Frame):
                frame = Frame(position, position / fps, frame)
            yield self.step(frame)

    def step(self, frame: Frame) -> FrameFaces:
        """One `Frame`: its faces; one without pixels is passed on with its error."""
        if frame.pixels is None:
            return FrameFaces(frame.index, frame.time, [], False, frame.error or "frame could not be decoded")
        faces, detector = self.update(frame.pixels, frame.time)
        return FrameFaces(frame.index, frame.time, faces, detector)

    def update(self, pixels: np.ndarray, time: float) -> tuple[list[TrackedFace], bool]:
        """One frame: (its faces, whether the detector ran on it)."""
        image = as_loaded(pixels)
        opts = self.options
        self.frames += 1
        height, width = image.pixels.shape[:2]
        doubted: set[int] = set()
        if self.tracks:
            matrices = self.predictor.framing.region_matrix(np.stack([t.ahead(time) for t in self.tracks]))
            crops = self.predictor.framed_crops(image, matrices)
            tracked = self.predictor.predict_framed(image, matrices, crops)
            for i, (track, points, crop) in enumerate(zip(self.tracks, tracked, crops)):
                similar = track.thumbnail is None or float(thumbnail(crop) @ track.thumbnail) >= opts.min_similarity
                track.detected = False
                if similar and self._plausible(track, points, width, height):
                    track.move(points, time, opts.velocity_weight)
                else:  # keeps its last good points: the detector decides, and an ended track is remembered there
                    doubted.add(i)
        interval = opts.detect_every if self.tracks else opts.search_every
        run = self.since_detector is None or self.since_detector + 1 >= interval or bool(doubted)
        if run:
            self._detect(image, doubted, time)
            self.since_detector = 0
        else:
            self.since_detector += 1
        self._drop_duplicates()
        if self.tracks:  # how each face looks framed by its points now: the next frame's crop
            matrices = self.predictor.framing.region_matrix(np.stack([t.points for t in self.tracks]))
            for track, matrix in zip(self.tracks, matrices):
                track.thumbnail = thumbnail(self.predictor.crop(image, matrix))
        return [self._report(t, time) for t in self.tracks], run

    def _plausible(self, track: _Track, after: np.ndarray, width: int, height: int) -> bool:
        opts = self.options
        before = track.points
        inside = (after[:, 0] >= 0) & (after[:, 0] <= width) & (after[:, 1] >= 0) & (after[:, 1] <= height)
        size_before, size_after = float(face_size(before)), float(face_size(after))
        step = np.linalg.norm(after.mean(axis=0) - before.mean(axis=0)) / size_before
        return bool(inside.mean() >= opts.min_visible and step <= opts.max_step
                    and _ratio(size_after, size_before) <= opts.max_scale_step
                    and _ratio(size_after, track.anchor) <= opts.max_drift)

    def _detect(self, image, doubted: set[int], time: float) -> None:
        """Run the detector; match its faces to the tracks; start, keep and end tracks."""
        opts = self.options
        detections: list[Detection] = self.predictor.detector(image.pixels)
        self.detector_calls += 1
        found = self.predictor.predict_faces(image, detections) if detections else []
        found_points = np.stack([f.points for f in found]) if found else np.zeros((0, 1, 2))
        track_points = np.stack([t.points for t in self.tracks]) if self.tracks else np.zeros((0, 1, 2))
        pairs = dict(match(box_of(track_points), box_of(found_points), opts.min_iou)) if found and self.tracks else {}
        kept = []
        for i, track in enumerate(self.tracks):
            if i in pairs:
                face = found[pairs[i]]
                track.misses, track.score, track.detected = 0, face.score, True
                track.anchor = float(face_size(face.points))
                if i in doubted or _ratio(float(face_size(track.points)), track.anchor) > opts.max_drift:
                    track.place(face.points, time)  # the detector's framing is the better one now
                kept.append(track)
                continue
            track.misses += 1
            if i not in doubted and track.misses < opts.max_misses:
                kept.append(track)
            else:
                self.ended.append((self.frames, track.id, track.points))
        self.tracks = kept
        self.ended = [e for e in self.ended if self.frames - e[0] <= opts.remember]
        claimed = set(pairs.values())
        for j, face in enumerate(found):
            if j in claimed:
                continue
            box = box_of(face.points)[None]
            if self.tracks and iou(box, box_of(np.stack([t.points for t in self.tracks]))).max() >= opts.min_iou:
                continue  # a second detection of a tracked face
            self.tracks.append(_Track(self._id_for(face.points), face.points, face.score, opts.smoothing, time))

    def _id_for(self, points: np.ndarray) -> int:
        """The id of the recently ended track nearest to a new face's points (centres less than
        a face size apart, sizes within a factor 1.5), else a new one."""
        if self.ended:
            ended = np.stack([p for _, _, p in self.ended])
            size, sizes = face_size(points), face_size(ended)
            distance = np.linalg.norm(ended.mean(axis=1) - points.mean(axis=0), axis=1) / size
            ratio = np.maximum(sizes / size, size / sizes)
            distance[ratio > 1.5] = np.inf
            best = int(np.argmin(distance))
            if distance[best] <= 1.0:
                return self.ended.pop(best)[1]
        self.next_id += 1
        return self.next_id - 1

    def _drop_duplicates(self) -> None:
        """Two tracks that converged on one face: the older one stays."""
        if len(self.tracks) < 2:
            return
        overlap = iou(*(box_of(np.stack([t.points for t in self.tracks])),) * 2)
        keep = []
        for i in range(len(self.tracks)):  # tracks are in order of age
            if not any(overlap[i, j] >= 0.5 for j in keep):
                keep.append(i)
        self.tracks = [self.tracks[i] for i in keep]

    def _report(self, track: _Track, time: float) -> TrackedFace:
        points = track.points
        if track.filter is not None:
            points = track.filter(points, time, float(face_size(points)))
        return TrackedFace(track.id, box_of(points), points, track.score, track.detected)
