"""The training commands through the real CLI on tiny synthetic data: the whole pipeline,
an exact resume after SIGKILL, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from densemarks.data.csvio import read_landmarks
from densemarks.data.synth import synthesize
from densemarks.training.setup import rng_state, set_rng_state

from conftest import one_line_error, run_cli

pytestmark = pytest.mark.slow

# From scratch and tiny: the resume test is about exactness, not accuracy.
TINY = ["model=resnet18", "weights=none", "augment.size=[64,64]", "batch_size=16", "workers=0",
        "lr=3e-3", "augment.rotate_deg=10", "threads=2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "data"
    synthesize(root, train=160, test=16, num_points=30, seed=3)
    return root


def test_train_predict_submit_evaluate(trained68, faces68, tmp_path):
    """The session's fast-cpu run (conftest.trained68, trained through this CLI) through predict
    (plain, flip, the mean-shape baseline), submit and evaluate."""
    run, test = trained68, faces68 / "test"
    for name in ("best.pt", "last.pt", "log.csv", "curves.png", "val_predictions.csv"):
        assert (run / name).is_file(), name
    run_cli("predict", "--checkpoint", run / "best.pt", "--data", test, "--out", tmp_path / "p.csv",
            "--draw", tmp_path / "grid.png")
    run_cli("predict", "--checkpoint", run / "best.pt", "--data", test, "--out", tmp_path / "pf.csv", "--tta", "flip")
    run_cli("predict", "--checkpoint", run / "best.pt", "--data", test, "--out", tmp_path / "base.csv",
            "--mean-shape", faces68 / "train")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    # in a process of its own that gives freed memory back (glibc's default): the same predictions
    run_cli("predict", "--checkpoint", run / "best.pt", "--data", test, "--out", tmp_path / "released.csv",
            "--no-keep-freed-memory", isolated=True)
    assert (tmp_path / "released.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()
    predictions = read_landmarks(tmp_path / "p.csv", cache=False)
    assert predictions.num_points == 68 and len(predictions) == 24
    run_cli("submit", "--predictions", tmp_path / "p.csv", "--points", test / "test_points.csv",
            "--out", tmp_path / "sub.csv")
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert lines[0].startswith("file_name,Point_M0_X,Point_M0_Y") and len(lines) == 25
    assert all(cell.lstrip("-").isdigit() for cell in lines[1].split(",")[1:])
    result = run_cli("evaluate", "--predictions", tmp_path / "p.csv", "--predictions", tmp_path / "pf.csv",
                     "--predictions", tmp_path / "base.csv", "--answers", test / "answers.csv",
                     "--points", test / "test_points.csv", "--json", tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    model, flipped, baseline = (metrics[str(tmp_path / f)]["nme"] for f in ("p.csv", "pf.csv", "base.csv"))
    assert model < 0.6 * baseline, f"model NME {model:.2f}% vs mean shape {baseline:.2f}%"
    assert flipped < 0.6 * baseline
    assert "competition score" in result.stdout


def _final_val_nme(run: Path) -> float:
    rows = (run / "log.csv").read_text().splitlines()
    return float(rows[-1].split(",")[2])


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny, tmp_path):
    args = ["--data", tiny, "--recipe", "fast-cpu", "epochs=4", "scheduler=plateau", "loss=l1", *TINY]
    run_cli("train", "--out", tmp_path / "straight", *args)
    victim = subprocess.Popen([sys.executable, "-m", "densemarks", "train", "--out", tmp_path / "killed",
                               *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.csv"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # wait until epoch 2 is done, then kill inside epoch 3
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert len(log.read_text().splitlines()) < 5, "the run finished before it could be killed"
    run_cli("train", "--out", tmp_path / "killed", "--resume", *args)
    assert _final_val_nme(tmp_path / "killed") == pytest.approx(_final_val_nme(tmp_path / "straight"), rel=1e-6)


def test_bad_input(tiny, tmp_path):
    (tmp_path / "fake.pt").write_bytes(b"not a checkpoint")
    one_line_error(run_cli("predict", "--checkpoint", tmp_path / "fake.pt", "--data", tiny / "test",
                               "--out", tmp_path / "p.csv", check=False), "fake.pt", "not a densemarks checkpoint")
    one_line_error(run_cli("predict", "--checkpoint", tmp_path / "fake.pt", "--data", tiny / "test",
                               "--out", tmp_path / "p.csv", "--tta", "rotate", check=False), "choose none, flip or multi")
    one_line_error(run_cli("train", "--data", tiny, "--out", tmp_path / "r", "--recipe", "fast-cpu",
                               "lerning_rate=1", check=False), "did you mean 'lr'")
    answers = tiny / "test" / "answers.csv"
    lines = answers.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(lines[:-3]) + "\n")
    one_line_error(run_cli("evaluate", "--predictions", tmp_path / "short.csv", "--answers", answers, check=False),
                    "short.csv", "no prediction for")
    one_line_error(run_cli("submit", "--predictions", tmp_path / "short.csv", "--points",
                               tiny / "test" / "test_points.csv", "--out", tmp_path / "s.csv", check=False),
                    "no prediction for")
    assert not (tmp_path / "s.csv").exists()
    header, *rows = lines
    narrow = "\t".join(header.split("\t")[:-2]) + "\n" + "\n".join("\t".join(r.split("\t")[:-2]) for r in rows) + "\n"
    (tmp_path / "narrow.csv").write_text(narrow)
    one_line_error(run_cli("evaluate", "--predictions", tmp_path / "narrow.csv", "--answers", answers, check=False),
                    "29 points per face")


def test_heatmap_head_pipeline_and_resume(heatmap68, faces68, tiny, tmp_path):
    """accurate-cpu (the session's conftest.heatmap68: pretrained backbone, decoder from scratch)
    clearly beats the mean shape, with every TTA mode; a run resumed after epoch 1 ends exactly
    where a straight run does (the per-step point subsets come from the checkpointed RNG)."""
    _beats_the_mean_shape_with_every_tta(heatmap68, faces68, tmp_path)

    small = ["--data", tiny, "--recipe", "accurate-cpu", "weights=none", "scheduler=plateau", "augment.size=[64,64]",
             "batch_size=16", "threads=2", "heatmap_points_per_step=8"]
    run_cli("train", "--out", tmp_path / "straight", *small, "epochs=2")
    run_cli("train", "--out", tmp_path / "halves", *small, "epochs=1")
    run_cli("train", "--out", tmp_path / "halves", "--resume", *small[:2], "epochs=2")
    assert _final_val_nme(tmp_path / "halves") == pytest.approx(_final_val_nme(tmp_path / "straight"), rel=1e-6)


def test_simcc_head_pipeline(simcc68, faces68, tmp_path):
    """The SimCC head (conftest.simcc68) clearly beats the mean shape with every TTA mode."""
    _beats_the_mean_shape_with_every_tta(simcc68, faces68, tmp_path)


def _beats_the_mean_shape_with_every_tta(run: Path, faces68: Path, tmp_path: Path) -> None:
    test = faces68 / "test"
    for name, tta in (("p.csv", "none"), ("pf.csv", "flip"), ("pm.csv", "multi")):
        run_cli("predict", "--checkpoint", run / "best.pt", "--data", test, "--out", tmp_path / name, "--tta", tta)
    run_cli("predict", "--checkpoint", run / "best.pt", "--data", test, "--out", tmp_path / "base.csv",
            "--mean-shape", faces68 / "train")
    run_cli("evaluate", "--predictions", tmp_path / "p.csv", "--predictions", tmp_path / "pf.csv",
            "--predictions", tmp_path / "pm.csv", "--predictions", tmp_path / "base.csv",
            "--answers", test / "answers.csv", "--json", tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    model, flipped, multi, baseline = (metrics[str(tmp_path / f)]["nme"] for f in ("p.csv", "pf.csv", "pm.csv", "base.csv"))
    assert max(model, flipped, multi) < 0.6 * baseline, (model, flipped, multi, baseline)


def test_distillation_caches_the_teachers_points_and_resumes(trained68, faces68, tiny, tmp_path):
    """teacher=CKPT: the teacher's flip-TTA points for exactly the training faces are cached in
    the run folder, reused on --resume (not predicted again), and the run resumes exactly; a
    teacher of another point count is a one-line error before any training."""
    from densemarks.data.dataset import open_training_data
    from densemarks.inference.checkpoint import Checkpoint
    from densemarks.inference.predict import predict_images
    from densemarks.training.setup import validation_split

    teacher = trained68 / "best.pt"
    args = ["--data", faces68, "--recipe", "fast-cpu", "weights=none", "scheduler=plateau", "augment.size=[64,64]",
            "batch_size=32", "threads=2", f"teacher={teacher}", "teacher_weight=0.7"]
    run_cli("train", "--out", tmp_path / "straight", *args, "epochs=2")
    run_cli("train", "--out", tmp_path / "halves", *args, "epochs=1")
    cache, = (tmp_path / "halves").glob("teacher_points-*.npy")
    made = cache.stat().st_mtime_ns
    run_cli("train", "--out", tmp_path / "halves", "--resume", "--data", faces68, "epochs=2")
    assert cache.stat().st_mtime_ns == made
    assert _final_val_nme(tmp_path / "halves") == pytest.approx(_final_val_nme(tmp_path / "straight"), rel=1e-6)

    state = Checkpoint.load(tmp_path / "halves" / "best.pt")
    data = open_training_data(faces68)
    train_rows, _ = validation_split(len(data.table), state.config)
    expected = predict_images(Checkpoint.load(teacher), data.images_dir, data.table.file_names[train_rows], tta="flip")
    np.testing.assert_allclose(np.load(cache), expected, atol=1e-4)
    assert state.config.teacher == str(teacher) and state.config.teacher_weight == 0.7

    one_line_error(run_cli("train", "--data", tiny, "--out", tmp_path / "other", "--recipe", "fast-cpu",
                           f"teacher={teacher}", *TINY, check=False), "teacher has 68 points, the training data 30")


def _init_counts(result: subprocess.CompletedProcess) -> tuple[int, int]:
    """(tensors copied, tensors in the model) from the run's `init: ...` line."""
    copied, total = re.search(r"init: (\d+) of the model's (\d+) tensors", result.stdout + result.stderr).groups()
    return int(copied), int(total)


def test_init_starts_a_run_where_a_checkpoint_ended(trained68, faces68, tiny, tmp_path):
    """init=CKPT with the checkpoint's own recipe: every tensor is taken, so an epoch at a
    negligible learning rate validates about where the checkpoint did, where the same epoch
    from ImageNet weights is far off; a checkpoint of another point count fits the backbone
    only; a missing file is a one-line error before any training."""
    start = trained68 / "best.pt"
    args = ["--data", faces68, "--recipe", "fast-cpu", "epochs=1", "augment.size=[96,96]", "batch_size=8",
            "lr=1e-9", "scheduler=plateau", "loss=l1", "regression_pool=flatten", "threads=2"]
    result = run_cli("train", "--out", tmp_path / "tuned", *args, f"init={start}")
    copied, everything = _init_counts(result)
    assert copied == everything and "warning" not in result.stdout + result.stderr  # the same split
    run_cli("train", "--out", tmp_path / "fresh", *args)
    ended = _final_val_nme(trained68)
    assert _final_val_nme(tmp_path / "tuned") < 1.1 * ended < _final_val_nme(tmp_path / "fresh")

    result = run_cli("train", "--data", tiny, "--out", tmp_path / "other", "--recipe", "fast-cpu", "epochs=1",
                     "augment.size=[96,96]", "regression_pool=flatten", f"init={start}", "threads=2")
    assert _init_counts(result) == (everything - 2, everything)  # all but the Linear layer's weight and bias
    one_line_error(run_cli("train", "--data", tiny, "--out", tmp_path / "missing", "--recipe", "fast-cpu",
                           f"init={tmp_path / 'nothing.pt'}", *TINY, check=False), "nothing.pt", "checkpoint not found")


def test_weight_average_is_the_saved_model_and_resumes_exactly(tiny, tmp_path):
    """ema=...: validation and best.pt use the moving average (the raw weights ride along for
    --resume), and a run resumed after epoch 1 ends exactly where a straight run does."""
    args = ["--data", tiny, "--recipe", "fast-cpu", "epochs=2", "scheduler=plateau", "loss=l1", "ema=0.9", *TINY]
    run_cli("train", "--out", tmp_path / "straight", *args)
    run_cli("train", "--out", tmp_path / "halves", *[a for a in args if a != "epochs=2"], "epochs=1")
    run_cli("train", "--out", tmp_path / "halves", "--resume", "--data", tiny, "epochs=2")
    assert _final_val_nme(tmp_path / "halves") == pytest.approx(_final_val_nme(tmp_path / "straight"), rel=1e-6)
    state = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    averaged, raw = state["model"], state["training_model"]
    assert state["ema_updates"] > 0 and averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())
    one_line_error(run_cli("train", "--out", tmp_path / "halves", "--resume", "--data", tiny, "ema=0",
                               check=False), "ema=0.9", "resume with the same setting")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_rng_state_comes_back_from_a_checkpoint_loaded_onto_the_gpu(tmp_path):
    # --resume loads last.pt onto the training device; the RNG setters want CPU byte tensors.
    torch.save({"rng": rng_state()}, tmp_path / "state.pt")
    expected = torch.rand(3), torch.rand(3, device="cuda")
    set_rng_state(torch.load(tmp_path / "state.pt", map_location="cuda", weights_only=True)["rng"])
    again = torch.rand(3), torch.rand(3, device="cuda")
    assert all(torch.equal(a, b) for a, b in zip(expected, again))


def test_training_stops_its_loader_workers_before_returning(tiny, tmp_path):
    """The training loader keeps its worker processes between epochs; train() must stop them
    itself. Left to interpreter exit, PyTorch joined each with a 5 s timeout: `densemarks train`
    with 8 workers took 42 s to exit on the H200."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    _train_here(tiny, tmp_path / "run", [o for o in TINY if o != "workers=0"] + ["workers=2", "epochs=1"])
    assert set(multiprocessing.active_children()) - before == set()


def test_a_time_limited_one_cycle_run_still_ends_its_schedule(tiny, tmp_path):
    """500 epochs cannot fit in 4 seconds: the one-cycle schedule follows the clock, so the run
    stops at the limit with its learning rate annealed, not still warming up."""
    result = _train_here(tiny, tmp_path / "run", TINY + ["epochs=500", "scheduler=onecycle", "time_limit=4s",
                                                         "lr=1e-3", "backbone_lr_scale=1"])
    assert result.stopped_by_time and result.epochs_run < 500
    assert result.history[-1]["lr"] < 1e-3 / 1000  # the one-cycle end: max / 25 / 1e4


def _train_here(data: Path, out: Path, overrides: list[str]):
    """fast-cpu with these overrides, trained in this process (its worker processes and its
    schedule are what the caller looks at)."""
    from densemarks.recipes import config as cfg
    from densemarks.training.loop import train

    config = cfg.apply_overrides(cfg.load_recipe("fast-cpu"), cfg.parse_overrides(overrides), "test")
    return train(data, config, out, quiet=True)
