"""Benchmark: training speed and peak memory of each head (regression, heatmap, SimCC) on the
same backbone, at K = 971 points, 224 px input, batch 32 (issues 4 and 19).

    python benchmarks/head_speed.py [--model mobilenet_v2] [--size 224] [--batch 32] [--steps 8]
        [--points-per-step 64]   # heatmap maps per step; 0: every map every step
        [--heads regression,heatmap,simcc]
        [--set simcc_hidden=64 --set simcc_split=1.5]   # recipe keys, for every head

Synthetic 971-point faces go through the real dataset and augmentation once; then each head
trains on the same batches held in memory (forward, loss, backward, AdamW step), in its own
process so that peak memory is its own: peak RSS on CPU (and its growth over the process
after the model is built), torch's peak allocation on CUDA. Heads alternate (`--repeats`
rounds, each head once per round); the table gives the medians, and the median (and range) of
each round's ratio to the first head.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(args) -> dict:
    import torch

    from densemarks.recipes import config as cfg
    from densemarks.data.augment import LandmarkTransform, normalize_batch
    from densemarks.data.dataset import LandmarkDataset, open_training_data
    from densemarks.models.heads import make_head
    from densemarks.core.distributed import setup
    from densemarks.core.memory import keep_freed_memory
    from densemarks.data.loader import make_loader
    from densemarks.models.heads import create_model
    from densemarks.models.optim import build_optimizer

    device = setup().device
    config = cfg.apply_overrides(cfg.load_recipe("fast-cpu"), {
        "head": args.head, "model": args.model, "weights": "none", "batch_size": args.batch,
        "augment.size": [args.size, args.size], "augment.crop": "stretch",
        "heatmap_points_per_step": args.points_per_step, **dict(pair.split("=", 1) for pair in args.set)}, "benchmark")
    if config.keep_freed_memory:  # as training does (core/memory.py)
        keep_freed_memory()
    data = open_training_data(Path(args.data) / "train")
    dataset = LandmarkDataset(data.images_dir, data.table.file_names, data.table.points,
                              LandmarkTransform(config.augment, data.scheme.flip_index, train=True))
    batches = []
    for batch in make_loader(dataset, args.batch, 0, True, 0, 0, device):
        images = normalize_batch(batch["image"].to(device), config.augment.normalize, tone=batch["tone"])
        batches.append((images.contiguous(memory_format=torch.channels_last), batch["points"].to(device)))
    model = create_model(config, data.scheme.num_points, "none").to(device).to(memory_format=torch.channels_last)
    model.train()
    head = make_head(config)
    optimizer = build_optimizer(model, config)
    use_cuda = device.type == "cuda"
    before = _peak_bytes(device)
    if use_cuda:
        torch.cuda.reset_peak_memory_stats()
    timings = []
    for step in range(args.steps + 2):  # two warm-up steps
        images, points = batches[step % len(batches)]
        if use_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
            loss = head.train_loss(model, images, points)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if use_cuda:
            torch.cuda.synchronize()
        timings.append(len(images) / (time.perf_counter() - start))
    peak = _peak_bytes(device)
    return {"images_per_s": statistics.median(timings[2:]), "peak_mb": peak / 2 ** 20,
            "growth_mb": (peak - before) / 2 ** 20 if not use_cuda else peak / 2 ** 20,
            "device": str(device), "threads": torch.get_num_threads(),
            "output": _output_shape(model, images)}


def _output_shape(model, images) -> list[int]:
    import torch
    with torch.no_grad():
        return list(model.eval()(images[:2]).shape[1:])


def _peak_bytes(device) -> float:
    import torch
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated())
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--points", type=int, default=971)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--points-per-step", type=int, default=64, help="heatmap maps computed per step (0: all)")
    parser.add_argument("--heads", default="regression,heatmap,simcc", help="comma-separated; the first is the reference")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe key for every head (repeatable), e.g. simcc_hidden=64")
    parser.add_argument("--head", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.head:  # the child process
        print(json.dumps(measure(args)))
        return
    from densemarks.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "d", train=2 * args.batch, test=1, num_points=args.points, seed=0)
        results = {name: [] for name in args.heads.split(",")}
        for _ in range(args.repeats):
            for head in results:
                out = subprocess.run([sys.executable, __file__, "--head", head, "--data", str(Path(tmp) / "d"),
                                      "--model", args.model, "--size", str(args.size), "--batch", str(args.batch),
                                      "--steps", str(args.steps), "--points-per-step", str(args.points_per_step),
                                      *[f"--set={pair}" for pair in args.set]],
                                     capture_output=True, text=True, check=True)
                results[head].append(json.loads(out.stdout.strip().splitlines()[-1]))
    reference = next(iter(results))
    first = results[reference][0]
    print(f"{args.model}, K = {args.points}, heatmap maps per step {args.points_per_step or 'all'}, "
          f"input {args.size}x{args.size}, batch {args.batch}, "
          f"{first['device']}, {first['threads']} threads; medians of {args.repeats} alternating runs "
          f"of {args.steps} steps" + "".join(f"; {pair}" for pair in args.set))
    print(f"| head | output | train images/s | ratio to {reference} (per round: range) | peak memory (MB) | "
          "growth while training (MB) |")
    print("|---|---|---|---|---|---|")
    for head, runs in results.items():
        # each round runs the heads back to back: its ratio is steadier than a ratio of medians
        ratios = [r["images_per_s"] / ref["images_per_s"] for r, ref in zip(runs, results[reference])]
        print(f"| {head} | {runs[0]['output']} | {statistics.median(r['images_per_s'] for r in runs):.1f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{statistics.median(r['peak_mb'] for r in runs):.0f} | {statistics.median(r['growth_mb'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
