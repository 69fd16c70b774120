"""Unusual but valid images load as RGB uint8 in the displayed frame; broken ones fail clearly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from densemarks.core.errors import DataError
from densemarks.data.images import MAX_PIXELS, image_size, load_image, max_pixels


def _gradient(w=40, h=30):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 6, ys * 8, np.full_like(xs, 90)], axis=2).astype(np.uint8)


@pytest.mark.parametrize("mode, ext", [("RGB", "png"), ("L", "jpg"), ("CMYK", "jpg"), ("P", "png"),
                                       ("RGBA", "png"), ("LA", "png")])
def test_modes_load_as_rgb(tmp_path, mode, ext):
    path = tmp_path / f"im.{ext}"
    Image.fromarray(_gradient()).convert(mode).save(path)
    loaded = load_image(path)
    assert loaded.pixels.shape == (30, 40, 3) and loaded.pixels.dtype == np.uint8
    assert loaded.original_size == (40, 30)
    assert loaded.pixels.max() > 100


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    pixels = load_image(path).pixels
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    assert 120 < pixels[15, 20, 0] < 136  # mid-grey stays mid-grey


def test_floating_point_grayscale_on_the_0_1_scale_is_scaled(tmp_path):
    values = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    path = tmp_path / "float.tif"
    Image.fromarray(values, mode="F").save(path)
    pixels = load_image(path).pixels
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255 and 120 < pixels[15, 20, 0] < 136
    Image.fromarray(values * 200, mode="F").save(path)  # the same on the 0-255 scale stays as it is
    assert 190 < load_image(path).pixels[-1, -1, 0] < 210


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    upright = _gradient(40, 30)
    # Store the pixels so that applying the EXIF tag brings back the upright image.
    stored = {3: np.rot90(upright, 2), 6: np.rot90(upright, 1), 8: np.rot90(upright, -1)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif, quality=100)
    loaded = load_image(path)
    assert loaded.original_size == (40, 30)
    assert np.abs(loaded.pixels.astype(int) - upright).mean() < 4


def test_reduced_decoding_reports_its_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.tile(_gradient(), (20, 20, 1))).save(path)  # 800 x 600
    loaded = load_image(path, min_size=(180, 140))
    assert loaded.original_size == (800, 600)
    assert loaded.pixels.shape[:2] == (150, 200)  # decoded at 1/4
    assert loaded.to_pixels[0, 0] == pytest.approx(0.25)


def test_broken_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DataError, match="not an image"):
        load_image(tmp_path / "text.jpg")
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot decode") as err:
        load_image(tmp_path / "cut.jpg")
    assert "cut.jpg" in str(err.value)


def _png_claiming(path, width, height):
    """A PNG whose header claims width x height pixels (its data holds a few rows only)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1) * 2)) + chunk(b"IEND", b""))


def test_the_pixel_limit_comes_from_the_environment_once_and_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)

    def environment(value):
        monkeypatch.setenv("DENSEMARKS_MAX_PIXELS", value)
        max_pixels.cache_clear()  # read once per process: a new process, as far as it knows

    environment("10")
    with pytest.raises(DataError, match="4x4 pixels; the limit is 10 "):
        load_image(path)
    environment("lots")  # int() of it was a traceback at import
    for _ in range(2):  # an error is not cached
        with pytest.raises(DataError, match="environment variable DENSEMARKS_MAX_PIXELS='lots': expected a whole number"):
            load_image(path)
    environment("0")
    with pytest.raises(DataError, match="DENSEMARKS_MAX_PIXELS=0: expected at least 1"):
        image_size(path)
    environment("20")
    assert load_image(path).pixels.shape[:2] == (4, 4)
    monkeypatch.setenv("DENSEMARKS_MAX_PIXELS", "10")  # read once: the first good value stays
    assert image_size(path) == (4, 4) and Image.MAX_IMAGE_PIXELS == 20
    monkeypatch.delenv("DENSEMARKS_MAX_PIXELS")
    max_pixels.cache_clear()
    assert max_pixels() == MAX_PIXELS == Image.MAX_IMAGE_PIXELS  # left as the other tests find it


def test_images_claiming_too_many_pixels_are_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_claiming(bomb, 60000, 60000)
    with pytest.raises(DataError, match="60000x60000 pixels; the limit is"):
        load_image(bomb)
    # The header read of `info` and `analyze` too, past Pillow's own limit: not its exception.
    with pytest.raises(DataError, match=r"bomb.png.*more pixels than Pillow allows"):
        image_size(bomb)
    gif = tmp_path / "wide.gif"  # no header reader of ours: Pillow's size, over the limit
    Image.new("P", (4, 4)).save(gif)
    gif.write_bytes(gif.read_bytes()[:6] + struct.pack("<HH", 65535, 65535) + gif.read_bytes()[10:])
    with pytest.raises(DataError, match="the limit is"):
        load_image(gif)
