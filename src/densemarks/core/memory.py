"""Keep the memory a training step frees for the next step, instead of handing it back to the
system (glibc's malloc, the allocator torch uses on CPU).

glibc serves each allocation over its mmap threshold (32 MB at most) with a fresh mapping and
unmaps it when freed. A CPU training step allocates its activations and gradients afresh, and
at 128 px in batches of 32 many of them are over 32 MB, so every step pays the kernel's page
faults and zeroing on each of them again. With mmap and trimming off, freed blocks stay in
malloc's heap and later steps reuse them. The heap grows over the first steps (a freed block's
pieces can be a little short of the next request) and then holds: fast-cpu's peak RSS is 8%
higher over 3 epochs, 13% over 12. Transparent huge pages for torch's large blocks
(THP_MEM_ALLOC_ENABLE) were tried instead: no faster in training. Speeds side by side:
BENCHMARKS.md (training loop); the numbers trained are the same either way. `predict`, whose
batches allocate the same way, does it too (1.46x the whole command, the same predictions).

And estimate a training step's memory before training, from the network's shapes alone (a
forward pass on the meta device), so that a step the machine cannot hold is refused with a
line instead of the kernel's silent kill."""

from __future__ import annotations

import copy
import ctypes
import sys

import torch

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (glibc malloc.h)
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from its heap and never give freed memory back
    to the system, for the rest of this process and the processes it forks. True when applied;
    False where the C library is not glibc (nothing changes there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # -1 disables trimming (mallopt(3)); 0 mappings: large blocks come from the heap
    return mallopt(M_TRIM_THRESHOLD, -1) == 1 and mallopt(M_MMAP_MAX, 0) == 1


def activation_bytes(model: torch.nn.Module, size: tuple[int, int]) -> int | None:
    """The bytes a training-mode forward pass of one (3, *size) sample produces: the outputs of
    every leaf module, read from a copy of the model on the meta device (shapes only, so no
    memory and no time, at any size). None where the network cannot run there (an operation
    without a meta implementation, or a size it does not take: the real forward pass says so)."""
    ghost = copy.deepcopy(model).to("meta")
    total = 0

    def count(module: torch.nn.Module, inputs: object, output: object) -> None:
        nonlocal total
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()

    for module in ghost.modules():
        if next(module.children(), None) is None:
            module.register_forward_hook(count)
    try:
        ghost.train()(torch.zeros(1, 3, *size, device="meta"))
    except (NotImplementedError, RuntimeError, AssertionError, ValueError):
        return None
    return total


def training_bytes(model: torch.nn.Module, size: tuple[int, int], batch_size: int) -> int | None:
    """A floor under the memory a training step at `size` in batches of `batch_size` adds: the
    leaf modules' outputs per sample (what autograd keeps, about) times the batch, plus the
    weights, their gradients and AdamW's two moments. Measured on CPU (a training process's peak
    RSS growth from the model's creation on, one epoch with validation; MobileNetV2 with either
    head at 128-512 px, ResNet-50 at 320 px, batches of 4 and 32): 1.05-1.9x this figure, so a
    step this says cannot fit does not. None where activation_bytes is."""
    per_sample = activation_bytes(model, size)
    if per_sample is None:
        return None
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return per_sample * batch_size + 4 * weights
