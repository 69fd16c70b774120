"""The model as the training step calls it: compiled and/or wrapped for DistributedDataParallel."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from densemarks.core.distributed import Context


class StepModel:
    """The model as the training step calls it: compiled (config.compile) and, under torchrun,
    in DistributedDataParallel, which fixes its trainable weights when built; so it is rebuilt
    when staged unfreezing changes them."""

    def __init__(self, model: torch.nn.Module, ctx: Context, compile_model: bool):
        self.model, self.ctx, self.compile = model, ctx, compile_model
        self.key, self.current = None, None

    def get(self) -> torch.nn.Module:
        key = tuple(p.requires_grad for p in self.model.parameters())
        if key != self.key:
            self.key, self.current = key, self.model
            if self.ctx.distributed:
                ids = [self.ctx.local_rank] if self.ctx.device.type == "cuda" else None
                self.current = DistributedDataParallel(self.model, device_ids=ids)
            if self.compile:
                self.current = torch.compile(self.current)
        return self.current
