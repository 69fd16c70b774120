"""Augmentation keeps images and points together: flips, inverses, and painted dots."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from densemarks.core.geometry import to_original
from densemarks.data.augment import (IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, LandmarkTransform,
                                erase, normalize_batch, sample_tone)
from densemarks.data.images import LoadedImage

FULL_JITTER = dict(flip_p=0.5, rotate_deg=30, scale_jitter=0.2, shift_jitter=0.1,
                   brightness=0.2, contrast=0.3, random_crop=True)
# Four points, mirrored pairs (0, 1) and (2, 3).
FLIP = np.array([1, 0, 3, 2])
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)


def _dotted_image(points, size=(300, 220), border=20, radius=4):
    """A grey image with black borders and a coloured dot at each point."""
    h, w = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[border:h - border, border:w - border] = 128
    ys, xs = np.mgrid[0:h, 0:w]
    for (x, y), colour in zip(points, COLOURS):
        pixels[(xs - x) ** 2 + (ys - y) ** 2 <= radius ** 2] = colour
    return LoadedImage(pixels, (w, h), np.eye(3))


POINTS = np.array([[70.0, 120.0], [150.0, 120.0], [90.0, 200.0], [130.0, 200.0]])


def _hwc(chw):
    return np.asarray(chw).transpose(1, 2, 0).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_points_stay_on_their_dots(seed):
    config = AugmentConfig(size=(112, 96), **{**FULL_JITTER, "brightness": 0, "contrast": 0})
    transform = LandmarkTransform(config, FLIP, train=True)
    sample = transform(_dotted_image(POINTS), POINTS, np.random.default_rng(seed))
    image = _hwc(sample.image)
    checked = 0
    for i, (x, y) in enumerate(sample.points):
        if not (5 <= x < 96 - 5 and 5 <= y < 112 - 5):
            continue  # a dot at the crop's edge is partly cut off: its centroid moves
        source = FLIP[i] if sample.flipped else i
        near = np.linalg.norm(image - COLOURS[source].astype(np.float32), axis=2) < 60
        ys, xs = np.nonzero(near)
        assert len(xs) >= 3, f"dot of point {source} not found near ({x:.1f}, {y:.1f})"
        assert np.hypot(xs.mean() - x, ys.mean() - y) < 1.0
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("seed", range(5))
def test_transform_then_inverse_returns_the_points(seed):
    transform = LandmarkTransform(AugmentConfig(size=(224, 224), **FULL_JITTER), FLIP, train=True)
    sample = transform(_dotted_image(POINTS), POINTS, np.random.default_rng(seed))
    back = to_original(sample.points, sample.matrix, sample.flipped, FLIP)
    assert np.abs(back - POINTS).max() < 0.5


def test_flip_twice_is_the_identity():
    config = AugmentConfig(size=(224, 224), flip_p=1.0, border_threshold=None)
    transform = LandmarkTransform(config, FLIP, train=True)
    image = _dotted_image(POINTS, size=(224, 224), border=0)
    once = transform(image, POINTS, np.random.default_rng(0))
    assert once.flipped
    twice_image = LoadedImage(np.ascontiguousarray(image.pixels[:, ::-1]), (224, 224), np.eye(3))
    twice = transform(twice_image, once.points.astype(np.float64), np.random.default_rng(0))
    np.testing.assert_allclose(twice.points, POINTS, atol=1e-4)
    unflipped = LandmarkTransform(config, FLIP, train=False)(image, None)
    np.testing.assert_allclose(twice.image, unflipped.image, atol=1e-5)


def test_batched_inverse_restores_flipped_and_unflipped_samples():
    transform = LandmarkTransform(AugmentConfig(size=(64, 64), **FULL_JITTER), FLIP, train=True)
    samples = [transform(_dotted_image(POINTS), POINTS, np.random.default_rng(s)) for s in range(6)]
    assert {s.flipped for s in samples} == {True, False}
    back = to_original(np.stack([s.points for s in samples]), np.stack([s.matrix for s in samples]),
                       np.array([s.flipped for s in samples]), FLIP)
    assert np.abs(back - POINTS).max() < 0.5


def test_evaluation_mode_is_deterministic_and_crops_black_borders():
    config = AugmentConfig(size=(260, 180), crop="stretch", **FULL_JITTER)
    transform = LandmarkTransform(config, FLIP, train=False)
    image = _dotted_image(POINTS, size=(300, 220), border=20)
    a = transform(image, POINTS, np.random.default_rng(0))
    b = transform(image, POINTS, np.random.default_rng(1))
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert not a.flipped
    # 20 px black on every side removed, the 260 x 180 content fills the output exactly.
    np.testing.assert_allclose(np.diag(a.matrix)[:2], [1.0, 1.0])
    np.testing.assert_allclose(a.points, POINTS - 20)


def test_batch_normalisation():
    images = torch.from_numpy(np.round(IMAGENET_MEAN * 255).astype(np.uint8)).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = normalize_batch(images.contiguous())
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    assert out.abs().max() < 0.01  # the ImageNet mean maps to zero
    white = normalize_batch(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    torch.testing.assert_close(white[0, :, 0, 0], torch.from_numpy((1 - IMAGENET_MEAN) / IMAGENET_STD))
    buffer = torch.empty(1, 3, 2, 2)
    assert normalize_batch(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), normalize=False, out=buffer) is buffer
    assert buffer.abs().max() == 0


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "new"])
def test_batch_normalisation_matches_the_formula_in_every_layout(layout):
    images = torch.randint(0, 256, (3, 3, 10, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    tone = torch.tensor([[1.0, 0.0], [1.4, -60.0], [0.6, 90.5]])  # (gain, offset) per sample
    toned = (images.float() * tone[:, 0].view(3, 1, 1, 1) + tone[:, 1].view(3, 1, 1, 1)).clamp(0, 255)
    mean, std = torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1), torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1)
    out = None if layout == "new" else torch.full(images.shape, float("nan"))
    if layout == "channels_last":
        out = out.contiguous(memory_format=torch.channels_last)
    for rows in (slice(None), slice(None, None, 2)):  # also a strided batch
        batch = images[:, :, rows]
        target = None if out is None else out[:, :, : batch.shape[2]].contiguous(
            memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
        result = normalize_batch(batch, out=target)
        assert result is target or target is None
        torch.testing.assert_close(result, (batch.float() / 255 - mean) / std)
        torch.testing.assert_close(normalize_batch(batch, normalize=False, out=target), batch.float() / 255)
        jittered = normalize_batch(batch, out=target, tone=tone)
        torch.testing.assert_close(jittered, (toned[:, :, rows] / 255 - mean) / std)
        # torch's path (any other dtype or device) gives the same
        torch.testing.assert_close(normalize_batch(batch.float(), tone=tone), jittered)


def test_brightness_contrast_jitter_pivots_on_the_mean_and_saturates():
    config = AugmentConfig(brightness=0.5, contrast=0.5)
    flat = np.full((4, 4, 4), 100, np.uint8)
    assert len({sample_tone(flat, config, np.random.default_rng(s)) for s in range(6)}) == 6
    assert sample_tone(flat, config, None) == (1.0, 0.0)
    assert sample_tone(flat, AugmentConfig(), np.random.default_rng(0)) == (1.0, 0.0)
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8)[None, :, None], (8, 1, 3))  # rows alike
    planar = torch.from_numpy(np.ascontiguousarray(ramp.transpose(2, 0, 1)))[None]
    for seed in range(4):
        draws = np.random.default_rng(seed)
        gain, bias = draws.uniform(0.5, 1.5), draws.uniform(-0.5, 0.5) * 255
        tone = sample_tone(ramp, config, np.random.default_rng(seed))
        np.testing.assert_allclose(tone, (gain, (1 - gain) * ramp.mean() + bias))  # gain about the mean
        got = normalize_batch(planar, normalize=False, tone=torch.tensor([tone])).numpy() * 255
        expected = np.clip(gain * (planar.numpy() - ramp.mean()) + ramp.mean() + bias, 0, 255)
        np.testing.assert_allclose(got, expected, atol=1e-3)
        saturated = (expected == 0) | (expected == 255)
        assert saturated.any() and np.array_equal(got[saturated], expected[saturated])  # no wrapping


def test_erasing_hides_one_rectangle_and_keeps_the_points():
    image = _dotted_image(POINTS)
    plain = LandmarkTransform(AugmentConfig(size=(96, 96), flip_p=0.5, rotate_deg=20), FLIP, train=True)
    erasing = LandmarkTransform(AugmentConfig(size=(96, 96), flip_p=0.5, rotate_deg=20, erase_p=1.0,
                                              erase_area=0.3), FLIP, train=True)
    for seed in range(6):
        a = plain(image, POINTS, np.random.default_rng(seed))
        b = erasing(image, POINTS, np.random.default_rng(seed))
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.matrix, b.matrix)
        rows, cols = np.nonzero((a.image != b.image).any(axis=0))
        assert len(rows) > 0.01 * 96 * 96  # noise over at least most of the 2%-30% rectangle
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        assert (bottom - top + 1) * (right - left + 1) <= 0.3 * 96 * 96 + 96  # one rectangle
    untouched = np.full((3, 8, 8), 7, np.uint8)
    erase(untouched, AugmentConfig(erase_p=0.0), np.random.default_rng(0))
    assert (untouched == 7).all()


def test_large_images_are_reduced_without_losing_alignment():
    big = _dotted_image(POINTS * 8, size=(2400, 1760), border=160)
    transform = LandmarkTransform(AugmentConfig(size=(128, 128)), FLIP, train=False)
    sample = transform(big, POINTS * 8)
    back = to_original(sample.points, sample.matrix)
    assert np.abs(back - POINTS * 8).max() < 0.5


@pytest.mark.parametrize("factor", [3, 8])
def test_pyramid_reduction_keeps_dots_on_their_points(factor):
    # An image `factor` times larger than the output: reduced by pyramid halvings first.
    big = _dotted_image(POINTS * factor, size=(300 * factor, 220 * factor), border=20 * factor,
                        radius=5 * factor)
    transform = LandmarkTransform(AugmentConfig(size=(300, 220), crop="stretch"), FLIP, train=False)
    sample = transform(big, POINTS * factor)
    image = _hwc(sample.image)
    offsets = []
    for i, (x, y) in enumerate(sample.points):
        near = np.linalg.norm(image - COLOURS[i].astype(np.float32), axis=2) < 60
        ys, xs = np.nonzero(near)
        assert len(xs) > 10
        offsets.append((xs.mean() - x, ys.mean() - y))
    offsets = np.array(offsets)
    assert np.abs(offsets).max() < 0.3
    # No systematic shift: a half-pixel slip at a pyramid level shows as about 0.2 px here.
    assert np.abs(offsets.mean(axis=0)).max() < 0.1


def test_flip_needs_a_flip_index():
    with pytest.raises(ValueError, match="flip index"):
        LandmarkTransform(AugmentConfig(flip_p=0.5), None, train=True)
