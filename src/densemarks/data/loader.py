"""Loaders: batches of a rank's share of a dataset in a reproducible order, and the samplers
(`sampler` key) that say how often each training face is drawn.

Every epoch's sample order comes from one generator seeded by (seed, epoch), identical on all
ranks; each rank takes every world-th index of it (`EpochSampler`), so a resumed run sees the
same batches as an uninterrupted one, on any number of processes.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from densemarks.core.distributed import Context
from densemarks.core.shapes import estimate_pose, pose_balanced_weights


def _uniform(points: np.ndarray, flip_index: np.ndarray) -> None:
    return None


def _pose_balanced(points: np.ndarray, flip_index: np.ndarray) -> np.ndarray:
    pose = estimate_pose(np.asarray(points), flip_index)
    return pose_balanced_weights(pose.yaw, pose.pitch)


# sampler: (training points (N, K, 2), flip index) -> per-face draw weights, or None (uniform)
SAMPLERS = {"uniform": _uniform, "pose_balanced": _pose_balanced}


def make_loader(dataset: Dataset, batch_size: int, workers: int, shuffle: bool,
                seed: int, epoch: int, device: torch.device, weights: np.ndarray | None = None,
                ctx: Context | None = None, pad: bool = True, keep_workers: bool = False,
                drop_last: bool = False) -> DataLoader:
    """Batches of this rank's share of the dataset in a reproducible order (`EpochSampler`:
    shuffled, or drawn in proportion to per-item weights, fixed by (seed, epoch)); call
    `loader.sampler.set_epoch` to move on. keep_workers: the worker processes outlive each pass
    (for a loader read once per epoch); stop them with `close_workers` when done. pad=False: no
    repeated items (prediction). drop_last (training): an epoch's last batch, when smaller than
    the others, is left out (unless it is the only one); its faces come in other epochs' orders.
    Left in, a batch of a few faces (1,026 300-W faces in 32s end on 2) takes a full step and
    moves BatchNorm's running statistics by its own: fast-cpu's validation NME swung by up to
    1.3 points from epoch to epoch (BENCHMARKS.md). workers = 0 loads in this process, which is
    fastest when the model already keeps every core busy (a 2-core CPU: a loader process or thread beside it
    only oversubscribes the cores, measured in BENCHMARKS.md)."""
    rank, world = (ctx.rank, ctx.world) if ctx is not None else (0, 1)
    sampler = EpochSampler(len(dataset), seed, shuffle, rank, world, weights, pad)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      worker_init_fn=_worker_init if workers else None,
                      drop_last=drop_last and len(sampler) > batch_size,
                      persistent_workers=keep_workers and workers > 0)


def close_workers(loader: DataLoader) -> None:
    """Stop a keep_workers loader's worker processes now. Otherwise they live until the loader is
    garbage-collected, which a reference cycle inside DataLoader puts off until the interpreter
    exits; there, with pin_memory (CUDA), PyTorch waited 5 s for each worker to join: on the H200,
    `densemarks train` with 8 workers exited 42 s after its last line (BENCHMARKS.md)."""
    iterator, loader._iterator = loader._iterator, None  # torch has no public call for this
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def _worker_init(_: int) -> None:
    # Workers decode and warp one sample at a time; the training process owns the cores.
    # OpenCV threading off with 0: setNumThreads(1) in a forked worker deadlocks when the
    # parent had already used OpenCV's thread pool (e.g. after `densemarks synth`).
    torch.set_num_threads(1)
    cv2.setNumThreads(0)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, weights: np.ndarray | None = None) -> np.ndarray:
    """The sample order of one epoch over all ranks: a permutation (shuffle), a draw with
    replacement in proportion to weights, or 0..n-1; fixed by (seed, epoch)."""
    rng = np.random.default_rng((seed, epoch))
    if weights is not None:
        return rng.choice(n, size=n, replace=True, p=weights / weights.sum())
    return rng.permutation(n) if shuffle else np.arange(n)


class EpochSampler(Sampler):
    """This rank's share of `epoch_order`: every world-th index from its rank, padded by wrap-
    around so that all ranks take the same number of steps (as DistributedSampler does).
    Yields (epoch, index) pairs: the dataset seeds augmentation with them, which stays right
    with persistent loader workers that never see `set_epoch`."""

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1,
                 weights: np.ndarray | None = None, pad: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world, self.weights, self.pad = rank, world, weights, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle, self.weights)
        if self.pad and self.world > 1 and len(order) % self.world:
            extra = self.world - len(order) % self.world
            order = np.concatenate([order, order[:extra]])
        return order[self.rank::self.world]

    def __iter__(self):
        return iter([(self.epoch, int(i)) for i in self.indices()])

    def __len__(self) -> int:
        if self.pad and self.world > 1:
            return int(-(-self.n // self.world))
        return len(range(self.rank, self.n, self.world))
