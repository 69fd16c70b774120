"""The head contract (models/heads/base.py), checked for every registered head: a new head in
HEADS is tested here without a line more. Encode then decode gives the points back; decoding
is batched with the shapes the contract states; the loss is lowest at the target; a mirror,
through the one test-time path (inference.tta), comes back as the face's own points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densemarks.core import geometry
from densemarks.core.errors import DataError
from densemarks.inference.tta import average_views, with_mirrors
from densemarks.models.heads import HEADS, Decoded, make_head
from densemarks.recipes.config import apply_overrides, load_recipe

SIZE = (64, 48)  # height, width: not square, so x and y cannot be swapped unnoticed
POINTS = torch.tensor([[[10.0, 20.0], [30.3, 22.1], [23.5, 40.0], [0.0, 63.0]],
                       [[5.5, 5.5], [40.0, 9.2], [24.0, 30.0], [47.0, 0.0]]])
FLIP = np.array([1, 0, 2, 3])


def _head(name: str, **overrides):
    return make_head(apply_overrides(load_recipe("fast-cpu"), {"head": name, "augment.size": list(SIZE), **overrides},
                                     "test"))


@pytest.mark.parametrize("name", list(HEADS))
def test_encode_then_decode_gives_the_points(name):
    head = _head(name)
    decoded = head.decode(head.encode(POINTS))
    assert isinstance(decoded, Decoded)
    assert decoded.points.shape == POINTS.shape and decoded.points.dtype == torch.float32
    assert decoded.confidence.shape == POINTS.shape[:2]
    torch.testing.assert_close(decoded.points, POINTS, atol=5e-3, rtol=0)


@pytest.mark.parametrize("name", list(HEADS))
def test_loss_is_lowest_at_the_target(name):
    head = _head(name)
    target = head.encode(POINTS)
    moved = head.encode(POINTS + torch.tensor([1.5, -2.0]))
    assert float(head.loss(target, POINTS)) < float(head.loss(moved, POINTS))


@pytest.mark.parametrize("name", list(HEADS))
def test_a_mirrored_pass_comes_back_as_the_face(name):
    """What the network would output for the mirrored input (points mirrored and renamed),
    decoded and put through average_views with the mirror's matrix, is the face itself."""
    head = _head(name)
    width = SIZE[1]
    mirrored = POINTS[:, FLIP].clone()
    mirrored[..., 0] = (width - 1) - mirrored[..., 0]
    passes = np.stack([head.decode(head.encode(p)).points.numpy() for p in (POINTS, mirrored)])
    to_input, is_mirrored = with_mirrors(np.tile(np.eye(3), (1, 2, 1, 1)), np.zeros((1, 2), bool), width)
    np.testing.assert_allclose(average_views(passes, to_input, is_mirrored, FLIP), POINTS.numpy(), atol=5e-3)
    np.testing.assert_array_equal(to_input[1, 0], geometry.hflip(width))  # the mirror pass's matrix


@pytest.mark.parametrize("name, overrides", [(name, {}) for name in HEADS] + [("regression", {"regression_pool": "flatten"})])
def test_network_outputs_what_decode_takes(name, overrides):
    head = _head(name, **overrides)
    model = head.network("resnet18", 4, weights="none").eval()
    with torch.no_grad():
        decoded = head.decode(model(torch.zeros(2, 3, *SIZE)))
    assert decoded.points.shape == (2, 4, 2)
    head_ids = {id(p) for p in model.head_parameters()}
    stage_ids = {id(p) for stage in model.stages() for p in stage}
    assert head_ids.isdisjoint(stage_ids) and head_ids | stage_ids == {id(p) for p in model.parameters()}


def test_an_unknown_head_names_the_known_ones():
    with pytest.raises(DataError, match=r"head='hetmap' is not one of regression, heatmap or simcc; did you mean 'heatmap'"):
        _head("hetmap")


def test_an_unknown_regression_pool_names_the_known_ones():
    with pytest.raises(DataError, match=r"regression_pool='flat' is not one of avg or flatten; did you mean 'flatten'"):
        _head("regression", regression_pool="flat")


@pytest.mark.parametrize("pool", ["avg", "flatten"])
def test_a_regression_network_starts_from_the_mean_face(pool):
    """start_from: the untrained network's answer is the mean face, wherever the input."""
    head = _head("regression", regression_pool=pool)
    torch.manual_seed(0)
    model = head.network("resnet18", 4, weights="none").eval()
    mean = POINTS.mean(0).numpy()
    with torch.no_grad():
        before = head.decode(model(torch.rand(2, 3, *SIZE))).points
        head.start_from(model, mean)
        after = head.decode(model(torch.rand(2, 3, *SIZE))).points
    far = float((before - torch.as_tensor(mean)).abs().max())
    assert float((after - torch.as_tensor(mean)).abs().max()) < max(0.5, far / 5)
