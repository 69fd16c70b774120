"""Test-time augmentation: the view matrices, and that every view's points come back to the
same original pixels, through the test-folder path (predict_points) and the photo path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from densemarks.data.augment import AugmentConfig
from densemarks.data.dataset import LandmarkDataset
from densemarks.core.errors import DataError
from densemarks.data.framing import Framing
from densemarks.core.geometry import apply
from densemarks.data.loader import make_loader
from densemarks.inference.landmarker import InferenceModel
from densemarks.inference.predict import predict_points, view_transform
from densemarks.models.heads.regression import RegressionCodec, RegressionHead
from densemarks.photos.predictor import Predictor
from densemarks.data.scheme import LandmarkScheme
from densemarks.inference.tta import TTA_MODES, parse_tta, view_matrices

SIZE = (64, 64)
# One blob per colour channel: three points, none of them with a mirror twin.
BLOBS = np.array([[61.0, 72.5], [103.5, 80.0], [82.0, 121.0]])


def _blob_image(width: int = 170, height: int = 200, shifts=((0.0, 0.0),)) -> np.ndarray:
    """One face (three blobs) per shift."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for shift in shifts:
        for channel, (bx, by) in enumerate(BLOBS + shift):
            image[..., channel] += 250 * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * 4.0 ** 2))
    return np.rint(image).astype(np.uint8)


def _centroids(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, 2): each channel's blob centre in input pixels, whatever the
    normalisation (weights above a tenth of the channel's range)."""
    flat = images.flatten(2)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    weights = (flat - (lo + 0.1 * (hi - lo))).clamp_min(0).view_as(images)
    h, w = images.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
    total = weights.sum((-2, -1))
    return torch.stack([(weights * xs).sum((-2, -1)) / total, (weights * ys).sum((-2, -1)) / total], -1)


class BlobLocator(torch.nn.Module):
    """A 'model' that finds the blobs exactly: regression outputs for the regression head."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return RegressionCodec(*images.shape[-2:]).encode(_centroids(images.float()))


def test_view_matrices_turn_and_zoom_about_the_centre():
    m = view_matrices(((0.0, 1.0), (90.0, 1.0), (0.0, 2.0)), (64, 48))  # H 64, W 48
    centre = np.array([23.5, 31.5])
    np.testing.assert_allclose(m[0], np.eye(3))
    np.testing.assert_allclose(apply(m, np.tile(centre, (3, 1, 1)))[:, 0], np.tile(centre, (3, 1)), atol=1e-12)
    # 90 degrees counter-clockwise on screen (y down): a point to the right goes up.
    np.testing.assert_allclose(apply(m[1], centre + [10, 0]), centre + [0, -10], atol=1e-12)
    np.testing.assert_allclose(apply(m[2], centre + [10, -4]), centre + [20, -8], atol=1e-12)


def test_modes_and_a_bad_name():
    assert [parse_tta(n).passes for n in ("none", "flip", "multi")] == [1, 2, 10]
    with pytest.raises(DataError, match="choose none, flip or multi.*did you mean 'flip'"):
        parse_tta("fli")


@pytest.mark.parametrize("mode", ["none", "flip", "multi"])
def test_every_view_comes_back_to_the_original_pixels(tmp_path, mode):
    """A model that finds the blobs exactly must give their true places in every mode: a view
    whose matrix or inverse were wrong would be off by pixels (10 degrees at 50 px: 9 px)."""
    names = []
    for i, shift in enumerate([(0, 0), (-7.5, 4.0), (9.0, -6.5)]):
        names.append(f"{i}.png")
        Image.fromarray(_blob_image(shifts=[shift])).save(tmp_path / names[-1])
    scheme = LandmarkScheme(3, np.arange(3))
    transform = view_transform(AugmentConfig(size=SIZE, crop="stretch", border_threshold=None),
                               scheme.flip_index, parse_tta(mode))
    loader = make_loader(LandmarkDataset(tmp_path, np.array(names), None, transform), 2, 0, False, 0, 0,
                         torch.device("cpu"))
    item = loader.dataset[1]
    views = view_matrices(parse_tta(mode).views, SIZE)
    if mode == "multi":  # five crops, each framed by its view composed with the plain frame
        assert item["image"].shape == (5, 3, *SIZE)
        np.testing.assert_allclose(item["matrix"].numpy(), views @ item["matrix"][0].numpy(), atol=1e-9)
        assert len({tuple(c.flatten().tolist()) for c in _centroids(item["image"].double()).round()}) == 5
    model = InferenceModel(BlobLocator(), RegressionHead(SIZE), normalize=True)
    points = predict_points(model, loader, scheme, torch.device("cpu"), mode)
    truth = BLOBS[None] + np.array([(0, 0), (-7.5, 4.0), (9.0, -6.5)])[:, None]
    np.testing.assert_allclose(points, truth, atol=0.5)


def test_the_inference_model_normalises_on_its_model_s_device():
    # Validation wraps a model already on the GPU: the folded normalisation must sit beside it
    # (the meta device stands in for CUDA here), else the first validation fails on a GPU.
    model = InferenceModel(torch.nn.Conv2d(3, 6, 1, device="meta"), RegressionHead(SIZE), normalize=True)
    assert model.scale.device.type == model.shift.device.type == "meta"


@pytest.mark.parametrize("mode", ["none", "flip", "multi"])
def test_photo_predictor_views_come_back_to_photo_pixels(mode):
    framing = Framing(BLOBS / 4, (0.0, 0.0, 2.0, 2.0), SIZE)  # any mean shape; it only turns the frame

    seen = []

    def landmarker(crops: np.ndarray) -> np.ndarray:
        points = _centroids(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).double()).numpy()
        seen.append(points.round())
        return points

    predictor = Predictor(landmarker, framing, np.arange(3), refine=0, tta=mode)
    faces = np.stack([BLOBS, BLOBS + [230.0, 10.0]])  # two faces, each alone in its crop
    points = predictor.landmarks(_blob_image(400, shifts=[(0, 0), (230, 10)]), faces + [3.0, -2.0])
    np.testing.assert_allclose(points, faces, atol=0.5)
    tta = TTA_MODES[mode]
    assert len(seen) == (2 if tta.flip else 1)
    for call in seen:  # each face seen in every view (view-major), each view a different crop
        per_face = call.reshape(len(tta.views), 2, -1).transpose(1, 0, 2)
        assert all(len({tuple(v) for v in face.tolist()}) == len(tta.views) for face in per_face)
