"""Shared fixtures and helpers: small synthetic datasets made once per test session, one CLI
runner, and two models trained once through the real CLI (a regression and a heatmap model
on 68-point faces) that the CLI, TTA, export and photo tests share."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from densemarks.data.synth import synthesize

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
SHARED_300W = SHARED / "data" / "300w-afw-helen" / "train"


def run_cli(*args, check: bool = True, torch_home: Path | None = None, isolated: bool = False, timeout: int = 900,
            **kwargs) -> subprocess.CompletedProcess:
    """The `densemarks ARGS` command: its exit code, standard output and standard error.

    By default it runs in this process through `cli.main`, the console script's own entry (the
    same parsing, error handling and exit codes; torch and friends are imported once for the
    whole session instead of about 7 s per call on 2 cores). isolated, or any subprocess option
    (env=...): `python -m densemarks ARGS` in a subprocess, as a user runs it.
    check: exit 0 expected."""
    if isolated or kwargs:
        env = {**kwargs.pop("env", os.environ), **({"TORCH_HOME": str(torch_home)} if torch_home else {})}
        result = subprocess.run([sys.executable, "-m", "densemarks", *map(str, args)], capture_output=True,
                                text=True, timeout=timeout, env=env, **kwargs)
    else:
        result = _run_in_process([str(a) for a in args], torch_home)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def _run_in_process(args: list[str], torch_home: Path | None) -> subprocess.CompletedProcess:
    from densemarks import cli

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")  # has .buffer, as sys.stdout does
    stderr = io.StringIO()
    saved_home = os.environ.get("TORCH_HOME")
    if torch_home:
        os.environ["TORCH_HOME"] = str(torch_home)
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                cli.main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except Exception:  # what an uncaught error does to a process: a traceback, exit 1
                traceback.print_exc(file=sys.stderr)
                code = 1
    finally:
        if torch_home:
            if saved_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = saved_home
    stdout.flush()
    return subprocess.CompletedProcess(["densemarks", *args], code,
                                       stdout.buffer.getvalue().decode("utf-8", "replace"), stderr.getvalue())


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """The promise for bad input: exit 2, one line `error: ...` holding every word, last on
    standard error (progress bars of work done before the problem may precede it), no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert not any(line.startswith("error") for line in lines[:-1]), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[-1], lines[-1]
    return lines[-1]


def _synthetic(tmp_path_factory, name: str, train: int, test: int, points: int, seed: int) -> Path:
    root = tmp_path_factory.mktemp(name) / "data"
    synthesize(root, train=train, test=test, num_points=points, seed=seed)
    return root


@pytest.fixture(scope="session")
def synth971(tmp_path_factory):
    """40 training and 8 test faces with the competition's 971 points."""
    return _synthetic(tmp_path_factory, "synth971", 40, 8, 971, seed=1)


@pytest.fixture(scope="session")
def synth68(tmp_path_factory):
    return _synthetic(tmp_path_factory, "synth68", 60, 6, 68, seed=2)


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A torchvision cache holding the pretrained MobileNetV2 file, as a user's would."""
    if not SHARED_WEIGHTS.is_file():
        pytest.skip(f"needs {SHARED_WEIGHTS} (torchvision's MobileNetV2 file), which is not there")
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(SHARED_WEIGHTS, home / "hub" / "checkpoints")
    return home


@pytest.fixture(scope="session")
def faces68(tmp_path_factory):
    """240 training and 24 test faces with iBUG's 68 points (NME by the eye corners)."""
    return _synthetic(tmp_path_factory, "faces68", 240, 24, 68, seed=5)


@pytest.fixture(scope="session")
def trained68(faces68, tmp_path_factory, torch_home) -> Path:
    """fast-cpu (pretrained MobileNetV2, regression) briefly on faces68: its run folder. The
    flattened feature map (the demo's) reaches 10.3% validation NME where pooling stayed at
    15.6% in the same 20 epochs; the photo and video tests sat at the edge with the weaker model
    and failed on machines whose kernels round differently."""
    run = tmp_path_factory.mktemp("run68")
    run_cli("train", "--data", faces68, "--out", run, "--recipe", "fast-cpu", "epochs=20", "augment.size=[96,96]",
            "batch_size=8", "lr=2e-3", "loss=l1", "regression_pool=flatten", "threads=2", torch_home=torch_home)
    return run


@pytest.fixture(scope="session")
def simcc68(faces68, tmp_path_factory, torch_home) -> Path:
    """The SimCC head (pretrained backbone, its layers from scratch) briefly on faces68."""
    run = tmp_path_factory.mktemp("simcc68")
    run_cli("train", "--data", faces68, "--out", run, "--recipe", "accurate-cpu", "head=simcc", "epochs=12",
            "augment.size=[96,96]", "batch_size=8", "threads=2", torch_home=torch_home)
    return run


@pytest.fixture(scope="session")
def heatmap68(faces68, tmp_path_factory, torch_home) -> Path:
    """accurate-cpu (pretrained backbone, decoder from scratch) briefly on faces68: its run folder."""
    run = tmp_path_factory.mktemp("heatmap68")
    run_cli("train", "--data", faces68, "--out", run, "--recipe", "accurate-cpu", "epochs=8", "augment.size=[96,96]",
            "batch_size=8", "threads=2", "heatmap_points_per_step=16", torch_home=torch_home)
    return run
