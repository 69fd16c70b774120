"""Face detectors behind one small interface, each a thin adapter over a maintained package whose
weights ship inside its own wheel (nothing is downloaded at run time).

    detector = create_detector("mtcnn")
    detections = detector(rgb)            # (H, W, 3) uint8 -> list[Detection], best first

A detector's boxes have its own framing (MTCNN's hugs brows to chin, Haar's is squarer and
larger). `box_prior` says where a 68-point face's landmark bounding box sits relative to the
box: its centre shifted by (dx, dy) box widths/heights, its geometric-mean side `scale` times
the box's. The photo pipeline uses it only for the first crop; a second pass re-frames from the
predicted points. The priors were measured on 300-W training crops that are not AFW faces
(`benchmarks/detectors.py calibrate`, BENCHMARKS.md).

Packages: mtcnn is facenet-pytorch (`make detectors` installs it without its dependencies,
which would downgrade torch); mediapipe, haar (opencv-python 4.x) and dlib conflict with this
environment's numpy 2 / OpenCV 5 and live in their own environments (README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemarks.core.errors import DataError
from densemarks.core.registry import choose
from densemarks.data.framing import BoxPrior


@dataclass(frozen=True)
class Detection:
    """box (4,) float64 x0, y0, x1, y1 in the photo's pixels (edges); score: the detector's
    confidence (its own scale); keypoints (4, 2) float64 or None: the eye centres then the mouth
    corners, each pair image-left first (what `LandmarkScheme.keypoint_weights` takes from
    points), from detectors that find them."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray | None = None


class MTCNNDetector:
    """facenet-pytorch's MTCNN (three cascaded CNNs; finds profiles). 60-120 ms a photo here."""

    name = "mtcnn"
    install = "pip install --no-deps facenet-pytorch==2.6.0 requests (or: make detectors)"
    box_prior = BoxPrior(0.012, 0.126, 0.885)

    def __init__(self, min_face: int = 20, threshold: float = 0.9, device: str = "cpu"):
        try:
            from facenet_pytorch import MTCNN  # optional (installed by make with --no-deps)
        except ImportError as exc:
            raise _unavailable(self, exc) from None
        self.threshold = threshold
        self.model = MTCNN(keep_all=True, min_face_size=min_face, device=device)

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        import torch  # with facenet-pytorch: MTCNN is the one detector that runs in torch

        with torch.no_grad():
            boxes, scores, marks = self.model.detect(np.ascontiguousarray(rgb), landmarks=True)
        if boxes is None:
            return []
        # MTCNN's five points: eyes, nose tip, mouth corners; the nose is not a keypoint here
        return _sorted([Detection(np.asarray(b, dtype=np.float64), float(s),
                                  np.asarray(m, dtype=np.float64)[[0, 1, 3, 4]])
                        for b, s, m in zip(boxes, scores, marks) if s is not None and s >= self.threshold])


class MediaPipeDetector:
    """MediaPipe's BlazeFace (full-range model). 2-3 ms a photo; misses small faces."""

    name = "mediapipe"
    install = "pip install mediapipe==0.10.21 (needs numpy<2: use a separate environment)"
    box_prior = BoxPrior(0.004, 0.081, 0.876)

    def __init__(self, threshold: float = 0.5, full_range: bool = True):
        try:
            from mediapipe.python.solutions import face_detection  # optional
        except ImportError as exc:
            raise _unavailable(self, exc) from None
        self.model = face_detection.FaceDetection(model_selection=1 if full_range else 0,
                                                  min_detection_confidence=threshold)

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        result = self.model.process(np.ascontiguousarray(rgb))
        out = []
        for d in result.detections or []:
            r = d.location_data.relative_bounding_box
            box = np.array([r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h])
            out.append(Detection(box, float(d.score[0])))
        return _sorted(out)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (needs opencv-python 4.x: OpenCV 5 dropped it)."""

    name = "haar"
    install = "pip install 'opencv-python<5' (replaces opencv-python-headless: use a separate environment)"
    box_prior = BoxPrior(0.005, 0.134, 0.802)

    def __init__(self, min_face: int = 20):
        import cv2  # the Haar cascades need opencv-python<5 (optional; see `install`)

        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise _unavailable(self, ImportError(f"OpenCV {cv2.__version__} has no Haar cascades"))
        self.cv2 = cv2
        self.model = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        self.min_face = min_face

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        cv2 = self.cv2
        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self.model.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5,
                                                         minSize=(self.min_face, self.min_face),
                                                         outputRejectLevels=True)
        return _sorted([Detection(np.array([x, y, x + w, y + h], dtype=np.float64), float(s))
                        for (x, y, w, h), s in zip(boxes, np.ravel(weights))])


class DlibDetector:
    """dlib's HOG + linear SVM frontal detector (dlib-bin). Misses profiles."""

    name = "dlib"
    install = "pip install dlib-bin"
    box_prior = BoxPrior(0.011, 0.077, 0.935)

    def __init__(self, upsample: int = 1):
        try:
            import dlib  # optional (dlib-bin)
        except ImportError as exc:
            raise _unavailable(self, exc) from None
        self.model = dlib.get_frontal_face_detector()
        self.upsample = upsample

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        rects, scores, _ = self.model.run(np.ascontiguousarray(rgb), self.upsample, 0.0)
        return _sorted([Detection(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64),
                                  float(s)) for r, s in zip(rects, scores)])


DETECTORS = {d.name: d for d in (MTCNNDetector, MediaPipeDetector, HaarDetector, DlibDetector)}
DEFAULT_DETECTOR = "mtcnn"


def create_detector(name: str = DEFAULT_DETECTOR, **options):
    """A detector by name (`DETECTORS`); options go to its constructor."""
    return choose(DETECTORS, name, "detector")(**options)


def _unavailable(detector, exc: Exception) -> DataError:
    return DataError(None, f"detector {detector.name!r} is not installed ({exc}); {detector.install}")


def _sorted(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: -d.score)
