"""The GPU check (`make gpu-check`): on a CUDA machine, what the seed recipe's users will see, in
one table, in under 8 minutes, needing nothing but this repository (it generates its own data).

    python benchmarks/gpu_check.py [--out gpu-check.md] [--images 4096] [--steps 150]
    python benchmarks/gpu_check.py --dry-run     # the same flow on this CPU, tiny (checks the script)
    python benchmarks/gpu_check.py --skip-speed  # all but the training-speed rows

Measures, on synthetic 971-point faces (`densemarks synth --workers <cores>`):
- the seed recipe's (ResNet-50, 224 px, batch 32) training images/s in bf16 + channels_last,
  without and with torch.compile, and the share of each step spent waiting for data;
- the data path alone (loader with the machine's cores as workers), samples/s;
- the same with the SimCC and heatmap heads (all 971 points supervised by SimCC), eager;
- `torchrun` on all local GPUs (NCCL): two epochs straight, split into start-up, training steps,
  validation and the end (from rank 0's time-stamped output, kept beside --out as
  `<out>.stamps.txt`), and one epoch then `--resume` to two; the two final validation NMEs side
  by side (equal when the run is deterministic);
- `densemarks predict` throughput without and with flip TTA;
- `densemarks export` (ONNX) of the trained checkpoint and its check against torch.
Prints the table and writes it to --out. Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpu_train import measure_training

ROOT = Path(__file__).resolve().parents[1]


def command(args, torchrun: int) -> list[str]:
    """`densemarks ARGS` in this Python, under torchrun with that many processes (0: alone)."""
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)] \
        if torchrun else [sys.executable]
    return [*prefix, "-m", "densemarks", *map(str, args)]


def cli(*args, torchrun: int = 0, timeout: int = 600) -> float:
    """Run `densemarks ARGS`; seconds it took."""
    start = time.perf_counter()
    result = subprocess.run(command(args, torchrun), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"densemarks {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def stamped_cli(*args, torchrun: int, log: Path, timeout: int = 600) -> tuple[float, dict[str, float]]:
    """`cli` with every line (tqdm's carriage-return updates too) of the output time-stamped into
    LOG; returns the seconds and where they went: start (until the first progress bar), the
    training steps, validation, and the end (after the last bar)."""
    start = time.perf_counter()
    process = subprocess.Popen(command(args, torchrun), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stamps, pending = [], b""
    while chunk := process.stdout.read1(65536):
        now = time.perf_counter() - start
        *lines, pending = re.split(rb"[\r\n]", pending + chunk)
        stamps += [(now, line.decode(errors="replace").strip()) for line in lines if line.strip()]
    process.wait(timeout=timeout)
    seconds = time.perf_counter() - start
    log.write_text("".join(f"{t:8.2f}  {line}\n" for t, line in stamps))
    if process.returncode != 0:
        raise SystemExit(f"densemarks {' '.join(map(str, args))} failed; its output is in {log}")
    return seconds, phases(stamps, seconds)


def phases(stamps: list[tuple[float, str]], seconds: float) -> dict[str, float]:
    """Seconds per phase of a stamped `train`: each interval between two lines goes to the phase
    of the later line (a progress bar's update ends the time it reports on); "other" is what
    ends at the lines between bars (checkpoints, the epoch's summary)."""
    kind = [("train" if line.startswith("epoch ") and "batch" in line else
             "validate" if line.startswith("validate") else "other") for _, line in stamps]
    bars = [i for i, k in enumerate(kind) if k != "other"]
    if not bars:
        return {"start": seconds, "train": 0.0, "validate": 0.0, "other": 0.0, "end": 0.0}
    spent = {"start": stamps[bars[0]][0], "train": 0.0, "validate": 0.0, "other": 0.0,
             "end": seconds - stamps[bars[-1]][0]}
    for i in range(bars[0] + 1, bars[-1] + 1):
        spent[kind[i]] += stamps[i][0] - stamps[i - 1][0]
    return spent


def final_val_nme(run: Path) -> float:
    return float((run / "log.csv").read_text().splitlines()[-1].split(",")[2])


class Rows(list):
    """The table's rows; each append rewrites --out, so a run cut short still leaves what it measured."""

    def __init__(self, out: Path, gpus: int, cores: int, dry_run: bool):
        super().__init__()
        self.context = out, gpus, cores, dry_run

    def append(self, row: tuple[str, str]) -> None:
        super().append(row)
        out, gpus, cores, dry_run = self.context
        write_table(out, self, gpus, cores, dry_run)


def write_table(out: Path, rows: list[tuple[str, str]], gpus: int, cores: int, dry_run: bool) -> str:
    name = "CPU (dry run)" if dry_run else torch.cuda.get_device_name(0)
    table = [f"gpu-check on {gpus} x {name}, {cores} CPU cores, torch {torch.__version__}", "",
             "| measurement | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    text = "\n".join(table) + "\n"
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(text)
    partial.replace(out)
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check.md")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--skip-speed", action="store_true",
                        help="leave out the training-speed rows (to rerun the rest after a failure)")
    parser.add_argument("--dry-run", action="store_true",
                        help="run the whole flow on the CPU with 2 gloo processes, a tiny model and few faces")
    args = parser.parse_args()
    small: list[str] = []
    if args.dry_run:
        args.images, args.steps, small = 96, 2, ["model=resnet18", "augment.size=[64,64]", "threads=1"]
    elif not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing measured.")
        return
    cores = os.cpu_count() or 1
    gpus = 2 if args.dry_run else torch.cuda.device_count()
    rows = Rows(args.out, gpus, cores, args.dry_run)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        tests = 16 if args.dry_run else 1024
        seconds = cli("synth", "--out", data, "--train", args.images, "--test", tests, "--points", 971,
                      "--workers", cores)
        rows.append((f"synth --workers {cores}: {args.images + tests} faces, 971 points",
                     f"{(args.images + tests) / seconds:.0f} faces/s"))
        for compiled in () if args.skip_speed else (False, True):
            if compiled and args.dry_run:
                continue  # compiling on a CPU takes minutes; the flow is the same
            m = measure_training(data / "train", "seed", steps=args.steps, warmup=2 if args.dry_run else 20,
                                 workers=cores, compile_model=compiled, overrides=small)
            label = "compiled" if compiled else "eager"
            precision = "bf16" if m["bf16"] else "fp32"
            rows.append((f"seed recipe training, {precision} + channels_last, {label}",
                         f"{m['images_per_s']:.0f} images/s"))
            rows.append((f"  waiting for data ({cores} workers), {label}", f"{m['data_share']:.1f}% of the step"))
            if not compiled:
                rows.append((f"data path alone, {cores} loader workers", f"{m['loader_per_s']:.0f} samples/s"))
        for head in () if args.skip_speed else ("simcc", "heatmap"):
            m = measure_training(data / "train", "seed", steps=args.steps, warmup=2 if args.dry_run else 20,
                                 workers=cores, overrides=[*small, f"head={head}"])
            rows.append((f"  the same with head={head}, eager", f"{m['images_per_s']:.0f} images/s"))
        common = ["--data", data, "--recipe", "seed", "weights=none", f"workers={min(8, max(1, cores // gpus))}",
                  "scheduler=plateau", "val_fraction=0.1", *small]
        straight, halves = tmp / "straight", tmp / "halves"
        stamps = args.out.with_name(args.out.name + ".stamps.txt")
        seconds, spent = stamped_cli("train", "--out", straight, *common, "epochs=2", torchrun=gpus, log=stamps)
        steps = 2 * len(range(0, int(args.images * 0.9), 32 * gpus))
        where = "CPU processes, gloo" if args.dry_run else "GPU(s), NCCL"
        rows.append((f"torchrun, {gpus} {where}: 2 epochs ({steps} steps per rank)", f"{seconds:.0f} s"))
        rows.append(("  start (launch, imports, data, model, first step) / steps / validation / between epochs / end",
                     " / ".join(f"{spent[k]:.0f}" for k in ("start", "train", "validate", "other", "end")) + " s"))
        cli("train", "--out", halves, *common, "epochs=1", torchrun=gpus)
        cli("train", "--out", halves, "--resume", "--data", data, "epochs=2", torchrun=gpus)
        a, b = final_val_nme(straight), final_val_nme(halves)
        rows.append(("  resume after epoch 1 vs straight: final validation NME", f"{b:.4f} vs {a:.4f}"))
        checkpoint = straight / "best.pt"
        for tta in ("none", "flip"):
            seconds = cli("predict", "--checkpoint", checkpoint, "--data", data / "test", "--out", tmp / f"p_{tta}.csv",
                          "--tta", tta, "--workers", min(8, cores), "--batch-size", 64)
            rows.append((f"predict, {tests} faces, tta {tta} (whole command)", f"{tests / seconds:.0f} faces/s"))
        seconds = cli("export", "--checkpoint", checkpoint, "--out", tmp / "model.onnx")
        rows.append(("export to ONNX, checked against torch", f"{seconds:.0f} s"))
    print(write_table(args.out, rows, gpus, cores, args.dry_run))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
