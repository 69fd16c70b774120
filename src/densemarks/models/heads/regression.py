"""The regression head: the backbone's last Linear layer gives 2K numbers, each point's x and y
normalised to the input frame (-1 and 1 are the outer pixel edges). The loss (`models.losses`,
chosen by the `loss` key) sees the errors in input pixels, the unit wing losses are defined in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from densemarks.core.registry import choose
from densemarks.models.backbones import backbone_stages, create_backbone, head_and_backbone
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


class RegressionHead:
    def __init__(self, size: tuple[int, int], loss: str = "l1"):
        h, w = size
        self.codec = RegressionCodec(h, w)
        self.loss_fn = choose(LOSSES, loss, "loss")
        self.pixel_scale = torch.tensor([w / 2, h / 2])

    @classmethod
    def from_config(cls, config) -> "RegressionHead":
        return cls(config.augment.size, config.loss)

    def network(self, backbone: str, num_points: int, weights: str) -> LandmarkRegressor:
        return LandmarkRegressor(create_backbone(backbone, 2 * num_points, weights), num_points)

    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        # Moved to the output's device once, not copied to it every step.
        if self.pixel_scale.device != like.device:
            self.pixel_scale = self.pixel_scale.to(like.device)
        return self.pixel_scale

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(points)

    def start_from(self, model: LandmarkRegressor, mean_points) -> None:
        """The last Linear layer's bias becomes the mean face and its weights shrink tenfold: the
        first outputs are the mean shape (NME about 47% on the synthetic faces, not 100-150%
        from outputs near the input's centre), and training learns the departures from it."""
        last = head_and_backbone(model.backbone)[0]
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
