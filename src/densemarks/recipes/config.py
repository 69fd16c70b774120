"""Training configuration: typed dataclasses, one YAML per named recipe beside this file, and
`key=value` overrides from the command line (dotted for nested keys: `augment.flip_p=0.5`).

Unknown keys fail with a suggestion; values are converted to the field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from densemarks.core.errors import MAX_SEED, MAX_THREADS, MAX_WORKERS, DataError
from densemarks.core.registry import names, suggestion
from densemarks.recipes.catalog import RENAMED, recipe_dir, recipe_names
from densemarks.data.augment import CROP_MODES, AugmentConfig
from densemarks.data.loader import SAMPLERS
from densemarks.data.store import FORMATS as STORE_FORMATS
from densemarks.models.heads import HEADS
from densemarks.models.heads.heatmap import DECODERS, HEATMAP_LOSSES
from densemarks.models.heads.regression import POOLS as REGRESSION_POOLS
from densemarks.models.heads.simcc import AXIS_LAYERS as SIMCC_AXES, DECODERS as SIMCC_DECODERS, axes_problem
from densemarks.models.losses import LOSSES
from densemarks.models.optim import MODES, OPTIMIZERS, SCHEDULERS


@dataclass
class TrainConfig:
    """Everything a run needs besides the data. Stored resolved in every checkpoint."""

    model: str = "resnet50"  # torchvision name, or any timm model name
    head: str = "regression"  # a name in models.heads.HEADS (regression: 2K numbers; heatmap: K maps)
    heatmap_sigma: float = 1.5  # heatmap: target Gaussian's sigma, in map pixels
    heatmap_loss: str = "both"  # heatmap: terms of the loss (heads.heatmap.HEATMAP_LOSSES)
    coord_weight: float = 0.1  # heatmap_loss=both: weight of the coordinate L1 (input pixels)
    heatmap_decode: str = "argmax"  # heatmap: map decoding (heads.heatmap.DECODERS)
    decoder_channels: int = 64  # heatmap: width of the U-Net decoder; simcc: of the feature fusion
    decoder_fine_channels: int = 0  # heatmap: width of the decoder's finest (stride-4) level; 0: decoder_channels
    # heatmap, simcc: stride-32 features after a torchvision backbone's closing 1x1 conv (true;
    # MobileNetV2: 1280 channels) or before it (false: 320)
    feature_head_conv: bool = True
    heatmap_stride: int = 4  # heatmap: input pixels per map pixel: 4, or 2 (a decoder level on the stride-2 features)
    heatmap_points_per_step: int = 64  # heatmap: points whose maps each training step computes (0 = all)
    simcc_split: float = 2.0  # simcc: bins per input pixel
    simcc_sigma: float = 2.0  # simcc: the labels' Gaussian sigma, in input pixels
    simcc_hidden: int = 128  # simcc: width of the MLP from a point's grid to its bins (0: none; 64: faster, less accurate)
    simcc_decode: str = "argmax"  # simcc: bin decoding (heads.simcc.DECODERS)
    simcc_coord_weight: float = 0.0  # simcc: weight of an L1 on the expected coordinates (input pixels)
    simcc_axes: str = "separate"  # simcc: x bins from the first half of the hidden features, y from the second; "shared": from all
    regression_pool: str = "avg"  # regression: avg (the backbone's pooled features) | flatten (the whole stride-32 map)
    regression_channels: int = 64  # regression_pool=flatten: channels the map is reduced to before the Linear layer
    weights: str = "default"  # none | default | a torchvision weights name (IMAGENET1K_V1, ...)
    # training faces the best model predicts after training to fit its shape prior (their error
    # variance; inference/shape_prior.py), which predictions then pass through; 0: no prior
    shape_prior: int = 1000
    init: str = ""  # a checkpoint to start from, layer by layer where names and shapes match (training.warm_start)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # for training
    loss: str = "l1"  # regression: a name in models.losses.LOSSES
    optimizer: str = "adamw"  # models.optim.OPTIMIZERS
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    scheduler: str = "plateau"  # models.optim.SCHEDULERS
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    restart_epochs: int = 5  # cosine_restarts: epochs in the first cycle
    epochs: int = 40
    batch_size: int = 32
    workers: int = 0  # loader processes; 0 loads in the training process (best on 2 cores)
    store_side: int = 0  # read training images from `densemarks preprocess --side N`; 0: the files
    store_format: str = "raw"  # raw (memory map) | jpeg (re-encoded), as preprocessed
    val_fraction: float = 0.15
    split_seed: int = 0  # fixes the validation split (and folds) apart from the model's seed
    folds: int = 0  # k-fold: 0 or 1 uses val_fraction; K >= 2 validates on fold `fold` of K
    fold: int = 0
    seed: int = 0  # weights initialisation, data order and augmentation
    sampler: str = "uniform"  # data.loader.SAMPLERS (pose_balanced: faces drawn inversely to pose frequency)
    mode: str = "full"  # models.optim.MODES: full, head (backbone frozen), staged (unfreeze in turn)
    stage_epochs: int = 1  # staged: epochs between unfreezing one more stage
    frozen_stages: int = 0  # backbone stages from the input kept frozen (BatchNorm stats too) in any mode
    freeze_batchnorm: bool = False  # the backbone's BatchNorm keeps its pretrained running statistics
    backbone_lr_scale: float = 1.0  # learning rate of the backbone relative to the head
    stage_lr_decay: float = 1.0  # each backbone stage below the top: lr times this once more
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    amp: bool = True  # mixed precision (bf16 where supported) on CUDA; ignored on CPU
    channels_last: bool = True  # memory format of model and batches (faster on CPU and GPU)
    compile: bool = False  # torch.compile the model for training (worth it on GPUs, long runs)
    record_samples: bool = False  # write RUN/samples/rank{r}.txt: faces each rank trained on
    time_limit: str = ""  # e.g. "30m", "2h", "90s": stop when spent (per invocation), keep best checkpoint;
    # a one-cycle schedule that would not fit follows the clock and ends at the limit (models/optim.step_schedule)
    threads: int = 0  # torch CPU threads for the training process; 0 leaves the default
    keep_freed_memory: bool = True  # glibc keeps freed blocks for the next step: faster on CPU, more memory (core/memory.py)
    flip_tta: bool = False  # validate with flip test-time augmentation
    val_every: int = 1  # epochs between validations
    teacher: str = ""  # distillation (training.distill): teacher checkpoint(s), comma-separated; "": off
    teacher_weight: float = 0.5  # distillation: weight of the loss against the teacher's points (labels: 1 - it)
    teacher_tta: str = "flip"  # distillation: the teacher's test-time augmentation (inference.tta.TTA_MODES)
    ema: float = 0.0  # decay of a moving average of the weights, validated and saved as the model; 0: off


def _type_of(cls, name: str):
    return typing.get_type_hints(cls)[name]


def _parse(text: str):
    """A command-line string read as YAML (`true`, `1e-3`, `[166, 128]`, `null`)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        except ValueError:
            pass
    return value


def _typed(value, kind, key: str, shown: str):
    """value checked against (and converted to) the field's type, from a recipe or a command
    line alike; a bool is not a number, a float must be finite, an int must be whole."""
    args = typing.get_args(kind)
    if type(None) in args:  # Optional[...]: null or the inner type
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(kind) is tuple:
        wanted = len(typing.get_args(kind))
        ok = isinstance(value, (list, tuple)) and len(value) == wanted and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not ok:
            raise DataError(None, f"{key}={shown}: expected a list of {wanted} integers, e.g. [224, 224]")
        return tuple(value)
    ok = {
        bool: isinstance(value, bool),
        int: number and math.isfinite(value) and float(value).is_integer(),
        float: number and math.isfinite(value),
        str: isinstance(value, (str, int, float)) and not isinstance(value, bool),
    }.get(kind, False)
    if not ok:
        name = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}
        raise DataError(None, f"{key}={shown}: expected {name.get(kind, kind)}")
    return str(value) if kind is str else kind(value)


# Allowed values of numeric keys: (test, what the message says is allowed).
_POSITIVE = (lambda v: v > 0, "> 0")
_AT_LEAST_0 = (lambda v: v >= 0, ">= 0")
_AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
_FRACTION = (lambda v: 0 <= v <= 1, "in [0, 1]")
_SEED = (lambda v: 0 <= v <= MAX_SEED, f"from 0 to {MAX_SEED}")
_CHANNELS = (lambda v: 1 <= v <= 8192, "from 1 to 8192")
_CHANNELS_OR_0 = (lambda v: 0 <= v <= 8192, "from 0 to 8192")
RANGES: dict[str, tuple] = {
    "seed": _SEED, "split_seed": _SEED, "lr": (lambda v: 0 < v <= 10, "> 0 and <= 10"), "weight_decay": _AT_LEAST_0, "momentum": _FRACTION, "plateau_factor": (lambda v: 0 < v < 1, "in (0, 1)"),
    "plateau_patience": _AT_LEAST_0, "restart_epochs": _AT_LEAST_1, "epochs": _AT_LEAST_1,
    "batch_size": (lambda v: 1 <= v <= 65536, "from 1 to 65536"),
    "workers": (lambda v: 0 <= v <= MAX_WORKERS, f"from 0 to {MAX_WORKERS} processes"),
    "threads": (lambda v: 0 <= v <= MAX_THREADS, f"from 0 to {MAX_THREADS}"), "store_side": (lambda v: v == 0 or v >= 16, "0 or >= 16"),
    "val_fraction": (lambda v: 0 < v < 1, "in (0, 1): training needs validation faces"),
    "folds": (lambda v: v == 0 or v >= 2, "0 (off) or >= 2"), "fold": _AT_LEAST_0, "stage_epochs": _AT_LEAST_1,
    "frozen_stages": _AT_LEAST_0, "backbone_lr_scale": _AT_LEAST_0, "stage_lr_decay": _POSITIVE,
    "grad_clip": _AT_LEAST_0, "val_every": _AT_LEAST_1, "ema": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "teacher_weight": _FRACTION,
    "heatmap_sigma": (lambda v: 0 < v <= 64, "> 0 and <= 64 map pixels"), "coord_weight": _AT_LEAST_0,
    "decoder_channels": _CHANNELS, "decoder_fine_channels": _CHANNELS_OR_0,
    "heatmap_points_per_step": _AT_LEAST_0, "heatmap_stride": (lambda v: v in (2, 4), "2 or 4"), "simcc_split": (lambda v: 0.25 <= v <= 8, "from 0.25 to 8"),
    "simcc_sigma": (lambda v: 0 < v <= 64, "> 0 and <= 64 pixels"), "simcc_hidden": _CHANNELS_OR_0,
    "simcc_coord_weight": _AT_LEAST_0, "regression_channels": _CHANNELS, "shape_prior": _AT_LEAST_0,
    "augment.size": (lambda v: all(16 <= s <= 4096 for s in v), "two sizes from 16 to 4096 pixels"),
    "augment.border_threshold": (lambda v: v is None or 0 <= v <= 255, "null or 0 to 255"),
    "augment.flip_p": _FRACTION, "augment.rotate_deg": (lambda v: 0 <= v <= 180, "in [0, 180]"),
    "augment.scale_jitter": (lambda v: 0 <= v < 1, "in [0, 1)"), "augment.shift_jitter": _FRACTION,
    "augment.brightness": _FRACTION, "augment.contrast": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "augment.erase_p": _FRACTION, "augment.erase_area": _FRACTION,
}


def check_ranges(config: "TrainConfig", source: str) -> None:
    """Every numeric key within its RANGES; folds and fold consistent. One line per problem."""
    for key, (test, allowed) in RANGES.items():
        head, _, name = key.rpartition(".")
        value = getattr(config.augment if head else config, name)
        if not test(value):
            shown = list(value) if isinstance(value, tuple) else value
            raise DataError(None, f"{source}: {key}={shown}: allowed {allowed}")
    if config.folds >= 2 and config.fold >= config.folds:
        raise DataError(None, f"{source}: fold={config.fold}: allowed 0 to folds - 1 = {config.folds - 1}")
    if config.folds < 2 and config.fold != 0:  # else silently ignored: one val_fraction split
        raise DataError(None, f"{source}: fold={config.fold} needs folds=K (K >= 2); without it the "
                              "validation split is val_fraction of the faces")
    if config.head == "simcc" and (problem := axes_problem(config.simcc_axes, config.simcc_hidden)):
        raise DataError(None, f"{source}: {problem}")
    if config.time_limit:
        seconds = parse_duration(config.time_limit)
        if not seconds or seconds <= 0 or not math.isfinite(seconds):
            raise DataError(None, f"{source}: time_limit={config.time_limit!r}: allowed a duration > 0, e.g. 30m")


# Keys whose value names an entry of a registry: the registry is the list of choices.
CHOICES: dict[str, Collection[str]] = {
    "head": HEADS, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "mode": MODES,
    "sampler": SAMPLERS, "store_format": STORE_FORMATS, "heatmap_loss": HEATMAP_LOSSES,
    "heatmap_decode": DECODERS, "simcc_decode": SIMCC_DECODERS, "simcc_axes": SIMCC_AXES, "augment.crop": CROP_MODES,
    "regression_pool": REGRESSION_POOLS,
}


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


# Names other tools use for our keys, so a suggestion can point from one to the other.
ALIASES = {"learning_rate": "lr", "lr_scheduler": "scheduler", "batch": "batch_size",
           "arch": "model", "backbone": "model", "pretrained": "weights", "max_epochs": "epochs",
           "num_workers": "workers", "wd": "weight_decay", "criterion": "loss"}


def _suggest(key: str, options, kind: str = "keys") -> str:
    options = list(options)
    names = options + [alias for alias, target in ALIASES.items() if target in options]
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"; did you mean {ALIASES.get(close[0], close[0])!r}?"
    return f"; known {kind}: {', '.join(sorted(options))}"


def apply_overrides(config: TrainConfig, pairs: dict[str, object], source: str) -> TrainConfig:
    """Set dotted keys on a copy of config. Values may be strings (converted) or typed."""
    config = dataclasses.replace(config, augment=dataclasses.replace(config.augment))
    for key, raw in pairs.items():
        target, name = config, key
        if "." in key:
            head, name = key.split(".", 1)
            if head != "augment":
                raise DataError(None, f"{source}: unknown key {key!r}" + _suggest(head, _fields(TrainConfig)))
            target = config.augment
        fields = _fields(type(target))
        if name not in fields:
            options = fields if target is config.augment else _fields(TrainConfig)
            raise DataError(None, f"{source}: unknown key {key!r}" + _suggest(name, options))
        kind = _type_of(type(target), name)
        if kind is AugmentConfig:
            raise DataError(None, f"{source}: set augment.* keys one by one")
        shown = repr(raw) if isinstance(raw, str) else raw
        value = _typed(_parse(raw) if isinstance(raw, str) and kind is not str else raw, kind, f"{source}: {key}", shown)
        if key in CHOICES and value not in CHOICES[key]:
            raise DataError(None, f"{source}: {key}={value!r} is not one of {names(CHOICES[key])}"
                            f"{suggestion(value, CHOICES[key])}")
        setattr(target, name, value)
    try:
        config.augment.__post_init__()
    except ValueError as exc:
        raise DataError(None, f"{source}: {exc}") from None
    check_ranges(config, source)
    return config


def load_recipe(name_or_path: str) -> TrainConfig:
    """A recipe by name (recipes/NAME.yaml, shipped in the package) or a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = recipe_dir() / f"{RENAMED.get(name_or_path, name_or_path)}.yaml"
        if not path.is_file():
            raise DataError(None, f"unknown recipe {name_or_path!r}" + _suggest(name_or_path, recipe_names(), "recipes"))
    data = _read_recipe_yaml(path)
    if not isinstance(data, dict):
        raise DataError(path, "a recipe is a mapping of keys to values")
    return apply_overrides(TrainConfig(), _flatten(data), str(path))


def _flatten(data: dict) -> dict:
    """A recipe's or checkpoint's nested mapping as dotted keys: {"augment": {"size": ..}} ->
    {"augment.size": ..}, the form `apply_overrides` takes."""
    flat = {}
    for key, value in data.items():
        if key == "augment" and isinstance(value, dict):
            flat.update({f"augment.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


RECIPE_MAX_BYTES = 64 * 1024  # a recipe is a few dozen keys
RECIPE_MAX_NODES = 5000


def _read_recipe_yaml(path: Path):
    """A recipe file's YAML, refused before it is expanded when it is over RECIPE_MAX_BYTES,
    uses aliases (`*name`: a few hundred bytes of nested aliases expand to gigabytes) or holds
    more than RECIPE_MAX_NODES values."""
    try:
        if path.stat().st_size > RECIPE_MAX_BYTES:
            raise DataError(path, f"recipe is {path.stat().st_size} bytes; at most {RECIPE_MAX_BYTES} "
                                  "(RECIPE_MAX_BYTES in recipes/config.py)")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(path, f"cannot read recipe: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"recipe is not UTF-8 text (byte {exc.start})") from None
    try:
        nodes = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise DataError(path, f"recipe uses a YAML alias (*{event.anchor}), line "
                                      f"{event.start_mark.line + 1}: write the values out")
            nodes += 1
            if nodes > RECIPE_MAX_NODES:
                raise DataError(path, f"recipe holds more than {RECIPE_MAX_NODES} YAML values")
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DataError(path, f"cannot read recipe: {' '.join(str(exc).split())}") from None


def parse_overrides(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        if "=" not in item:
            raise DataError(None, f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value.strip()
    return pairs


def to_dict(config: TrainConfig) -> dict:
    data = dataclasses.asdict(config)
    data["augment"]["size"] = list(config.augment.size)
    return data


def from_dict(data: dict, source: str = "config") -> TrainConfig:
    """A stored config (a checkpoint's), checked like a recipe: types, choices and ranges, so a
    damaged or edited one is a one-line DataError, not a model built with -3 channels. Keys
    this version no longer has are left out; keys it gained since take their defaults."""
    if not isinstance(data, dict) or not isinstance(data.get("augment", {}), dict):
        raise DataError(None, f"{source}: not a mapping of keys to values")
    data = dict(data)
    data.setdefault("simcc_axes", "shared")  # checkpoints from before the option: their last layer read all features
    known = set(_fields(TrainConfig)) - {"augment"} | {f"augment.{k}" for k in _fields(AugmentConfig)}
    return apply_overrides(TrainConfig(), {k: v for k, v in _flatten(data).items() if k in known}, source)


def parse_duration(text: str) -> float | None:
    """'30m' -> 1800.0 seconds; '' -> None."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise DataError(None, f"time limit {text!r}: use a number with s, m or h, e.g. 30m") from None
