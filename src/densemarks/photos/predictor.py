"""Landmarks on ordinary photos: detect faces, cut each out framed as the model's training crops
(one affine warp), predict, map the points back to photo pixels.

    predictor = Predictor.from_checkpoint("runs/fast/best.pt", detector="mtcnn")
    faces = predictor("group.jpg")        # list[Face]: box, points (K, 2) photo pixels, score

The first crop comes from the detector's box (its `box_prior` places the mean training face in
it), turned by the face's roll where the detector gives keypoints (MTCNN); each refinement pass
fits the mean face to the points just predicted (a similarity, so a tilted face is cut out
upright) and predicts again. Backends: torch (the checkpoint's model) or
ONNX Runtime (a file from `densemarks export`); both run `export.InferenceModel`'s computation.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from densemarks.analysis.viz import draw_faces, save_rgb
from densemarks.core import geometry
from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.core.registry import unknown
from densemarks.data.augment import warp
from densemarks.data.csvio import point_columns
from densemarks.data.framing import Framing, turn_to_keypoints
from densemarks.data.images import LoadedImage, load_image
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.landmarker import InferenceModel, OnnxLandmarker, TorchLandmarker, predict_views
from densemarks.inference.shape_prior import ShapePrior
from densemarks.inference.tta import Tta, parse_tta, view_matrices
from densemarks.photos.detect import Detection, create_detector

# backend: how the crop-to-points graph runs
BACKENDS = {"torch": TorchLandmarker, "onnx": OnnxLandmarker}

@dataclass(frozen=True)
class Face:
    """box (4,) x0, y0, x1, y1 and points (K, 2), photo pixels as displayed (EXIF applied);
    score: the detector's confidence (nan for faces given by the caller)."""

    box: np.ndarray
    points: np.ndarray
    score: float


MIN_PHOTO_SIDE = 16  # pixels: below this a photo holds no face a detector can find


class Predictor:
    """Detector + landmark model. `refine` re-framing passes after the first crop (None: none
    when the detector's keypoints turned it, one otherwise; AFW, BENCHMARKS.md: one pass so
    framed is as accurate as two from the box alone); `tta` (a `tta.TTA_MODES` name or a Tta) averages each crop with its mirror (points renamed
    by the flip index) and over its framings (crops warped with a rotation or zoom composed in)."""

    def __init__(self, landmarker, framing: Framing, flip_index: np.ndarray, *, detector=None,
                 refine: int | None = None, tta: str | Tta = "none",
                 norm_points: tuple[int, int] | None = None, scheme=None, keypoints: bool = True,
                 shape_prior: ShapePrior | None = None):
        self.landmarker = landmarker
        self.shape_prior = shape_prior  # every pass's points go through it (inference/shape_prior.py)
        self.norm_points = norm_points  # the scheme's NME pair, for evaluation
        self.scheme = scheme  # the checkpoint's LandmarkScheme, for drawing regions as lines
        self.framing = framing
        self.flip_index = np.asarray(flip_index)
        self.detector = detector
        self.refine = refine
        # (4, K): points -> the detector's keypoints, which turn each first crop by the face's roll
        self.keypoint_weights = scheme.keypoint_weights(framing.mean_shape) if keypoints and scheme else None
        self.tta = parse_tta(tta)
        self.views = view_matrices(self.tta.views, framing.size)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, detector: str | object | None = "mtcnn",
                        backend: str = "torch", onnx: str | Path | None = None, threads: int | None = None,
                        refine: int | None = None, tta: str | Tta = "none", keypoints: bool = True,
                        shape_prior: bool = True) -> "Predictor":
        """backend "torch" runs the checkpoint's model; "onnx" runs `onnx` (default: the
        checkpoint's path with .onnx). detector: a name for `create_detector`, an object, or None
        (then only `predict_faces` with given boxes or points works). keypoints: turn each first
        crop by the roll of the detector's keypoints where it gives them (MTCNN) and the scheme
        names eyes and mouth. shape_prior: pass every pass's points through the checkpoint's
        shape prior where it has one."""
        state = Checkpoint.load(checkpoint)
        framing = state.require_framing()
        if backend == "torch":
            landmarker = TorchLandmarker(InferenceModel.from_checkpoint(state), threads)
        elif backend == "onnx":
            landmarker = OnnxLandmarker(onnx or Path(checkpoint).with_suffix(".onnx"), threads)
        else:
            raise unknown("backend", backend, BACKENDS)
        if isinstance(detector, str):
            detector = create_detector(detector)
        return cls(landmarker, framing, state.scheme.flip_index, detector=detector,
                   refine=refine, tta=tta, norm_points=state.scheme.norm_points, scheme=state.scheme,
                   keypoints=keypoints, shape_prior=state.shape_prior if shape_prior else None)

    def __call__(self, photo: str | Path | np.ndarray | LoadedImage) -> list[Face]:
        """Every face the detector finds, best score first; [] when there is none."""
        if self.detector is None:
            raise DataError(None, "this predictor has no detector; give boxes to predict_faces")
        image = as_loaded(photo)
        if min(image.pixels.shape[:2]) < MIN_PHOTO_SIDE:
            return []  # no face fits; detectors fail on a few pixels instead of saying so
        detections = self.detector(image.pixels)
        return self.predict_faces(image, detections)

    def predict_faces(self, photo, detections: list[Detection] | np.ndarray) -> list[Face]:
        """Points for given faces: this predictor's detector's Detection objects (placed by its
        box prior), or boxes (N, 4) in photo pixels taken as the faces' landmark bounding boxes
        (brows to chin, ear to ear for 68 points; any rough box works, the refinement re-frames)."""
        image = as_loaded(photo)
        prior = getattr(self.detector, "box_prior", None)
        if isinstance(detections, np.ndarray) or (detections and not isinstance(detections[0], Detection)):
            boxes = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
            detections = [Detection(b, float("nan")) for b in boxes]
            prior = None
        if not detections:
            return []
        boxes = np.stack([d.box for d in detections])
        start = self.framing.shape_in_box(boxes, prior)
        turned = self.keypoint_weights is not None and all(d.keypoints is not None for d in detections)
        if turned:
            start = turn_to_keypoints(start, np.stack([d.keypoints for d in detections]), self.keypoint_weights)
        points = self.landmarks(image, start, 0 if turned else 1)
        return [Face(d.box, p, d.score) for d, p in zip(detections, points)]

    def landmarks(self, photo, start: np.ndarray, default_refine: int = 1) -> np.ndarray:
        """Points (N, K, 2) in photo pixels from rough points `start` (N, K, 2): 1 + refine passes
        (`default_refine` when this predictor's refine is None)."""
        image = as_loaded(photo)
        points = np.asarray(start, dtype=np.float64)
        for _ in range(1 + (default_refine if self.refine is None else self.refine)):
            points = self.predict_framed(image, self.framing.region_matrix(points))
        return points

    def framed_crops(self, photo, matrices: np.ndarray) -> np.ndarray:
        """The network's inputs for N faces framed by `matrices` (N, 3, 3): (V * N, H, W, 3)
        uint8, view-major; the first N are the faces as framed (every TTA mode's first view)."""
        image = as_loaded(photo)
        views = self.views[:, None] @ matrices[None]  # (V, N, 3, 3)
        return np.stack([self.crop(image, m) for m in views.reshape(-1, 3, 3)])

    def predict_framed(self, photo, matrices: np.ndarray, crops: np.ndarray | None = None) -> np.ndarray:
        """Points (N, K, 2) in photo pixels for N faces framed by `matrices` (N, 3, 3): photo
        pixels -> input pixels, e.g. `framing.region_matrix` of rough points; one pass, no
        refinement. crops: `framed_crops(photo, matrices)` when the caller has made them."""
        views = self.views[:, None] @ matrices[None]  # (V, N, 3, 3), view-major
        crops = self.framed_crops(photo, matrices) if crops is None else crops
        points = predict_views(self.landmarker, crops, lambda c: c[:, :, ::-1], views,
                               np.zeros(views.shape[:2], bool), self.tta, self.flip_index)
        return points if self.shape_prior is None else self.shape_prior.apply(points)

    def crop(self, image: LoadedImage, matrix: np.ndarray) -> np.ndarray:
        """One face's input crop (H, W, 3) uint8. Only the photo's region under the crop (plus a
        margin for the anti-aliasing pyramid) is handed to the warp: a face in a large photo does
        not pay for shrinking the whole photo."""
        h, w = self.framing.size
        to_pixels = matrix @ np.linalg.inv(image.to_pixels)  # decoded pixels -> input
        corners = geometry.apply(np.linalg.inv(to_pixels), np.array([[-0.5, -0.5], [w - 0.5, -0.5],
                                                                      [-0.5, h - 0.5], [w - 0.5, h - 0.5]]))
        rows, cols = image.pixels.shape[:2]
        # Origin on a multiple of 32 and a 32 px margin: the pyramid halvings then sample the
        # same pixels as they would on the whole photo (identical crops, tests/test_photos.py).
        x0, y0 = np.clip((np.floor(corners.min(axis=0)).astype(int) - 32) // 32 * 32, 0, (cols, rows))
        x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 32, 0, (cols, rows))
        if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the photo
            return np.zeros((h, w, 3), np.uint8)
        roi = LoadedImage(image.pixels[y0:y1, x0:x1], (int(x1 - x0), int(y1 - y0)), np.eye(3))
        # RGBA -> RGB by OpenCV: a contiguous crop in half the time of slicing and copying it.
        return cv2.cvtColor(warp(roi, to_pixels @ geometry.translation(x0, y0), self.framing.size), cv2.COLOR_RGBA2RGB)


def as_loaded(photo) -> LoadedImage:
    """A path (EXIF orientation applied, any mode), an (H, W, 3) uint8 RGB array, or a LoadedImage."""
    if isinstance(photo, LoadedImage):
        return photo
    if isinstance(photo, np.ndarray):
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise DataError(None, f"expected an (H, W, 3) uint8 RGB array, got {photo.shape} {photo.dtype}")
        h, w = photo.shape[:2]
        return LoadedImage(photo, (w, h), np.eye(3))
    return load_image(photo)


PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def list_photos(paths: list[Path]) -> list[Path]:
    """The given files, and the image files (by suffix, sorted) of the given folders."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise DataError(path, "no photos in folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(path, "photo not found")
    return files


@dataclass(frozen=True)
class DetectResult:
    """faces: the number found in each photo (None where the photo could not be read);
    failures: 'photo: what is wrong' for each of those."""

    faces: list[int | None]
    failures: list[str]


def detect_photos(predictor: Predictor, files: list[Path], out: Path, draw: Path | None = None,
                  quiet: bool = False) -> DetectResult:
    """Run the predictor on each file; write `out` (.json: every photo with its faces' boxes,
    scores and points, or its error; .csv: one row per face, and one per unreadable photo with
    its error) atomically; with `draw`, each photo with its faces drawn into that folder under a
    name no other photo of the batch shares. A photo that cannot be read is listed, not fatal."""
    out = Path(out)
    if out.suffix.lower() not in (".json", ".csv"):
        raise DataError(out, "output must end in .json or .csv")
    records, failures = [], []
    names = drawing_names(files)
    for path, drawn_name in zip(tqdm(files, desc="photos", unit="photo", disable=quiet), names):
        try:
            image = load_image(path)
            faces = predictor(image)
        except DataError as exc:
            records.append({"file": str(path), "error": str(exc), "faces": None})
            failures.append(str(exc))
            if not quiet:
                tqdm.write(f"skipped: {exc}")
            continue
        w, h = image.original_size
        records.append({"file": str(path), "width": w, "height": h,
                        "faces": [{"box": f.box.round(2).tolist(), "score": round(float(f.score), 4),
                                   "points": f.points.round(2).tolist()} for f in faces]})
        if draw is not None:
            Path(draw).mkdir(parents=True, exist_ok=True)
            save_rgb(Path(draw) / drawn_name, draw_faces(image.pixels, faces, scheme=predictor.scheme))
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".json":
            tmp.write_text(json.dumps(records))
        else:
            _write_faces_csv(tmp, records, predictor.framing.mean_shape.shape[0])
    return DetectResult([None if r["faces"] is None else len(r["faces"]) for r in records], failures)


def drawing_names(files: list[Path]) -> list[str]:
    """`stem.jpg` for each photo; photos whose stems collide (`x.jpg` and `x.png`, or `a/x.jpg`
    and `b/x.jpg`) get their folder and suffix in the name too: `a__x_png.jpg`."""
    stems = Counter(Path(f).stem for f in files)
    names = []
    for f in map(Path, files):
        name = f.stem if stems[f.stem] == 1 else "__".join([*f.parent.parts[-1:], f.stem + "_" + f.suffix.lstrip(".")])
        while f"{name}.jpg" in names:
            name += "_"
        names.append(f"{name}.jpg")
    return names


def _write_faces_csv(path: Path, records: list[dict], k: int) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["file_name", "face", "score", "box_x0", "box_y0", "box_x1", "box_y1", *point_columns(k), "error"])
        for r in records:
            if r["faces"] is None:
                writer.writerow([r["file"], "", "", *[""] * (4 + 2 * k), r["error"]])
            for i, face in enumerate(r["faces"] or []):
                writer.writerow([r["file"], i, face["score"], *face["box"], *np.ravel(face["points"]).tolist(), ""])
