"""Running on several processes with PyTorch's own engine: `torchrun` starts them and sets
RANK / WORLD_SIZE / LOCAL_RANK; here they join one process group (NCCL on GPUs, gloo on CPUs),
and the few collective steps densemarks needs are named functions.

Without torchrun (no WORLD_SIZE, or 1) everything is a single process and these functions do
nothing, so the same code runs on one CPU, one GPU, several GPUs and several machines.

Every epoch's sample order is the same on all ranks and each rank takes every world-th index of
it (`data.loader.EpochSampler`). Prediction shards are rank::world and come back together in
the original order (`gather_in_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from densemarks.core.errors import env_int


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup() -> Context:
    """Join the process group torchrun describes (once per process), or a single process."""
    world = env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Context(0, 1, 0, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    local_rank = env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def mean_over_ranks(ctx: Context, value: float) -> float:
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device(ctx))
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world


def max_over_ranks(ctx: Context, value: float) -> float:
    """The largest of every rank's value, on every rank."""
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device(ctx))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def any_rank(ctx: Context, flag: bool) -> bool:
    """True on every rank when it is true on one (e.g. the loss left the finite on one rank)."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=_collective_device(ctx))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def sync_buffers(ctx: Context, model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), which are what rank 0
    saves: after a training step each rank's differ a little, and validation must predict
    every shard with the checkpoint's model."""
    if ctx.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, 0)


def gather_in_order(ctx: Context, local: np.ndarray, total: int) -> np.ndarray:
    """Rank r holds the rows r, r + world, r + 2 world, ... of a result of `total` rows; every
    rank gets the whole result in the original row order."""
    if not ctx.distributed:
        return local
    parts: list = [None] * ctx.world
    dist.all_gather_object(parts, local)
    out = np.empty((total,) + local.shape[1:], dtype=local.dtype)
    for rank, part in enumerate(parts):
        out[rank::ctx.world] = part
    return out


def shard(indices: np.ndarray, ctx: Context) -> np.ndarray:
    return indices[ctx.rank::ctx.world]


def _collective_device(ctx: Context) -> torch.device:
    return ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
