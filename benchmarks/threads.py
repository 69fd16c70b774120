"""Torch's CPU thread count beside another busy process, and the demo's NME under that load.

    python benchmarks/threads.py steps --data demo/data          # training steps/s, 1 and 2 threads, quiet and loaded
    python benchmarks/threads.py demo --data demo/data --out /tmp/loaded   # the demo's training with one core kept busy

`steps`: fast-cpu training steps (loading excluded: forward, backward and the optimizer step
on real batches of the demo data, 12 timed steps in a fresh process) with threads=1 and
threads=2, alternating, each quiet and beside a busy neighbour (a process spinning on one
core). `demo`: trains the `demo` recipe (what `make demo` trains) with one core kept busy, so
its default thread choice and its NME can be set beside a quiet run's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path


def spin(stop) -> None:
    while not stop.is_set():
        pass


class BusyNeighbour:
    """A process that keeps one core busy for as long as the block runs."""

    def __enter__(self):
        self.stop = multiprocessing.Event()
        self.process = multiprocessing.Process(target=spin, args=(self.stop,), daemon=True)
        self.process.start()
        time.sleep(1.0)  # let it take its core
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.process.join()


def steps_per_second(data: Path, threads: int, steps: int = 12) -> float:
    """Training steps/s of fast-cpu's model on demo batches, in a fresh process."""
    code = f"""
import time, torch, json
torch.set_num_threads({threads})
from densemarks.recipes.config import load_recipe
from densemarks.training.setup import prepare_run
from densemarks.core import distributed
from densemarks.data.augment import normalize_batch
from pathlib import Path
import tempfile
config = load_recipe("fast-cpu")
config.threads = {threads}
run = prepare_run({str(data)!r}, config, Path(tempfile.mkdtemp()), distributed.setup())
run.model.train()
batches = iter(run.loader)
times = []
for i in range({steps} + 2):
    batch = next(batches)
    start = time.perf_counter()
    images = normalize_batch(batch["image"], config.augment.normalize, tone=batch["tone"])
    loss = run.head.train_loss(run.model, images.contiguous(memory_format=torch.channels_last), batch["points"])
    run.optimizer.zero_grad(); loss.backward(); run.optimizer.step()
    times.append(time.perf_counter() - start)
print(json.dumps(1 / (sum(times[2:]) / {steps})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["steps", "demo"])
    parser.add_argument("--data", type=Path, default=Path("demo/data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/densemarks-loaded-demo"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "steps":
        results: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for loaded in (False, True):
                for threads in (1, 2):
                    key = f"{'loaded' if loaded else 'quiet'}, {threads} thread(s)"
                    if loaded:
                        with BusyNeighbour():
                            rate = steps_per_second(args.data, threads)
                    else:
                        rate = steps_per_second(args.data, threads)
                    results.setdefault(key, []).append(rate)
                    print(f"{key}: {rate:.2f} steps/s", flush=True)
        print("| setting | steps/s (batch 32, median) | runs |\n|---|---|---|")
        for key, rates in results.items():
            print(f"| {key} | {statistics.median(rates):.2f} | {', '.join(f'{r:.2f}' for r in rates)} |")
    else:
        with BusyNeighbour():
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "densemarks", "train", "--data", str(args.data), "--out",
                                     str(args.out), "--recipe", "demo", "--overwrite"], capture_output=True, text=True)
            seconds = time.monotonic() - started
        chosen = next((line for line in result.stdout.splitlines() if line.startswith("torch threads")), "")
        log = (args.out / "log.csv").read_text().splitlines()
        print(json.dumps({"returncode": result.returncode, "threads": chosen, "seconds": round(seconds),
                          "last_epoch": log[-1]}))


if __name__ == "__main__":
    main()
