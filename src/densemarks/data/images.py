"""Image loading: any file Pillow reads (JPEG, PNG, grayscale, CMYK, 16-bit, palette, alpha),
EXIF orientation applied, returned as RGB uint8 with the matrix from original pixels to array.

The pixel frame of a photo is the image as displayed, i.e. after its EXIF orientation: that is
the frame annotation tools and viewers show, so landmark coordinates refer to it.
Large JPEGs can be decoded at a reduced size (`min_size`) by the decoder's DCT scaling, which is
much faster than decoding in full and resizing; the returned matrix accounts for it.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numba import njit
from PIL import Image, ImageOps, UnidentifiedImageError

from densemarks.core import geometry
from densemarks.core.errors import DataError, env_int

# Images larger than this many pixels are refused before they are decoded: a 74-byte PNG can
# claim 40000x40000 pixels (4.8 GB decoded). Raise it with DENSEMARKS_MAX_PIXELS.
MAX_PIXELS = 100_000_000


@functools.cache
def max_pixels() -> int:
    """The limit, from DENSEMARKS_MAX_PIXELS when set, read once per process (a bad value is an
    error at every call, never cached). The first read also sets Pillow's own check to it (a
    warning above it, an error above twice it), which `Image.open` applies."""
    limit = env_int("DENSEMARKS_MAX_PIXELS", MAX_PIXELS, minimum=1)
    Image.MAX_IMAGE_PIXELS = limit
    return limit


_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_IDENTITY = np.eye(3)
_IDENTITY.flags.writeable = False  # shared by every image decoded at full size


@dataclass(frozen=True)
class LoadedImage:
    """pixels: (H, W, 3) uint8 RGB; original_size: (width, height) of the displayed image;
    to_pixels: 3x3 matrix from original-image pixels to `pixels` (identity unless reduced)."""

    pixels: np.ndarray
    original_size: tuple[int, int]
    to_pixels: np.ndarray
    # Black-border box (x0, y0, x1, y1) in original pixels, found beforehand at full resolution
    # for this threshold (the preprocessed store); None: `sample_matrix` finds it on `pixels`.
    border_box: tuple[float, float, float, float] | None = None
    border_threshold: int | None = None


def load_image(path: str | Path, min_size: tuple[int, int] | None = None) -> LoadedImage:
    """Read an image. min_size (width, height): the decoder may shrink the image by 2, 4 or 8
    as long as it stays at least this large (JPEG only). Raises DataError on unreadable files.

    Complete JPEG and PNG files go through OpenCV's decoder (faster than Pillow's, EXIF
    orientation applied); everything else, and any file OpenCV declines, through Pillow, which
    also gives the precise error for a broken file.
    """
    try:
        data = _read_bytes(path)
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not an image file") from None
    except OSError as exc:
        raise DataError(path, f"cannot read image: {exc.strerror}") from None
    _check_pixels(path, data)
    if _complete_jpeg(data) or _complete_png(data):
        loaded = _decode_opencv(data, min_size)
        if loaded is not None:
            return loaded
    return _decode_pillow(path, data, min_size)


def _check_pixels(path, data: bytes) -> None:
    """Refuse an image whose header claims more than `max_pixels()`, before anything is decoded."""
    limit = max_pixels()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    elif data[:2] == b"\xff\xd8" and (size := _jpeg_size(data)) is not None:
        pass
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:
                size = im.size
        except Image.DecompressionBombError:
            size = None
        except Exception:  # not an image Pillow knows: the decoders say what is wrong
            return
    if size is None or size[0] * size[1] > limit:
        raise _too_large(path, size)


def _too_large(path, size: tuple[int, int] | None) -> DataError:
    claimed = f"{size[0]}x{size[1]} pixels" if size else "more pixels than Pillow allows"
    return DataError(path, f"image has {claimed}; the limit is {max_pixels():,} (set DENSEMARKS_MAX_PIXELS to raise it)")


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, walking the segments before it (a few
    microseconds; Pillow's parser takes 20x longer); None when the walk gets lost."""
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def _read_bytes(path: str | Path) -> bytes:
    """The file's bytes by two system calls: a third of `open().read()`'s time on a small file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        if len(data) == size:
            return data
        return data + b"".join(iter(lambda: os.read(fd, 1 << 20), b""))  # a short read: the rest
    finally:
        os.close(fd)


def _complete_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" in data[-64:]


def _complete_png(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" in data[-32:]


_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _decode_opencv(data: bytes, min_size: tuple[int, int] | None) -> LoadedImage | None:
    buffer = np.frombuffer(data, np.uint8)
    factor = 1
    full = None
    # Only a file large enough to hold an image of 4x the wanted area is worth a header read.
    if min_size is not None and data[:2] == b"\xff\xd8" and len(data) > min_size[0] * min_size[1] // 4:
        try:
            full = image_size(io.BytesIO(data))
        except DataError:
            return None  # Pillow's decoder then reports the problem against the file
        while factor < 8 and full[0] >= 2 * factor * min_size[0] and full[1] >= 2 * factor * min_size[1]:
            factor *= 2
    if factor > 1:
        pixels = cv2.imdecode(buffer, _REDUCED[factor])
        if pixels is not None:
            cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
    else:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
    if pixels is None:
        return None
    h, w = pixels.shape[:2]
    original = full if factor > 1 else (w, h)
    to_pixels = _IDENTITY if factor == 1 else geometry.scaling(1.0 / factor)
    return LoadedImage(pixels, original, to_pixels)


def _decode_pillow(path: Path, data: bytes, min_size: tuple[int, int] | None) -> LoadedImage:
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = im.getexif().get(0x0112, 1)
            full_w, full_h = im.size
            if orientation in _TRANSPOSED_ORIENTATIONS:
                full_w, full_h = full_h, full_w
            factor = 1.0
            if min_size is not None and im.format == "JPEG":
                want_w, want_h = min_size
                if orientation in _TRANSPOSED_ORIENTATIONS:
                    want_w, want_h = want_h, want_w
                before = im.size[0]
                im.draft("RGB", (want_w, want_h))
                factor = 1.0 / round(before / im.size[0])  # DCT scaling by 1/2, 1/4 or 1/8
            im = ImageOps.exif_transpose(im)
            pixels = _to_rgb_array(im)
    except UnidentifiedImageError:
        raise DataError(path, "not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode image: {exc}") from None
    to_pixels = _IDENTITY if factor == 1.0 else geometry.scaling(factor)
    return LoadedImage(pixels, (full_w, full_h), to_pixels)


def image_size(path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), read from the header only."""
    max_pixels()  # Pillow's limit set from the environment before Image.open checks it
    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if im.getexif().get(0x0112, 1) in _TRANSPOSED_ORIENTATIONS else (w, h)
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except UnidentifiedImageError:
        raise DataError(path, "not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise _too_large(path, None) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot read image header: {exc}") from None


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit grayscale: Pillow's convert("RGB") clips instead of scaling. Floating-point
        # pixels up to 1 are on the 0-1 scale (float TIFFs), not near-black 0-255 values.
        values = np.asarray(im, dtype=np.float32)
        top = float(np.nanmax(values)) if values.size else 0.0
        if im.mode.startswith("I;16") or top > 255:
            peak = 65535.0
        else:
            peak = 1.0 if im.mode == "F" and top <= 1.0 else 255.0
        values = np.nan_to_num(values, nan=0.0, posinf=peak, neginf=0.0)
        gray = np.clip(values * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


def content_box(image: np.ndarray, threshold: int) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1), pixel edges, inside the black borders of an (H, W[, C]) uint8 image.

    A border row or column is one whose brightest value is at most `threshold`; only the outer
    runs of such rows and columns are removed. An all-dark image keeps its full extent.
    """
    h, w = image.shape[:2]
    pixels = np.ascontiguousarray(image).reshape(h, w, -1)
    return tuple(int(v) for v in _content_box(pixels, threshold))


@njit(cache=True, nogil=True)
def _content_box(pixels, threshold):
    """Scan inward from each edge and stop at the first row / column holding a value above the
    threshold: an image without borders costs four lines, not two passes over every pixel.
    Columns are scanned between the content rows only: the border rows hold nothing brighter."""
    h, w = pixels.shape[:2]
    top = 0
    while top < h and pixels[top].max() <= threshold:
        top += 1
    if top == h:
        return 0, 0, w, h
    bottom = h
    while pixels[bottom - 1].max() <= threshold:
        bottom -= 1
    left = 0
    while _column_max(pixels, left, top, bottom) <= threshold:
        left += 1
    right = w
    while _column_max(pixels, right - 1, top, bottom) <= threshold:
        right -= 1
    return left, top, right, bottom


@njit(inline="always")
def _column_max(pixels, x, top, bottom):
    peak = 0
    for y in range(top, bottom):
        for k in range(pixels.shape[2]):
            peak = max(peak, pixels[y, x, k])
    return peak
