"""Benchmark: the full training loop's images/s against the model's bare forward+backward+step
images/s on the same batches, in one run.

    python benchmarks/train_throughput.py --data ../shared/data/300w-afw-helen [--recipe fast-cpu] [KEY=VALUE ...]

Bare: batches are loaded and normalised beforehand and held in memory; only forward, loss,
backward and optimizer step are timed, before and after the full run. Full:
`densemarks.training.loop.train` for --epochs epochs on the same data (loading, augmentation,
normalisation, everything); the median images/s of the epochs after the first (which warms up).
Recipe overrides apply to both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from densemarks.core.memory import keep_freed_memory
from densemarks.recipes import config as cfg
from densemarks.data.augment import LandmarkTransform, normalize_batch
from densemarks.data.dataset import LandmarkDataset
from densemarks.data.dataset import open_training_data
from densemarks.data.loader import make_loader
from densemarks.models.heads import create_model, make_head
from densemarks.models.optim import build_optimizer
from densemarks.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--recipe", default="fast-cpu")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    config = cfg.apply_overrides(cfg.load_recipe(args.recipe), cfg.parse_overrides(args.overrides), "command line")
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.keep_freed_memory:  # as the training run below will (core/memory.py)
        keep_freed_memory()
    data = open_training_data(args.data)
    dataset = LandmarkDataset(data.images_dir, data.table.file_names, data.table.points,
                              LandmarkTransform(config.augment, data.scheme.flip_index, train=True), config.seed)
    loader = make_loader(dataset, config.batch_size, config.workers, True, config.seed, 0, torch.device("cpu"), keep_workers=True)
    batches = []
    for batch in loader:
        images = normalize_batch(batch["image"], config.augment.normalize, tone=batch["tone"])
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        batches.append((images, batch["points"]))
        if len(batches) == args.batches:
            break
    model = create_model(config, data.scheme.num_points, config.weights)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, config)
    head = make_head(config)
    h, w = config.augment.size

    def bare_run() -> list[float]:
        timings = []
        for images, points in [batches[0]] + batches:  # the first step warms up
            start = time.perf_counter()
            loss = head.train_loss(model, images, points)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            timings.append(len(images) / (time.perf_counter() - start))
        return timings[1:]

    bare = bare_run()
    with tempfile.TemporaryDirectory() as run:
        full_config = cfg.apply_overrides(config, {"epochs": args.epochs, "scheduler": "none",
                                                   "val_every": args.epochs}, "benchmark")  # images/s: training time only
        result = train(args.data, full_config, run, quiet=True)
    bare += bare_run()  # before and after, so a change of machine load hits both sides
    full = [row["images_per_s"] for row in result.history[1:]]  # epoch 1 warms up
    bare_median, full_median = statistics.median(bare), statistics.median(full)
    print(f"recipe {args.recipe} {' '.join(args.overrides)}: model {config.model}, input {h}x{w}, "
          f"batch {config.batch_size}, workers {config.workers}, torch threads {torch.get_num_threads()}")
    print("| measurement | images/s |")
    print("|---|---|")
    print(f"| bare forward+backward+step (median of {len(bare)} batches, before and after) | {bare_median:.1f} |")
    print(f"| full training loop (median of epochs 2-{args.epochs}, the training split's images) | {full_median:.1f} |")
    print(f"| ratio full / bare | {full_median / bare_median:.2f}x |")
    print(f"every epoch: {', '.join(f'{v:.1f}' for v in full)}")


if __name__ == "__main__":
    main()
