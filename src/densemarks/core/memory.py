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

And estimate a training step's or a prediction batch's memory before the work, from the
network's shapes alone (a forward pass on the meta device), so that work the machine cannot
hold is refused with a line instead of the kernel's silent kill (`check_fits`)."""

from __future__ import annotations

import copy
import ctypes
import sys

import psutil
import torch
from tqdm import tqdm

from densemarks.core.errors import DataError

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


def _leaf_bytes(model: torch.nn.Module, size: tuple[int, int], train: bool) -> list[tuple[int, int]] | None:
    """(input bytes, output bytes) of every leaf module call in a forward pass of one (3, *size)
    sample (train: in training mode), read from a copy of the model on the meta device (shapes
    only, so no memory and no time, at any size). None where the network cannot run there (an
    operation without a meta implementation, or a size it does not take: the real forward pass
    says so)."""
    ghost = copy.deepcopy(model).to("meta")
    calls = []

    def nbytes(value: object) -> int:
        values = value if isinstance(value, (tuple, list)) else (value,)
        return sum(t.numel() * t.element_size() for t in values if isinstance(t, torch.Tensor))

    def count(module: torch.nn.Module, inputs: object, output: object) -> None:
        calls.append((nbytes(inputs), nbytes(output)))

    for module in ghost.modules():
        if next(module.children(), None) is None:
            module.register_forward_hook(count)
    try:
        ghost.train(train)(torch.zeros(1, 3, *size, device="meta"))
    except (NotImplementedError, RuntimeError, AssertionError, ValueError):
        return None
    return calls


def activation_bytes(model: torch.nn.Module, size: tuple[int, int]) -> int | None:
    """The bytes a training-mode forward pass of one (3, *size) sample produces: the outputs of
    every leaf module (`_leaf_bytes`). None where the network cannot run on the meta device."""
    calls = _leaf_bytes(model, size, train=True)
    return None if calls is None else sum(out for _, out in calls)


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


def inference_bytes(model: torch.nn.Module, size: tuple[int, int], batch_size: int) -> int | None:
    """A floor under the memory a no-grad forward pass over `batch_size` crops of `size` adds:
    the largest leaf module's input and output together (both are alive while it runs) per crop,
    plus the crops themselves as bytes and as floats, times the batch. Measured (a process's
    peak RSS growth over one pass; MobileNetV2 with each head at 128-512 px, batches of 32-512;
    benchmarks/memory_estimate.py): 1.2-1.45x this figure. None where the network cannot run on
    the meta device."""
    calls = _leaf_bytes(model, size, train=False)
    if calls is None:
        return None
    crop = 3 * size[0] * size[1]
    return batch_size * (max(i + o for i, o in calls) + crop * (1 + 4))


def check_fits(need: int | None, what: str, advice: str, *, processes: int = 1, report: bool = True) -> None:
    """Refuse (DataError) work whose floor estimate `need` (bytes per process; None: unknown, no
    check) is over this machine's free memory, and warn (`report`) within 2x of it, as measured
    steps took up to 1.9x the floor. what: the work, as `... needs`; advice: what to lower."""
    if need is None:
        return
    free = psutil.virtual_memory().available
    each = f" in each of {processes} processes" if processes > 1 else ""
    if need * processes > free:
        raise DataError(None, f"{what} needs at least {need / 2**30:.1f} GiB{each}, and this machine has "
                              f"{free / 2**30:.1f} GiB free: {advice}")
    if report and 2 * need * processes > free:
        tqdm.write(f"warning: {what} needs {need / 2**30:.1f}-{2 * need / 2**30:.1f} GiB{each}, and this machine has "
                   f"{free / 2**30:.1f} GiB free: it may run out of memory")
