"""Augmentation with one affine matrix per sample: image and points move together.

Geometric steps (black-border removal, scale-to-cover/fit/stretch, centre or random crop,
rotation, scale and shift jitter, horizontal flip) compose into a single 3x3 matrix from
original-image pixels to network-input pixels (`geometry` explains the convention). The image
is warped once with it; points move by the same matrix and, after a flip, are reordered by the
scheme's flip index; `geometry.to_original` undoes both. Brightness/contrast jitter is drawn per sample
as a (gain, offset) pair and applied, saturating, by the same pass that normalises the batch on
the training device (`normalize_batch`): no extra pass over the pixels, no rounding to uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from numba import njit

from densemarks.core import geometry
from densemarks.data.images import LoadedImage, content_box

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

CROP_MODES = ("cover", "fit", "stretch")


@dataclass
class AugmentConfig:
    """size is (height, width) of the network input, e.g. (224, 224) or the seed's (166, 128)."""

    size: tuple[int, int] = (224, 224)
    crop: str = "cover"  # cover: scale to cover, crop the overflow; fit: letterbox; stretch
    random_crop: bool = False  # cover only: place the window randomly instead of centred
    border_threshold: int | None = 9  # drop outer rows/columns at most this bright; None: off
    flip_p: float = 0.0  # probability of a horizontal flip (points reordered by flip index)
    rotate_deg: float = 0.0  # uniform rotation in [-rotate_deg, rotate_deg]
    scale_jitter: float = 0.0  # uniform zoom in [1 - s, 1 + s]
    shift_jitter: float = 0.0  # uniform shift up to this fraction of the output size
    brightness: float = 0.0  # additive, fraction of full range, uniform in [-b, b]
    contrast: float = 0.0  # multiplicative about the image mean, uniform in [1 - c, 1 + c]
    erase_p: float = 0.0  # probability of hiding one random rectangle under noise (an occluder)
    erase_area: float = 0.15  # that rectangle's largest area, as a fraction of the input
    normalize: bool = True  # ImageNet mean/std; otherwise values in [0, 1]

    def __post_init__(self):
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop {self.crop!r}; choose one of {', '.join(CROP_MODES)}")

    def evaluation(self) -> "AugmentConfig":
        """The same geometry without any randomness: what validation and prediction use."""
        return AugmentConfig(size=self.size, crop=self.crop, border_threshold=self.border_threshold,
                             normalize=self.normalize)


IDENTITY_TONE = (1.0, 0.0)


@dataclass(frozen=True)
class Sample:
    """image: (3, H, W) uint8, before the brightness/contrast jitter; tone: that jitter as
    (gain, offset), the network seeing clip(gain * image + offset, 0, 255) normalised
    (`normalize_batch` applies both); points: (K, 2) float32 in input pixels (None without
    labels); matrix: 3x3 from original-image pixels to input pixels; flipped: points were
    reordered. With views (`LandmarkTransform(views=...)`) image, points and matrix gain a
    leading view axis."""

    image: np.ndarray
    points: np.ndarray | None
    matrix: np.ndarray
    flipped: bool
    tone: tuple[float, float] = IDENTITY_TONE


class LandmarkTransform:
    """Thin state over `sample_matrix` / `warp` / `sample_tone`: config, flip index, train mode."""

    def __init__(self, config: AugmentConfig, flip_index: np.ndarray | None = None,
                 train: bool = False, views: np.ndarray | None = None):
        """views (evaluation only): (V, 3, 3) matrices applied after the crop's own
        (`tta.view_matrices`); each sample then holds V crops (V, 3, H, W), V matrices
        (V, 3, 3) and its points in each view (V, K, 2)."""
        if train and config.flip_p > 0 and flip_index is None:
            raise ValueError("flip augmentation needs the scheme's flip index")
        if train and views is not None:
            raise ValueError("views are for evaluation; training draws its own jitter")
        self.config = config
        self.flip_index = flip_index
        self.train = train
        self.views = None if views is None else np.asarray(views, dtype=np.float64)

    def min_decode_size(self) -> tuple[int, int]:
        """Smallest (width, height) worth decoding: twice the output, margin for borders/zoom."""
        h, w = self.config.size
        return 2 * w, 2 * h

    def __call__(self, image: LoadedImage, points: np.ndarray | None,
                 rng: np.random.Generator | None = None) -> Sample:
        rng = rng if rng is not None else np.random.default_rng()
        matrix, flipped = sample_matrix(image, self.config, rng if self.train else None)
        if self.views is not None:
            return self._views(image, points, matrix)
        pixels = warp(image, matrix, self.config.size)
        out_points = None
        if points is not None:
            out_points = geometry.apply(matrix, np.asarray(points, dtype=np.float64))
            if flipped:
                out_points = out_points[self.flip_index]
            out_points = out_points.astype(np.float32)
        tone = sample_tone(pixels, self.config, rng if self.train else None)
        planar = to_planar(pixels)
        if self.train and self.config.erase_p > 0:
            erase(planar, self.config, rng)
        return Sample(planar, out_points, matrix, flipped, tone)

    def _views(self, image: LoadedImage, points: np.ndarray | None, matrix: np.ndarray) -> Sample:
        matrices = self.views @ matrix
        planar = np.stack([to_planar(warp(image, m, self.config.size)) for m in matrices])
        out_points = None
        if points is not None:
            out_points = geometry.apply(matrices, np.asarray(points, dtype=np.float64)[None]).astype(np.float32)
        return Sample(planar, out_points, matrices, False)


def sample_matrix(image: LoadedImage, config: AugmentConfig,
                  rng: np.random.Generator | None) -> tuple[np.ndarray, bool]:
    """The 3x3 matrix original pixels -> input pixels, and whether it flips. rng=None: no jitter."""
    out_h, out_w = config.size
    full_w, full_h = image.original_size
    box = (0.0, 0.0, float(full_w), float(full_h))
    if config.border_threshold is not None and image.border_box is not None \
            and image.border_threshold == config.border_threshold:
        box = image.border_box
    elif config.border_threshold is not None:
        x0, y0, x1, y1 = content_box(image.pixels, config.border_threshold)
        f = image.to_pixels[0, 0]  # box edges scale with the decode factor
        box = (x0 / f, y0 / f, x1 / f, y1 / f)
    if rng is None:
        return geometry.box_to_frame(box, config.size, config.crop), False
    # The frame is diagonal: x -> sx * x + tx, y -> sy * y + ty. Everything below is written out
    # in floats and becomes one array at the end (3x3 products and small arrays cost more than
    # the warp's set-up).
    sx, sy, tx, ty = geometry.frame_scale_offset(box, config.size, config.crop)
    if config.random_crop and config.crop == "cover":
        over_x = max(0.0, sx * (box[2] - box[0]) - out_w)
        over_y = max(0.0, sy * (box[3] - box[1]) - out_h)
        tx += rng.uniform(-over_x, over_x) / 2
        ty += rng.uniform(-over_y, over_y) / 2
    # zoom and rotation about the output centre, then the shift, then maybe the mirror; the
    # five draws in one call (a call costs more than the arithmetic)
    r_angle, r_zoom, r_x, r_y, r_flip = rng.random(5).tolist()  # uniform in [0, 1)
    cx, cy = (out_w - 1) / 2, (out_h - 1) / 2
    angle = math.radians((2 * r_angle - 1) * config.rotate_deg)
    zoom = 1 + (2 * r_zoom - 1) * config.scale_jitter
    shift_x = (2 * r_x - 1) * config.shift_jitter * out_w
    shift_y = (2 * r_y - 1) * config.shift_jitter * out_h
    c, s = zoom * math.cos(angle), zoom * math.sin(angle)
    jx = cx + shift_x - c * cx - s * cy  # jitter = [[c, s, jx], [-s, c, jy]]
    jy = cy + shift_y + s * cx - c * cy
    row0 = [c * sx, s * sy, c * tx + s * ty + jx]  # jitter @ frame
    row1 = [-s * sx, c * sy, -s * tx + c * ty + jy]
    flipped = r_flip < config.flip_p
    if flipped:  # geometry.hflip(out_w) @ (jitter @ frame)
        row0 = [-row0[0], -row0[1], out_w - 1.0 - row0[2]]
    return np.array([row0, row1, [0.0, 0.0, 1.0]]), flipped


_HALVE = np.diag([2.0, 2.0, 1.0])  # pyramid pixels -> source pixels


def warp(image: LoadedImage, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp the decoded pixels by `matrix` (which starts from original pixels): (H, W, 4) uint8,
    RGB plus an unused fourth channel (OpenCV's warp is several times faster on 4 channels).

    A reduction beyond 2x is first done by Gaussian pyramid halvings (fast, anti-aliased), so
    the bilinear warp does not alias; pyrDown samples source pixel 2x at output pixel x, an
    exact scale of 1/2 about pixel centre 0 that the matrix absorbs.
    """
    pixels = image.pixels
    reduced = image.to_pixels[0, 0] != 1.0
    to_input = matrix @ geometry.invert(image.to_pixels) if reduced else matrix
    while abs(to_input[0, 0] * to_input[1, 1] - to_input[0, 1] * to_input[1, 0]) < 0.25 \
            and min(pixels.shape[:2]) >= 4:
        pixels = cv2.pyrDown(pixels)
        to_input = to_input @ _HALVE
    out_h, out_w = size
    return cv2.warpAffine(cv2.cvtColor(pixels, cv2.COLOR_RGB2RGBA), to_input[:2], (out_w, out_h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to_planar(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3 or 4) uint8 -> (3, H, W) uint8: OpenCV's split straight into one (C, H, W) array
    (a quarter of the time of splitting into new planes and stacking them; a strided view would
    make batching several times slower). Images stay uint8 until `normalize_batch` on the
    training device: four times less to copy between loader workers and to the GPU than float32.
    """
    h, w, channels = pixels.shape
    planes = np.empty((channels, h, w), np.uint8)
    cv2.split(pixels, list(planes))
    return planes[:3]  # contiguous: the unused fourth plane is last


def sample_tone(pixels: np.ndarray, config: AugmentConfig,
                rng: np.random.Generator | None) -> tuple[float, float]:
    """Brightness/contrast jitter for one (H, W, 3 or 4) uint8 image as (gain, offset): contrast
    is a gain about the image's mean (estimated from every fourth row), brightness an offset of
    up to `brightness` of the full range. rng=None or no jitter: the identity."""
    if rng is None or (config.brightness <= 0 and config.contrast <= 0):
        return IDENTITY_TONE
    gain = rng.uniform(1 - config.contrast, 1 + config.contrast)
    bias = rng.uniform(-config.brightness, config.brightness) * 255.0
    mean = sum(cv2.mean(pixels[::4])[:3]) / 3
    return gain, (1 - gain) * mean + bias


def erase(planar: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> None:
    """With probability erase_p, hide one rectangle of the (3, H, W) uint8 image, in place,
    under uniform noise: 2% to erase_area of the input, aspect 0.3 to 3.3 (as torchvision's
    RandomErasing). The points keep their labels: the model learns to place hidden ones."""
    if rng.random() >= config.erase_p:
        return
    _, h, w = planar.shape
    area = rng.uniform(0.02, max(0.02, config.erase_area)) * h * w
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    eh = max(1, min(h, round(math.sqrt(area * aspect))))
    ew = max(1, min(w, round(math.sqrt(area / aspect))))
    top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
    planar[:, top:top + eh, left:left + ew] = rng.integers(0, 256, (3, eh, ew), dtype=np.uint8)


def normalize_batch(images: torch.Tensor, normalize: bool = True, out: torch.Tensor | None = None,
                    tone: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 network input: clip(gain * x + offset, 0, 255) for each
    sample's tone (B, 2) (gain, offset) (None: unchanged), then ImageNet mean/std, or [0, 1]
    when normalize is False. Runs on the images' device; `out` (same shape, float32,
    contiguous or channels_last) avoids an allocation per batch.

    On the CPU one compiled pass converts, jitters, scales and shifts (and changes the layout
    for a channels_last `out`): a quarter of the time of torch's passes, which are memory-bound
    on a batch of float images."""
    mean = IMAGENET_MEAN if normalize else np.zeros(3, np.float32)
    std = IMAGENET_STD if normalize else np.ones(3, np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    if out is None:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    if images.device.type == "cpu" and images.dtype == torch.uint8 and out.dtype == torch.float32 \
            and images.dim() == 4 and images.shape[1] == 3 and out.shape == images.shape:
        src, dst = images.numpy(), out.detach().numpy()
        tones = np.empty((len(src), 2), np.float32)
        tones[:] = IDENTITY_TONE if tone is None else tone.detach().cpu().numpy()
        if out.is_contiguous():
            _normalize_planar(src, dst, scale, shift, tones)
            return out
        if out.is_contiguous(memory_format=torch.channels_last):
            _normalize_interleaved(src, dst.transpose(0, 2, 3, 1), scale, shift, tones)
            return out
    out.copy_(images)
    if tone is not None:
        tone = tone.to(out.device, torch.float32).view(-1, 2, 1, 1, 1)
        out.mul_(tone[:, 0]).add_(tone[:, 1]).clamp_(0.0, 255.0)
    return out.mul_(torch.from_numpy(scale).to(out.device).view(1, 3, 1, 1)).add_(
        torch.from_numpy(shift).to(out.device).view(1, 3, 1, 1))


@njit(cache=True, nogil=True)
def _normalize_planar(src, dst, scale, shift, tone):
    """(B, C, H, W) uint8 -> (B, C, H, W) float32, clip(value * gain[i] + offset[i], 0, 255) *
    scale[c] + shift[c], rows innermost. All float32 (a float64 bound would halve the speed)."""
    zero, top = np.float32(0.0), np.float32(255.0)
    for i in range(src.shape[0]):
        g, o = tone[i, 0], tone[i, 1]
        for c in range(src.shape[1]):
            s, t = scale[c], shift[c]  # held in registers: the loop then vectorises
            for y in range(src.shape[2]):
                for x in range(src.shape[3]):
                    dst[i, c, y, x] = min(max(src[i, c, y, x] * g + o, zero), top) * s + t


@njit(cache=True, nogil=True)
def _normalize_interleaved(src, dst, scale, shift, tone):
    """`_normalize_planar` into (B, H, W, 3) float32 (a channels_last tensor's memory), the
    three channels written out by hand so the compiler vectorises along the row (twice as fast
    as a loop over the channels)."""
    zero, top = np.float32(0.0), np.float32(255.0)
    s0, s1, s2 = scale[0], scale[1], scale[2]
    t0, t1, t2 = shift[0], shift[1], shift[2]
    for i in range(src.shape[0]):
        g, o = tone[i, 0], tone[i, 1]
        for y in range(src.shape[2]):
            for x in range(src.shape[3]):
                dst[i, y, x, 0] = min(max(src[i, 0, y, x] * g + o, zero), top) * s0 + t0
                dst[i, y, x, 1] = min(max(src[i, 1, y, x] * g + o, zero), top) * s1 + t1
                dst[i, y, x, 2] = min(max(src[i, 2, y, x] * g + o, zero), top) * s2 + t2
