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
batches allocate the same way, does it too (1.46x the whole command, the same predictions)."""

from __future__ import annotations

import ctypes
import sys

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
