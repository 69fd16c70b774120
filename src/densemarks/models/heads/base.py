"""The contract every head keeps. A head is one kind of model output (2K numbers, K heatmaps,
...) and everything that depends on it, in one module: the network on top of a backbone, the
codec between outputs and points, the training loss. Training, prediction, test-time
augmentation, ONNX export and photos only ever talk to a head through this protocol.

Frames: points are in network-input pixels, pixel centres at integers, (x, y) order: for an
input of height H and width W the pixels span [-0.5, W - 0.5] x [-0.5, H - 0.5].

Flips need nothing from a head: test-time mirrors are averaged as points (`inference.tta`:
mirror matrix plus the scheme's flip index), the same for every head; training mirrors the
image and its points before the head sees them (`data.augment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Decoded:
    """points (B, K, 2) float32, network-input pixels; confidence (B, K) float32 in [0, 1]
    (for heatmaps the peak value), nan where the head has no notion of it (regression)."""

    points: torch.Tensor
    confidence: torch.Tensor


class LandmarkNetwork(Protocol):
    """What a head's `network` returns: an nn.Module mapping images (B, 3, H, W) float, normalised,
    to the head's output, with its parameters split for the optimizer."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the head (trained at the full learning rate)."""

    def stages(self) -> list[list[nn.Parameter]]:
        """Backbone parameters in stages from input to output (per-stage rates, freezing)."""


class Head(Protocol):
    """One kind of model output. Built by `from_config(config)` from the resolved TrainConfig
    (reading only the keys it needs), registered by name in `models.heads.HEADS`."""

    @classmethod
    def from_config(cls, config) -> "Head": ...

    def network(self, backbone: str, num_points: int, weights: str) -> LandmarkNetwork:
        """The model: a backbone (`models.backbones`) and this head's layers on top."""

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, K, 2) input pixels -> the training target in the output's form."""

    def decode(self, output: torch.Tensor) -> Decoded:
        """The network's output -> points and confidence (batched, no loop over points)."""

    def loss(self, output: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Scalar loss of an output against points (B, K, 2) in input pixels."""

    def train_loss(self, model: nn.Module, images: torch.Tensor, points: torch.Tensor,
                   teacher: torch.Tensor | None = None, teacher_weight: float = 0.0) -> torch.Tensor:
        """One training step's loss: usually loss(model(images), points), blended with a
        teacher's points (B, K, 2) when distilling (`blend`); a head may compute less than the
        whole output (the heatmap head's random subset of points)."""

    def start_from(self, model: nn.Module, mean_points: np.ndarray) -> None:
        """Before training from scratch: make the new network's first answer the mean training
        face (K, 2) in input pixels, where the head can (a no-op where it cannot)."""


def blend(loss, output: torch.Tensor, points: torch.Tensor, teacher: torch.Tensor | None,
          teacher_weight: float) -> torch.Tensor:
    """(1 - w) x loss against the labels + w x loss against a teacher's points (distillation,
    `training.distill`); the labels' loss alone without a teacher."""
    if teacher is None or teacher_weight == 0:
        return loss(output, points)
    if teacher_weight == 1:
        return loss(output, teacher)
    return (1 - teacher_weight) * loss(output, points) + teacher_weight * loss(output, teacher)
