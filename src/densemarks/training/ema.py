"""An exponential moving average of the weights (the `ema` key), validated and saved as the model."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the model's weights and buffers (BatchNorm statistics),
    updated after every optimizer step. Its decay ramps up as min(decay, (1 + n) / (10 + n))
    after n updates, so early averages do not hold on to the starting weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not (torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])):
            torch._foreach_copy_(averaged, current)  # counters such as num_batches_tracked
            return
        n = float(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
