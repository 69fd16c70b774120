"""Training: one loop that reads top to bottom (batch, forward, loss, backward, step, log),
validation in original-image pixels, checkpoints that hold everything `predict` and `--resume`
need (weights, optimizer, schedule, epoch, RNG state, resolved config, scheme).

Randomness is reproducible: the data order of epoch e comes from a generator seeded with
(seed, e), augmentation from (seed, e, index) in the dataset, so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from densemarks import config as cfg
from densemarks import distributed
from densemarks.distributed import Context, EpochSampler
from densemarks.augment import AugmentConfig, LandmarkTransform, normalize_batch, to_original
from densemarks.config import TrainConfig
from densemarks.csvio import write_landmarks
from densemarks.dataset import (LandmarkDataset, TrainingData, fold_indices, open_training_data,
                                split_indices)
from densemarks.errors import DataError
from densemarks.framing import frame_training_faces
from densemarks.fileio import atomic_path
from densemarks.heads import make_head
from densemarks.metrics import Metrics, evaluate_points
from densemarks.models import create_model
from densemarks.scheme import LandmarkScheme

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_by_time: bool
    history: list[dict]


def eval_config(config: TrainConfig) -> AugmentConfig:
    """The training geometry without any randomness: what validation and prediction use."""
    a = config.augment
    return AugmentConfig(size=a.size, crop=a.crop, border_threshold=a.border_threshold,
                         normalize=a.normalize)


def pick_device() -> torch.device:
    return distributed.setup().device


def validation_split(n: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): fold `fold` of `folds` when folds >= 2, else a shuffled
    val_fraction; both fixed by split_seed, so runs with other seeds share the split."""
    if config.folds >= 2:
        return fold_indices(n, config.folds, config.fold, config.split_seed)
    return split_indices(n, config.val_fraction, config.split_seed)


def make_loader(dataset: LandmarkDataset, batch_size: int, workers: int, shuffle: bool,
                seed: int, epoch: int, device: torch.device, weights: np.ndarray | None = None,
                ctx: Context | None = None, pad: bool = True) -> DataLoader:
    """Batches of this rank's share of the dataset in a reproducible order (`EpochSampler`:
    shuffled, or drawn in proportion to per-item weights, fixed by (seed, epoch)); call
    `loader.sampler.set_epoch` to move on, which keeps persistent workers. pad=False: no
    repeated items (prediction). workers = 0 loads in this process, which is fastest when the
    model already keeps every core busy (a 2-core CPU: a loader process or thread beside it
    only oversubscribes the cores, measured in BENCHMARKS.md)."""
    rank, world = (ctx.rank, ctx.world) if ctx is not None else (0, 1)
    sampler = EpochSampler(len(dataset), seed, shuffle, rank, world, weights, pad)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      worker_init_fn=_worker_init if workers else None, drop_last=False,
                      persistent_workers=workers > 0)


def _worker_init(_: int) -> None:
    # Workers decode and warp one sample at a time; the training process owns the cores.
    # OpenCV threading off with 0: setNumThreads(1) in a forked worker deadlocks when the
    # parent had already used OpenCV's thread pool (e.g. after `densemarks synth`).
    torch.set_num_threads(1)
    cv2.setNumThreads(0)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups: the head at lr; backbone stage i of n (0 nearest the input) at
    lr * backbone_lr_scale * stage_lr_decay ** (n - 1 - i): per-stage learning rates."""
    groups = [{"params": model.head_parameters(), "lr": config.lr, "name": "head"}]
    stages = model.stages()
    for i, stage in enumerate(stages):
        lr = config.lr * config.backbone_lr_scale * config.stage_lr_decay ** (len(stages) - 1 - i)
        groups.append({"params": stage, "lr": lr, "name": f"stage{i}"})
    kind = config.optimizer
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=True)
    raise DataError(None, f"unknown optimizer {kind!r}; choose adamw, adam or sgd")


def build_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """(scheduler, when): when is 'batch', 'epoch' or 'metric' (ReduceLROnPlateau)."""
    kind = config.scheduler
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience), "metric"
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=max(1, config.epochs * steps_per_epoch)), "batch"
    if kind == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, config.restart_epochs * steps_per_epoch)), "batch"
    if kind == "none":
        return None, "epoch"
    raise DataError(None, f"unknown scheduler {kind!r}; choose plateau, onecycle, cosine_restarts or none")


def set_trainable(model: torch.nn.Module, config: TrainConfig, epoch: int) -> None:
    """full: everything; head: only the head; staged: the head, then one more backbone stage
    (from the top) every stage_epochs epochs. In every mode the first frozen_stages stages (from
    the input) stay frozen. Frozen stages also keep their BatchNorm stats."""
    stages = model.stages()
    if not 0 <= config.frozen_stages <= len(stages):
        raise DataError(None, f"frozen_stages={config.frozen_stages}: this backbone has {len(stages)} stages")
    if config.mode == "full":
        unfrozen = len(stages)
    elif config.mode == "head":
        unfrozen = 0
    elif config.mode == "staged":
        unfrozen = min(len(stages), epoch // max(1, config.stage_epochs))
    else:
        raise DataError(None, f"unknown mode {config.mode!r}; choose full, head or staged")
    unfrozen = min(unfrozen, len(stages) - config.frozen_stages)
    frozen_ids = {id(p) for stage in stages[: len(stages) - unfrozen] for p in stage}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen_ids)
    for module in model.modules():  # BatchNorm of a fully frozen module: keep running stats
        params = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and params and \
                all(id(p) in frozen_ids for p in params):
            module.eval()


def predict_points(model: torch.nn.Module, loader: DataLoader, config: TrainConfig,
                   scheme: LandmarkScheme, device: torch.device, flip_tta: bool = False,
                   desc: str = "predict", ctx: Context | None = None) -> np.ndarray:
    """Points (N, K, 2) in original-image pixels for every item of the dataset, in order. When
    the dataset's transform has views (`tta`), each face's views are mapped back to original
    pixels and averaged. Under torchrun each rank predicts its shard (a loader from
    make_loader(..., ctx=ctx, pad=False)) and every rank gets the whole result."""
    head = make_head(config)
    flip_index = torch.as_tensor(scheme.flip_index, device=device)
    model.eval()
    out = []
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, leave=False, unit="batch", disable=ctx is not None and not ctx.main):
            images, matrices = batch["image"], batch["matrix"].numpy()
            views = images.shape[1] if images.ndim == 5 else 1  # (B, V, 3, H, W) with views
            images = normalize_batch(images.flatten(0, images.ndim - 4).to(device, non_blocking=True),
                                     config.augment.normalize)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            output = model(images)
            if flip_tta:
                points = head.decode_flip(output, model(images.flip(-1)), flip_index)
            else:
                points = head.decode(output)
            points = to_original(points.cpu().numpy(), matrices.reshape(-1, 3, 3),
                                 np.repeat(batch["flipped"].numpy(), views), scheme.flip_index)
            out.append(points.reshape(-1, views, *points.shape[1:]).mean(axis=1))
    local = np.concatenate(out).astype(np.float32) if out else \
        np.zeros((0, scheme.num_points, 2), np.float32)
    if ctx is None or not ctx.distributed:
        return local
    return distributed.gather_in_order(ctx, local, len(loader.dataset))


def build_model(config: TrainConfig, num_points: int, weights: str) -> torch.nn.Module:
    return create_model(config.model, num_points, weights, head=config.head,
                        decoder_channels=config.decoder_channels)


def save_checkpoint(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding arbitrary objects
        raise DataError(path, f"not a densemarks checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise DataError(path, "not a densemarks checkpoint (missing format, model or config)")
    return state


def model_from_checkpoint(state: dict, device: torch.device) -> tuple[torch.nn.Module, TrainConfig, LandmarkScheme]:
    config = cfg.from_dict(state["config"])
    scheme = LandmarkScheme.from_dict(state["scheme"])
    model = build_model(config, scheme.num_points, weights="none")
    model.load_state_dict(state["model"])
    return model.to(device), config, scheme


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(data_dir: str | Path, config: TrainConfig, out: str | Path, *, resume: bool = False,
          exclude: set[str] | None = None, quiet: bool = False) -> TrainResult:
    """Train one model. Under torchrun every process calls this: each trains on its shard,
    gradients are averaged by DistributedDataParallel, validation predictions are gathered, and
    only rank 0 writes checkpoints, logs and pictures."""
    out = Path(out)
    ctx = distributed.setup()
    device = ctx.device
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    quiet = quiet or not ctx.main
    data = _training_data(data_dir)
    train_rows, val_rows = validation_split(len(data.table), config)
    if exclude:
        train_rows = np.asarray([r for r in train_rows if data.table.file_names[r] not in exclude])
    scheme = data.scheme
    sample_weights = None
    if config.sampler == "pose_balanced":
        from densemarks.shapes import estimate_pose, pose_balanced_weights
        pose = estimate_pose(np.asarray(data.table.points[train_rows]), scheme.flip_index)
        sample_weights = pose_balanced_weights(pose.yaw, pose.pitch)
    store = None
    if config.store_side:
        from densemarks.store import open_store
        store = open_store(data.root, config.store_side, config.store_format)
    train_set = LandmarkDataset(data.images_dir, data.table.file_names[train_rows],
                                data.table.points[train_rows],
                                LandmarkTransform(config.augment, scheme.flip_index, train=True), config.seed, store)
    val_set = LandmarkDataset(data.images_dir, data.table.file_names[val_rows], data.table.points[val_rows],
                              LandmarkTransform(eval_config(config), scheme.flip_index), config.seed, store)
    val_truth = np.asarray(data.table.points[val_rows], dtype=np.float64)
    framing = None
    if ctx.main:  # how faces sit in the crops: what the photo pipeline reproduces (framing.py)
        framing = frame_training_faces(data.images_dir, data.table.file_names[train_rows],
                                       data.table.points[train_rows], eval_config(config), store,
                                       limit=512, seed=config.split_seed).to_dict()

    model = build_model(config, scheme.num_points, config.weights).to(device)
    use_cuda = device.type == "cuda"
    if config.channels_last:  # faster convolutions on GPUs and, with oneDNN, on CPUs too
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(train_set, config.batch_size, config.workers, True, config.seed, 0, device,
                         sample_weights, ctx)
    steps_per_epoch = len(loader)
    optimizer = build_optimizer(model, config)
    scheduler, schedule_when = build_scheduler(optimizer, config, steps_per_epoch)
    amp_dtype = torch.bfloat16 if use_cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda and config.amp and amp_dtype == torch.float16)
    head = make_head(config)
    ema = weight_average(model, config.ema) if config.ema else None
    # what validation predicts with and checkpoints save as "model": the average when there is one
    eval_model = ema.module if ema is not None else model

    start_epoch, best_metric, best_epoch, history = 0, math.inf, -1, []
    if resume:
        state = load_checkpoint(out / "last.pt", device)
        stored_epochs = state["config"].get("epochs")
        if config.scheduler == "onecycle" and stored_epochs != config.epochs:
            raise DataError(out / "last.pt", f"a one-cycle schedule is fixed at its {stored_epochs} epochs; "
                            f"resume with epochs={stored_epochs}, or start a new run")
        if (ema is not None) != ("training_model" in state):
            raise DataError(out / "last.pt", f"the run was started with ema={state['config'].get('ema', 0.0)}; "
                            "resume with the same setting, or start a new run")
        if ema is not None:
            model.load_state_dict(state["training_model"])
            ema.n_averaged.fill_(state["ema_updates"])
        eval_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_metric, best_epoch = state["epoch"] + 1, state["best_metric"], state["best_epoch"]
        history = state["history"]
        _set_rng_state(state["rng"])

    log = _Logger(out, quiet, fresh=not resume) if ctx.main else None
    wrapped = _Wrapped(model, ctx, config.compile)
    input_buffer = None
    time_budget = cfg.parse_duration(config.time_limit)
    started = time.monotonic()
    stopped_by_time = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs):
        set_trainable(model, config, epoch)
        model.train()
        set_trainable(model, config, epoch)  # train() resets BatchNorm modes; freeze again
        train_model = wrapped.get()  # DDP is rebuilt when the set of trainable weights changes
        loader.sampler.set_epoch(epoch)
        _record_samples(out, config, ctx, epoch, loader.sampler.indices(), train_set)
        epoch_start, losses, seen = time.monotonic(), [], 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, unit="batch", disable=quiet)
        for batch in bar:
            images = batch["image"].to(device, non_blocking=True)
            if input_buffer is None or input_buffer.shape[0] < len(images):
                input_buffer = _input_buffer(images.shape, device, config.channels_last)
            # Normalised straight into a reused buffer in the model's memory format: no
            # allocation per batch (costly on CPU) and no separate layout conversion.
            images = normalize_batch(images, config.augment.normalize, out=input_buffer[: len(images)],
                                     tone=batch["tone"])
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_cuda and config.amp):
                loss = head.train_loss(train_model, images, batch["points"].to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and schedule_when == "batch":
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.item())
            seen += len(images)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if time_budget is not None and distributed.any_rank(ctx, time.monotonic() - started > time_budget):
                stopped_by_time = True
                break
        train_seconds = time.monotonic() - epoch_start
        last_epoch = stopped_by_time or epoch == config.epochs - 1
        metrics = pred = None
        if len(val_set) and ((epoch + 1) % config.val_every == 0 or last_epoch):
            distributed.sync_buffers(ctx, eval_model)
            val_loader = make_loader(val_set, config.batch_size, config.workers, False, config.seed, 0, device,
                                     ctx=ctx, pad=False)
            pred = predict_points(eval_model, val_loader, config, scheme, device, config.flip_tta, desc="validate",
                                  ctx=ctx)
            metrics = evaluate_points(pred, val_truth, scheme)
        value = _key_metric(metrics) if metrics else None
        if scheduler is not None and schedule_when == "metric" and value is not None:
            scheduler.step(value)
        mean_loss = distributed.mean_over_ranks(ctx, float(np.mean(losses)) if losses else math.nan)
        row = {"epoch": epoch + 1, "train_loss": mean_loss,
               "val_nme": metrics.nme if metrics else None,
               "val_score": metrics.competition_score if metrics else None,
               "lr": optimizer.param_groups[0]["lr"],
               "images_per_s": ctx.world * seen / max(train_seconds, 1e-9),
               "seconds": time.monotonic() - started}
        history.append(row)
        improved = value is not None and value < best_metric
        if improved:
            best_metric, best_epoch = value, epoch + 1
        if ctx.main:
            extra = {} if ema is None else dict(training_model=model.state_dict(),
                                                ema_updates=int(ema.n_averaged))
            state = dict(model=eval_model.state_dict(), **extra, optimizer=optimizer.state_dict(),
                         scheduler=scheduler.state_dict() if scheduler is not None else {},
                         epoch=epoch, config=cfg.to_dict(config), scheme=scheme.to_dict(), framing=framing,
                         history=history, rng=_rng_state(),
                         split={"folds": config.folds, "fold": config.fold, "split_seed": config.split_seed,
                                "val_rows": val_rows.tolist(), "faces": len(data.table)},
                         metrics=metrics.to_dict() if metrics else {},
                         best_metric=best_metric, best_epoch=best_epoch)
            if improved:
                save_checkpoint(out / "best.pt", **state)
                # The best model's validation (out-of-fold) predictions, for ensembles and `clean`.
                write_landmarks(out / "val_predictions.csv", val_set.file_names, pred)
            save_checkpoint(out / "last.pt", **state)
            log.epoch(row)  # after the checkpoint: a logged epoch is always a resumable one
        if stopped_by_time:
            break
    if log is not None:
        log.close(history)
    distributed.barrier(ctx)  # nobody reads the run folder before rank 0 has written it
    return TrainResult(best_epoch, best_metric, epoch + 1 - start_epoch, stopped_by_time, history)


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of the model's weights and buffers (BatchNorm statistics),
    updated after every optimizer step. Its decay ramps up as min(decay, (1 + n) / (10 + n))
    after n updates, so early averages do not hold on to the starting weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not (torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])):
            torch._foreach_copy_(averaged, current)  # counters such as num_batches_tracked
            return
        n = float(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


class _Wrapped:
    """The model as the training step calls it: compiled (config.compile) and, under torchrun,
    in DistributedDataParallel, which fixes its trainable weights when built; so it is rebuilt
    when staged unfreezing changes them."""

    def __init__(self, model: torch.nn.Module, ctx: Context, compile_model: bool):
        self.model, self.ctx, self.compile = model, ctx, compile_model
        self.key, self.current = None, None

    def get(self) -> torch.nn.Module:
        key = tuple(p.requires_grad for p in self.model.parameters())
        if key != self.key:
            self.key, self.current = key, self.model
            if self.ctx.distributed:
                from torch.nn.parallel import DistributedDataParallel
                ids = [self.ctx.local_rank] if self.ctx.device.type == "cuda" else None
                self.current = DistributedDataParallel(self.model, device_ids=ids)
            if self.compile:
                self.current = torch.compile(self.current)
        return self.current


def _record_samples(out: Path, config: TrainConfig, ctx: Context, epoch: int, indices: np.ndarray,
                    dataset: LandmarkDataset) -> None:
    """config.record_samples: append the file names this rank trains on in this epoch to
    OUT/samples/rank{r}.txt as `epoch<TAB>name` lines (to check sharding)."""
    if not config.record_samples:
        return
    folder = out / "samples"
    folder.mkdir(exist_ok=True)
    with open(folder / f"rank{ctx.rank}.txt", "a") as f:
        f.writelines(f"{epoch}\t{dataset.file_names[i]}\n" for i in indices)


def _input_buffer(shape, device: torch.device, channels_last: bool) -> torch.Tensor:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=torch.float32, device=device, memory_format=layout)


def _training_data(data_dir: str | Path) -> TrainingData:
    root = Path(data_dir)
    if (root / "train" / "landmarks.csv").is_file():
        root = root / "train"
    return open_training_data(root)


def _key_metric(metrics: Metrics) -> float:
    """What "best" means: NME when the scheme has a normalising pair, else the score."""
    return metrics.nme if metrics.nme is not None else metrics.competition_score


class _Logger:
    """log.csv, TensorBoard events and a PNG of the curves, all in the run folder."""

    FIELDS = ["epoch", "train_loss", "val_nme", "val_score", "lr", "images_per_s", "seconds"]

    def __init__(self, out: Path, quiet: bool, fresh: bool):
        self.out, self.quiet = out, quiet
        self.csv_path = out / "log.csv"
        if fresh or not self.csv_path.is_file():
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.FIELDS)
        try:
            from torch.utils.tensorboard import SummaryWriter
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
