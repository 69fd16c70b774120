"""The heads, one module each behind the `base.Head` contract, and their registry.

Adding a head: write `models/heads/NAME.py` with a class keeping the `Head` protocol (network,
encode, decode, loss, train_loss, from_config), then add one line to `HEADS` below. The
`head` key of every recipe, the CLI's help and the errors for unknown names follow from it.
"""

from __future__ import annotations

from torch import nn

from densemarks.core.registry import choose
from densemarks.models.heads.base import Decoded, Head
from densemarks.models.heads.heatmap import HeatmapHead
from densemarks.models.heads.regression import RegressionHead
from densemarks.models.heads.simcc import SimCCHead

HEADS: dict[str, type[Head]] = {
    "regression": RegressionHead,  # 2K numbers from the backbone's last Linear layer
    "heatmap": HeatmapHead,  # K maps at 1/4 of the input from a U-Net decoder
    "simcc": SimCCHead,  # per point, x and y as classifications over sub-pixel bins
}


def make_head(config) -> Head:
    """The head named by config.head, built from the resolved TrainConfig."""
    return choose(HEADS, config.head, "head").from_config(config)


def create_model(config, num_points: int, weights: str) -> nn.Module:
    """The network of config.head on config.model (a torchvision or timm name)."""
    return make_head(config).network(config.model, num_points, weights)


__all__ = ["HEADS", "Decoded", "Head", "create_model", "make_head"]
