"""Landmark losses as pure functions of point errors in network-input pixels.

All take pred and target of the same shape and return a scalar mean. Wing (Feng et al. 2018)
and adaptive wing (Wang et al. 2019) keep their papers' defaults, which assume pixel units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def wing(pred: torch.Tensor, target: torch.Tensor, width: float = 10.0, curvature: float = 2.0) -> torch.Tensor:
    """w ln(1 + |x|/eps) for |x| < w, |x| - C beyond (C joins the pieces)."""
    x = (pred - target).abs()
    c = width - width * math.log(1 + width / curvature)
    return torch.where(x < width, width * torch.log1p(x / curvature), x - c).mean()


def adaptive_wing_elementwise(pred: torch.Tensor, target: torch.Tensor, omega: float = 14.0,
                              theta: float = 0.5, epsilon: float = 1.0, alpha: float = 2.1) -> torch.Tensor:
    """Adaptive wing per element. On heatmaps `target` holds the target intensities y in
    [0, 1], which adapt the exponent alpha - y. On coordinates (`coordinate_adaptive_wing`) y = 0."""
    y = target
    x = (pred - target).abs()
    power = alpha - y
    ratio = theta / epsilon
    a = omega * (1 / (1 + ratio ** power)) * power * (ratio ** (power - 1)) / epsilon
    c = theta * a - omega * torch.log1p(ratio ** power)
    return torch.where(x < theta, omega * torch.log1p((x / epsilon) ** power), a * x - c)


def adaptive_wing(pred: torch.Tensor, target: torch.Tensor, omega: float = 14.0, theta: float = 0.5,
                  epsilon: float = 1.0, alpha: float = 2.1) -> torch.Tensor:
    return adaptive_wing_elementwise(pred, target, omega, theta, epsilon, alpha).mean()


def coordinate_adaptive_wing(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(target)
    return adaptive_wing(pred - target, zero)


# The `loss` key of the regression head: name -> loss(pred, target) in input pixels.
LOSSES = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "wing": wing,
    "adaptive_wing": coordinate_adaptive_wing,
}

