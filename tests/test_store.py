"""The preprocessed image store gives the same samples as the image files."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from densemarks.data.augment import AugmentConfig, LandmarkTransform
from densemarks.data.csvio import read_landmarks
from densemarks.data.dataset import LandmarkDataset
from densemarks.core.errors import DataError
from densemarks.data.store import build_store, default_side, open_store, store_dir


@pytest.fixture()
def train_dir(synth68, tmp_path):
    shutil.copytree(synth68 / "train", tmp_path / "train")
    return tmp_path / "train"


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_store_samples_match_the_files(train_dir, fmt):
    table = read_landmarks(train_dir / "landmarks.csv")
    names, points = table.file_names[:12], np.asarray(table.points[:12])
    build_store(train_dir, table.file_names, side=160, fmt=fmt)
    store = open_store(train_dir, 160, fmt)
    # At 256 px the files are decoded in full (no reduced JPEG decoding), as the store's border
    # boxes were: the crops must agree exactly. (At smaller inputs the files' own box is found on
    # a reduced decode and may differ by a reduced pixel.)
    for threshold in (None, 9):
        config = AugmentConfig(size=(256, 256), rotate_deg=20, flip_p=0.5, scale_jitter=0.1,
                               border_threshold=threshold)
        transform = LandmarkTransform(config, np.arange(68), train=True)
        files = LandmarkDataset(train_dir / "images", names, points, transform, seed=3)
        stored = LandmarkDataset(train_dir / "images", names, points, transform, seed=3, store=store)
        for i in range(len(names)):
            a, b = files[(2, i)], stored[(2, i)]
            np.testing.assert_allclose(a["points"].numpy(), b["points"].numpy(), atol=1e-3)
            assert np.abs(a["image"].numpy().astype(int) - b["image"].numpy().astype(int)).mean() < 8
            assert tuple(a["original_size"].tolist()) == tuple(b["original_size"].tolist())


def test_store_is_refused_after_the_csv_changes(train_dir):
    table = read_landmarks(train_dir / "landmarks.csv")
    build_store(train_dir, table.file_names, side=64)
    csv = train_dir / "landmarks.csv"
    os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="changed since"):
        open_store(train_dir, 64)
    with pytest.raises(DataError, match="densemarks preprocess"):
        open_store(train_dir, 96)


def test_store_is_refused_after_an_image_is_replaced_or_removed(train_dir):
    """An image replaced in place trained from its old stored pixels without a word."""
    table = read_landmarks(train_dir / "landmarks.csv")
    build_store(train_dir, table.file_names, side=64)
    open_store(train_dir, 64)
    first, second = (train_dir / "images" / str(n) for n in table.file_names[:2])
    shutil.copyfile(second, first)  # another face under the same name
    with pytest.raises(DataError, match=f"{first.name}: changed since the preprocessed store .* preprocess"):
        open_store(train_dir, 64)
    build_store(train_dir, table.file_names, side=64)
    second.unlink()
    with pytest.raises(DataError, match=f"{second.name}: image of the preprocessed store"):
        open_store(train_dir, 64)


def test_default_side_leaves_room_for_zoom():
    assert default_side((224, 224)) == 288 and default_side((128, 128)) == 160


def test_a_raw_store_larger_than_the_free_disk_is_refused_before_anything_is_written(train_dir):
    names = read_landmarks(train_dir / "landmarks.csv").file_names
    free = shutil.disk_usage(train_dir).free
    side = int((free / (3 * len(names))) ** 0.5) + 16  # just over the free space
    with pytest.raises(DataError, match=f"a raw store of {len(names)} images at {side} px takes .* GiB free"):
        build_store(train_dir, names, side=side)
    assert not store_dir(train_dir, side, "raw").exists()
