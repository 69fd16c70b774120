"""Benchmark: every command a competition user runs, at growing size, per face and in peak memory
(issue 17). Two parts:

    python benchmarks/scale.py tables --source DATA [--rows 8000 64000 393930] [--dir DIR]
    python benchmarks/scale.py images --source DATA [--faces 1000 8000 64000] [--dir DIR]

`tables`: point tables only (no model, no images needed but for the clean gallery): the
first and cached CSV load, `submit`, `evaluate`, `ensemble` of three prediction files, `clean`
given out-of-fold predictions, `merge-folds` of five folds. The truth is DATA's training shapes
(a `densemarks synth` folder) repeated with jitter up to the row count; predictions are the
truth plus noise, one of them in shuffled row order.

`images`: the first N training faces of DATA (and a quarter as many test faces), hard-linked:
`info`, `analyze`, `preprocess` (raw and jpeg: the store's size per face), one epoch of the
training data path with 0, 1 and 2 loader processes (no model), the training set-up and a fixed
number of steps of `fast-cpu`, its validation pass, `predict` with and without flip TTA,
`submit`, `evaluate`, `ensemble`, `clean`.

Every command runs in its own process; its wall time (with the process's start: import and the
numba cache, a constant) and its peak resident memory (ru_maxrss, which counts mapped file pages
as well as allocated memory) are printed as markdown, with the per-face time's growth from the
middle size to the largest (target: at most 1.25x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from densemarks.data.csvio import (RequestedPoints, read_landmarks, read_test_points, write_landmarks,
                                   write_test_points)
from densemarks.data.dataset import fold_indices
from densemarks.data.store import default_side, store_bytes, store_dir
from densemarks.inference.checkpoint import Checkpoint, Split, data_fingerprint

CLI = str(Path(sys.executable).with_name("densemarks"))
FOLDS = 5
SIDE = default_side((224, 224))  # `preprocess`'s default for the seed recipe


# Runs the command as a child of a fresh, small Python process: a child forked straight from
# this one would inherit this process's memory high-water mark (ru_maxrss survives fork + exec).
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, stdout) of one process; stops the benchmark if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as measured:
        status = subprocess.run([sys.executable, "-c", LAUNCHER, measured.name, *command], stdout=out, stderr=err).returncode
        out.seek(0)
        err.seek(0)
        if status:
            sys.exit(f"failed: {' '.join(command)}\n{err.read().decode()[-2000:]}")
        seconds, rss_kb = measured.read().split()
        return float(seconds), int(rss_kb) / 2 ** 20, out.read().decode()


def python(code: str) -> tuple[float, float, str]:
    return run([sys.executable, "-c", code])


def link_images(source: Path, target: Path, names) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.link(source / name, target / name)


# ---------------------------------------------------------------------------------- tables

def make_tables(source: Path, folder: Path, rows: int, checkpoint: Path) -> None:
    """answers.csv (= data/train/landmarks.csv), test_points.csv, p0-p2.csv, five fold runs."""
    if (folder / "done").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(rows)
    shapes = np.asarray(read_landmarks(source / "train" / "landmarks.csv").points)
    names = np.asarray([f"{i:032x}.jpg" for i in range(rows)])
    truth = np.empty((rows, shapes.shape[1], 2), np.float32)
    for start in range(0, rows, 8192):  # the real shapes, repeated, jittered
        n = min(8192, rows - start)
        picked = shapes[rng.integers(0, len(shapes), n)]
        truth[start:start + n] = np.rint(picked + rng.normal(0, 1, (n, 1, 2)) * 3)
    train = folder / "data" / "train"
    train.mkdir(parents=True)
    write_landmarks(train / "landmarks.csv", names, truth, decimals=None)
    shutil.copy(source / "train" / "scheme.json", train / "scheme.json")
    pictures = sorted((source / "train" / "images").iterdir())
    (train / "images").mkdir()
    for i, name in enumerate(names):  # only the gallery of `clean` opens them
        os.link(pictures[i % len(pictures)], train / "images" / name)
    indices = np.stack([rng.choice(shapes.shape[1], 30, replace=False) for _ in range(rows)])
    write_test_points(folder / "test_points.csv", RequestedPoints(names, indices))
    for m in range(3):
        noisy = truth + rng.normal(0, 2 + m, truth.shape).astype(np.float32)
        order = rng.permutation(rows) if m == 2 else np.arange(rows)
        write_landmarks(folder / f"p{m}.csv", names[order], noisy[order])
        if m == 0:
            state = Checkpoint.load(checkpoint)
            fingerprint = data_fingerprint(names, shapes.shape[1])
            for fold in range(FOLDS):
                val = fold_indices(rows, FOLDS, fold, 0)[1]
                run_dir = folder / f"fold{fold}"
                run_dir.mkdir()
                write_landmarks(run_dir / "val_predictions.csv", names[val], noisy[val])
                replace(state, split=Split(FOLDS, fold, 0, val, rows), fingerprint=fingerprint).save(run_dir / "last.pt")
        del noisy
    (folder / "done").touch()


def table_commands(folder: Path) -> dict[str, list[str] | str]:
    answers = folder / "data" / "train" / "landmarks.csv"
    load = ("import json, time; from densemarks.data.csvio import read_landmarks, cache_files; "
            f"p = {str(answers)!r}; " + "{}" + "t = time.perf_counter(); n = len(read_landmarks(p)); "
            "print(json.dumps({{'{}': [time.perf_counter() - t, n]}}))")
    return {
        "CSV first load": load.format("[f.unlink(missing_ok=True) for f in cache_files(__import__('pathlib').Path(p))]; ",
                                      "CSV first load"),
        "CSV cached load": load.format("", "CSV cached load"),
        "submit": [CLI, "submit", "--predictions", str(folder / "p0.csv"), "--points", str(folder / "test_points.csv"),
                   "--out", str(folder / "submission.csv")],
        "evaluate": [CLI, "evaluate", "--predictions", str(folder / "p2.csv"), "--answers", str(answers),
                     "--points", str(folder / "test_points.csv"), "--json", str(folder / "metrics.json")],
        "ensemble (3 files)": [CLI, "ensemble", *(str(folder / f"p{m}.csv") for m in range(3)),
                               "--out", str(folder / "ensemble.csv")],
        "clean (with out-of-fold)": [CLI, "clean", "--data", str(folder / "data"), "--oof", str(folder / "p0.csv"),
                                     "--out", str(folder / "clean")],
        f"merge-folds ({FOLDS})": [CLI, "merge-folds", *(str(folder / f"fold{f}") for f in range(FOLDS)),
                                   "--out", str(folder / "oof.csv")],
    }


# ---------------------------------------------------------------------------------- images

def make_faces(source: Path, folder: Path, faces: int) -> None:
    """The first `faces` training and faces // 4 test faces of `source`, images hard-linked."""
    if (folder / "done").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    table = read_landmarks(source / "train" / "landmarks.csv")
    train = folder / "train"
    link_images(source / "train" / "images", train / "images", table.file_names[:faces])
    write_landmarks(train / "landmarks.csv", table.file_names[:faces], table.points[:faces], decimals=None)
    shutil.copy(source / "train" / "scheme.json", train / "scheme.json")
    answers = read_landmarks(source / "test" / "answers.csv", cache=False)
    tests = faces // 4
    test = folder / "test"
    link_images(source / "test" / "images", test / "images", answers.file_names[:tests])
    write_landmarks(test / "answers.csv", answers.file_names[:tests], answers.points[:tests], decimals=None)
    requested = read_test_points(source / "test" / "test_points.csv", answers.num_points)
    write_test_points(test / "test_points.csv", RequestedPoints(requested.file_names[:tests], requested.indices[:tests]))
    rng = np.random.default_rng(0)  # out-of-fold stand-in: the truth plus noise (clean's cost only)
    write_landmarks(folder / "oof.csv", table.file_names[:faces],
                    table.points[:faces] + rng.normal(0, 3, table.points[:faces].shape))
    (folder / "done").touch()


DATA_PATH = """
import json, time, torch
from densemarks.data.augment import LandmarkTransform
from densemarks.data.dataset import LandmarkDataset, open_training_data
from densemarks.data.loader import make_loader
from densemarks.recipes.config import load_recipe
torch.set_num_threads(1)
config = load_recipe("seed")
data = open_training_data({train!r})
dataset = LandmarkDataset(data.images_dir, data.table.file_names, data.table.points,
                          LandmarkTransform(config.augment, data.scheme.flip_index, train=True), 0, None)
loader = make_loader(dataset, 32, {workers}, True, 0, 0, torch.device("cpu"))
start, seen = time.perf_counter(), 0
for batch in loader:
    seen += len(batch["image"])
print(json.dumps({{"data path, {workers} loader processes": [time.perf_counter() - start, seen]}}))
"""

TRAIN = """
import json, time, torch
from densemarks.core import distributed
from densemarks.data.augment import normalize_batch
from densemarks.recipes.config import apply_overrides, load_recipe
from densemarks.training.setup import prepare_run
config = apply_overrides(load_recipe("fast-cpu"), {{"weights": "none"}}, "benchmark")
start = time.perf_counter()
run = prepare_run({data!r}, config, __import__("pathlib").Path({out!r}), distributed.setup())
setup = time.perf_counter() - start
start = time.perf_counter()
for step, batch in zip(range({steps}), run.loader):
    images = normalize_batch(batch["image"], config.augment.normalize, tone=batch["tone"])
    loss = run.head.train_loss(run.model, images.contiguous(memory_format=torch.channels_last), batch["points"])
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()
steps = time.perf_counter() - start
start = time.perf_counter()
run.validate()
print(json.dumps({{"train: set-up (data, split, model)": [setup, len(run.data.table)],
                  "train: {steps} steps (fixed, per image)": [steps, {steps} * config.batch_size],
                  "train: validation pass": [time.perf_counter() - start, len(run.val_set)]}}))
"""


def image_commands(folder: Path, checkpoint: Path) -> dict[str, list[str] | str]:
    test = folder / "test"
    commands = {
        "info": [CLI, "info", "--data", str(folder)],
        "analyze": [CLI, "analyze", "--data", str(folder), "--out", str(folder / "report")],
        f"preprocess raw ({SIDE} px)": [CLI, "preprocess", "--data", str(folder), "--format", "raw"],
        f"preprocess jpeg ({SIDE} px)": [CLI, "preprocess", "--data", str(folder), "--format", "jpeg"],
    }
    for workers in (0, 1, 2):
        commands[f"data path, {workers} loader processes"] = DATA_PATH.format(train=str(folder / "train"), workers=workers)
    commands["train"] = TRAIN.format(data=str(folder), out=str(folder / "run"), steps=20)
    for tta in ("none", "flip"):
        commands[f"predict, TTA {tta}"] = [CLI, "predict", "--checkpoint", str(checkpoint), "--data", str(test),
                                           "--out", str(folder / f"pred_{tta}.csv"), "--tta", tta]
    commands["submit"] = [CLI, "submit", "--predictions", str(folder / "pred_none.csv"),
                          "--points", str(test / "test_points.csv"), "--out", str(folder / "submission.csv")]
    commands["evaluate"] = [CLI, "evaluate", "--predictions", str(folder / "pred_none.csv"), "--answers",
                            str(test / "answers.csv"), "--points", str(test / "test_points.csv")]
    commands["ensemble (3 files)"] = [CLI, "ensemble", str(folder / "pred_none.csv"), str(folder / "pred_flip.csv"),
                                      str(folder / "pred_none.csv"), "--out", str(folder / "ensemble.csv")]
    commands["clean (with out-of-fold)"] = [CLI, "clean", "--data", str(folder), "--oof", str(folder / "oof.csv"),
                                            "--out", str(folder / "clean")]
    return commands


# ---------------------------------------------------------------------------------- report

def measure(commands: dict[str, list[str] | str], faces: int, per: dict[str, int]) -> dict[str, dict]:
    """Each command's whole process (seconds, peak RSS); a Python snippet prints its own timing
    of the work without the process start, as {row: [seconds, faces]}, and that is used."""
    results = {}
    for name, command in commands.items():
        seconds, rss, out = python(command) if isinstance(command, str) else run(command)
        rows = json.loads(out.strip().splitlines()[-1]) if isinstance(command, str) else \
            {name: [seconds, per.get(name, faces)]}
        for row, (took, count) in rows.items():
            results[row] = {"seconds": took, "rss_gb": rss, "faces": count}
            print(f"  {row}: {took:.2f} s for {count:,}, {rss:.2f} GB (process {seconds:.1f} s)", flush=True)
    return results


def report(sizes: list[int], results: dict[int, dict[str, dict]], unit: str) -> str:
    names = list(results[sizes[0]])
    head = " | ".join(f"{n:,} {unit}: ms/face, peak GB" for n in sizes)
    lines = [f"| command | {head} | per face, {sizes[-1]:,} / {sizes[-2]:,} |",
             "|---|" + "---|" * (len(sizes) + 1)]
    for name in names:
        cells = []
        for n in sizes:
            r = results[n][name]
            cells.append(f"{1000 * r['seconds'] / r['faces']:.3f}, {r['rss_gb']:.2f}")
        a, b = results[sizes[-2]][name], results[sizes[-1]][name]
        ratio = (b["seconds"] / b["faces"]) / (a["seconds"] / a["faces"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["tables", "images"])
    parser.add_argument("--source", type=Path, required=True, help="A `densemarks synth` folder (971 points).")
    parser.add_argument("--sizes", type=int, nargs="+", help="Rows (tables) or training faces (images).")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "densemarks-scale")
    parser.add_argument("--json", type=Path, help="Also write every measurement here.")
    args = parser.parse_args()
    sizes = args.sizes or ([8_000, 64_000, 393_930] if args.part == "tables" else [1_000, 8_000, 64_000])
    args.dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.dir / "fast" / "best.pt"
    if not checkpoint.is_file():  # a small model to predict with (and to copy for the fold runs)
        small = args.dir / "faces_small"
        make_faces(args.source, small, 200)
        run([CLI, "train", "--data", str(small), "--out", str(checkpoint.parent), "--recipe", "fast-cpu",
             "epochs=1", "weights=none"])
    seconds, _, _ = run([CLI, "--help"])
    print(f"process start (densemarks --help): {seconds:.2f} s")
    results = {}
    for size in sizes:
        print(f"{args.part} {size:,}", flush=True)
        if args.part == "tables":
            folder = args.dir / f"tables_{size}"
            make_tables(args.source, folder, size, checkpoint)
            results[size] = measure(table_commands(folder), size, {})
        else:
            folder = args.dir / f"faces_{size}"
            make_faces(args.source, folder, size)
            per = {f"predict, TTA {t}": size // 4 for t in ("none", "flip")}
            per.update({name: size // 4 for name in ("submit", "evaluate", "ensemble (3 files)")})
            results[size] = measure(image_commands(folder, checkpoint), size, per)
            for fmt in ("raw", "jpeg"):
                results[size][f"preprocess {fmt} ({SIDE} px)"]["store_bytes"] = \
                    store_bytes(store_dir(folder / "train", SIDE, fmt))
    print(report(sizes, results, "rows" if args.part == "tables" else "faces"))
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
