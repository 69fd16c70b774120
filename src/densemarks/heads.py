"""What training and prediction ask of a model's output, for each kind of head: the loss
against points, the points it stands for, and the flip test-time average.

RegressionHead: outputs (B, K, 2) normalised coordinates; the loss sees errors in network-input
pixels (the unit wing losses are defined in). HeatmapHead: outputs (B, K, h, w) maps; the loss
is adaptive wing on the maps, L1 on the soft-argmax coordinates, or both; flip TTA mirrors the
maps and renames them through the flip index before decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from densemarks.config import TrainConfig
from densemarks.errors import DataError
from densemarks.heatmap import HeatmapCodec, heatmap_loss, soft_argmax
from densemarks.losses import get_loss
from densemarks.models import RegressionCodec


class RegressionHead:
    def __init__(self, config: TrainConfig):
        h, w = config.augment.size
        self.codec = RegressionCodec(h, w)
        self.width = w
        self.loss_fn = get_loss(config.loss)
        self.pixel_scale = torch.tensor([w / 2, h / 2])

    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        # Moved to the output's device once, not copied to it every step.
        if self.pixel_scale.device != like.device:
            self.pixel_scale = self.pixel_scale.to(like.device)
        return self.pixel_scale

    def train_loss(self, model: torch.nn.Module, images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return self.loss(model(images), points)

    def loss(self, output: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        scale = self._scale(output)
        return self.loss_fn(output.float() * scale, self.codec.encode(points) * scale)

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) points in network-input pixels."""
        return self.codec.decode(output.float())

    def decode_flip(self, output: torch.Tensor, mirrored_output: torch.Tensor,
                    flip_index: torch.Tensor) -> torch.Tensor:
        """Average of the points and the mirrored image's points mirrored back and renamed."""
        mirrored = self.decode(mirrored_output)
        mirrored[..., 0] = (self.width - 1) - mirrored[..., 0]
        return (self.decode(output) + mirrored[:, flip_index]) / 2


class HeatmapHead:
    def __init__(self, config: TrainConfig):
        h, w = config.augment.size
        if h % 4 or w % 4:
            raise DataError(None, f"head=heatmap needs augment.size divisible by 4 (maps at 1/4), got {h}x{w}")
        self.codec = HeatmapCodec(h, w, stride=4, sigma=config.heatmap_sigma)
        self.kind = config.heatmap_loss
        self.coord_weight = config.coord_weight
        self.method = config.heatmap_decode
        self.points_per_step = config.heatmap_points_per_step

    def train_loss(self, model: torch.nn.Module, images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """The loss on a random subset of the points (heatmap_points_per_step; 0 = all), drawn
        anew each step from torch's seeded generator: every point is trained in expectation,
        and the last layer and the loss cost S/K of the full maps."""
        k = points.shape[1]
        if 0 < self.points_per_step < k:
            subset = torch.randperm(k)[: self.points_per_step].to(points.device)
            return self.loss(model(images, subset), points[:, subset])
        return self.loss(model(images), points)

    def loss(self, output: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        total = output.new_zeros((), dtype=torch.float32)
        if self.kind in ("maps", "both"):
            total = total + heatmap_loss(output, self.codec.encode(points))
        if self.kind in ("coords", "both"):
            weight = self.coord_weight if self.kind == "both" else 1.0
            coords = self.codec.from_map(soft_argmax(output, self.codec.beta))
            total = total + weight * F.l1_loss(coords, points.float())
        return total

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(output.float(), self.method)[0]

    def decode_flip(self, output: torch.Tensor, mirrored_output: torch.Tensor,
                    flip_index: torch.Tensor) -> torch.Tensor:
        return self.decode((output.float() + mirrored_output.float().flip(-1)[:, flip_index]) / 2)


def make_head(config: TrainConfig) -> RegressionHead | HeatmapHead:
    return HeatmapHead(config) if config.head == "heatmap" else RegressionHead(config)
