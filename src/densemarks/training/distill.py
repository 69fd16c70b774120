"""Distillation: a student learns from a teacher's points besides the labels (`teacher=`,
`teacher_weight=`, `teacher_tta=` of any recipe).

The teacher (a checkpoint, or several: their points averaged, an ensemble), each with its
test-time augmentation, predicts every training face once before the first epoch, in
original-image pixels. Those points travel through each sample's augmentation beside the
labels (the dataset's points are the labels followed by the teacher's, the flip index extended
alike), so the teacher's points always sit on the crop the student sees, mirrored and renamed
with it. The loss is (1 - w) x the head's loss against the labels + w x the same loss against
the teacher's points (`models.heads.base.blend`).

Cached, not computed on the fly: the teacher's cost is paid once (seconds to minutes) instead
of every step, the student trains at its own speed, and any teacher works whatever its input
size or head. The points are kept in the run folder (`teacher_points-KEY.npy`, KEY a hash of
the teachers' files, the TTA and the faces), so `--resume` reuses them; memory-mapped, and
paired with the labels per sample (`PairedPoints`), so at the competition's scale (393,930 x 971
points, 3 GB) nothing is copied.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from densemarks.core.distributed import Context
from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.core.registry import choose
from densemarks.data.dataset import TrainingData
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.predict import predict_images
from densemarks.inference.tta import TTA_MODES

CACHE = "teacher_points-{key}.npy"


def teacher_paths(text: str) -> list[Path]:
    """The checkpoints named by `teacher=` (comma-separated)."""
    return [Path(part.strip()) for part in text.split(",") if part.strip()]


def check_teachers(config, num_points: int) -> list[Checkpoint]:
    """The teachers, loaded and checked against the student's data: before any long work."""
    choose(TTA_MODES, config.teacher_tta, "teacher_tta")
    teachers = []
    for path in teacher_paths(config.teacher):
        state = Checkpoint.load(path)
        if state.scheme.num_points != num_points:
            raise DataError(path, f"teacher has {state.scheme.num_points} points, the training data {num_points}")
        teachers.append(state)
    if not teachers:
        raise DataError(None, f"teacher={config.teacher!r} names no checkpoint")
    return teachers


def teacher_points(config, data: TrainingData, rows: np.ndarray, out: Path, ctx: Context,
                   teachers: list[Checkpoint]) -> np.ndarray:
    """(len(rows), K, 2) float32 original pixels: the teachers' mean prediction for the
    training faces `rows`, from the run folder's cache when it was made for the same teachers,
    TTA and faces, else predicted now (and cached by rank 0)."""
    names = data.table.file_names[rows]
    cache = out / CACHE.format(key=_cache_key(teachers, config.teacher_tta, names))
    if not cache.is_file():
        points = np.mean([predict_images(state, data.images_dir, names, tta=config.teacher_tta,
                                         batch_size=config.batch_size, ctx=ctx) for state in teachers], axis=0)
        if ctx.main:
            for stale in out.glob(CACHE.format(key="*")):  # another teacher's points
                stale.unlink()
            with atomic_path(cache) as tmp:
                np.save(tmp, points.astype(np.float32))
        else:
            return points.astype(np.float32)
    return np.load(cache, mmap_mode="r")


def _cache_key(teachers: list[Checkpoint], tta: str, names: np.ndarray) -> str:
    digest = hashlib.sha1(tta.encode())
    for state in teachers:
        stat = state.path.stat()
        digest.update(f"{state.path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}\n".encode())
    digest.update("\n".join(map(str, names)).encode())
    return digest.hexdigest()[:16]


class PairedPoints:
    """labels (N, K, 2) and teacher points (N, K, 2) as one (N, 2K, 2) sequence, joined per
    item: what the training dataset carries through augmentation when distilling."""

    def __init__(self, labels, teacher):
        if len(labels) != len(teacher):
            raise ValueError(f"{len(labels)} labels, {len(teacher)} teacher points")
        self.labels, self.teacher = labels, teacher

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.concatenate([np.asarray(self.labels[index]), np.asarray(self.teacher[index])])


def paired_flip_index(flip_index: np.ndarray) -> np.ndarray:
    """The flip index of PairedPoints' 2K points: each half mirrors within itself."""
    return np.concatenate([flip_index, flip_index + len(flip_index)])


def split_points(points, num_points: int):
    """A batch of paired points (B, 2K, 2) -> (labels, teacher points), each (B, K, 2)."""
    return points[:, :num_points], points[:, num_points:]
