"""Checkpoints: the one module that writes and reads them.

A checkpoint is a dict of tensors and plain values, read with `weights_only=True` (no pickled
objects, no code), holding everything `predict`, `export`, photos and `--resume` need: the
validated model's weights, the resolved config, the landmark scheme, the training crops'
framing, the validation split and a fingerprint of the training data, the epoch and its
metrics, the shape prior fitted after training (best.pt); and, for resuming, the optimizer,
schedule, RNG state and (with EMA) the raw training weights. `Checkpoint` is its typed view;
nothing else reads its keys.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.data.framing import Framing
from densemarks.data.scheme import LandmarkScheme
from densemarks.inference.shape_prior import ShapePrior
from densemarks.models.heads import Head, create_model, make_head
from densemarks.recipes import config as cfg
from densemarks.recipes.config import TrainConfig

FORMAT = 1


@dataclass(frozen=True)
class Split:
    """The validation split a run was trained with: fold `fold` of `folds` (folds >= 2) or a
    val_fraction split, fixed by split_seed; val_rows are rows of landmarks.csv."""

    folds: int
    fold: int
    split_seed: int
    val_rows: np.ndarray
    faces: int

    def to_dict(self) -> dict:
        return {"folds": self.folds, "fold": self.fold, "split_seed": self.split_seed,
                "val_rows": np.asarray(self.val_rows).tolist(), "faces": self.faces}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        """ValueError when the rows could not be a split of `faces` (a damaged checkpoint)."""
        split = cls(int(d["folds"]), int(d["fold"]), int(d["split_seed"]),
                    np.asarray(d["val_rows"], dtype=np.int64), int(d["faces"]))
        rows = split.val_rows
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= split.faces)) or \
                len(np.unique(rows)) != len(rows):
            raise ValueError(f"split: validation rows are not distinct rows of its {split.faces} faces")
        return split


@dataclass(frozen=True)
class ResumeState:
    """What `--resume` needs beyond the model: optimizer and schedule state, RNG state, the
    history, the best result so far; with EMA the raw training weights and the update count."""

    optimizer: dict
    scheduler: dict
    rng: dict
    history: list[dict]
    best_metric: float
    best_epoch: int
    training_model: dict | None = None
    ema_updates: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """model: the state dict of the model that validates and predicts (the weight average with
    ema > 0); epoch: 0-based index of the last epoch trained; metrics: its validation metrics
    (`Metrics.to_dict()`, empty when it was not validated); fingerprint: `data_fingerprint` of
    the training data."""

    config: TrainConfig
    scheme: LandmarkScheme
    model: dict
    epoch: int
    framing: Framing | None = None
    split: Split | None = None
    fingerprint: str | None = None
    metrics: dict = field(default_factory=dict)
    resume: ResumeState | None = None
    path: Path | None = None
    shape_prior: ShapePrior | None = None  # fitted at the end of training (inference/shape_prior.py)

    # ---- writing and reading

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file, then a rename)."""
        state = {"format": FORMAT, "model": self.model, "epoch": self.epoch,
                 "config": cfg.to_dict(self.config), "scheme": self.scheme.to_dict(),
                 "framing": None if self.framing is None else self.framing.to_dict(),
                 "split": None if self.split is None else self.split.to_dict(),
                 "fingerprint": self.fingerprint, "metrics": self.metrics,
                 "shape_prior": None if self.shape_prior is None else self.shape_prior.to_dict()}
        if self.resume is not None:
            r = self.resume
            state.update(optimizer=r.optimizer, scheduler=r.scheduler, rng=r.rng, history=r.history,
                         best_metric=r.best_metric, best_epoch=r.best_epoch)
            if r.training_model is not None:
                state.update(training_model=r.training_model, ema_updates=r.ema_updates)
        path = Path(path)
        for stale in path.parent.glob(f".{path.stem}.tmp.*{path.suffix}"):  # left by a killed save
            stale.unlink(missing_ok=True)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "Checkpoint":
        """Read a checkpoint; anything that is not one is a one-line DataError."""
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "checkpoint not found")
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError:  # weights_only refused what it found: never loaded
            raise DataError(path, "not a densemarks checkpoint (not a torch file, or one holding Python objects "
                                  "besides tensors, which are never loaded)") from None
        except Exception as exc:  # not a torch file, truncated
            raise DataError(path, f"not a densemarks checkpoint ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:120]})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT or \
                not all(k in state for k in ("model", "config", "scheme", "epoch")):
            raise DataError(path, "not a densemarks checkpoint (missing format, model, config or scheme)")
        if not (isinstance(state["model"], dict) and isinstance(state["scheme"], dict) and
                all(isinstance(state.get(key) or {}, dict)
                    for key in ("framing", "split", "metrics", "shape_prior"))):
            raise DataError(path, "damaged densemarks checkpoint (its model, scheme, framing, split, metrics or "
                                  "shape prior is not a mapping)")
        try:
            config = cfg.from_dict(state["config"], "config")
        except DataError as exc:
            raise DataError(path, f"damaged densemarks checkpoint ({exc.message})") from None
        try:
            resume = None
            if "optimizer" in state:
                resume = ResumeState(state["optimizer"], state.get("scheduler") or {}, state["rng"],
                                     state.get("history", []), float(state["best_metric"]),
                                     int(state["best_epoch"]), state.get("training_model"),
                                     int(state.get("ema_updates", 0)))
            scheme = LandmarkScheme.from_dict(state["scheme"])
            prior = state.get("shape_prior")
            return cls(config=config, scheme=scheme,
                       model=state["model"], epoch=int(state["epoch"]),
                       framing=Framing.from_dict(state["framing"]) if state.get("framing") else None,
                       split=Split.from_dict(state["split"]) if state.get("split") else None,
                       fingerprint=state.get("fingerprint"), metrics=state.get("metrics") or {},
                       resume=resume, path=path,
                       shape_prior=ShapePrior.from_dict(prior, scheme.num_points) if prior else None)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(path, f"damaged densemarks checkpoint ({type(exc).__name__}: {exc})") from None

    # ---- what inference builds from it

    @property
    def history(self) -> list[dict]:
        return self.resume.history if self.resume is not None else []

    def head(self) -> Head:
        return make_head(self.config)

    def build_model(self, device: torch.device | str = "cpu") -> nn.Module:
        """The network with the stored weights, on `device`, in eval mode."""
        model = create_model(self.config, self.scheme.num_points, weights="none")
        try:
            model.load_state_dict(self.model)
        except RuntimeError as exc:
            raise DataError(self.path, f"weights do not fit a {self.config.model} {self.config.head} model "
                            f"({str(exc).splitlines()[0][:120]})") from None
        bad = [name for name, value in self.model.items()
               if torch.is_floating_point(value) and not torch.isfinite(value).all()]
        if bad:
            raise DataError(self.path, f"the model holds NaN or infinite weights ({bad[0]}, and {len(bad) - 1} more "
                                       "tensors): a training that diverged; use an earlier checkpoint")
        return model.to(device).eval()

    def require_framing(self) -> Framing:
        if self.framing is None:
            raise DataError(self.path, "checkpoint has no framing (how faces sit in its training crops; "
                            "checkpoints from before the photo pipeline lack it): train it again")
        return self.framing


def data_fingerprint(file_names: np.ndarray, num_points: int) -> str:
    """A short hash of a training set's face names (in order) and point count: a resumed run
    or a merged k-fold must be the same data, not merely the same number of faces."""
    digest = hashlib.sha1(f"{num_points}\n".encode())
    digest.update("\n".join(map(str, file_names)).encode())
    return digest.hexdigest()[:16]
