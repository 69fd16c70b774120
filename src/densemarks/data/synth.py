"""Synthetic faces in the competition layout: the embedded default dataset for demo and tests.

Faces are drawn procedurally (oval, brows, eyes with pupils, nose, mouth) and K points are
spread along those contours following the competition's 971-point region layout, scaled to
any K >= MIN_POINTS: lower-oval halves, upper oval, brows, nose sides, nose middle line, eyes
(two passes each), four mouth segments, two pupils. A flip therefore maps regions as on the real
data, and the exact flip index is known by construction (written to train/scheme.json).
Every face varies in shape, size, aspect, rotation, yaw, colours, texture, lighting, blur, JPEG
quality and black borders, deterministically for a seed.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from densemarks.data.csvio import RequestedPoints, write_landmarks, write_test_points
from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_dir
from densemarks.data.scheme import LandmarkScheme, Region

# (name, points at K = 971, symmetry): "pair" regions come as a/b mirror halves, "reverse"
# regions map onto themselves in reverse order, "fixed" points map onto themselves.
_TEMPLATE_971 = [
    ("oval_lower", 64, "pair"), ("oval_upper", 145, "reverse"), ("brow", 64, "pair"),
    ("nose_side", 63, "pair"), ("nose_middle", 60, "fixed"), ("eye", 127, "pair"),
    ("mouth", 32, "segments4"), ("pupil", 1, "pair"),
]
MIN_POINTS = 24
MAX_POINTS = 20_000  # 20x the competition's; the layout and CSVs grow with K
TEST_POINTS_PER_IMAGE = 30
# Image sizes as in shared/docs/competition.md: crops of roughly 125x175 to 470x360 px in
# portrait aspect (render_face), some above 1300 px (these), most with black borders (_finish).
LARGE_SHARE = 0.02
LARGE_SIDE = (1300, 1700)


@dataclass(frozen=True)
class Layout:
    """Point counts per region in index order, and the scheme they imply."""

    counts: dict[str, int]  # name -> points per side / segment
    scheme: LandmarkScheme


def make_layout(num_points: int) -> Layout:
    """The 971-point layout scaled to K points (exactly the competition's at K = 971)."""
    if num_points < MIN_POINTS:
        raise DataError(None, f"--points {num_points}: synthetic faces need at least {MIN_POINTS}")
    if num_points > MAX_POINTS:
        raise DataError(None, f"--points {num_points}: synthetic faces have at most {MAX_POINTS:,}")
    scale = (num_points - 2) / 969
    counts = {name: max(2 if name in ("eye", "mouth") else 1, round(n * scale))
              for name, n, _ in _TEMPLATE_971}
    counts["pupil"] = 1
    minimum = {name: (2 if name in ("eye", "mouth") else 1) for name in counts}

    def others() -> int:
        return sum(_region_size(name, counts[name], kind) for name, _, kind in _TEMPLATE_971
                   if name != "oval_upper")

    while num_points - others() < 1:  # rounding overshot at small K: trim the largest region
        name = max((n for n in counts if n != "oval_upper" and counts[n] > minimum[n]),
                   key=lambda n: counts[n])
        counts[name] -= 1
    counts["oval_upper"] = num_points - others()
    flip: list[int] = []
    regions: list[Region] = []
    for name, _, kind in _TEMPLATE_971:
        n, start = counts[name], len(flip)
        if kind == "pair":
            flip += [start + n + i for i in range(n)] + [start + i for i in range(n)]
            regions += [Region(f"{name}_a", start, start + n), Region(f"{name}_b", start + n, start + 2 * n)]
        elif kind == "reverse":
            flip += [start + n - 1 - i for i in range(n)]
            regions.append(Region(name, start, start + n))
        elif kind == "fixed":
            flip += [start + i for i in range(n)]
            regions.append(Region(name, start, start + n))
        else:  # four segments, each reversed
            for s in range(4):
                flip += [start + s * n + n - 1 - i for i in range(n)]
            regions.append(Region(name, start, start + 4 * n))
    pupils = (num_points - 2, num_points - 1)
    scheme = LandmarkScheme(num_points, np.asarray(flip, dtype=np.int64), pupils, tuple(regions))
    return Layout(counts, scheme)


def _region_size(name: str, n: int, kind: str) -> int:
    return {"pair": 2 * n, "reverse": n, "fixed": n, "segments4": 4 * n}[kind]


def _resample(curve: np.ndarray, n: int, closed: bool = False) -> np.ndarray:
    """n points evenly spaced by arc length along a dense polyline (M, 2)."""
    if closed:
        curve = np.vstack([curve, curve[:1]])
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    stops = np.linspace(0, arc[-1], n, endpoint=not closed) if n > 1 else np.array([arc[-1] / 2])
    return np.stack([np.interp(stops, arc, curve[:, 0]), np.interp(stops, arc, curve[:, 1])], axis=1)


def _mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0])


@dataclass(frozen=True)
class FaceParams:
    """Shape parameters in face units (face half-width = 1, y down, origin at face centre)."""

    oval_height: float
    brow_raise: float
    eye_open: float
    eye_width: float
    gaze: tuple[float, float]
    nose_length: float
    mouth_width: float
    mouth_open: float
    smile: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "FaceParams":
        return cls(
            oval_height=rng.uniform(1.15, 1.45), brow_raise=rng.uniform(-0.06, 0.08),
            eye_open=rng.uniform(0.35, 1.0), eye_width=rng.uniform(0.16, 0.22),
            gaze=(rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)),
            nose_length=rng.uniform(0.85, 1.15), mouth_width=rng.uniform(0.28, 0.45),
            mouth_open=rng.choice([0.0, rng.uniform(0.02, 0.2)]), smile=rng.uniform(-0.05, 0.12),
        )


def face_shape(layout: Layout, p: FaceParams) -> tuple[np.ndarray, list[np.ndarray]]:
    """Points (K, 2) in face units, index order of the layout, plus the eye contours to draw."""
    c = layout.counts
    b = p.oval_height
    parts: list[np.ndarray] = []
    # Lower oval: half a from the left temple to the chin, half b its mirror.
    t = np.linspace(math.pi, math.pi / 2, 200)
    lower_a = _resample(np.stack([np.cos(t), b * np.sin(t)], 1), c["oval_lower"] + 1)[:-1]
    parts += [lower_a, _mirror(lower_a)]
    # Upper oval: left temple over the forehead to the right temple (symmetric, so flip reverses).
    d = math.pi / (2 * c["oval_upper"] + 2)
    t = np.linspace(math.pi + d, 2 * math.pi - d, 400)
    parts.append(_resample(np.stack([np.cos(t), b * np.sin(t)], 1), c["oval_upper"]))
    # Brows: an arch from the inner end outwards.
    s = np.linspace(0, 1, 100)
    brow_y = -0.42 * b - p.brow_raise - 0.08 * np.sin(math.pi * s)
    brow_a = _resample(np.stack([-0.12 - 0.63 * s, brow_y], 1), c["brow"])
    parts += [brow_a, _mirror(brow_a)]
    # Nose sides: from the bridge down the side, round the nostril wing, in towards the septum.
    nl = p.nose_length
    ctrl = np.array([[-0.07, -0.18], [-0.10, 0.05 * nl], [-0.13, 0.28 * nl], [-0.21, 0.36 * nl],
                     [-0.16, 0.44 * nl], [-0.05, 0.45 * nl]])
    nose_a = _resample(_smooth(ctrl), c["nose_side"])
    parts += [nose_a, _mirror(nose_a)]
    parts.append(np.stack([np.zeros(c["nose_middle"]), np.linspace(-0.2, 0.42 * nl, c["nose_middle"])], 1))
    # Eyes: an almond contour, traced twice (the second pass slightly inside the first).
    centre_a = np.array([-0.4, -0.15 * b])
    phi = np.linspace(0, 2 * math.pi, 240, endpoint=False)
    half_h = 0.11 * p.eye_open
    lid = np.where(np.sin(phi) > 0, half_h, 0.7 * half_h)
    almond = np.stack([-p.eye_width * np.cos(phi), -lid * np.sin(phi)], 1)
    first = (c["eye"] + 1) // 2
    eye_a = np.vstack([_resample(almond, first, closed=True),
                       _resample(almond * 0.8, c["eye"] - first, closed=True)]) + centre_a
    parts += [eye_a, _mirror(eye_a)]
    # Mouth: upper outer, lower outer, upper inner, lower inner; each from the left corner.
    mouth_y, w = 0.78 * b * (0.9 + 0.1 * nl), p.mouth_width
    u = np.linspace(-1, 1, 100)
    bump = (1 - u ** 2) ** 0.8
    curves = [
        (w * u, mouth_y - 0.07 * bump - p.smile * (u ** 2) + 0.02 * np.exp(-(u / 0.15) ** 2) * bump),
        (w * u, mouth_y + 0.09 * bump - p.smile * (u ** 2) + p.mouth_open * bump),
        (0.85 * w * u, mouth_y - 0.015 * bump - 0.85 * p.smile * (u ** 2)),
        (0.85 * w * u, mouth_y + (0.015 + p.mouth_open) * bump - 0.85 * p.smile * (u ** 2)),
    ]
    for x, y in curves:
        parts.append(_resample(np.stack([x, y], 1), c["mouth"]))
    pupil_a = centre_a + np.array(p.gaze) * np.array([p.eye_width * 0.45, half_h * 0.4])
    parts += [pupil_a[None], _mirror(pupil_a[None])]
    points = np.vstack(parts)
    return points, [almond + centre_a, _mirror(almond + centre_a)]


def _smooth(ctrl: np.ndarray, steps: int = 30) -> np.ndarray:
    """A Catmull-Rom curve through control points, as a dense polyline."""
    padded = np.vstack([ctrl[:1], ctrl, ctrl[-1:]])
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1:i + 3]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.vstack(out + [ctrl[-1:]])


def project(points: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Turn the face in depth: points on a rough head-shaped surface, rotated, orthographic."""
    x, y = points[:, 0], points[:, 1]
    z = 0.8 * np.sqrt(np.clip(1 - x ** 2 - 0.3 * (y / 1.4) ** 2, 0, None))
    z = z + 0.35 * np.exp(-(x / 0.12) ** 2 - ((y - 0.3) / 0.2) ** 2)  # the nose stands out
    xr = x * math.cos(yaw) + z * math.sin(yaw)
    zr = -x * math.sin(yaw) + z * math.cos(yaw)
    yr = y * math.cos(pitch) - zr * math.sin(pitch)
    return np.stack([xr, yr], 1)


def render_face(layout: Layout, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic face crop: (H, W, 3) uint8 RGB and its points (K, 2) in its pixels."""
    params = FaceParams.sample(rng)
    shape, eyes = face_shape(layout, params)
    yaw, pitch = math.radians(rng.uniform(-35, 35)), math.radians(rng.uniform(-12, 12))
    height = int(rng.uniform(120, 480))
    width = int(height * rng.uniform(0.7, 0.95))
    scale = width * rng.uniform(0.3, 0.4)
    angle = math.radians(rng.uniform(-20, 20))
    centre = np.array([width / 2, height * 0.52]) + rng.normal(0, 0.04, 2) * (width, height)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def to_pixels(pts: np.ndarray) -> np.ndarray:
        return project(pts, yaw, pitch) @ rot.T * scale + centre

    points = to_pixels(shape)
    image = _background(rng, height, width)
    tone = rng.uniform()
    skin = (1 - tone) * np.array([250.0, 222, 196]) + tone * np.array([95.0, 60, 40])
    skin = np.clip(skin + rng.normal(0, 12, 3), 0, 255)
    r = layout.scheme.regions
    span = {reg.name: slice(reg.start, reg.stop) for reg in r}
    outline = np.vstack([points[span["oval_upper"]], points[span["oval_lower_b"]],
                         points[span["oval_lower_a"]][::-1]])
    _fill(image, outline, skin)
    _shade(image, outline, rng)
    brow_colour = skin * rng.uniform(0.2, 0.5)
    thickness = max(1, int(scale * 0.06))
    for side in ("brow_a", "brow_b"):
        cv2.polylines(image, [_int(points[span[side]])], False, brow_colour.tolist(), thickness, cv2.LINE_AA)
    iris_colour = rng.uniform([20, 20, 10], [140, 120, 90]).tolist()
    for eye, pupil in zip(eyes, (points[-2], points[-1])):
        contour = to_pixels(eye)
        _fill(image, contour, np.array([235.0, 230, 225]))
        radius = max(1, int(scale * 0.07 * params.eye_open))
        cv2.circle(image, _int(pupil[None])[0], radius, iris_colour, -1, cv2.LINE_AA)
        cv2.circle(image, _int(pupil[None])[0], max(1, radius // 2), (10, 10, 10), -1, cv2.LINE_AA)
        cv2.polylines(image, [_int(contour)], True, (skin * 0.35).tolist(), max(1, thickness // 2), cv2.LINE_AA)
    line = (skin * 0.6).tolist()
    for side in ("nose_side_a", "nose_side_b"):
        cv2.polylines(image, [_int(points[span[side]])], False, line, max(1, thickness // 2), cv2.LINE_AA)
    mouth = points[span["mouth"]].reshape(4, -1, 2)
    lips = rng.uniform([120, 40, 40], [220, 110, 120])
    _fill(image, np.vstack([mouth[0], mouth[1][::-1]]), lips)
    _fill(image, np.vstack([mouth[2], mouth[3][::-1]]), lips * 0.35)
    image = _finish(image, rng)
    return image, points


def _int(points: np.ndarray) -> np.ndarray:
    return np.round(points).astype(np.int32)


def _fill(image: np.ndarray, polygon: np.ndarray, colour: np.ndarray) -> None:
    cv2.fillPoly(image, [_int(polygon)], np.asarray(colour).tolist(), cv2.LINE_AA)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cells = rng.integers(2, 12)
    coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, rng.uniform(2, 12), (height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shade(image: np.ndarray, outline: np.ndarray, rng: np.random.Generator) -> None:
    """Skin texture inside the face outline."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [_int(outline)], 255)
    noise = cv2.GaussianBlur(rng.normal(0, 10, (h, w)).astype(np.float32), (0, 0), 2)
    inside = mask > 0
    image[inside] = np.clip(image[inside] + noise[inside, None], 0, 255).astype(np.uint8)


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting gradient, blur, sensor noise, and black borders on most images."""
    h, w = image.shape[:2]
    direction = rng.normal(size=2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xs / w - 0.5) * direction[0] + (ys / h - 0.5) * direction[1]
    light = rng.uniform(0.6, 1.25) * (1 + 0.5 * ramp)
    out = image.astype(np.float32) * light[:, :, None]
    sigma = rng.uniform(0, 1.5)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.normal(0, rng.uniform(0, 6), out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.75:  # black borders, as on most competition crops
        top, bottom = (rng.uniform(0, 0.15, 2) * h).astype(int)
        left, right = (rng.uniform(0, 0.15, 2) * w).astype(int)
        out[:top] = 0
        out[h - bottom:] = 0
        out[:, :left] = 0
        out[:, w - right:] = 0
    return out


def _maybe_enlarge(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A few crops (LARGE_SHARE) enlarged to LARGE_SIDE px on their longer side, as the
    competition has some crops above 1300 px. Drawn from a generator of its own, so that every
    other face is the same whether or not this step runs."""
    if rng.random() >= LARGE_SHARE:
        return image, points
    h, w = image.shape[:2]
    factor = rng.uniform(*LARGE_SIDE) / max(h, w)
    size = (round(w * factor), round(h * factor))
    image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    # pixel centres: x' + 0.5 = (x + 0.5) * size / w
    scale = np.array([size[0] / w, size[1] / h])
    return image, (points + 0.5) * scale - 0.5


def file_name_for(seed: int, split: str, index: int) -> str:
    return hashlib.md5(f"densemarks-synth-{seed}-{split}-{index}".encode()).hexdigest() + ".jpg"


def _render_range(folder: Path, split: str, start: int, stop: int, num_points: int, seed: int) -> np.ndarray:
    """Render and write faces start..stop-1 of a split; their points (stop - start, K, 2). Each
    face draws from its own generator, seeded by (seed, split, index): any process can render
    any face, and the bytes do not depend on which one did."""
    layout = make_layout(num_points)
    shapes = []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
        image, points = render_face(layout, rng)
        image, points = _maybe_enlarge(image, points, np.random.default_rng([seed, 3 if split == "train" else 4, i]))
        quality = int(rng.uniform(40, 95))
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        (folder / "images" / file_name_for(seed, split, i)).write_bytes(data.tobytes())
        shapes.append(points)
    return np.asarray(shapes).reshape(stop - start, num_points, 2)


def _write_split(folder: Path, split: str, count: int, layout: Layout, seed: int,
                 pool: ProcessPoolExecutor | None = None) -> tuple[list[str], np.ndarray]:
    (folder / "images").mkdir(parents=True)
    k = layout.scheme.num_points
    names = [file_name_for(seed, split, i) for i in range(count)]
    ranges = [(s, min(s + 64, count)) for s in range(0, count, 64)]
    parts = []
    with tqdm(total=count, desc=f"synth {split}", unit="img", leave=False) as bar:
        if pool is None:
            for s, e in ranges:
                parts.append(_render_range(folder, split, s, e, k, seed))
                bar.update(e - s)
        else:
            futures = [pool.submit(_render_range, folder, split, s, e, k, seed) for s, e in ranges]
            for (s, e), future in zip(ranges, futures):
                parts.append(future.result())
                bar.update(e - s)
    return names, np.concatenate(parts) if parts else np.zeros((0, k, 2))


def synthesize(out: str | Path, train: int, test: int, num_points: int, seed: int,
               overwrite: bool = False, workers: int = 1) -> Layout:
    """Write DIR/train/{images,landmarks.csv,scheme.json} and DIR/test/{images,test_points.csv,
    answers.csv}. The whole folder appears at once (built beside it, then renamed). workers:
    processes rendering faces; the output is byte-identical for any number."""
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise DataError(out, "already exists; choose another --out or pass --overwrite")

        shutil.rmtree(out)
    layout = make_layout(num_points)
    # spawn: a forked child of a process that already ran OpenCV's thread pool can hang
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        with atomic_dir(out) as tmp:
            names, shapes = _write_split(tmp / "train", "train", train, layout, seed, pool)
            write_landmarks(tmp / "train" / "landmarks.csv", names, shapes, decimals=None)
            layout.scheme.save(tmp / "train" / "scheme.json")
            names, shapes = _write_split(tmp / "test", "test", test, layout, seed, pool)
            write_landmarks(tmp / "test" / "answers.csv", names, shapes, decimals=None)
            rng = np.random.default_rng([seed, 2])
            per_image = min(TEST_POINTS_PER_IMAGE, num_points)
            indices = np.stack([rng.choice(num_points, per_image, replace=False) for _ in names]) \
                if names else np.zeros((0, per_image), np.int64)
            write_test_points(tmp / "test" / "test_points.csv", RequestedPoints(np.asarray(names), indices))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return layout
