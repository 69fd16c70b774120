"""The default torch thread count leaves the cores other processes keep busy to them."""

from __future__ import annotations

import torch

from densemarks.core import threads


def _machine(monkeypatch, cores: int, busy_percent: float, ranks: int | None = None):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(threads.psutil, "cpu_percent", lambda interval: busy_percent)
    if ranks is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))


def test_default_threads_follow_the_free_cores(monkeypatch):
    before = torch.get_num_threads()
    try:
        _machine(monkeypatch, cores=2, busy_percent=0)
        assert threads.choose_threads().threads == 2
        _machine(monkeypatch, cores=2, busy_percent=50)  # one core busy elsewhere
        choice = threads.choose_threads()
        assert choice.threads == 1 and torch.get_num_threads() == 1
        assert "1 of 2 cores (1.0 busy elsewhere" in choice.describe()
        _machine(monkeypatch, cores=2, busy_percent=100)  # never fewer than one
        assert threads.choose_threads().threads == 1
        _machine(monkeypatch, cores=16, busy_percent=0, ranks=4)  # torchrun: ranks share the cores
        assert threads.choose_threads().threads == 4
        choice = threads.choose_threads(3)
        assert choice.threads == 3 and torch.get_num_threads() == 3 and "as requested" in choice.describe()
    finally:
        torch.set_num_threads(before)
