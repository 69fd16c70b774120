"""Shared fixtures: small synthetic datasets made once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from densemarks.synth import synthesize


@pytest.fixture(scope="session")
def synth971(tmp_path_factory):
    """40 training and 8 test faces with the competition's 971 points."""
    root = tmp_path_factory.mktemp("synth971") / "data"
    synthesize(root, train=40, test=8, num_points=971, seed=1)
    return root


@pytest.fixture(scope="session")
def synth68(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth68") / "data"
    synthesize(root, train=60, test=6, num_points=68, seed=2)
    return root


SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A torchvision cache holding the pretrained MobileNetV2 file, as a user's would."""
    if not SHARED_WEIGHTS.is_file():
        pytest.skip("../shared/weights/mobilenet_v2-b0353104.pth not present")
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(SHARED_WEIGHTS, home / "hub" / "checkpoints")
    return home
