"""Benchmark: training speed and peak memory with the freed memory kept for the next step
(`keep_freed_memory=true`, the default; core/memory.py) and given back to the system (`false`,
glibc's own behaviour), side by side; with --predict, `densemarks predict` the same way
(`--keep-freed-memory`, the default, and `--no-keep-freed-memory`).

    python benchmarks/freed_memory.py --data ../shared/data/300w-afw-helen [--recipes fast-cpu,accurate-cpu]
        [--epochs 3] [--repeats 2] [KEY=VALUE ...]
    python benchmarks/freed_memory.py --data ../shared/data/300w-afw-helen/train --predict RUN/best.pt [--tta flip]

Each run is `densemarks train` in its own process (the setting is for the whole process),
the two settings alternating, `--repeats` rounds per recipe. Reported: the median images/s of
epochs 2 on (log.csv), the process's peak RSS, and each round's speed ratio; the validation
NME of both must be the same (the setting changes where memory comes from, not the numbers).
predict: the whole command's wall time (start-up included) and peak RSS, and whether the two
prediction files are byte-identical.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

from scale import CLI, run as run_process


def command(args: list[str]) -> dict:
    """`densemarks ARGS` in a fresh process (scale.py's launcher): wall seconds and peak RSS in bytes."""
    seconds, rss_gib, _ = run_process([CLI, *args])
    return {"seconds": seconds, "peak_rss": rss_gib * 2 ** 30}


def run(data: str, recipe: str, keep: bool, epochs: int, overrides: list[str], out: Path) -> dict:
    done = command(["train", "--data", data, "--out", str(out), "--recipe", recipe, f"epochs={epochs}",
                    f"keep_freed_memory={str(keep).lower()}", *overrides])
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"images_per_s": statistics.median(float(r["images_per_s"]) for r in rows[1:]),
            "nme": float(rows[-1]["val_nme"]), **done}


def predict(args, tmp: Path) -> None:
    rounds, same = [], True
    for r in range(args.repeats):
        outs = {keep: tmp / f"predict-{r}-{keep}.csv" for keep in (False, True)}
        rounds.append({keep: command(["predict", "--checkpoint", args.predict, "--data", args.data, "--out", str(out),
                                      "--tta", args.tta, "--" + ("" if keep else "no-") + "keep-freed-memory",
                                      *(["--threads", args.threads] if args.threads else [])])
                       for keep, out in outs.items()})
        same = same and outs[False].read_bytes() == outs[True].read_bytes()
    ratios = [x[False]["seconds"] / x[True]["seconds"] for x in rounds]
    print(f"predict --tta {args.tta}, {args.repeats} alternating rounds, whole command")
    print("| kept: seconds | given back: seconds | speed ratio (rounds) | peak RSS kept / given back (GB) | same predictions |")
    print("|---|---|---|---|---|")
    print(f"| {statistics.median(x[True]['seconds'] for x in rounds):.1f} | "
          f"{statistics.median(x[False]['seconds'] for x in rounds):.1f} | "
          f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
          f"{statistics.median(x[True]['peak_rss'] for x in rounds) / 1e9:.2f} / "
          f"{statistics.median(x[False]['peak_rss'] for x in rounds) / 1e9:.2f} | {'yes' if same else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--recipes", default="fast-cpu,accurate-cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--predict", help="a checkpoint: time `predict` on --data (a test folder) instead of training")
    parser.add_argument("--tta", default="none", help="predict: test-time augmentation")
    parser.add_argument("--threads", default="", help="predict: torch threads")
    parser.add_argument("overrides", nargs="*", help="recipe keys for every run, e.g. threads=2")
    args = parser.parse_args()
    if args.predict:
        with tempfile.TemporaryDirectory() as tmp:
            predict(args, Path(tmp))
        return
    print(f"epochs {args.epochs}, {args.repeats} alternating rounds" + "".join(f"; {o}" for o in args.overrides))
    print("| recipe | kept: images/s | given back: images/s | ratio (per round) | peak RSS kept / given back (GB) | "
          "last NME kept / given back |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes.split(","):
            rounds = []
            for r in range(args.repeats):
                rounds.append({keep: run(args.data, recipe, keep, args.epochs, args.overrides,
                                         Path(tmp) / f"{recipe}-{r}-{keep}") for keep in (False, True)})
            ratios = [x[True]["images_per_s"] / x[False]["images_per_s"] for x in rounds]

            def med(keep: bool, key: str) -> float:
                return statistics.median(x[keep][key] for x in rounds)

            print(f"| {recipe} | {med(True, 'images_per_s'):.1f} | {med(False, 'images_per_s'):.1f} | "
                  f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{med(True, 'peak_rss') / 1e9:.2f} / {med(False, 'peak_rss') / 1e9:.2f} | "
                  f"{med(True, 'nme'):.3f} / {med(False, 'nme'):.3f} |")


if __name__ == "__main__":
    main()
