"""The training loop: batch, forward, loss, backward, step, log; then validation in
original-image pixels and checkpoints that hold everything `predict` and `--resume` need.
What it runs with (data, model, optimizer, schedule, EMA, resume) is built in `setup.py`.

Randomness is reproducible: the data order of epoch e comes from a generator seeded with
(seed, e), augmentation from (seed, e, index) in the dataset, so a resumed run sees the same
batches as an uninterrupted one. Under torchrun every process runs this loop on its shard;
gradients are averaged by DistributedDataParallel and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from densemarks.core import distributed
from densemarks.core.errors import DataError
from densemarks.core.fileio import run_lock
from densemarks.data.augment import normalize_batch
from densemarks.data.csvio import write_landmarks
from densemarks.data.loader import close_workers
from densemarks.models.optim import set_trainable, step_schedule
from densemarks.recipes.config import TrainConfig, parse_duration
from densemarks.training.distill import split_points
from densemarks.training.log import Logger
from densemarks.training.prior import fit_shape_prior
from densemarks.training.setup import TrainingRun, key_metric, prepare_run


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_by_time: bool
    history: list[dict]


def train(data_dir: str | Path, config: TrainConfig, out: str | Path, *, resume: bool = False,
          exclude: set[str] | None = None, quiet: bool = False) -> TrainResult:
    """Train one model into the run folder `out` (best.pt, last.pt, val_predictions.csv, log.csv,
    curves.png, tensorboard/); resume: continue from out/last.pt; exclude: face names left out."""
    out = Path(out)
    ctx = distributed.setup()
    if not ctx.main:
        out.mkdir(parents=True, exist_ok=True)
    # one training per run folder; rank 0 makes it (and removes it again if it fails before writing)
    with run_lock(out) if ctx.main else contextlib.nullcontext():
        run = prepare_run(data_dir, config, out, ctx, resume=resume, exclude=exclude)
        try:
            return _train(run, config, out, ctx, resume, quiet)
        finally:
            close_workers(run.loader)


def _train(run: TrainingRun, config: TrainConfig, out: Path, ctx: distributed.Context, resume: bool,
           quiet: bool) -> TrainResult:
    log = Logger(out, quiet or not ctx.main, fresh=not resume) if ctx.main else None
    device, use_cuda = ctx.device, ctx.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda and config.amp and amp_dtype == torch.float16)
    time_budget, started, stopped_by_time = parse_duration(config.time_limit), time.monotonic(), False
    inputs = None
    epoch = run.start_epoch - 1
    for epoch in range(run.start_epoch, config.epochs):
        step_model = start_epoch(run, epoch, out)
        epoch_start, losses, seen = time.monotonic(), [], 0
        bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, unit="batch",
                   disable=quiet or not ctx.main)
        for batch in bar:
            images = batch["image"].to(device, non_blocking=True)
            if inputs is None or inputs.shape[0] < len(images):
                inputs = input_buffer(images.shape, device, config.channels_last)
            # Normalised straight into a reused buffer in the model's memory format: no
            # allocation per batch (costly on CPU) and no separate layout conversion.
            images = normalize_batch(images, config.augment.normalize, out=inputs[: len(images)], tone=batch["tone"])
            points, teacher = batch["points"].to(device, non_blocking=True), None
            if config.teacher:
                points, teacher = split_points(points, run.data.scheme.num_points)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_cuda and config.amp):
                loss = run.head.train_loss(step_model, images, points, teacher, config.teacher_weight)
            run.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(run.optimizer)
                torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
            scaler.step(run.optimizer)
            scaler.update()
            # The share of the time limit spent (the largest over the ranks: they all agree).
            spent = None if time_budget is None else \
                distributed.max_over_ranks(ctx, (time.monotonic() - started) / time_budget)
            if run.scheduler is not None and run.schedule_when == "batch":
                step_schedule(run.scheduler, spent)
            if run.ema is not None:
                run.ema.update_parameters(run.model)
            losses.append(loss.item())
            if distributed.any_rank(ctx, not math.isfinite(losses[-1])):
                raise diverged(run, out, f"the training loss is {losses[-1]} at epoch {epoch + 1}, step {len(losses)}")
            seen += len(images)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if spent is not None and spent > 1:
                stopped_by_time = True
                break
        train_seconds = time.monotonic() - epoch_start

        last_epoch = stopped_by_time or epoch == config.epochs - 1
        pred = metrics = None
        if len(run.val_set) and ((epoch + 1) % config.val_every == 0 or last_epoch):
            pred, metrics = run.validate()
        value = key_metric(metrics) if metrics else None
        if value is not None and not math.isfinite(value):
            raise diverged(run, out, f"the validation {'NME' if metrics.nme is not None else 'score'} is {value} "
                                     f"after epoch {epoch + 1} (the model predicts non-finite points)")
        if run.scheduler is not None and run.schedule_when == "metric" and value is not None:
            run.scheduler.step(value)
        mean_loss = distributed.mean_over_ranks(ctx, float(np.mean(losses)) if losses else math.nan)
        row = {"epoch": epoch + 1, "train_loss": mean_loss,
               "val_nme": metrics.nme if metrics else None,
               "val_score": metrics.competition_score if metrics else None,
               "lr": run.optimizer.param_groups[0]["lr"],
               "images_per_s": ctx.world * seen / max(train_seconds, 1e-9),
               "seconds": time.monotonic() - started}
        run.history.append(row)
        improved = value is not None and value < run.best_metric
        if improved:
            run.best_metric, run.best_epoch = value, epoch + 1
        if ctx.main:
            state = run.checkpoint(epoch, metrics)
            if improved:
                state.save(out / "best.pt")
                # The best model's validation (out-of-fold) predictions, for ensembles and `clean`.
                write_landmarks(out / "val_predictions.csv", run.val_set.file_names, pred)
            state.save(out / "last.pt")
            log.epoch(row)  # after the checkpoint: a logged epoch is always a resumable one
        if stopped_by_time:
            break
    if log is not None:
        log.close(run.history)
    distributed.barrier(ctx)  # nobody reads the run folder before rank 0 has written it
    if run.best_epoch < 1:
        raise DataError(out, "training ended without a validated model (no best.pt); train more epochs "
                             "or validate more often (val_every)")
    fit_shape_prior(run, out)
    return TrainResult(run.best_epoch, run.best_metric, epoch + 1 - run.start_epoch, stopped_by_time, run.history)


def diverged(run: TrainingRun, out: Path, what: str) -> DataError:
    """The error that stops a run whose numbers left the finite: what is kept, and what to try."""
    kept = (f"{out / 'best.pt'} (epoch {run.best_epoch}) and {out / 'last.pt'} hold the last finite model"
            if run.best_epoch >= 1 else "no checkpoint was written")
    return DataError(None, f"{what}: stopped; {kept}; try a lower lr=, grad_clip=1 or amp=false")


def start_epoch(run: TrainingRun, epoch: int, out: Path) -> torch.nn.Module:
    """Freeze what the mode freezes this epoch, move the sampler on, and return the model the
    step calls (compiled / DDP, rebuilt when the trainable weights change)."""
    set_trainable(run.model, run.config, epoch)
    run.model.train()
    set_trainable(run.model, run.config, epoch)  # train() resets BatchNorm modes; freeze again
    step_model = run.step_model.get()
    run.loader.sampler.set_epoch(epoch)
    if run.config.record_samples:  # OUT/samples/rank{r}.txt: `epoch<TAB>name` per sample (to check sharding)
        folder = out / "samples"
        folder.mkdir(exist_ok=True)
        with open(folder / f"rank{run.ctx.rank}.txt", "a") as f:
            f.writelines(f"{epoch}\t{run.train_set.file_names[i]}\n" for i in run.loader.sampler.indices())
    return step_model


def input_buffer(shape, device: torch.device, channels_last: bool) -> torch.Tensor:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=torch.float32, device=device, memory_format=layout)
