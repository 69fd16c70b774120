"""The `densemarks` command: one typer app, a subcommand per task.

Bad input raises DataError anywhere below; `main` prints it as one line and exits with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console

from densemarks.errors import DataError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and run dense facial landmark models (competition data layout).")
console = Console()


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to create (train/ and test/ inside).")],
    train: Annotated[int, typer.Option(min=1, help="Training faces.")] = 1000,
    test: Annotated[int, typer.Option(min=1, help="Test faces.")] = 200,
    points: Annotated[int, typer.Option(help="Points per face (K).")] = 971,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same dataset.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
):
    """Write a synthetic dataset in the competition layout."""
    from densemarks.synth import synthesize

    synthesize(out, train, test, points, seed, overwrite=overwrite)
    console.print(f"wrote {train} training and {test} test faces with {points} points to {out}")


@app.command()
def info(
    data: Annotated[Path, typer.Option(help="Dataset folder (holding train/) or a train folder.")],
    flip_index: Annotated[Optional[Path], typer.Option(help="Flip index file overriding the derived one.")] = None,
    sample: Annotated[int, typer.Option(help="Images whose size is read for the summary.")] = 2000,
):
    """Summarise a dataset: faces, points, scheme, image sizes, points outside the image."""
    from densemarks.summary import summarise, print_summary

    print_summary(console, summarise(_train_dir(data), flip_index, sample))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Dataset folder holding train/ (or a train folder).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, log.csv, curves.png, tensorboard/.")],
    recipe: Annotated[str, typer.Option(help="Recipe name (configs/NAME.yaml) or a YAML path.")] = "seed",
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt exactly where it stopped.")] = False,
    time_limit: Annotated[Optional[str], typer.Option(help="Stop after this long, e.g. 30m; keeps the best checkpoint.")] = None,
    exclude: Annotated[Optional[Path], typer.Option(help="File of image names (one a line) to leave out of training.")] = None,
):
    """Train a model. Extra KEY=VALUE arguments override the recipe (augment.flip_p=0.5)."""
    from densemarks import config as cfg
    from densemarks.train import train as run_training

    config = cfg.apply_overrides(cfg.load_recipe(recipe), cfg.parse_overrides(ctx.args), "command line")
    if time_limit is not None:
        config = cfg.apply_overrides(config, {"time_limit": time_limit}, "--time-limit")
    if resume:
        from densemarks.train import load_checkpoint
        stored = cfg.from_dict(load_checkpoint(out / "last.pt")["config"])
        config = cfg.apply_overrides(stored, cfg.parse_overrides(ctx.args), "command line")
        if time_limit is not None:
            config = cfg.apply_overrides(config, {"time_limit": time_limit}, "--time-limit")
    excluded = None
    if exclude is not None:
        try:
            excluded = {line.strip() for line in exclude.read_text().splitlines() if line.strip()}
        except OSError as exc:
            raise DataError(exclude, f"cannot read: {exc.strerror}") from None
    result = run_training(data, config, out, resume=resume, exclude=excluded)
    console.print(f"best epoch {result.best_epoch}: validation {result.best_metric:.4f}; "
                  f"checkpoints in {out}" + (" (stopped by the time limit)" if result.stopped_by_time else ""))


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint (RUN/best.pt).")],
    data: Annotated[Path, typer.Option(help="Test folder: images/ and optionally test_points.csv.")],
    out: Annotated[Path, typer.Option(help="Predictions CSV (landmarks.csv layout, image pixels).")],
    tta: Annotated[str, typer.Option(help="Test-time augmentation: none or flip.")] = "none",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    workers: Annotated[int, typer.Option(min=0)] = 1,
    draw: Annotated[Optional[Path], typer.Option(help="Also save a PNG grid of predictions here.")] = None,
    mean_shape: Annotated[Optional[Path], typer.Option(help="Instead of the model, predict the mean shape of this training folder (the baseline).")] = None,
):
    """Predict every point of every face, in original-image pixels."""
    from densemarks.csvio import write_landmarks

    if tta not in ("none", "flip"):
        raise DataError(None, f"--tta {tta!r}: choose none or flip")
    if mean_shape is not None:
        names, points = _mean_shape_predictions(checkpoint, data, mean_shape)
    else:
        from densemarks.predict import predict_folder
        names, points = predict_folder(checkpoint, data, flip_tta=tta == "flip", batch_size=batch_size, workers=workers)
    write_landmarks(out, names, points)
    if draw is not None:
        from densemarks.viz import prediction_grid
        prediction_grid(data / "images", names, points, draw)
    console.print(f"wrote {len(names)} predictions to {out}" + (f" and {draw}" if draw else ""))


def _mean_shape_predictions(checkpoint: Path, data: Path, train_dir: Path):
    from densemarks.augment import LandmarkTransform
    from densemarks.dataset import list_test_images
    from densemarks.predict import mean_shape_baseline
    from densemarks.train import _training_data, eval_config, load_checkpoint
    from densemarks import config as cfg

    state = load_checkpoint(checkpoint)
    config = cfg.from_dict(state["config"])
    training = _training_data(train_dir)
    names, _ = list_test_images(data, training.scheme.num_points)
    transform = LandmarkTransform(eval_config(config), training.scheme.flip_index)
    return names, mean_shape_baseline(np.asarray(training.table.points), training.table.file_names,
                                      training.images_dir, names, data / "images", transform)


@app.command()
def submit(
    predictions: Annotated[Path, typer.Option(help="Predictions CSV from `densemarks predict`.")],
    points: Annotated[Path, typer.Option(help="The test folder's test_points.csv.")],
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")],
):
    """Write the Kaggle submission: requested points, rounded, in test_points.csv order."""
    from densemarks.predict import write_submission

    rows = write_submission(predictions, points, out)
    console.print(f"wrote {rows} rows to {out}")


@app.command()
def evaluate(
    predictions: Annotated[list[Path], typer.Option(help="Predictions CSV; repeat to compare several.")],
    answers: Annotated[Path, typer.Option(help="The truth, landmarks.csv layout.")],
    points: Annotated[Optional[Path], typer.Option(help="test_points.csv: score only the requested points.")] = None,
    scheme: Annotated[Optional[Path], typer.Option(help="scheme.json (NME pair, regions); found beside the data when omitted.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON here.")] = None,
):
    """Competition score, MSE, NME, failure rate and per-region NME, as a table and JSON."""
    import json

    from densemarks.evaluate import evaluate_files, metrics_table

    results = evaluate_files(predictions, answers, points, scheme)
    console.print(metrics_table(results))
    text = json.dumps({str(k): v.to_dict() for k, v in results.items()}, indent=2)
    print(text)
    if json_out is not None:
        from densemarks.fileio import atomic_path
        with atomic_path(json_out) as tmp:
            tmp.write_text(text)


def _train_dir(data: Path) -> Path:
    return data / "train" if (data / "train" / "landmarks.csv").is_file() else data


def main() -> None:
    try:
        app()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
