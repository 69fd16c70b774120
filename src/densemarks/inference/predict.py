"""Prediction on test folders (and validation faces): every face's points in original-image
pixels, through the inference graph and the one test-time augmentation path; the mean-shape
baseline in the same geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from densemarks.core import distributed
from densemarks.core.distributed import Context
from densemarks.core.errors import env_int
from densemarks.core.geometry import to_original
from densemarks.core.memory import check_fits, inference_bytes
from densemarks.data.augment import AugmentConfig, LandmarkTransform, sample_matrix
from densemarks.data.dataset import LandmarkDataset, frame_training_faces, list_test_images, open_training_data
from densemarks.data.images import load_image
from densemarks.data.loader import make_loader
from densemarks.data.scheme import LandmarkScheme
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.landmarker import InferenceModel, predict_views
from densemarks.inference.tta import Tta, parse_tta, view_matrices


def view_transform(config: AugmentConfig, flip_index: np.ndarray, tta: Tta) -> LandmarkTransform:
    """The evaluation transform that gives each face tta's framings (one: the plain crop)."""
    views = view_matrices(tta.views, config.size) if len(tta.views) > 1 else None
    return LandmarkTransform(config, flip_index, views=views)


def predict_points(model: InferenceModel, loader: DataLoader, scheme: LandmarkScheme, device: torch.device,
                   tta: Tta | str = "none", *, channels_last: bool = False, desc: str = "predict",
                   ctx: Context | None = None) -> np.ndarray:
    """Points (N, K, 2) float32 in original-image pixels for every item of the loader's dataset,
    in order. The dataset's transform gives each face its framings (`view_transform`); the
    mirrors are the same crops flipped. Under torchrun each rank predicts its shard (a loader from
    make_loader(..., ctx=ctx, pad=False)) and every rank gets the whole result."""
    tta = parse_tta(tta)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.eval()
    out = []

    def run(crops: torch.Tensor) -> np.ndarray:
        return model(crops).float().cpu().numpy()

    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, leave=False, unit="batch", disable=ctx is not None and not ctx.main):
            images = batch["image"]  # (B, 3, H, W), or (B, V, 3, H, W) with views
            images = images if images.ndim == 5 else images[:, None]
            b, v = images.shape[:2]
            # view-major crops (V * B, H, W, 3): the permute of a channels_last batch, no copy
            planar = images.transpose(0, 1).flatten(0, 1).to(device, non_blocking=True)
            crops = planar.contiguous(memory_format=layout).permute(0, 2, 3, 1)
            to_input = batch["matrix"].numpy().reshape(b, v, 3, 3).transpose(1, 0, 2, 3)
            mirrored = np.repeat(batch["flipped"].numpy()[None], v, axis=0)
            out.append(predict_views(run, crops, lambda c: c.flip(2), to_input, mirrored, tta, scheme.flip_index))
    local = np.concatenate(out).astype(np.float32) if out else np.zeros((0, scheme.num_points, 2), np.float32)
    if ctx is None or not ctx.distributed:
        return local
    return distributed.gather_in_order(ctx, local, len(loader.dataset))


def predict_images(state: Checkpoint, images_dir: str | Path, names: np.ndarray, *, tta: str | Tta = "none",
                   batch_size: int = 32, workers: int = 0, ctx: Context | None = None,
                   shape_prior: bool = True) -> np.ndarray:
    """Points (N, K, 2) in original-image pixels for the images `names` in `images_dir`, by the
    checkpoint's model framed as its training crops, on ctx's device (default: this process's);
    through the checkpoint's shape prior where it has one and `shape_prior`."""
    mode = parse_tta(tta)
    ctx = ctx or distributed.setup()
    model = InferenceModel.from_checkpoint(state, ctx.device)
    check_prediction_memory(model, state, min(batch_size, max(len(names), 1)), len(mode.views), ctx)
    transform = view_transform(state.config.augment.evaluation(), state.scheme.flip_index, mode)
    dataset = LandmarkDataset(images_dir, names, None, transform)
    loader = make_loader(dataset, batch_size, workers, False, 0, 0, ctx.device, ctx=ctx, pad=False)
    points = predict_points(model, loader, state.scheme, ctx.device, mode, channels_last=state.config.channels_last,
                            ctx=ctx)
    return state.shape_prior.apply(points) if shape_prior and state.shape_prior is not None else points


def check_prediction_memory(model: InferenceModel, state: Checkpoint, batch_size: int, views: int,
                            ctx: Context) -> None:
    """Refuse, before any image is read, batches this machine's memory cannot hold (on CPU the
    kernel kills such a process without a word): a floor from the network's shapes, each face's
    `views` crops at once (core/memory.py)."""
    if ctx.device.type != "cpu":
        return
    h, w = state.config.augment.size
    crops = f" ({views} views each)" if views > 1 else ""
    what = f"predicting with {state.path} ({state.config.model} at {h}x{w}) in batches of {batch_size} faces"
    check_fits(inference_bytes(model.model, (h, w), batch_size * views), what + crops,
               "lower the batch size (--batch-size)", processes=env_int("LOCAL_WORLD_SIZE", 1), report=ctx.main)


def predict_folder(checkpoint: str | Path, data: str | Path, *, tta: str = "none",
                   batch_size: int = 32, workers: int = 1,
                   shape_prior: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(file names, points (N, K, 2) in original-image pixels) for a test folder: the files of
    its test_points.csv in that order when present, else every image in images/. tta: a
    `tta.TTA_MODES` name. Under torchrun each rank predicts every world-th image and all ranks
    return the whole result."""
    ctx = distributed.setup()
    state = Checkpoint.load(checkpoint, ctx.device)
    data = Path(data)
    names, _ = list_test_images(data, state.scheme.num_points)
    return names, predict_images(state, data / "images", names, tta=tta, batch_size=batch_size, workers=workers,
                                 ctx=ctx, shape_prior=shape_prior)


def mean_shape_baseline(train_points: np.ndarray, train_names: np.ndarray, train_images: Path,
                        test_names: np.ndarray, test_images: Path, transform: LandmarkTransform) -> np.ndarray:
    """Every test face gets the mean training shape, placed in the model's input frame (the
    training framing's mean shape) and mapped back through the test image's own frame. The
    reference any model must beat."""
    mean = frame_training_faces(train_images, train_names, train_points, transform.config).mean_shape
    out = [to_original(mean, sample_matrix(load_image(test_images / name), transform.config, None)[0])
           for name in test_names]
    return np.asarray(out, dtype=np.float32)


def mean_shape_folder(checkpoint: str | Path, data: str | Path, train: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(file names, points) of the mean-shape baseline for a test folder, in the geometry of
    the checkpoint's crops, from the training folder (or dataset folder) `train`."""
    config = Checkpoint.load(checkpoint).config
    training = open_training_data(train)
    data = Path(data)
    names, _ = list_test_images(data, training.scheme.num_points)
    transform = LandmarkTransform(config.augment.evaluation(), training.scheme.flip_index)
    return names, mean_shape_baseline(np.asarray(training.table.points), training.table.file_names,
                                      training.images_dir, names, data / "images", transform)
