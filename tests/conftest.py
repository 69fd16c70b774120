"""Shared fixtures: small synthetic datasets made once per test session."""

from __future__ import annotations

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
