"""Everything a training run holds besides the loop: its data and validation split, datasets
and loader, model, head, optimizer, schedule, EMA, and, on --resume, the state it continues
from; the checkpoint it writes; and the resolved config of a run from a recipe, overrides and
an earlier run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from densemarks.analysis.metrics import Metrics, check_norm_distances, evaluate_points
from densemarks.core import distributed
from densemarks.core.distributed import Context
from densemarks.core.errors import DataError, env_int, last_line
from densemarks.core.memory import check_fits, keep_freed_memory, training_bytes
from densemarks.core.registry import choose
from densemarks.data.augment import LandmarkTransform
from densemarks.data.dataset import (LandmarkDataset, TrainingData, fold_indices, frame_training_faces,
                                     open_training_data, split_indices)
from densemarks.data.framing import Framing
from densemarks.data.loader import SAMPLERS, make_loader
from densemarks.data.store import open_store
from densemarks.inference.checkpoint import Checkpoint, ResumeState, Split, data_fingerprint
from densemarks.inference.landmarker import InferenceModel
from densemarks.inference.predict import predict_points
from densemarks.models.heads import Head, create_model, make_head
from densemarks.models.optim import build_optimizer, build_scheduler
from densemarks.recipes import config as cfg
from densemarks.recipes.config import TrainConfig
from densemarks.training import distill
from densemarks.training.ema import weight_average
from densemarks.training.parallel import StepModel
from densemarks.training.warm_start import seen_validation_faces, warm_start


def check_training_memory(model: torch.nn.Module, config: TrainConfig, report: bool) -> None:
    """Refuse, before any work, a training step this machine's memory cannot hold (a floor
    estimated from the network's shapes: core/memory.py), and warn (`report`) where it may not:
    on CPU the kernel kills such a process without a word, where CUDA's allocator raises an
    error the command reports. Each process torchrun starts on this machine needs its own."""
    if next(model.parameters()).device.type != "cpu":
        return
    h, w = config.augment.size
    check_fits(training_bytes(model, (h, w), config.batch_size),
               f"training model={config.model} head={config.head} at augment.size=[{h}, {w}] in batches of "
               f"{config.batch_size}", "lower augment.size or batch_size",
               processes=env_int("LOCAL_WORLD_SIZE", 1), report=report)


def check_input_size(model: torch.nn.Module, config: TrainConfig) -> None:
    """One forward pass on a blank input of augment.size before any work: a network that
    cannot take that size (a vision transformer made for 224x224) fails here with one line."""
    h, w = config.augment.size
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, h, w, device=device))
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise DataError(None, f"model={config.model} head={config.head} cannot take augment.size=[{h}, {w}] "
                              f"({last_line(exc)})") from None
    finally:
        model.train()


def resolve_config(recipe: str, overrides: list[str], *, resume_from: Path | None = None,
                   time_limit: str | None = None, folds: int | None = None, fold: int | None = None) -> TrainConfig:
    """The config of a run: the recipe (or, resuming, the stored config of `resume_from`), then
    the key=value overrides, then --time-limit and --folds/--fold."""
    pairs = cfg.parse_overrides(overrides)
    base = Checkpoint.load(resume_from).config if resume_from is not None else cfg.load_recipe(recipe)
    config = cfg.apply_overrides(base, pairs, "command line")
    if time_limit is not None:
        config = cfg.apply_overrides(config, {"time_limit": time_limit}, "--time-limit")
    if fold is not None and folds is None:
        raise DataError(None, "--fold needs --folds")
    if folds is not None:
        config = cfg.apply_overrides(config, {"folds": folds, "fold": fold or 0}, "--folds/--fold")
    return config


def validation_split(n: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): fold `fold` of `folds` when folds >= 2, else a shuffled
    val_fraction; both fixed by split_seed, so runs with other seeds share the split."""
    if config.folds >= 2:
        if n < config.folds:
            raise DataError(None, f"{n} faces cannot make {config.folds} folds")
        return fold_indices(n, config.folds, config.fold, config.split_seed)
    train, val = split_indices(n, config.val_fraction, config.split_seed)
    if len(train) == 0 or len(val) == 0:
        raise DataError(None, f"{n} faces with val_fraction={config.val_fraction} leave {len(train)} for training and "
                              f"{len(val)} for validation; both need at least one (more faces, or another val_fraction)")
    return train, val


@dataclass
class TrainingRun:
    """A run as the loop uses it. model: what the optimizer steps; eval_model: what validates and
    is saved as the model (the weight average with EMA, else model itself)."""

    config: TrainConfig
    ctx: Context
    data: TrainingData
    split: Split
    fingerprint: str
    framing: Framing | None
    train_set: LandmarkDataset
    val_set: LandmarkDataset
    loader: DataLoader
    head: Head
    model: torch.nn.Module
    ema: AveragedModel | None
    step_model: StepModel
    optimizer: torch.optim.Optimizer
    scheduler: object
    schedule_when: str
    start_epoch: int = 0
    best_metric: float = math.inf
    best_epoch: int = -1
    history: list = dataclasses.field(default_factory=list)

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> tuple[np.ndarray, Metrics]:
        """The validation faces' points in original pixels (every rank gets all) and metrics."""
        c, ctx = self.config, self.ctx
        distributed.sync_buffers(ctx, self.eval_model)
        loader = make_loader(self.val_set, c.batch_size, c.workers, False, c.seed, 0, ctx.device, ctx=ctx, pad=False)
        model = InferenceModel(self.eval_model, self.head, c.augment.normalize)
        pred = predict_points(model, loader, self.data.scheme, ctx.device, "flip" if c.flip_tta else "none",
                              channels_last=c.channels_last, desc="validate", ctx=ctx)
        truth = np.asarray(self.val_set.points)  # indexed once, in prepare_run
        return pred, evaluate_points(pred, truth, self.data.scheme)

    def checkpoint(self, epoch: int, metrics: Metrics | None) -> Checkpoint:
        extra = {} if self.ema is None else dict(training_model=self.model.state_dict(),
                                                 ema_updates=int(self.ema.n_averaged))
        resume = ResumeState(self.optimizer.state_dict(),
                             self.scheduler.state_dict() if self.scheduler is not None else {},
                             rng_state(), self.history, self.best_metric, self.best_epoch, **extra)
        return Checkpoint(self.config, self.data.scheme, self.eval_model.state_dict(), epoch, self.framing,
                          self.split, self.fingerprint, metrics.to_dict() if metrics else {}, resume)


def prepare_run(data_dir: str | Path, config: TrainConfig, out: Path, ctx: Context, *, resume: bool = False,
                exclude: set[str] | None = None) -> TrainingRun:
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.keep_freed_memory:
        keep_freed_memory()
    data = open_training_data(data_dir)
    table, scheme = data.table, data.scheme
    train_rows, val_rows = validation_split(len(table), config)
    if exclude:
        _check_excluded(exclude, table.file_names, data.csv_path, ctx.main)
        listed = len(train_rows)
        train_rows = train_rows[~np.isin(table.file_names[train_rows], list(exclude))]
        if not len(train_rows):
            raise DataError(None, f"--exclude lists all {listed} training faces of this split: none is left to train on")
    # validation's NME divides by each face's normalising distance: refuse a zero one now
    val_points = table.points[val_rows]
    check_norm_distances(data.csv_path, table.file_names[val_rows], val_points, scheme.norm_points, rows=val_rows)
    teachers = distill.check_teachers(config, scheme.num_points) if config.teacher else []
    start = Checkpoint.load(config.init) if config.init and not resume else None
    fingerprint = data_fingerprint(table.file_names, scheme.num_points)
    if ctx.main and not resume:
        _warn_seen([("teacher", t) for t in teachers] + [("init", start)] * (start is not None), fingerprint, val_rows)
    weights = choose(SAMPLERS, config.sampler, "sampler")(table.points[train_rows], scheme.flip_index)
    store = open_store(data.root, config.store_side, config.store_format) if config.store_side else None
    evaluation = config.augment.evaluation()
    train_points, train_flip = table.points[train_rows], scheme.flip_index
    if teachers:  # the teacher's points ride through augmentation beside the labels
        train_points = distill.PairedPoints(train_points, distill.teacher_points(config, data, train_rows, out, ctx,
                                                                                 teachers))
        train_flip = distill.paired_flip_index(scheme.flip_index)
    train_set = LandmarkDataset(data.images_dir, table.file_names[train_rows], train_points,
                                LandmarkTransform(config.augment, train_flip, train=True), config.seed, store)
    val_set = LandmarkDataset(data.images_dir, table.file_names[val_rows], val_points,
                              LandmarkTransform(evaluation, scheme.flip_index), config.seed, store)
    framing = None
    if ctx.main:  # how faces sit in the crops: what the photo pipeline reproduces (data/framing.py)
        framing = frame_training_faces(data.images_dir, table.file_names[train_rows], table.points[train_rows],
                                       evaluation, store, limit=512, seed=config.split_seed)

    head = make_head(config)
    model = create_model(config, scheme.num_points, config.weights).to(ctx.device)
    check_training_memory(model, config, ctx.main)
    check_input_size(model, config)
    if framing is not None and not resume:  # rank 0; DDP copies its weights to the others
        head.start_from(model, framing.mean_shape)
    if start is not None:
        copied, total = warm_start(model, start)
        if ctx.main:
            tqdm.write(f"init: {copied} of the model's {total} tensors from {config.init}")
    if config.channels_last:  # faster convolutions on GPUs and, with oneDNN, on CPUs too
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(train_set, config.batch_size, config.workers, True, config.seed, 0, ctx.device, weights, ctx,
                         keep_workers=True, drop_last=True)
    optimizer = build_optimizer(model, config)
    scheduler, when = build_scheduler(optimizer, config, len(loader))
    ema = weight_average(model, config.ema) if config.ema else None
    run = TrainingRun(config, ctx, data, Split(config.folds, config.fold, config.split_seed, val_rows, len(table)),
                      fingerprint, framing, train_set, val_set, loader,
                      head, model, ema, StepModel(model, ctx, config.compile), optimizer, scheduler, when)
    if resume:
        restore(run, Checkpoint.load(out / "last.pt", ctx.device))
    return run


def _check_excluded(exclude: set[str], names: np.ndarray, csv_path: Path, report: bool) -> None:
    """Names that are no face of the data: all of them is the wrong list (an error), some a warning."""
    unknown = sorted(exclude.difference(names.tolist()))
    if len(unknown) == len(exclude):
        raise DataError(None, f"--exclude: none of its {len(exclude)} names is an image of {csv_path} "
                              f"(the first: {unknown[0]!r})")
    if unknown and report:
        tqdm.write(f"warning: --exclude: {len(unknown)} of its {len(exclude)} names are no image of {csv_path} "
                   f"(the first: {unknown[0]!r})")


def _warn_seen(models: list[tuple[str, Checkpoint]], fingerprint: str, val_rows: np.ndarray) -> None:
    """A warning per model (teacher, init) that trained on some of this run's validation faces."""
    for role, state in models:
        if seen := seen_validation_faces(state, fingerprint, val_rows):
            tqdm.write(f"warning: {role} {state.path} trained on {seen} of this run's {len(val_rows)} validation "
                       "faces (another split of this data): its validation figures are optimistic")


def restore(run: TrainingRun, state: Checkpoint) -> None:
    """Continue from a run's last.pt: the same data, settings that fix the schedule, weights,
    optimizer, schedule, RNG state and history."""
    path, stored, config = state.path, state.config, run.config
    if state.resume is None:
        raise DataError(path, "checkpoint has no optimizer state to resume from")
    if state.fingerprint is not None and state.fingerprint != run.fingerprint:
        raise DataError(path, "the run was trained on other data (other face names or point count); "
                        "resume with the same --data, or start a new run")
    if state.scheme.num_points != run.data.scheme.num_points:
        raise DataError(path, f"the run has {state.scheme.num_points} points, the data {run.data.scheme.num_points}")
    if config.scheduler == "onecycle" and stored.epochs != config.epochs:
        raise DataError(path, f"a one-cycle schedule is fixed at its {stored.epochs} epochs; "
                        f"resume with epochs={stored.epochs}, or start a new run")
    r = state.resume
    if (run.ema is not None) != (r.training_model is not None):
        raise DataError(path, f"the run was started with ema={stored.ema}; resume with the same setting, "
                        "or start a new run")
    if run.ema is not None:
        run.model.load_state_dict(r.training_model)
        run.ema.n_averaged.fill_(r.ema_updates)
    run.eval_model.load_state_dict(state.model)
    run.optimizer.load_state_dict(r.optimizer)
    if run.scheduler is not None:
        run.scheduler.load_state_dict(r.scheduler)
    run.start_epoch, run.best_metric, run.best_epoch = state.epoch + 1, r.best_metric, r.best_epoch
    run.history = list(r.history)
    set_rng_state(r.rng)


def key_metric(metrics: Metrics) -> float:
    """What "best" means: NME when the scheme has a normalising pair, else the score."""
    return metrics.nme if metrics.nme is not None else metrics.competition_score


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Both setters take CPU byte tensors: a checkpoint loaded onto the GPU holds CUDA ones."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
