"""Benchmark: the memory floors core/memory.py estimates from a network's shapes against the
peak memory the work really adds, each case in a fresh process (its peak RSS growth from the
model's creation on, so nothing earlier counts).

- train: one AdamW training step (forward, backward, step) against `training_bytes`, which
  `densemarks train` compares with the machine's free memory;
- predict: one no-grad pass of the inference model (crops in, points out) against
  `inference_bytes`, which `densemarks predict` compares with it.

A floor must stay at or under the measure (ratio >= 1); how far over 1 the ratios go is what
the 2x warning margin covers.

    python benchmarks/memory_estimate.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

# (what, recipe, head, size, batch)
CASES = [
    ("train", "fast-cpu", "regression", 128, 32),
    ("train", "accurate-cpu", "heatmap", 192, 4),
    ("train", "accurate-cpu", "heatmap", 320, 16),
    ("predict", "fast-cpu", "regression", 128, 256),
    ("predict", "fast-cpu", "regression", 512, 32),
    ("predict", "accurate-cpu", "heatmap", 192, 64),
    ("predict", "accurate-cpu", "heatmap", 192, 512),
    ("predict", "accurate-cpu", "simcc", 256, 64),
]


def measure(what: str, recipe: str, head: str, size: int, batch: int) -> dict:
    """In this process: build the case's model, then run it once; the peak RSS growth over it."""
    import psutil
    import torch

    from densemarks.core.memory import inference_bytes, keep_freed_memory, training_bytes
    from densemarks.inference.landmarker import InferenceModel
    from densemarks.models.heads import create_model, make_head
    from densemarks.recipes import config as cfg

    keep_freed_memory()  # as train and predict run
    config = cfg.apply_overrides(cfg.load_recipe(recipe), {"head": head, "augment.size": [size, size]}, "benchmark")
    model = create_model(config, 68, "none").to(memory_format=torch.channels_last)
    if what == "train":
        estimate = training_bytes(model, (size, size), batch)
        images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        points = torch.rand(batch, 68, 2) * size
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
        before = psutil.Process().memory_info().rss
        model.train()
        make_head(config).train_loss(model, images, points).backward()
        optimizer.step()
    else:
        runner = InferenceModel(model, make_head(config)).eval()
        estimate = inference_bytes(model, (size, size), batch)
        before = psutil.Process().memory_info().rss
        crops = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
        with torch.no_grad():
            runner(crops)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"estimate": estimate, "measured": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # the child process's case
    args = parser.parse_args()
    if args.case is not None:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(*CASES[args.case])))
        return
    print("| work | recipe, head | size | batch | floor (GiB) | measured peak growth (GiB) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for i, (what, recipe, head, size, batch) in enumerate(CASES):
        done = subprocess.run([sys.executable, __file__, "--case", str(i), "--threads", str(args.threads)],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        gib = [row["estimate"] / 2**30, row["measured"] / 2**30]
        print(f"| {what} | {recipe}, {head} | {size} | {batch} | {gib[0]:.2f} | {gib[1]:.2f} | "
              f"{row['measured'] / row['estimate']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
