"""After training: fit the best model's shape prior (inference/shape_prior.py) and store it in
best.pt, so that every prediction from that checkpoint passes through it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemarks.core import distributed
from densemarks.data.augment import LandmarkTransform
from densemarks.data.dataset import LandmarkDataset
from densemarks.data.loader import make_loader
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.landmarker import InferenceModel
from densemarks.inference.predict import predict_points
from densemarks.inference.shape_prior import MAX_POINTS, ShapePrior


def fit_shape_prior(run, out: Path) -> ShapePrior | None:
    """The best model predicts a fixed sample of config.shape_prior training faces (no
    augmentation; every rank its shard); rank 0 fits the prior from all training labels and
    those predictions' errors and rewrites best.pt with it. None (nothing written) when
    shape_prior=0 or the scheme has more than MAX_POINTS points."""
    config, ctx = run.config, run.ctx
    if not config.shape_prior or run.data.scheme.num_points > MAX_POINTS:
        return None
    labels = getattr(run.train_set.points, "labels", run.train_set.points)  # not a teacher's (distill)
    rows = prior_rows(config, len(labels))
    state = Checkpoint.load(out / "best.pt", ctx.device)
    transform = LandmarkTransform(config.augment.evaluation(), run.data.scheme.flip_index)
    faces = LandmarkDataset(run.train_set.images_dir, run.train_set.file_names[rows], None, transform,
                            config.seed, run.train_set.store)
    loader = make_loader(faces, config.batch_size, config.workers, False, config.seed, 0, ctx.device, ctx=ctx,
                         pad=False)
    model = InferenceModel.from_checkpoint(state, ctx.device)
    predicted = predict_points(model, loader, run.data.scheme, ctx.device, channels_last=config.channels_last,
                               desc="shape prior", ctx=ctx)
    prior = None
    if ctx.main:
        prior = ShapePrior.fit(labels, predicted, np.asarray(labels[rows]))
        dataclasses.replace(state, shape_prior=prior).save(out / "best.pt")
        tqdm.write(f"shape prior: fitted on the errors of {len(rows)} training faces; stored in {out / 'best.pt'}")
    distributed.barrier(ctx)
    return prior


def prior_rows(config, available: int) -> np.ndarray:
    """The training faces (indices into the training split) whose predictions fit the prior: a
    fixed sample of config.shape_prior by config.seed."""
    count = min(config.shape_prior, available)
    return np.sort(np.random.default_rng(config.seed).choice(available, count, replace=False))
