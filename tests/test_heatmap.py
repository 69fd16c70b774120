"""The heatmap codec (encode then decode returns the points), its loss, the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densemarks.core.errors import DataError
from densemarks.recipes.config import load_recipe, apply_overrides
from densemarks.models.heads import HeatmapHead
from densemarks.models.heads.heatmap import HeatmapCodec, refined_argmax, upsample_to

# Map coordinates (32 x 32 maps of a 128 px input): interior, on and next to every border.
INSIDE = [[15.37, 16.81], [0.0, 0.0], [0.3, 5.2], [31.0, 31.0], [30.6, 0.2], [1.0, 2.5], [8.5, 30.75],
          [0.05, 31.0], [20.2, 0.6]]
OUTSIDE = [[-0.4, 10.0], [31.4, -0.45]]  # beyond the outer pixel centres, inside the image


def _round_trip(codec: HeatmapCodec, coords, method: str) -> torch.Tensor:
    u = torch.tensor(coords)[None]
    decoded, score = codec.decode(codec.encode(codec.from_map(u)), method)
    assert score.shape == u.shape[:2]
    return (codec.to_map(decoded) - u).abs().amax(-1)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.5])
def test_argmax_round_trip_is_exact_everywhere(sigma):
    codec = HeatmapCodec(128, 128, sigma=sigma)
    assert _round_trip(codec, INSIDE + OUTSIDE, "argmax").max() < 1e-3


def test_integral_round_trip_within_a_quarter_pixel():
    codec = HeatmapCodec(128, 128)
    assert _round_trip(codec, INSIDE, "integral").max() < 0.25
    # An expectation over the map cannot leave its pixel centres: points beyond them come back
    # on the outermost centre.
    assert _round_trip(codec, OUTSIDE, "integral").max() < 0.5


def test_round_trip_on_rectangular_input_in_input_pixels():
    codec = HeatmapCodec(96, 64)
    points = torch.tensor([[[0.0, 0.0], [63.0, 95.0], [31.7, 50.2], [2.2, 93.9]]])
    decoded, _ = codec.decode(codec.encode(points), "argmax")
    torch.testing.assert_close(decoded, points, atol=4e-3, rtol=0)  # 1e-3 map px, stride 4


def test_encode_is_batched_and_peaks_at_one():
    codec = HeatmapCodec(64, 64)
    points = torch.rand(3, 7, 2) * 60
    maps = codec.encode(points)
    assert maps.shape == (3, 7, 16, 16)
    assert float(maps.max()) <= 1.0 and float(maps.amax(dim=(2, 3)).min()) > 0.7


def _config(**overrides):
    return apply_overrides(load_recipe("fast-cpu"), {"augment.size": [64, 64], **overrides}, "test")


@pytest.mark.parametrize("loss", ["maps", "coords", "both"])
def test_heatmap_loss_is_zero_at_the_target_and_has_gradients(loss):
    head = HeatmapHead.from_config(_config(head="heatmap", heatmap_loss=loss))
    points = torch.rand(2, 5, 2) * 60 + 2
    maps = head.codec.encode(points).requires_grad_(True)
    value = head.loss(maps, points)
    if loss == "maps":
        assert float(value.detach()) < 1e-6
    value_off = head.loss(maps + 0.3 * torch.randn_like(maps), points)
    assert float(value_off.detach()) > float(value.detach())
    value_off.backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "mobilenetv3_small_100"])
def test_heatmap_model_from_torchvision_and_timm(name):
    model = HeatmapHead((96, 64)).network(name, 11, weights="none").eval()
    with torch.no_grad():
        maps = model(torch.zeros(2, 3, 96, 64))
    assert maps.shape == (2, 11, 24, 16)
    head_ids = {id(p) for p in model.head_parameters()}
    stage_ids = {id(p) for stage in model.stages() for p in stage}
    assert head_ids.isdisjoint(stage_ids)
    assert head_ids | stage_ids == {id(p) for p in model.parameters()}


def test_heatmap_codec_rejects_size_not_multiple_of_stride():
    with pytest.raises(ValueError, match="multiple"):
        HeatmapCodec(130, 128)


def test_a_narrow_finest_level_and_features_before_the_head_conv():
    """decoder_fine_channels narrows the stride-4 level (a 1x1 conv brings the coarser result
    down to it); feature_head_conv=false takes MobileNetV2's stride-32 features from its last
    block (320 channels), leaving out the 1x1 conv to 1280 that only feeds the classifier."""
    head = HeatmapHead((96, 64), decoder_channels=16, fine_channels=8, head_conv=False)
    model = head.network("mobilenet_v2", 11, weights="none").eval()
    with torch.no_grad():
        maps = model(torch.zeros(2, 3, 96, 64))
        features = model.backbone(torch.zeros(1, 3, 96, 64))
    assert maps.shape == (2, 11, 24, 16)
    assert [f.shape[1] for f in features] == [24, 32, 96, 320]
    assert model.decoder.out.in_channels == 8 and model.decoder.smooth[0][0].in_channels == 8
    # The defaults build the decoder checkpoints already hold: no new parameters.
    default = HeatmapHead((96, 64)).network("mobilenet_v2", 11, weights="none")
    assert not any(k.startswith("decoder.narrow") for k in default.state_dict())
    assert default.backbone(torch.zeros(1, 3, 96, 64))[-1].shape[1] == 1280


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenetv3_small_100"])
def test_maps_at_half_the_input_from_the_stride_2_features(name):
    """heatmap_stride=2: one more decoder level, on the backbone's stride-2 features (narrowed by
    fine_channels), gives maps at 1/2 of the input; the codec round-trips at that stride."""
    head = HeatmapHead((96, 64), fine_channels=8, stride=2)
    model = head.network(name, 11, weights="none").eval()
    with torch.no_grad():
        maps = model(torch.zeros(2, 3, 96, 64))
        features = model.backbone(torch.zeros(1, 3, 96, 64))
    assert maps.shape == (2, 11, 48, 32)
    assert [96 // f.shape[-2] for f in features] == [2, 4, 8, 16, 32]
    assert model.decoder.out.in_channels == 8
    points = torch.tensor([[[10.3, 80.6], [0.0, 0.0], [63.0, 95.0]]])
    decoded = head.decode(head.encode(points)).points
    torch.testing.assert_close(decoded, points, atol=1e-3, rtol=0)
    with pytest.raises(DataError, match="divisible by 2"):
        HeatmapHead((95, 64), stride=2)


def _newton_reference(m: np.ndarray) -> tuple[float, float]:
    """One map's refined argmax written out point by point (what refined_argmax computes on
    whole batches): argmax, the 3x3 neighbourhood moved inside the map, a Newton step on its
    log if that is a proper maximum, the offset limited to 1.5 pixels and the map's edge."""
    h, w = m.shape
    y, x = np.unravel_index(int(np.argmax(m)), m.shape)
    cy, cx = min(max(y, 1), h - 2), min(max(x, 1), w - 2)
    v = np.log(np.maximum(m[cy - 1:cy + 2, cx - 1:cx + 2].astype(np.float64), 1e-6))
    gx, gy = (v[1, 2] - v[1, 0]) / 2, (v[2, 1] - v[0, 1]) / 2
    hxx, hyy = v[1, 2] - 2 * v[1, 1] + v[1, 0], v[2, 1] - 2 * v[1, 1] + v[0, 1]
    hxy = (v[2, 2] - v[2, 0] - v[0, 2] + v[0, 0]) / 4
    det = hxx * hyy - hxy ** 2
    px, py = float(x), float(y)
    if hxx < 0 and det > 1e-12:
        px, py = cx - (hyy * gx - hxy * gy) / det, cy - (hxx * gy - hxy * gx) / det
    px = min(max(min(max(px, x - 1.5), x + 1.5), -0.5), w - 0.5)
    py = min(max(min(max(py, y - 1.5), y + 1.5), -0.5), h - 0.5)
    return px, py


def test_refined_argmax_matches_the_point_by_point_reference():
    generator = torch.Generator().manual_seed(0)
    maps = torch.cat([torch.rand(2, 40, 9, 7, generator=generator),  # noise: many failed steps
                      HeatmapCodec(36, 28).encode(torch.rand(2, 40, 2, generator=generator) * 34 - 3)])
    decoded = refined_argmax(maps).numpy()
    expected = np.array([[_newton_reference(m) for m in batch] for batch in maps.numpy()])
    np.testing.assert_allclose(decoded, expected, atol=1e-4, rtol=0)


def test_upsampling_by_two_equals_upsampling_to_the_size():
    x = torch.rand(2, 5, 6, 4, generator=torch.Generator().manual_seed(1))
    for size in [(12, 8), (13, 8), (11, 9)]:
        torch.testing.assert_close(upsample_to(x, torch.Size(size)),
                                   F.interpolate(x, size=size, mode="bilinear", align_corners=False))
