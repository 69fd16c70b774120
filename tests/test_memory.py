"""Training keeps the memory a step frees for the next step (core/memory.py): after a few
steps, allocating the same large blocks again costs no page faults, and the memory held stops
growing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MB = 1 << 20

CHILD = """
import json, resource, sys, psutil, torch
from densemarks.core.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
faults, rss = [], []
for _ in range(12):  # a training step's pattern: a few blocks over 32 MB, touched, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.empty(n << 20).fill_(1) for n in (12, 16, 24)]  # float32: 48, 64, 96 MB
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    rss.append(psutil.Process().memory_info().rss)
print(json.dumps({"applied": applied, "faults": faults, "rss": rss}))
"""


def _steps(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _page_size() -> int:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return 2 * MB if "[always]" in f.read() else 4096
    except OSError:
        return 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_steps_freed_blocks_are_reused_without_page_faults():
    pages = (48 + 64 + 96) * MB // _page_size()
    kept = _steps("keep")
    assert kept["applied"] is True
    # the first steps still grow the heap (pieces of freed blocks too small for the next one)
    assert all(f < pages // 100 for f in kept["faults"][-3:]), kept["faults"]
    assert kept["rss"][-1] - kept["rss"][-3] < 8 * MB  # held, no longer growing
    released = _steps("release")  # glibc's default: fresh mappings, faulted in page by page every step
    assert released["applied"] is False
    assert all(f > pages // 2 for f in released["faults"]), released["faults"]
