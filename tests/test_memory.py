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


def test_the_training_memory_estimate_follows_the_input_area_and_the_batch():
    import torchvision
    from densemarks.core.memory import activation_bytes, training_bytes

    model = torchvision.models.mobilenet_v2(num_classes=10)
    small, large = activation_bytes(model, (64, 64)), activation_bytes(model, (256, 256))
    assert 14 < large / small <= 16  # 16x the pixels; the global pool's outputs do not grow
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    one, eight = training_bytes(model, (64, 64), 1), training_bytes(model, (64, 64), 8)
    assert eight - one == pytest.approx(7 * (one - 4 * weights), rel=1e-6)
    assert next(model.parameters()).device.type == "cpu"  # the estimate ran on a copy


def test_a_network_that_cannot_take_the_size_leaves_the_estimate_to_the_real_pass():
    import torch
    from densemarks.core.memory import activation_bytes

    class Fixed(torch.nn.Module):  # as torchvision's vision transformers check their input
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            torch._assert(x.shape[-1] == 224, "Wrong image width! Expected 224")
            return self.conv(x)

    assert activation_bytes(Fixed(), (64, 64)) is None
    assert activation_bytes(Fixed(), (224, 224)) == 4 * 222 * 222 * 4


@pytest.mark.parametrize("free, processes, outcome", [(0.5, 1, "refused"), (1.5, 1, "warned"), (2.5, 1, "quiet"),
                                                      (1.5, 2, "refused")])
def test_training_is_refused_or_warned_by_the_memory_its_step_needs(monkeypatch, capsys, free, processes, outcome):
    from types import SimpleNamespace

    from densemarks.core import memory
    from densemarks.core.errors import DataError
    from densemarks.core.memory import training_bytes
    from densemarks.models.heads import create_model
    from densemarks.recipes import config as cfg
    from densemarks.training import setup

    config = cfg.apply_overrides(cfg.load_recipe("fast-cpu"), {"weights": "none"}, "test")
    model = create_model(config, 68, "none")
    need = training_bytes(model, tuple(config.augment.size), config.batch_size)
    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: SimpleNamespace(available=int(free * need)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    if outcome == "refused":
        with pytest.raises(DataError, match="needs at least .* GiB.* GiB free: lower augment.size or batch_size"):
            setup.check_training_memory(model, config, True)
        return
    setup.check_training_memory(model, config, True)
    warned = "may run out of memory" in capsys.readouterr().out
    assert warned == (outcome == "warned")


def test_the_prediction_memory_estimate_is_the_largest_layer_in_and_out_plus_the_crops():
    import torch
    from densemarks.core.memory import inference_bytes

    two = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 2, 1))
    # the first layer's input (3 x 32 x 32 floats) and output (8 x 32 x 32) are alive together;
    # the crops come as bytes and again as floats
    per_crop = (3 + 8) * 32 * 32 * 4 + 3 * 32 * 32 * 5
    assert inference_bytes(two, (32, 32), 1) == per_crop
    assert inference_bytes(two, (32, 32), 64) == 64 * per_crop


def test_prediction_beyond_free_memory_is_refused_before_any_image_is_read(monkeypatch, trained68, faces68,
                                                                          tmp_path):
    from types import SimpleNamespace

    from conftest import one_line_error, run_cli
    from densemarks.core import memory

    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: SimpleNamespace(available=10 * MB))
    out = tmp_path / "preds.csv"
    result = run_cli("predict", "--checkpoint", trained68 / "best.pt", "--data", faces68 / "test", "--out", out,
                     "--batch-size", "24", "--tta", "flip", check=False)
    assert result.returncode == 2
    line = one_line_error(result, "predicting with", "in batches of 24 faces", "GiB free", "--batch-size")
    assert "best.pt" in line
    assert not out.exists() and not list(tmp_path.iterdir())
