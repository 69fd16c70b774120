"""The regression head: a Linear layer gives 2K numbers, each point's x and y normalised to the
input frame (-1 and 1 are the outer pixel edges). The loss (`models.losses`, chosen by the
`loss` key) sees the errors in input pixels, the unit wing losses are defined in.

What the Linear layer sees (`pool`, the recipe's `regression_pool`):
- avg: the classification backbone's own globally pooled features (its last Linear layer is
  replaced), where a feature's position in the face survives only in what it encodes;
- flatten: the stride-32 feature map reduced to `channels` by a 1x1 convolution and flattened
  whole (channels x H/32 x W/32), so each output weighs each place in the face on its own (the
  DeepPose-style fully connected head). On the demo's 971-point faces, 15 epochs: 6.1%
  validation NME against 7.8% with avg (BENCHMARKS.md "Demo"); on 300-W's 68 points within a
  seed of avg (5.04% against 5.10%, fast-cpu).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from densemarks.core.registry import choose
from densemarks.models.backbones import backbone_stages, create_backbone, create_feature_backbone, head_and_backbone
from densemarks.models.heads.base import Decoded, blend
from densemarks.models.losses import LOSSES


@dataclass(frozen=True)
class RegressionCodec:
    """Network outputs <-> points: x_px = (u + 1) * W / 2 - 0.5 (and likewise y).

    encode: points (B, K, 2) input pixels -> (B, K, 2) normalised; decode: the inverse.
    """

    height: int
    width: int

    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.width / 2, self.height / 2], dtype=like.dtype, device=like.device)

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return (points + 0.5) / self._scale(points) - 1

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        return (output + 1) * self._scale(output) - 0.5


class LandmarkRegressor(nn.Module):
    """Backbone + regression head: images (B, 3, H, W) float -> (B, K, 2) normalised coords."""

    def __init__(self, backbone: nn.Module, num_points: int):
        super().__init__()
        self.backbone = backbone
        self.num_points = num_points

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).view(-1, self.num_points, 2)

    def head_parameters(self) -> list[nn.Parameter]:
        return head_and_backbone(self.backbone)[0]

    def stages(self) -> list[list[nn.Parameter]]:
        return backbone_stages(self.backbone)


class SpatialRegressor(nn.Module):
    """Feature backbone + 1x1 reduction + the stride-32 map flattened into one Linear layer:
    images (B, 3, H, W) float -> (B, K, 2) normalised coords."""

    def __init__(self, features: nn.Module, in_channels: int, num_points: int, size: tuple[int, int],
                 channels: int):
        super().__init__()
        self.backbone = features  # returns a list of feature maps, strides 4, 8, 16, 32
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                    nn.ReLU(inplace=True))
        h, w = size
        self.fc = nn.Linear(channels * math.ceil(h / 32) * math.ceil(w / 32), 2 * num_points)
        self.num_points = num_points

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.reduce(self.backbone(images)[-1]), 1)).view(-1, self.num_points, 2)

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.reduce.parameters(), *self.fc.parameters()]

    def stages(self) -> list[list[nn.Parameter]]:
        return backbone_stages(self.backbone, has_head=False)


# regression_pool: what the Linear layer sees (module docstring)
POOLS = {"avg": "the backbone's pooled features", "flatten": "the whole stride-32 map, reduced"}


class RegressionHead:
    def __init__(self, size: tuple[int, int], loss: str = "l1", pool: str = "avg", channels: int = 64):
        h, w = size
        self.codec = RegressionCodec(h, w)
        self.loss_fn = choose(LOSSES, loss, "loss")
        self.pixel_scale = torch.tensor([w / 2, h / 2])
        choose(POOLS, pool, "regression_pool")  # an unknown name fails here
        self.pool = pool
        self.channels = channels

    @classmethod
    def from_config(cls, config) -> "RegressionHead":
        return cls(config.augment.size, config.loss, config.regression_pool, config.regression_channels)

    def network(self, backbone: str, num_points: int, weights: str) -> LandmarkRegressor | SpatialRegressor:
        if self.pool == "flatten":
            features, channels = create_feature_backbone(backbone, weights)
            size = (self.codec.height, self.codec.width)
            return SpatialRegressor(features, channels[-1], num_points, size, self.channels)
        return LandmarkRegressor(create_backbone(backbone, 2 * num_points, weights), num_points)

    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        # Moved to the output's device once, not copied to it every step.
        if self.pixel_scale.device != like.device:
            self.pixel_scale = self.pixel_scale.to(like.device)
        return self.pixel_scale

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(points)

    def start_from(self, model: LandmarkRegressor | SpatialRegressor, mean_points) -> None:
        """The last Linear layer's bias becomes the mean face and its weights shrink tenfold: the
        first outputs are the mean shape (NME about 47% on the synthetic faces, not 100-150%
        from outputs near the input's centre), and training learns the departures from it."""
        last = head_and_backbone(model)[0]
        weight, bias = (p for p in last if p.ndim == 2), (p for p in last if p.ndim == 1)
        with torch.no_grad():
            target = self.codec.encode(torch.as_tensor(mean_points, dtype=torch.float32)).reshape(-1)
            for b in bias:
                b.copy_(target.to(b.device))
            for w in weight:
                w.mul_(0.1)

    def decode(self, output: torch.Tensor) -> Decoded:
        points = self.codec.decode(output.float())
        return Decoded(points, torch.full(points.shape[:-1], float("nan"), device=points.device))

    def loss(self, output: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        scale = self._scale(output)
        return self.loss_fn(output.float() * scale, self.codec.encode(points) * scale)

    def train_loss(self, model: nn.Module, images: torch.Tensor, points: torch.Tensor,
                   teacher: torch.Tensor | None = None, teacher_weight: float = 0.0) -> torch.Tensor:
        return blend(self.loss, model(images), points, teacher, teacher_weight)
