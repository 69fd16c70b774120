"""The shape prior: a Wiener filter on each face's points in the training faces' Procrustes frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from densemarks.core import geometry
from densemarks.data.csvio import read_landmarks
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.shape_prior import ShapePrior

from conftest import run_cli

K = 12
MODES = np.random.default_rng(42).normal(size=(3, K, 2)) * 4  # how the "faces" vary


def _faces(count: int, rng: np.random.Generator, modes: np.ndarray = MODES) -> np.ndarray:
    """Faces of K points from a mean and three modes, each turned, scaled and moved."""
    mean = np.stack([np.cos(np.linspace(0, 2 * np.pi, K, endpoint=False)),
                     0.7 * np.sin(np.linspace(0, 2 * np.pi, K, endpoint=False))], axis=1) * 40
    shapes = mean + np.einsum("nm,mkd->nkd", rng.normal(size=(count, 3)), modes)
    angle = rng.uniform(-0.5, 0.5, count)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    scale, shift = rng.uniform(0.5, 2, (count, 1, 1)), rng.uniform(50, 150, (count, 1, 2))
    return np.einsum("nij,nkj->nki", rotation, shapes) * scale + shift


def _noisy(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Errors grow with the face's size; the first four points are four times as noisy."""
    size = np.sqrt(((faces - faces.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2)) / K)[:, None, None]
    spread = np.where(np.arange(K) < 4, 0.2, 0.05)[None, :, None]
    return faces + rng.normal(size=faces.shape) * spread * size / 10


def _error(points: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(points - truth, axis=2).mean())


def test_the_prior_pulls_noisy_points_toward_the_training_faces_shape():
    rng = np.random.default_rng(0)
    train, test = _faces(400, rng), _faces(200, rng)
    prior = ShapePrior.fit(train, _noisy(train[:200], rng), train[:200])
    predicted = _noisy(test, rng)
    out = prior.apply(predicted)
    assert out.shape == predicted.shape and out.dtype == np.float32
    assert _error(out, test) < 0.8 * _error(predicted, test)  # 0.72 here
    noisy, steady = np.arange(K) < 4, np.arange(K) >= 4  # the noisy points gain the most
    assert _error(out[:, noisy], test[:, noisy]) < 0.7 * _error(predicted[:, noisy], test[:, noisy])  # 0.61
    assert _error(out[:, steady], test[:, steady]) < _error(predicted[:, steady], test[:, steady])


def test_a_model_without_error_keeps_its_points():
    rng = np.random.default_rng(1)
    train = _faces(300, rng)
    prior = ShapePrior.fit(train, train[:50] + 1e-6 * rng.normal(size=(50, K, 2)), train[:50])
    test = _faces(5, rng)
    np.testing.assert_allclose(prior.apply(test), test, atol=1e-3)


def test_the_prior_follows_the_face_turned_scaled_and_moved():
    rng = np.random.default_rng(2)
    train = _faces(300, rng)
    prior = ShapePrior.fit(train, _noisy(train[:100], rng), train[:100])
    face = _noisy(_faces(1, rng), rng)[0]
    similarity = geometry.translation(30, -12) @ np.array([[0.9, -1.2, 0], [1.2, 0.9, 0], [0, 0, 1]])
    np.testing.assert_allclose(prior.apply(geometry.apply(similarity, face)),
                               geometry.apply(similarity, prior.apply(face)), atol=1e-3)
    assert prior.apply(face).shape == (K, 2)  # one face without the batch axis


def test_faces_with_non_finite_points_are_returned_unchanged():
    rng = np.random.default_rng(3)
    train = _faces(100, rng)
    prior = ShapePrior.fit(train, _noisy(train, rng), train)
    faces = _noisy(_faces(3, rng), rng)
    faces[1, 2] = np.nan
    out = prior.apply(faces)
    np.testing.assert_array_equal(out[1], faces[1].astype(np.float32))
    assert np.isfinite(out[[0, 2]]).all() and not np.allclose(out[0], faces[0])


def test_fewer_faces_than_coordinates_leave_every_direction_some_variance():
    """971 points from 1,207 faces: the sample covariance alone would be singular and force every
    prediction into the few training faces' span; Ledoit-Wolf shrinkage keeps it invertible."""
    rng = np.random.default_rng(4)
    train = _faces(8, rng)  # 8 faces, 24 coordinates
    prior = ShapePrior.fit(train, _noisy(train, rng), train)
    assert prior.rest > 0 and (prior.variances > 0).all()
    outside = _faces(1, rng, rng.normal(size=(3, K, 2)) * 4)[0]  # other modes than the training faces'
    moved = np.abs(prior.apply(outside) - outside).max()
    unshrunk = dataclasses.replace(prior, rest=1e-9)  # the sample covariance: zero outside their span
    assert moved < 0.1 * np.abs(unshrunk.apply(outside) - outside).max()


def test_the_stored_prior_loads_as_tensors_and_refuses_wrong_shapes(tmp_path):
    rng = np.random.default_rng(5)
    train = _faces(100, rng)
    prior = ShapePrior.fit(train, _noisy(train, rng), train)
    torch.save(prior.to_dict(), tmp_path / "prior.pt")
    loaded = ShapePrior.from_dict(torch.load(tmp_path / "prior.pt", weights_only=True), K)
    face = _noisy(_faces(2, rng), rng)
    np.testing.assert_allclose(loaded.apply(face), prior.apply(face), atol=1e-4)
    with pytest.raises(ValueError, match="for 13 points"):
        ShapePrior.from_dict(prior.to_dict(), K + 1)
    broken = {**prior.to_dict(), "noise": -torch.ones(2 * K, dtype=torch.float64)}
    with pytest.raises(ValueError, match="negative"):
        ShapePrior.from_dict(broken, K)


def test_training_stores_a_prior_that_prediction_applies(trained68, faces68, tmp_path):
    """best.pt carries the prior fitted after training; `predict` passes its points through it
    and --no-shape-prior gives the network's own."""
    state = Checkpoint.load(trained68 / "best.pt")
    assert state.shape_prior is not None and state.shape_prior.mean.shape == (68, 2)
    assert Checkpoint.load(trained68 / "last.pt").shape_prior is None  # for resuming only
    with_prior, without = tmp_path / "prior.csv", tmp_path / "raw.csv"
    run_cli("predict", "--checkpoint", trained68 / "best.pt", "--data", faces68 / "test", "--out", with_prior)
    run_cli("predict", "--checkpoint", trained68 / "best.pt", "--data", faces68 / "test", "--out", without,
            "--no-shape-prior")
    raw = np.asarray(read_landmarks(without, cache=False).points)
    prior = np.asarray(read_landmarks(with_prior, cache=False).points)
    np.testing.assert_allclose(prior, state.shape_prior.apply(raw), atol=0.02)  # the CSV's 2 decimals
    assert not np.allclose(prior, raw, atol=0.05)
