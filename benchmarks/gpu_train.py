"""Benchmark: the seed recipe's training speed on one device (a GPU when there is one), split
into waiting for data and computing, and the projected time of the full 40-epoch recipe on the
competition's 64,000 and 393,930 training images (issue 7).

    python benchmarks/gpu_train.py [--steps 200] [--workers 8] [--images 1024] [--compile] [KEY=VALUE ...]

Synthetic 971-point faces (`densemarks synth`), the recipe's real dataset, augmentation and
loader (persistent workers, pinned memory, non-blocking copies), the model in channels_last
with bf16 autocast on GPUs. Per step: the time blocked on the loader (data) and the time of
normalise + forward + backward + step, synchronised (compute). Then the loader alone, to
show what the input pipeline could deliver. KEY=VALUE overrides the recipe (store_side=288,
model=..., batch_size=...). On a CPU use few steps: it is slow and only indicative.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from densemarks.core.distributed import setup
from densemarks.data.augment import LandmarkTransform, normalize_batch
from densemarks.data.dataset import LandmarkDataset, open_training_data
from densemarks.data.loader import make_loader
from densemarks.data.store import build_store, open_store
from densemarks.data.synth import synthesize
from densemarks.models.heads import create_model, make_head
from densemarks.models.optim import build_optimizer
from densemarks.recipes import config as cfg

COMPETITION = {"2021/22 training set (64,000 images)": 64_000, "2020 training set (393,930 images)": 393_930}


def measure_training(train_dir: Path, recipe: str = "seed", *, steps: int = 200, warmup: int = 10, workers: int = 8,
                     compile_model: bool = False, overrides: list[str] = ()) -> dict:
    """Train the recipe (random weights) on a training folder for warmup + steps steps; the
    time blocked on the loader and the time of normalise + forward + backward + step per step,
    then two epochs of the loader alone. Returns the rates and the config."""
    device = setup().device
    config = cfg.apply_overrides(cfg.load_recipe(recipe), {"weights": "none", "workers": workers,
                                                           "compile": compile_model}, "benchmark")
    config = cfg.apply_overrides(config, cfg.parse_overrides(list(overrides)), "command line")
    data = open_training_data(train_dir)
    store = None
    if config.store_side:
        build_store(data.root, data.table.file_names, config.store_side, config.store_format)
        store = open_store(data.root, config.store_side, config.store_format)
    dataset = LandmarkDataset(data.images_dir, data.table.file_names, data.table.points,
                              LandmarkTransform(config.augment, data.scheme.flip_index, train=True),
                              config.seed, store)
    loader = make_loader(dataset, config.batch_size, config.workers, True, config.seed, 0, device, keep_workers=True)
    model = create_model(config, data.scheme.num_points, "none").to(device)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, config)
    head = make_head(config)
    run_model = torch.compile(model) if config.compile else model
    cuda = device.type == "cuda"
    amp = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    data_s, compute_s = [], []
    epoch, iterator = 0, iter(loader)
    for step in range(warmup + steps):
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            epoch += 1
            loader.sampler.set_epoch(epoch)
            iterator = iter(loader)
            batch = next(iterator)
        waited = time.perf_counter()
        images = normalize_batch(batch["image"].to(device, non_blocking=True), config.augment.normalize,
                                 tone=batch["tone"])
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=cuda and config.amp):
            loss = head.train_loss(run_model, images, batch["points"].to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        done = time.perf_counter()
        if step >= warmup:
            data_s.append(waited - start)
            compute_s.append(done - waited)
    start = time.perf_counter()
    seen = 0
    for _ in range(2):  # the loader alone
        epoch += 1
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            seen += len(batch["image"])
    step_s = [d + c for d, c in zip(data_s, compute_s)]
    return {"config": config, "device": device, "bf16": cuda and config.amp and amp == torch.bfloat16,
            "images_per_s": config.batch_size * len(step_s) / sum(step_s),
            "data_ms": 1000 * statistics.median(data_s), "compute_ms": 1000 * statistics.median(compute_s),
            "data_share": 100 * sum(data_s) / sum(step_s),
            "compute_per_s": config.batch_size / statistics.median(compute_s),
            "loader_per_s": seen / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "d", train=args.images, test=1, num_points=971, seed=0)
        m = measure_training(Path(tmp) / "d" / "train", args.recipe, steps=args.steps, warmup=args.warmup,
                             workers=args.workers, compile_model=args.compile, overrides=args.overrides)
    config, device = m["config"], m["device"]
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.recipe} recipe: {config.model}, input {config.augment.size}, batch {config.batch_size}, K = 971, "
          f"{config.workers} loader workers, {'compiled, ' if config.compile else ''}"
          f"{'bf16' if m['bf16'] else 'fp32'} on {name}; {args.steps} steps after {args.warmup}")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| training images/s (whole steps) | {m['images_per_s']:.1f} |")
    print(f"| median step: waiting for data | {m['data_ms']:.1f} ms |")
    print(f"| median step: normalise + forward + backward + step | {m['compute_ms']:.1f} ms |")
    print(f"| share of time waiting for data | {m['data_share']:.1f}% |")
    print(f"| compute-bound images/s | {m['compute_per_s']:.1f} |")
    print(f"| loader alone images/s ({config.workers} workers) | {m['loader_per_s']:.1f} |")
    for label, count in COMPETITION.items():
        hours = config.epochs * count / m["images_per_s"] / 3600
        print(f"| projected {config.epochs} epochs, {label} | {hours:.1f} h |")


if __name__ == "__main__":
    main()
