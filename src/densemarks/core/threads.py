"""How many CPU threads torch should use in this process.

torch's default is every core. When another busy process shares those cores, its threads and
ours wait on each other at every parallel step: measured on a 2-core machine, training with 2
threads beside one busy process ran 0.1-0.3 batches/s against 1.4 with 1 thread. So the default
is the cores this process may run on, less the cores other processes keep busy right now
(sampled for a quarter second), shared among the ranks of a torchrun job on this machine, and
at least 1. `threads=N` (train) or `--threads N` (predict, detect) sets it outright.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil
import torch

from densemarks.core.errors import env_int

SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cores: int
    busy: float  # cores other processes kept busy while sampled
    requested: bool

    def describe(self) -> str:
        if self.requested:
            return f"torch threads: {self.threads} (as requested; {self.cores} cores)"
        return f"torch threads: {self.threads} of {self.cores} cores ({self.busy:.1f} busy elsewhere; threads=N sets it)"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int = 0) -> ThreadChoice:
    """The thread count for torch in this process (see the module docstring), applied."""
    cores = usable_cores()
    if requested > 0:
        choice = ThreadChoice(requested, cores, 0.0, True)
    else:
        # share of all the machine's cores busy, as a count of cores; our own process is idle
        # while it sleeps in cpu_percent, so this is other processes' load
        busy = psutil.cpu_percent(interval=SAMPLE_SECONDS) / 100 * (os.cpu_count() or cores)
        ranks = env_int("LOCAL_WORLD_SIZE", 1, minimum=1)
        free = (cores - round(busy)) // max(1, ranks)
        choice = ThreadChoice(max(1, min(cores, free)), cores, busy, False)
    torch.set_num_threads(choice.threads)
    return choice
