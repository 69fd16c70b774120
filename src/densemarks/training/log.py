"""What a run shows while and after it trains: log.csv, TensorBoard events, a line per epoch on
the terminal, and curves.png."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from tqdm import tqdm

from densemarks.analysis.viz import pyplot, save_figure


class Logger:
    """log.csv, TensorBoard events and a PNG of the curves, all in the run folder."""

    FIELDS = ["epoch", "train_loss", "val_nme", "val_score", "lr", "images_per_s", "seconds"]

    def __init__(self, out: Path, quiet: bool, fresh: bool):
        self.out, self.quiet = out, quiet
        self.csv_path = out / "log.csv"
        if fresh or not self.csv_path.is_file():
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.FIELDS)
        if fresh:  # a run replaced with --overwrite: its events would mix with the new run's curves
            shutil.rmtree(out / "tensorboard", ignore_errors=True)
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: needs the tensorboard package
            self.board = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.board = None

    def epoch(self, row: dict) -> None:
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in self.FIELDS])
        if self.board is not None:
            for key in ("train_loss", "val_nme", "val_score", "lr", "images_per_s"):
                if row[key] is not None:
                    self.board.add_scalar(key, row[key], row["epoch"])
        if not self.quiet:
            nme = f"{row['val_nme']:.3f}%" if row["val_nme"] is not None else "-"
            score = f"{row['val_score']:.2f}" if row["val_score"] is not None else "-"
            tqdm.write(f"epoch {row['epoch']}: loss {row['train_loss']:.4f}  val NME {nme}  "
                       f"val score {score}  {row['images_per_s']:.1f} img/s")

    def close(self, history: list[dict]) -> None:
        if self.board is not None:
            self.board.close()
        if history:
            plot_curves(history, self.out / "curves.png")


def plot_curves(history: list[dict], path: Path) -> None:
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0].set(title="training loss", xlabel="epoch", yscale="log")
    val = [(r["epoch"], r["val_nme"] if r["val_nme"] is not None else r["val_score"])
           for r in history if (r["val_nme"] if r["val_nme"] is not None else r["val_score"]) is not None]
    if val:
        axes[1].plot(*zip(*val), marker="o", color="tab:red")
    axes[1].set(title="validation NME (%)" if history[-1]["val_nme"] is not None else "validation score",
                xlabel="epoch")
    save_figure(fig, path)
