"""Distributed training and prediction: the epoch sampler's shards (and the training loader's
short last batch), and `torchrun --nproc_per_node 2` on CPU (gloo) against a single process on
tiny synthetic data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from densemarks.data.csvio import read_landmarks
from densemarks.data.loader import EpochSampler, epoch_order, make_loader
from densemarks.data.synth import synthesize

from conftest import run_cli


def test_sampler_shards_are_disjoint_and_cover_the_epoch():
    shards = [EpochSampler(20, seed=3, shuffle=True, rank=r, world=4) for r in range(4)]
    for s in shards:
        s.set_epoch(5)
    parts = [s.indices() for s in shards]
    assert all(len(p) == 5 for p in parts)
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))
    assert [e for e, _ in shards[1]] == [5] * 5  # (epoch, index) pairs for the dataset
    # rank r holds every 4th index of the epoch's order from position r: interleaved, they are it
    np.testing.assert_array_equal(np.stack(parts, axis=1).ravel(), epoch_order(20, 3, 5, True))
    single = EpochSampler(20, seed=3, shuffle=True)
    single.set_epoch(5)
    np.testing.assert_array_equal(single.indices(), epoch_order(20, 3, 5, True))
    assert not np.array_equal(epoch_order(20, 3, 5, True), epoch_order(20, 3, 6, True))


def test_sampler_pads_uneven_shards_for_training_only():
    padded = [EpochSampler(10, 0, True, r, 3).indices() for r in range(3)]
    assert [len(p) for p in padded] == [4, 4, 4]
    assert set(np.concatenate(padded)) == set(range(10))
    exact = [EpochSampler(10, 0, False, r, 3, pad=False).indices() for r in range(3)]
    assert np.concatenate(exact).tolist() == [0, 3, 6, 9, 1, 4, 7, 2, 5, 8]
    assert [len(EpochSampler(10, 0, False, r, 3, pad=False)) for r in range(3)] == [4, 3, 3]


class _Indices(torch.utils.data.Dataset):
    """Each (epoch, index) pair as its index."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item):
        return item[1]


def test_training_loader_leaves_out_a_short_last_batch():
    """drop_last (training): 10 faces in 4s are two batches of 4, a different 8 each epoch, and
    never the short batch of 2; a loader of fewer faces than a batch keeps its one batch; other
    loaders (validation, prediction) keep every face."""
    cpu = torch.device("cpu")
    loader = make_loader(_Indices(10), 4, 0, True, 0, 0, cpu, drop_last=True)
    first = [len(b) for b in loader]
    loader.sampler.set_epoch(1)
    assert first == [len(b) for b in loader] == [4, 4] and len(loader) == 2
    faces = [set(torch.cat(list(make_loader(_Indices(10), 4, 0, True, 0, e, cpu, drop_last=True))).tolist())
             for e in range(6)]
    assert set.union(*faces) == set(range(10)) and len({frozenset(f) for f in faces}) > 1
    assert [len(b) for b in make_loader(_Indices(3), 4, 0, True, 0, 0, cpu, drop_last=True)] == [3]
    assert [len(b) for b in make_loader(_Indices(10), 4, 0, False, 0, 0, cpu, pad=False)] == [4, 4, 2]


def test_weighted_epoch_follows_the_weights():
    weights = np.array([0.0, 1.0, 0.0, 3.0])
    order = epoch_order(4, 0, 0, True, weights)
    assert set(order) <= {1, 3}


def run(*args, torchrun=False):
    """The CLI alone or under `torchrun --standalone --nproc_per_node 2` (torch.distributed.run)."""
    if not torchrun:
        return run_cli(*args, timeout=600)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "densemarks", *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.heavy
def test_torchrun_train_and_predict_on_cpu(tmp_path):
    data = tmp_path / "data"
    synthesize(data, train=47, test=7, num_points=24, seed=4)  # 40 training, 7 validation faces
    common = ["--data", data, "--recipe", "fast-cpu", "model=resnet18", "weights=none", "epochs=2", "scheduler=plateau",
              "augment.size=[48,48]", "batch_size=5", "threads=1", "record_samples=true",
              "time_limit=1h"]  # never reached; the ranks agree on the time spent at every step
    run("train", "--out", tmp_path / "two", *common, torchrun=True)
    run("train", "--out", tmp_path / "one", *common)

    lines = {r: (tmp_path / "two" / "samples" / f"rank{r}.txt").read_text().split("\n")[:-1] for r in (0, 1)}
    for epoch in ("0", "1"):
        seen = [{line.split("\t")[1] for line in lines[r] if line.split("\t")[0] == epoch} for r in (0, 1)]
        assert len(seen[0]) == len(seen[1]) == 20 and not seen[0] & seen[1]
        assert seen[0] | seen[1] == {line.split("\t")[1] for line in
                                     (tmp_path / "one" / "samples" / "rank0.txt").read_text().split("\n")[:-1]
                                     if line.split("\t")[0] == epoch}

    # Rank 0 alone wrote a checkpoint shaped like a single process's (no DDP "module." names).
    two, one = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("two", "one"))
    assert two.keys() == one.keys()
    assert {k: v.shape for k, v in two["model"].items()} == {k: v.shape for k, v in one["model"].items()}
    groups = [[(g["name"], g["params"]) for g in c["optimizer"]["param_groups"]] for c in (two, one)]
    assert groups[0] == groups[1]  # the schedule's position differs: half the steps per rank
    assert two["config"] == one["config"] and two["scheme"] == one["scheme"] and two["epoch"] == 1
    assert len((tmp_path / "two" / "log.csv").read_text().splitlines()) == 3

    # Resume under torchrun: every rank loads last.pt and goes on with epoch 3's shards.
    run("train", "--out", tmp_path / "two", "--resume", "--data", data, "epochs=3", torchrun=True)
    assert len((tmp_path / "two" / "log.csv").read_text().splitlines()) == 4
    third = [{line.split("\t")[1] for line in (tmp_path / "two" / "samples" / f"rank{r}.txt").read_text().split("\n")[:-1]
              if line.split("\t")[0] == "2"} for r in (0, 1)]
    assert len(third[0]) == len(third[1]) == 20 and not third[0] & third[1]

    run("predict", "--checkpoint", tmp_path / "two" / "best.pt", "--data", data / "test",
        "--out", tmp_path / "p2.csv", "--workers", 0, torchrun=True)
    run("predict", "--checkpoint", tmp_path / "two" / "best.pt", "--data", data / "test",
        "--out", tmp_path / "p1.csv", "--workers", 0)
    merged, single = (read_landmarks(tmp_path / f, cache=False) for f in ("p2.csv", "p1.csv"))
    expected = [line.split("\t")[0] for line in (data / "test" / "test_points.csv").read_text().splitlines()[1:]]
    assert merged.file_names.tolist() == expected  # every image once, in order
    np.testing.assert_allclose(merged.points, single.points, atol=0.011)
