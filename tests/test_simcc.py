"""The SimCC codec (encode then decode returns the points, the border included), its windowed
KL loss against the dense one, the model's output, and distillation's point pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densemarks.models.heads.base import blend
from densemarks.recipes.config import TrainConfig, from_dict, to_dict
from densemarks.models.heads.simcc import (AXIS_LAYERS, AxisLinear, BinLabels, SimCCCodec, SimCCHead, fused_linear_kl,
                                           label_kl)
from densemarks.training.distill import PairedPoints, paired_flip_index, split_points

# Input pixels of a 96 x 64 (height x width) input: interior, on and next to every border,
# and beyond the outer pixel centres (still inside the outer edges at -0.5 and W - 0.5).
POINTS = torch.tensor([[[31.37, 40.81], [0.0, 0.0], [63.0, 95.0], [0.2, 94.6], [62.7, 0.3], [-0.4, 50.0],
                        [63.45, -0.45], [10.5, 10.25]]])


@pytest.mark.parametrize("split", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0])
def test_argmax_round_trip_is_exact_everywhere(split, sigma):
    codec = SimCCCodec(96, 64, split, sigma)
    points, confidence = codec.decode(codec.encode(POINTS), "argmax")
    torch.testing.assert_close(points, POINTS, atol=1e-3, rtol=0)
    assert float(confidence.min()) > 0.8  # a label's own peak (lower between bins when sigma is one bin)


def test_expectation_round_trip_inside_and_pulled_in_at_the_border():
    codec = SimCCCodec(96, 64, 2.0, 2.0)
    points, _ = codec.decode(codec.encode(POINTS), "expectation")
    error = (points - POINTS).abs().amax(-1)[0]
    assert float(error[0]) < 1e-3 and float(error[-1]) < 1e-3  # interior: the mean is the centre
    assert float(error.max()) < 2.0  # a label cut by the border has its mean inside


def test_bins_share_the_input_edges_so_a_mirror_reverses_the_x_bins():
    codec = SimCCCodec(96, 64, 2.0, 2.0)
    nx, ny = codec.bins
    assert (nx, ny) == (128, 192)
    mirrored = POINTS.clone()
    mirrored[..., 0] = 63 - mirrored[..., 0]
    x, _ = codec.split_axes(codec.encode(POINTS))
    x_mirrored, _ = codec.split_axes(codec.encode(mirrored))
    torch.testing.assert_close(x_mirrored, x.flip(-1))


def test_confidence_is_low_for_a_flat_answer():
    codec = SimCCCodec(96, 64, 2.0, 2.0)
    _, confidence = codec.decode(torch.zeros(1, 3, sum(codec.bins)))
    assert float(confidence.max()) < 0.1


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_windowed_kl_equals_the_dense_kl_with_cut_labels(sigma):
    """label_kl gathers the bins the labels cover; it must equal KL computed densely against the
    same labels (a Gaussian cut at 3 sigma, normalised), centres at the border included."""
    torch.manual_seed(0)
    n = 50
    logits = torch.randn(2, 4, n, requires_grad=True)
    centre = torch.tensor([[3.3, 0.0, 49.0, 25.5], [-0.4, 10.0, 48.9, 1.2]])
    bins = torch.arange(n, dtype=torch.float32)
    dense = torch.exp(-(bins - centre.unsqueeze(-1)) ** 2 / (2 * sigma ** 2))
    nearest = torch.round(centre).unsqueeze(-1)
    dense = dense * ((bins - nearest).abs() <= math.ceil(3 * sigma))
    dense = dense / dense.sum(-1, keepdim=True)
    expected = F.kl_div(torch.log_softmax(logits, -1), dense, reduction="none").sum(-1).mean()
    got = label_kl(logits, centre, sigma)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    got.backward()
    written = logits.grad.clone()
    logits.grad = None
    expected.backward()
    torch.testing.assert_close(written, logits.grad, atol=1e-6, rtol=1e-5)  # the hand-written gradient


@pytest.mark.parametrize("sizes", [(30, 30), (30, 20)])
def test_label_kl_over_two_axes_is_the_sum_of_each_axis(sizes):
    """Both axes in one tensor (square: one fused log-softmax; not: one per axis), against each
    axis on its own, values and gradients; a centre far outside adds nothing and gets no gradient."""
    torch.manual_seed(1)
    logits = torch.randn(3, 5, sum(sizes), requires_grad=True)
    centre = torch.stack([torch.rand(3, 5) * sizes[0], torch.rand(3, 5) * sizes[1]], -1)
    centre[0, 0, 1] = -40.0  # no bin covered
    got = label_kl(logits, centre, 2.0, sizes)
    got.backward()
    together = logits.grad.clone()
    logits.grad = None
    x, y = logits.split(sizes, -1)
    alone = label_kl(x, centre[..., 0], 2.0) + label_kl(y, centre[..., 1], 2.0)
    alone.backward()
    torch.testing.assert_close(got, alone)
    torch.testing.assert_close(together, logits.grad)
    assert float(together[0, 0, sizes[0]:].abs().max()) == 0
    assert float(together[0, 0, :sizes[0]].abs().max()) > 0
    shifted = label_kl(logits.detach() - 5.0, centre, 2.0, sizes)  # the loss ignores a shift of the logits
    torch.testing.assert_close(shifted, got.detach())


def test_simcc_loss_with_the_coordinate_term_has_gradients():
    head = SimCCHead((96, 64), coord_weight=0.1)
    inside = POINTS[:, [0, 7]]  # away from the border, where the expectation is unbiased
    target = head.encode(inside)
    moved = head.encode(inside + torch.tensor([1.0, -1.0])).requires_grad_(True)
    at_target, off = head.loss(target, inside), head.loss(moved, inside)
    assert float(at_target) < 0.01 < float(off.detach())
    off.backward()
    assert torch.isfinite(moved.grad).all() and float(moved.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_simcc_model_outputs_every_points_bins(name):
    head = SimCCHead((96, 64))
    model = head.network(name, 11, weights="none").eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 96, 64))
    assert out.shape == (2, 11, 128 + 192)
    assert head.decode(out).points.shape == (2, 11, 2)


def test_blend_weighs_labels_against_the_teacher():
    loss = F.l1_loss
    out, labels, teacher = torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.full((1, 2, 2), 3.0)
    assert float(blend(loss, out, labels, None, 0.7)) == 1.0
    assert float(blend(loss, out, labels, teacher, 0.25)) == pytest.approx(0.75 * 1 + 0.25 * 3)
    assert float(blend(loss, out, labels, teacher, 1.0)) == 3.0


def test_paired_points_mirror_within_each_half():
    """The dataset's paired points (labels then teacher) keep each half's identity through a
    flip: the paired flip index applied to a pair is the pair of the flipped halves."""
    flip = np.array([2, 1, 0])
    labels = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    teacher = labels + 100
    paired = PairedPoints(labels, teacher)
    assert len(paired) == 2 and paired[1].shape == (6, 2)
    flipped = paired[1][paired_flip_index(flip)]
    np.testing.assert_array_equal(flipped, np.concatenate([labels[1][flip], teacher[1][flip]]))
    a, b = split_points(torch.from_numpy(np.stack([paired[0], paired[1]])), 3)
    np.testing.assert_array_equal(a.numpy(), labels)
    np.testing.assert_array_equal(b.numpy(), teacher)


def test_a_second_backward_through_the_loss_fails_loudly():
    """The gradient reuses the saved log-probabilities in place: a retained graph's second
    backward must raise, not return a wrong gradient."""
    logits = torch.randn(2, 3, 40, requires_grad=True)
    loss = label_kl(logits, torch.full((2, 3, 2), 7.0), 2.0, (20, 20))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("axes", ["shared", "separate"])
@pytest.mark.parametrize("sizes", [(20, 20), (24, 16)])
def test_the_fused_loss_equals_the_loss_of_the_logits_with_the_same_gradients(sizes, axes):
    """fused_linear_kl (chunks of rows, gradients made in the forward) against the last layer
    then label_kl: same value and gradients for the hidden features, the weight and the bias,
    with centres outside the bins (no label mass) and a teacher's labels mixed in."""
    torch.manual_seed(0)
    layer = AXIS_LAYERS[axes](8, sizes)
    hidden = torch.randn(3, 5, 8, requires_grad=True)
    centre = torch.rand(3, 5, 2) * 24 - 2
    centre[0, 0, 0] = -40.0  # covers no x bin
    centre[1, 0, 1] = 50.0  # nor y bin: the mixture holds 0.7 of a label there
    labels = BinLabels.of(centre, 1.5, sizes).mix(BinLabels.of(centre.flip(0), 1.5, sizes), 0.3)
    expected = label_kl(layer(hidden), labels, sizes=sizes)
    expected.backward()
    grads = [t.grad.clone() for t in (hidden, layer.weight, layer.bias)]
    for t in (hidden, layer.weight, layer.bias):
        t.grad = None
    got = fused_linear_kl(hidden, layer, labels, sizes, chunk_bytes=4 * sum(sizes) * 16)  # 1 chunk of 16 rows
    (2 * got).backward()
    torch.testing.assert_close(got, expected)
    for t, g in zip((hidden, layer.weight, layer.bias), grads):
        torch.testing.assert_close(t.grad, 2 * g)


def test_mixed_labels_give_the_blend_of_the_two_losses():
    """A teacher's labels mixed in at share w: (1 - w) x KL(labels) + w x KL(teacher)."""
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 40)
    a, b = torch.rand(2, 4, 2) * 20, torch.rand(2, 4, 2) * 20
    mixed = label_kl(logits, BinLabels.of(a, 2.0, (20, 20)).mix(BinLabels.of(b, 2.0, (20, 20)), 0.25), sizes=(20, 20))
    torch.testing.assert_close(mixed, 0.75 * label_kl(logits, a, 2.0, (20, 20)) + 0.25 * label_kl(logits, b, 2.0, (20, 20)))


@pytest.mark.parametrize("axes", sorted(AXIS_LAYERS))
def test_training_through_the_model_matches_the_logits_path(axes):
    """SimCCHead.train_loss (the model computes the fused loss) equals loss(model(images)), and
    with a teacher equals the blend of the two losses."""
    torch.manual_seed(2)
    head = SimCCHead((32, 32), hidden=16, decoder_channels=8, axes=axes)
    model = head.network("mobilenet_v2", 5, "none").eval()
    images, points, teacher = torch.randn(2, 3, 32, 32), torch.rand(2, 5, 2) * 31, torch.rand(2, 5, 2) * 31
    torch.testing.assert_close(head.train_loss(model, images, points), head.loss(model(images), points))
    torch.testing.assert_close(head.train_loss(model, images, points, teacher, 0.4),
                               0.6 * head.loss(model(images), points) + 0.4 * head.loss(model(images), teacher))


def test_separate_axes_read_their_own_half_of_the_hidden_features():
    """simcc_axes=separate: the x bins change with the first half of the hidden features only,
    the y bins with the second."""
    torch.manual_seed(3)
    layer = AxisLinear(8, (6, 10))
    hidden = torch.randn(2, 8)
    changed = hidden.clone()
    changed[:, 4:] += 1.0
    before, after = layer(hidden), layer(changed)
    torch.testing.assert_close(after[:, :6], before[:, :6])
    assert (after[:, 6:] - before[:, 6:]).abs().min() > 0
    assert sum(p.numel() for p in layer.parameters()) == 16 * 4 + 16


def test_checkpoints_from_before_simcc_axes_keep_their_shared_layer():
    """A checkpoint's config without simcc_axes was trained with the layer reading all hidden
    features: it loads as shared, while new configs default to separate."""
    data = to_dict(TrainConfig(head="simcc"))
    assert data.pop("simcc_axes") == "separate"
    assert from_dict(data).simcc_axes == "shared"
