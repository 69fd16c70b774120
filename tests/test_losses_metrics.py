"""Losses and metrics on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densemarks.core.errors import DataError
from densemarks.core.registry import choose
from densemarks.models.losses import LOSSES, adaptive_wing, wing
from densemarks.analysis.metrics import competition_score, evaluate_points, per_face_nme
from densemarks.data.scheme import LandmarkScheme, Region


def test_wing_values_and_continuity():
    zero = torch.zeros(1)
    assert wing(zero, zero).item() == 0
    small = torch.tensor([2.0])
    assert wing(small, zero).item() == pytest.approx(10 * math.log(2))
    below, above = torch.tensor([10 - 1e-4]), torch.tensor([10 + 1e-4])
    assert wing(below, zero).item() == pytest.approx(wing(above, zero).item(), abs=1e-3)
    assert wing(torch.tensor([20.0]), zero).item() == pytest.approx(20 - (10 - 10 * math.log(6)))


def test_adaptive_wing_is_continuous_at_theta():
    y = torch.tensor([0.3])
    below = adaptive_wing(y + 0.5 - 1e-5, y).item()
    above = adaptive_wing(y + 0.5 + 1e-5, y).item()
    assert below == pytest.approx(above, abs=1e-3)
    assert adaptive_wing(y, y).item() == 0


def test_loss_registry():
    a, b = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])
    assert choose(LOSSES, "l1", "loss")(a, b).item() == 2.0 and choose(LOSSES, "mse", "loss")(a, b).item() == 5.0
    with pytest.raises(DataError, match=r"unknown loss 'l3' \(choose mse, l1, smooth_l1, wing or adaptive_wing\); "
                                        r"did you mean 'l1'\?"):
        choose(LOSSES, "l3", "loss")


def test_competition_score_by_hand():
    truth = np.zeros((2, 3, 2))
    pred = truth.copy()
    pred[0, 1] = [3, 4]  # face 0, point 1: squared errors 9 and 16
    pred[1, 2] = [1, 1]
    # Requested points [1, 2] for both faces: face 0 -> (9 + 16) / 4, face 1 -> (1 + 1) / 4.
    requested = np.array([[1, 2], [1, 2]])
    assert competition_score(pred, truth, requested) == pytest.approx(((25 / 4) + (2 / 4)) / 2)
    assert competition_score(pred, truth) == pytest.approx(((25 / 6) + (2 / 6)) / 2)


def test_nme_failure_and_regions_by_hand():
    truth = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])
    pred = truth + np.array([[[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]]])
    assert per_face_nme(pred, truth, (0, 1))[0] == pytest.approx(5 / 3 / 10 * 100)
    scheme = LandmarkScheme(3, np.array([1, 0, 2]), (0, 1), (Region("eyes", 0, 2), Region("nose", 2, 3)))
    metrics = evaluate_points(pred, truth, scheme)
    assert metrics.nme == pytest.approx(100 * 5 / 30)
    assert metrics.failure_rate == 100.0  # 16.7% > 10%
    assert metrics.region_nme == {"eyes": 0.0, "nose": pytest.approx(50.0)}
    assert metrics.squared_distance_score == pytest.approx(2 * metrics.competition_score)
