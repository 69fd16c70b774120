"""The `densemarks` command: one typer app, a subcommand per task.

Bad input raises DataError anywhere below; `main` prints it as one line and exits with 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

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
