"""The torch dataset: items, reproducible augmentation, splits, missing images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from densemarks.core.geometry import to_original
from densemarks.data.augment import AugmentConfig, LandmarkTransform
from densemarks.data.dataset import (LandmarkDataset, SampleStreams, list_test_images, open_training_data,
                                split_indices)
from densemarks.core.errors import DataError


def _dataset(root, train=True, seed=0):
    data = open_training_data(root / "train")
    config = AugmentConfig(size=(96, 80), flip_p=0.5, rotate_deg=20, scale_jitter=0.1)
    transform = LandmarkTransform(config, data.scheme.flip_index, train=train)
    return data, LandmarkDataset(data.images_dir, data.table.file_names, data.table.points, transform, seed)


def test_items_and_inverse(synth971):
    data, ds = _dataset(synth971)
    item = ds[3]
    assert item["image"].shape == (3, 96, 80) and item["image"].dtype == torch.uint8
    assert item["points"].shape == (971, 2)
    back = to_original(item["points"].numpy(), item["matrix"].numpy(), item["flipped"],
                       data.scheme.flip_index)
    assert np.abs(back - data.table.points[3]).max() < 0.5
    assert tuple(item["original_size"].tolist()) > (0, 0)


def test_augmentation_is_reproducible_whatever_the_workers(synth971):
    _, ds = _dataset(synth971)
    ds.set_epoch(2)
    serial = next(iter(DataLoader(ds, batch_size=8, num_workers=0)))
    parallel = next(iter(DataLoader(ds, batch_size=8, num_workers=2)))
    torch.testing.assert_close(serial["points"], parallel["points"])
    torch.testing.assert_close(serial["image"], parallel["image"])
    ds.set_epoch(3)
    assert not torch.equal(ds[0]["points"], serial["points"][0])


def test_split_is_shuffled_fixed_and_disjoint():
    train, val = split_indices(100, 0.2, seed=5)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val)
    assert val.tolist() != list(range(80, 100))  # not the last rows in order
    again_train, again_val = split_indices(100, 0.2, seed=5)
    assert val.tolist() == again_val.tolist()
    assert split_indices(100, 0.2, seed=6)[1].tolist() != val.tolist()


def test_test_folder_order(synth971, tmp_path):
    names, indices = list_test_images(synth971 / "test", 971)
    assert indices.shape == (8, 30)
    from densemarks.data.csvio import read_test_points
    assert list(names) == list(read_test_points(synth971 / "test" / "test_points.csv", 971).file_names)
    (tmp_path / "images").mkdir()
    for n in ("b.jpg", "a.png"):
        (tmp_path / "images" / n).write_bytes(b"")
    names, indices = list_test_images(tmp_path, 971)
    assert list(names) == ["a.png", "b.jpg"] and indices is None


def test_missing_image_names_the_csv_line(synth68, tmp_path):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(synth68 / "train", root)
    victim = sorted((root / "images").iterdir())[0]
    victim.unlink()
    lines = (root / "landmarks.csv").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith(victim.name))
    with pytest.raises(DataError) as err:
        open_training_data(root)
    assert err.value.line == line and victim.name in str(err.value)


def test_loader_workers_after_opencv_threads(synth68):
    """A loader with worker processes, forked after this process used OpenCV's thread pool
    (as `synth` does), must not deadlock (it did with cv2.setNumThreads(1) in the worker)."""
    import subprocess
    import sys
    script = f"""
import cv2, numpy as np, torch
from densemarks.data.augment import AugmentConfig, LandmarkTransform
from densemarks.data.dataset import LandmarkDataset, open_training_data
from densemarks.data.loader import make_loader
cv2.GaussianBlur(np.zeros((2000, 2000, 3), np.uint8), (31, 31), 5)  # OpenCV's pool now runs
data = open_training_data({str(synth68 / "train")!r})
ds = LandmarkDataset(data.images_dir, data.table.file_names, data.table.points,
                     LandmarkTransform(AugmentConfig(size=(32, 32))))
print(sum(len(b["image"]) for b in make_loader(ds, 8, 2, True, 0, 0, torch.device("cpu"))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "60"


def test_sample_streams_depend_only_on_seed_epoch_and_index():
    keys = [(epoch, index) for epoch in (0, 1, 7) for index in (0, 1, 2, 1000)]
    forward = SampleStreams(0)
    draws = {key: forward(*key).random(4).tolist() for key in keys}
    backward = SampleStreams(0)  # another worker, serving the samples in another order
    assert all(backward(*key).random(4).tolist() == draws[key] for key in reversed(keys))
    assert len({tuple(d) for d in draws.values()}) == len(keys)  # every sample its own stream
    assert SampleStreams(1)(0, 0).random(4).tolist() != draws[(0, 0)]
    long = SampleStreams(0)(0, 0).random(10_000)  # a long draw does not reach the next block
    assert not np.isin(draws[(0, 1)], long).any()


def test_data_paths_that_are_not_a_training_folder_say_so(tmp_path):
    (tmp_path / "landmarks.tsv").write_text("x")
    with pytest.raises(DataError, match="landmarks.tsv: is a file: give the dataset folder"):
        open_training_data(tmp_path / "landmarks.tsv")
    (tmp_path / "data" / "train" / "landmarks.csv").mkdir(parents=True)  # not the dataset's own path
    with pytest.raises(DataError, match=r"data/train/landmarks.csv: is a folder, not a CSV file"):
        open_training_data(tmp_path / "data")
