"""What a model is trained with: optimizers, learning-rate schedules and freezing modes, each a
registry (the `optimizer`, `scheduler` and `mode` keys), and the per-stage parameter groups.

Every network (`heads.base.LandmarkNetwork`) splits its parameters into the head's and the
backbone's stages from input to output; the groups, freezing and per-stage rates use that.
"""

from __future__ import annotations

import torch
from torch import nn

from densemarks.core.errors import DataError
from densemarks.core.registry import choose


def _adamw(groups, c):
    return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay)


def _adam(groups, c):
    return torch.optim.Adam(groups, lr=c.lr, weight_decay=c.weight_decay)


def _sgd(groups, c):
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=True)


# optimizer: (parameter groups, config) -> torch optimizer
OPTIMIZERS = {"adamw": _adamw, "adam": _adam, "sgd": _sgd}


def _plateau(optimizer, c, steps_per_epoch):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=c.plateau_factor, patience=c.plateau_patience), "metric"


def _onecycle(optimizer, c, steps_per_epoch):
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=max(1, c.epochs * steps_per_epoch)), "batch"


def _cosine_restarts(optimizer, c, steps_per_epoch):
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, c.restart_epochs * steps_per_epoch)), "batch"


def _constant(optimizer, c, steps_per_epoch):
    return None, "epoch"


# scheduler: (optimizer, config, steps per epoch) -> (scheduler or None, when it steps:
# "batch", "epoch" or "metric", i.e. after validation with the key metric)
SCHEDULERS = {"plateau": _plateau, "onecycle": _onecycle, "cosine_restarts": _cosine_restarts,
              "none": _constant}

# mode: (number of backbone stages, epoch, config) -> how many stages (from the top) train
MODES = {
    "full": lambda stages, epoch, c: stages,
    "head": lambda stages, epoch, c: 0,
    "staged": lambda stages, epoch, c: min(stages, epoch // max(1, c.stage_epochs)),
}


def build_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:
    """Parameter groups: the head at lr; backbone stage i of n (0 nearest the input) at
    lr * backbone_lr_scale * stage_lr_decay ** (n - 1 - i): per-stage learning rates."""
    groups = [{"params": model.head_parameters(), "lr": config.lr, "name": "head"}]
    stages = model.stages()
    for i, stage in enumerate(stages):
        lr = config.lr * config.backbone_lr_scale * config.stage_lr_decay ** (len(stages) - 1 - i)
        groups.append({"params": stage, "lr": lr, "name": f"stage{i}"})
    return choose(OPTIMIZERS, config.optimizer, "optimizer")(groups, config)


def step_schedule(scheduler, spent: float | None = None) -> None:
    """One step of a per-batch schedule. spent: the share of the run's time limit used so far
    (None: no limit). A schedule of known length (one-cycle: `total_steps`) then keeps up with
    the clock: when the limit would end the run before its epochs do, the schedule moves ahead
    to that share of its steps, so it still ends (warm-up, peak, annealed to its lowest rate)
    when the limit stops the run, on a slow machine as on a fast one. A run that fits in its
    limit steps exactly as without one."""
    total = getattr(scheduler, "total_steps", None)
    target = scheduler.last_epoch + 1
    if total is not None:
        if spent is not None:
            target = max(target, int(spent * total))
        target = min(target, total)  # past its end, a one-cycle schedule raises
    scheduler.last_epoch = target - 1  # `last_epoch` is the step count; step() adds one
    scheduler.step()


def build_scheduler(optimizer: torch.optim.Optimizer, config, steps_per_epoch: int):
    """(scheduler, when): when is 'batch', 'epoch' or 'metric' (ReduceLROnPlateau)."""
    return choose(SCHEDULERS, config.scheduler, "scheduler")(optimizer, config, steps_per_epoch)


def set_trainable(model: nn.Module, config, epoch: int) -> None:
    """full: everything; head: only the head; staged: the head, then one more backbone stage
    (from the top) every stage_epochs epochs. In every mode the first frozen_stages stages (from
    the input) stay frozen. Frozen stages also keep their BatchNorm stats, and with
    freeze_batchnorm so does every BatchNorm of the backbone (its affine weights still learn)."""
    stages = model.stages()
    if not 0 <= config.frozen_stages <= len(stages):
        raise DataError(None, f"frozen_stages={config.frozen_stages}: this backbone has {len(stages)} stages")
    unfrozen = choose(MODES, config.mode, "mode")(len(stages), epoch, config)
    unfrozen = min(unfrozen, len(stages) - config.frozen_stages)
    frozen_ids = {id(p) for stage in stages[: len(stages) - unfrozen] for p in stage}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen_ids)
    keep_stats = frozen_ids | {id(p) for stage in stages for p in stage} if config.freeze_batchnorm else frozen_ids
    for module in model.modules():  # BatchNorm of a fully frozen module: keep running stats
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and \
                all(id(p) in keep_stats for p in params):
            module.eval()
