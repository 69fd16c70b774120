"""Datasets in the competition layout: a folder with `images/` and `landmarks.csv`
(training) or `test_points.csv` (test). Yields transformed images with points and metadata.

Augmentation randomness is drawn from a stream fixed by (seed, epoch, index) (`SampleStreams`),
so a sample looks the same whatever the number of workers or the order they are served in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from densemarks.data.augment import AugmentConfig, LandmarkTransform, sample_matrix
from densemarks.data.framing import Framing, measure_framing
from densemarks.data.csvio import LandmarkTable, read_landmarks, read_test_points
from densemarks.core.errors import DataError
from densemarks.data.images import load_image
from densemarks.data.scheme import LandmarkScheme, resolve_scheme


@dataclass(frozen=True)
class TrainingData:
    """A training folder, loaded: its table, scheme and paths."""

    root: Path
    table: LandmarkTable
    scheme: LandmarkScheme

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def csv_path(self) -> Path:
        return self.root / "landmarks.csv"


def train_folder(path: str | Path) -> Path:
    """A dataset folder holding train/ gives its train/; a train folder gives itself."""
    path = Path(path)
    if path.is_file():
        raise DataError(path, "is a file: give the dataset folder (holding train/) or its train folder")
    if (path / "train" / "landmarks.csv").is_file():
        return path / "train"
    # Neither holds a landmarks.csv: the error names the one in train/ when there is a train/.
    return path / "train" if (path / "train").is_dir() and not (path / "landmarks.csv").exists() else path


def open_training_data(path: str | Path, *, flip_index_file: str | Path | None = None,
                       norm_points: tuple[int, int] | None = None,
                       check_images: bool = True) -> TrainingData:
    """Load the training folder's landmarks.csv (`path` is a dataset folder holding train/, or
    the train folder), resolve the scheme, and check every listed image exists."""
    root = train_folder(path)
    csv_path = root / "landmarks.csv"
    table = read_landmarks(csv_path)
    if check_images:
        check_images_exist(csv_path, root / "images", table.file_names)
    scheme = resolve_scheme(csv_path, np.asarray(table.points), flip_index_file=flip_index_file,
                            norm_points=norm_points)
    return TrainingData(root, table, scheme)


def check_images_exist(csv_path: Path, images_dir: Path, file_names: np.ndarray) -> None:
    if not images_dir.is_dir():
        raise DataError(images_dir, "images folder not found")
    present = set(os.listdir(images_dir))
    for row, name in enumerate(file_names):
        if name not in present:
            raise DataError(csv_path, f"image {images_dir / name} not found", line=row + 2)


def read_name_list(path: str | Path) -> set[str]:
    """Image names, one a line (blank lines ignored): `train --exclude`, `clean`'s exclude.txt."""
    try:
        return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def list_test_images(root: str | Path, num_points: int) -> tuple[np.ndarray, np.ndarray | None]:
    """File names of a test folder: those of test_points.csv in its order when present (with
    their requested indices), else every image in `images/` sorted by name."""
    root = Path(root)
    points_csv = root / "test_points.csv"
    if points_csv.is_file():
        requested = read_test_points(points_csv, num_points)
        check_images_exist(points_csv, root / "images", requested.file_names)
        return requested.file_names, requested.indices
    images = root / "images"
    if not images.is_dir():
        raise DataError(images, "images folder not found")
    names = sorted(n for n in os.listdir(images) if not n.startswith("."))
    if not names:
        raise DataError(images, "no images in folder")
    return np.asarray(names, dtype=str), None


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/validation split of range(n), fixed by seed. Returns (train, val)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fold_indices(n: int, folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-fold split of range(n): the shuffled rows cut into `folds` near-equal parts, fixed by
    seed; part `fold` validates. Returns (train, val); the val parts of all folds partition
    range(n)."""
    if folds < 2 or not 0 <= fold < folds:
        raise DataError(None, f"fold {fold} of {folds}: need folds >= 2 and 0 <= fold < folds")
    if n < folds:
        raise DataError(None, f"{n} faces cannot be split into {folds} folds")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    val = np.sort(parts[fold])
    return np.sort(np.concatenate([p for i, p in enumerate(parts) if i != fold])), val


class SampleStreams:
    """Random streams per sample: sample `index` of `epoch` draws from block `index` of the
    PCG64 stream seeded by (seed, epoch), each block 2**64 draws long, reached by PCG64's
    jump-ahead. Blocks never overlap, and no sample's draws depend on another's.

    One generator is re-positioned for each sample (2 us) instead of a new one seeded by the
    tuple (12 us, a fifth of a training sample's time outside decoding and warping). The
    generator returned is valid until the next call."""

    BLOCK = 1 << 64

    def __init__(self, seed: int):
        self.seed = seed
        self._bits = np.random.PCG64()
        self._generator = np.random.Generator(self._bits)
        self._epoch: int | None = None
        self._start: dict = {}

    def __call__(self, epoch: int, index: int) -> np.random.Generator:
        if epoch != self._epoch:
            self._start = np.random.PCG64((self.seed, epoch)).state
            self._epoch = epoch
        self._bits.state = self._start
        self._bits.advance(index * self.BLOCK)
        return self._generator


class LandmarkDataset(Dataset):
    """Items: dict(image (3, H, W) uint8 and tone (2,) float32 (`normalize_batch(image, tone=tone)`
    makes the network input), points (K, 2) float32 in input pixels [with labels],
    matrix (3, 3) float64 original->input, flipped bool, original_size (2,) int64 (w, h),
    index int, file_name str)."""

    def __init__(self, images_dir: str | Path, file_names: np.ndarray, points: np.ndarray | None,
                 transform: LandmarkTransform, seed: int = 0, store=None):
        """store: an `ImageStore` holding these images preprocessed (read instead of the files)."""
        self.images_dir = Path(images_dir)
        self._prefix = os.path.join(images_dir, "")  # joined as text: pathlib per item costs 10 us
        self.store = store
        self.file_names = np.asarray(file_names)
        self.points = points
        self.transform = transform
        self.streams = SampleStreams(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.file_names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """key: an index (augmented as of `set_epoch`), or (epoch, index) as `EpochSampler` gives."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        name = str(self.file_names[index])
        if self.store is not None:
            image = self.store.image(name)
        else:
            image = load_image(self._prefix + name, min_size=self.transform.min_decode_size())
        points = None if self.points is None else np.asarray(self.points[index])
        sample = self.transform(image, points, self.streams(epoch, int(index)))
        item = {
            "image": torch.from_numpy(sample.image),
            "tone": torch.from_numpy(np.array(sample.tone, np.float32)),
            "matrix": torch.from_numpy(sample.matrix),
            "flipped": sample.flipped,
            "original_size": torch.from_numpy(np.array(image.original_size)),
            "index": int(index),
            "file_name": name,
        }
        if sample.points is not None:
            item["points"] = torch.from_numpy(sample.points)
        return item


def frame_training_faces(images_dir: Path, file_names: np.ndarray, points: np.ndarray, config: AugmentConfig,
                         store=None, limit: int | None = None, seed: int = 0) -> Framing:
    """`measure_framing` over training images (at most `limit` of them, drawn with `seed`):
    each is decoded once for its black-border box. config: the evaluation `AugmentConfig`."""
    rows = np.arange(len(file_names))
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    min_size = LandmarkTransform(config).min_decode_size()
    matrices = []
    for row in rows:
        name = str(file_names[row])
        image = store.image(name) if store is not None else load_image(Path(images_dir) / name, min_size=min_size)
        matrices.append(sample_matrix(image, config, None)[0])
    return measure_framing(np.asarray(matrices), np.asarray(points)[rows], config.size)
