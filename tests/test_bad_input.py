"""Bad input, command by command and category by category (issue 20's list): every case ends in
one line `error: ...` naming the culprit and exit code 2, no traceback, nothing half-written;
a valid run beside the bad ones still works."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset

from conftest import one_line_error, run_cli
from densemarks.core.errors import DataError
from densemarks.core.fileio import cache_dir_for
from densemarks.data.synth import synthesize
from densemarks.recipes.config import TrainConfig, apply_overrides, load_recipe

# --- configuration, from a recipe file and from key=value alike -------------------------------

BAD_VALUES = [
    ("lr", 0, "lr=0.0: allowed > 0"), ("lr", -1e-3, "allowed > 0"), ("lr", float("nan"), "expected a finite number"),
    ("lr", float("inf"), "expected a finite number"), ("lr", True, "expected a finite number"),
    ("batch_size", 0, "batch_size=0: allowed from 1 to 65536"), ("batch_size", 2.5, "expected a whole number"),
    ("workers", -1, "from 0 to 256"), ("workers", 100000, "from 0 to 256"), ("threads", -2, "from 0 to 1024"),
    ("threads", 10**20, "from 0 to 1024"), ("batch_size", 10**23, "from 1 to 65536"), ("epochs", 0, "epochs=0: allowed >= 1"),
    ("seed", -1, "seed=-1: allowed from 0 to 4294967295"), ("seed", 10**20, "allowed from 0"),
    ("split_seed", -1, "split_seed=-1: allowed from 0"),
    ("val_fraction", 0, "needs validation faces"), ("val_fraction", 1.5, "in (0, 1)"),
    ("ema", 1.0, "ema=1.0: allowed in [0, 1)"), ("grad_clip", -1, "allowed >= 0"), ("amp", 1, "expected true or false"),
    ("augment.flip_p", 2, "augment.flip_p=2.0: allowed in [0, 1]"), ("augment.size", [224], "list of 2 integers"),
    ("augment.size", [0, 0], "two sizes from 16"), ("augment.size", [True, 3], "list of 2 integers"),
    ("augment.rotate_deg", -5, "in [0, 180]"), ("time_limit", "-5m", "duration > 0"), ("folds", 1, "0 (off) or >= 2"),
    ("model", None, "expected text"), ("decoder_fine_channels", -8, "from 0 to 8192"),
    # sizes that overflowed a float32 (lr) or the arithmetic (sigma), or asked for 360 GB (channels)
    ("lr", 1e300, "allowed > 0 and <= 10"), ("heatmap_sigma", 1e300, "<= 64 map pixels"),
    ("simcc_sigma", 1e300, "<= 64 pixels"), ("decoder_channels", 100000, "from 1 to 8192"),
    ("feature_head_conv", "maybe", "expected true or false"), ("keep_freed_memory", "sometimes", "expected true or false"),
    ("simcc_axes", "both", "is not one of shared or separate"),
]


@pytest.mark.parametrize("key, value, words", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_bad_values_are_refused_from_a_recipe_file(tmp_path, key, value, words):
    head, _, name = key.rpartition(".")
    text = f"{head}:\n  {name}: {_yaml(value)}\n" if head else f"{key}: {_yaml(value)}\n"
    (tmp_path / "r.yaml").write_text("model: mobilenet_v2\n" + text if key != "model" else text)
    with pytest.raises(DataError) as caught:
        load_recipe(str(tmp_path / "r.yaml"))
    assert words in str(caught.value) and "r.yaml" in str(caught.value)


def test_separate_simcc_axes_need_an_even_hidden_layer():
    with pytest.raises(DataError, match=r"simcc_hidden=63: simcc_axes=separate splits it between x and y"):
        apply_overrides(load_recipe("fast-cpu"), {"head": "simcc", "simcc_axes": "separate", "simcc_hidden": 63}, "cli")
    apply_overrides(load_recipe("fast-cpu"), {"head": "simcc", "simcc_axes": "separate", "simcc_hidden": 64}, "cli")
    apply_overrides(load_recipe("fast-cpu"), {"head": "simcc", "simcc_axes": "shared", "simcc_hidden": 0}, "cli")
    apply_overrides(load_recipe("fast-cpu"), {"simcc_hidden": 0}, "cli")  # another head: not its concern


# (`model=null` on a command line is the text 'null': a model name, checked when the model is made)
ON_THE_COMMAND_LINE = [case for case in BAD_VALUES if case[1] is not None]


@pytest.mark.parametrize("key, value, words", ON_THE_COMMAND_LINE, ids=[f"{k}={v}" for k, v, _ in ON_THE_COMMAND_LINE])
def test_bad_values_are_refused_on_the_command_line(key, value, words):
    with pytest.raises(DataError) as caught:
        apply_overrides(TrainConfig(), {key: _yaml(value)}, "command line")
    assert words.split(":")[-1].strip() in str(caught.value)


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value != value:
        return ".nan"
    if value == float("inf"):
        return ".inf"
    return str(value)


def test_fold_must_be_below_folds():
    with pytest.raises(DataError, match="fold=5: allowed 0 to folds - 1 = 4"):
        apply_overrides(TrainConfig(), {"folds": "5", "fold": "5"}, "x")
    with pytest.raises(DataError, match="fold=3 needs folds=K"):  # else one val_fraction split, silently
        apply_overrides(TrainConfig(), {"fold": "3"}, "x")
    assert apply_overrides(TrainConfig(), {"folds": "5", "fold": "3"}, "x").fold == 3


@pytest.mark.parametrize("text, words", [
    ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "alias (*a), line 2"),
    ("lr: [" + ",".join(["1"] * 6000) + "]\n", "more than 5000 YAML values"),
    ("lr: 1e-3\n" + "#" * 70000 + "\n", "at most 65536"),
    ("lr: [1, 2\n", "cannot read recipe"),
    ("- lr\n- 3\n", "a mapping of keys to values"),
    ("!!python/object/apply:os.system ['echo hi']\n", "cannot read recipe"),
])
def test_hostile_recipe_files_are_refused_before_expansion(tmp_path, text, words):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        load_recipe(str(path))


def test_a_non_utf8_recipe_names_the_byte(tmp_path):
    (tmp_path / "r.yaml").write_bytes(b"lr: 1e-3\nmodel: mobilen\xe9t\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_recipe(str(tmp_path / "r.yaml"))


# --- training: never exit 0 without a usable model ----------------------------------------------

SMALL = ["model=resnet18", "weights=none", "augment.size=[32,32]", "batch_size=8", "threads=1", "epochs=1"]


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    root = tmp_path_factory.mktemp("few") / "data"
    synthesize(root, train=24, test=4, num_points=30, seed=4)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("extra, words", [
    (["val_fraction=0.01"], "leave 24 for training and 0 for validation"),
    (["weight_decay=1e30", "grad_clip=0", "epochs=2"], "stopped"),
])
def test_training_without_a_usable_model_fails(few, tmp_path, extra, words):
    out = tmp_path / "run"
    result = run_cli("train", "--data", few, "--out", out, "--recipe", "fast-cpu", *SMALL, *extra, check=False)
    line = one_line_error(result, words)
    assert not (out / "best.pt").exists() or "hold the last finite model" in line


@pytest.mark.slow
@pytest.mark.parametrize("head, words", [("regression", "cannot take augment.size=[64, 64]"),
                                         ("heatmap", "cannot run on a 128x128 input")])
def test_a_network_made_for_another_input_size_is_refused_before_training(few, tmp_path, head, words):
    result = run_cli("train", "--data", few, "--out", tmp_path / "run", "--recipe", "fast-cpu", "model=vit_b_16",
                     f"head={head}", *SMALL[1:], "augment.size=[64,64]", check=False)
    one_line_error(result, "224", words)


@pytest.mark.slow
def test_a_training_step_beyond_the_machines_memory_is_refused_before_training(few, tmp_path):
    # resnet18 at 4096 px in batches of 8: activations alone are hundreds of GiB: the kernel would kill the process without a word
    out = tmp_path / "run"
    result = run_cli("train", "--data", few, "--out", out, "--recipe", "fast-cpu", *SMALL, "augment.size=[4096,4096]",
                     check=False)
    one_line_error(result, "at augment.size=[4096, 4096] in batches of 8 needs at least",
                   "GiB free: lower augment.size or batch_size")
    assert not (out / "best.pt").exists()


def test_running_out_of_memory_is_one_line(faces68, monkeypatch):
    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 360000000000 bytes.")

    monkeypatch.setattr("densemarks.analysis.evaluate.evaluate_files", allocate)
    answers = faces68 / "test" / "answers.csv"
    one_line_error(run_cli("evaluate", "--predictions", answers, "--answers", answers, check=False),
                   "out of memory", "360000000000 bytes", "try a smaller batch_size=")


def test_an_exclude_list_of_every_training_face_is_refused(few, tmp_path):
    names = [line.split("\t")[0] for line in (few / "train" / "landmarks.csv").read_text().splitlines()[1:]]
    (tmp_path / "all.txt").write_text("\n".join(names) + "\n")
    result = run_cli("train", "--data", few, "--out", tmp_path / "run", "--recipe", "fast-cpu", *SMALL,
                     "--exclude", tmp_path / "all.txt", check=False)
    one_line_error(result, "--exclude lists all 20 training faces of this split: none is left to train on")


def test_an_exclude_list_that_names_no_face_of_the_data_is_refused(few, tmp_path):
    """A list for other data (or names with their folder) excluded nothing, silently."""
    (tmp_path / "other.txt").write_text("images/0001.jpg\nsomeone_else.jpg\n")
    result = run_cli("train", "--data", few, "--out", tmp_path / "runs" / "fold0", "--recipe", "fast-cpu", *SMALL,
                     "--exclude", tmp_path / "other.txt", check=False)
    one_line_error(result, "--exclude: none of its 2 names is an image of ")
    assert not (tmp_path / "runs").exists()  # the folders training made for the run are gone again


def test_splits_without_faces_on_one_side_are_refused():
    from densemarks.training.setup import validation_split
    with pytest.raises(DataError, match="24 faces cannot make 30 folds"):
        validation_split(24, apply_overrides(TrainConfig(), {"folds": "30"}, "x"))
    with pytest.raises(DataError, match="leave 1 for training and 0 for validation"):
        validation_split(1, TrainConfig())
    train, val = validation_split(24, TrainConfig())
    assert len(train) and len(val) and len(train) + len(val) == 24


def test_an_output_on_a_file_system_without_a_disk_is_refused(tmp_path, monkeypatch):
    """/proc and /sys report a disk of size 0: not "no space left" but what they are."""
    import shutil as shutil_module
    from densemarks.core.fileio import check_output
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: shutil_module._ntuple_diskusage(0, 0, 0))
    with pytest.raises(DataError, match="on a virtual file system, not a disk"):
        check_output(tmp_path / "x.onnx")


def test_a_validation_face_without_a_normalising_distance_is_refused_before_training(tmp_path):
    """NME divides by the distance between the NME pair: a validation face whose two points
    coincide would make every epoch's NME astronomically large (it was 2.6e12%) and pick the
    best epoch by that one face."""
    from densemarks.data.dataset import open_training_data
    from densemarks.training.setup import validation_split
    root = tmp_path / "data"
    synthesize(root, train=24, test=2, num_points=68, seed=3)
    a, b = open_training_data(root).scheme.norm_points
    _, val_rows = validation_split(24, TrainConfig())
    csv = root / "train" / "landmarks.csv"
    lines = csv.read_text().splitlines()
    row = int(val_rows[-1])
    cells = lines[row + 1].split("\t")
    cells[1 + 2 * b], cells[2 + 2 * b] = cells[1 + 2 * a], cells[2 + 2 * a]
    lines[row + 1] = "\t".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = run_cli("train", "--data", root, "--out", out, "--recipe", "fast-cpu", *SMALL, check=False)
    one_line_error(result, f"landmarks.csv, line {row + 2}", f"normalising points {a} and {b} coincide")
    assert not (out / "best.pt").exists()


class _RunsCode:
    """An object whose unpickling would create a file: what a hostile checkpoint holds."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


class _Broken(Dataset):
    """Four items; the third cannot be loaded."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise DataError("images/x.jpg", "cannot decode image: truncated")
        return i


def test_an_error_raised_in_a_loader_process_arrives_as_the_same_one_line_error():
    with pytest.raises(DataError) as caught:
        list(DataLoader(_Broken(), num_workers=1))
    assert str(caught.value) == "images/x.jpg: cannot decode image: truncated (in a data loader process)"


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_how_to_resume(few, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "run"
    victim = subprocess.Popen([sys.executable, "-m", "densemarks", "train", "--data", str(few), "--out", str(out),
                               "--recipe", "fast-cpu", *SMALL[:-1], "epochs=100000"],  # never done before the signal
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              # Ctrl-C's default action even when pytest itself runs in the background
                              # (a shell starts background jobs with SIGINT ignored, and children inherit it)
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not ((out / "log.csv").is_file() and len((out / "log.csv").read_text().splitlines()) >= 2):
        time.sleep(0.2)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted: {out}/last.pt holds the last finished epoch (if one finished); "
                                            "the same command with --resume continues from it")
    assert (out / "last.pt").is_file()


@pytest.mark.slow
def test_checkpoints_that_are_not_usable(trained68, faces68, tmp_path):
    """Zero bytes, text, truncated, a dict without our keys, NaN weights: one line each, nothing
    written."""
    import torch

    from densemarks.inference.checkpoint import Checkpoint
    good = (trained68 / "best.pt").read_bytes()
    state = torch.load(trained68 / "best.pt", weights_only=True)
    state["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, tmp_path / "nan.pt")
    torch.save({"hello": 1}, tmp_path / "dict.pt")
    cases = {"zero.pt": b"", "text.pt": b"just text\n", "truncated.pt": good[: len(good) // 2]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    one_line_error(run_cli("export", "--checkpoint", tmp_path / "dict.pt", "--out", tmp_path / "m.onnx", check=False),
                   "dict.pt", "missing format")
    for name in ("zero.pt", "text.pt", "truncated.pt"):  # in-process: no start-up cost
        with pytest.raises(DataError, match="not a densemarks checkpoint"):
            Checkpoint.load(tmp_path / name)
    torch.save({"model": _RunsCode(tmp_path / "ran")}, tmp_path / "code.pt")  # torch.save pickles anything
    with pytest.raises(DataError, match="holding Python objects besides tensors, which are never loaded"):
        Checkpoint.load(tmp_path / "code.pt")
    assert not (tmp_path / "ran").exists()
    one_line_error(run_cli("predict", "--checkpoint", tmp_path / "nan.pt", "--data", faces68 / "test",
                           "--out", tmp_path / "p.csv", check=False), "nan.pt", "NaN")
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".best.tmp.k1ll3d.pt"  # what a save killed half-way leaves
    stale.write_bytes(good[:1000])
    Checkpoint.load(trained68 / "best.pt").save(tmp_path / "run" / "best.pt")
    assert not stale.exists() and Checkpoint.load(tmp_path / "run" / "best.pt").epoch >= 0
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "p.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("edit, words", [
    (lambda s: s["config"].__setitem__("decoder_channels", -3), "config: decoder_channels=-3: allowed from 1 to 8192"),
    (lambda s: s["config"]["augment"].__setitem__("size", [0, 0]), "augment.size=[0, 0]: allowed two sizes"),
    (lambda s: s["config"].__setitem__("lr", float("nan")), "lr=nan: expected a finite number"),
    (lambda s: s["config"]["augment"].__setitem__("normalize", "x"), "augment.normalize='x': expected true or false"),
    (lambda s: s["config"].__setitem__("head", "evil"), "head='evil' is not one of"),
    (lambda s: s["config"].__setitem__("augment", [1]), "config: not a mapping"),
    (lambda s: s.__setitem__("model", [1]), "model, scheme, framing, split, metrics or shape prior is not a mapping"),
    (lambda s: s.__setitem__("scheme", None), "model, scheme, framing, split, metrics or shape prior is not a mapping"),
    (lambda s: s.__setitem__("shape_prior", [1]), "model, scheme, framing, split, metrics or shape prior is not"),
    (lambda s: s["shape_prior"].__setitem__("noise", -s["shape_prior"]["noise"]), "shape prior: non-finite"),
    (lambda s: s["shape_prior"].__setitem__("mean", s["shape_prior"]["mean"][:5]), "shape prior: mean (5, 2)"),
    (lambda s: s["shape_prior"].__setitem__("rest", "x"), "damaged densemarks checkpoint"),
    (lambda s: s["framing"].__setitem__("region", [0, 0, float("nan"), 1]), "framing holds NaN"),
    (lambda s: s["framing"].__setitem__("size", [0, 160]), "must be positive"),
    (lambda s: s["split"].__setitem__("val_rows", [0, 0]), "validation rows are not distinct rows"),
    (lambda s: s["split"].__setitem__("val_rows", [10 ** 6]), "validation rows are not distinct rows"),
])
def test_edited_checkpoints_are_refused_on_load(trained68, tmp_path, edit, words):
    """A checkpoint whose stored config, scheme or framing was edited or damaged is checked
    like a recipe when it is read: one line naming the key, never a model with -3 channels."""
    import torch

    from densemarks.inference.checkpoint import Checkpoint
    state = torch.load(trained68 / "best.pt", weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(DataError) as caught:
        Checkpoint.load(tmp_path / "edited.pt")
    assert words in str(caught.value) and "damaged densemarks checkpoint" in str(caught.value)


@pytest.mark.parametrize("cell, words", [
    ("[" + "9" * 5000 + "]", "not a list of integers"), ("[" * 60000 + "]" * 60000, "not a list of integers"),
    ("[" * 100000 + "]" * 100000, "field larger than field limit"),
    ("[1.5]", "not a list of integers"), ("__import__('os').system('x')", "not a list of integers"),
    ("[99]", "index 99 out of range 0..1"), ("[]", "empty point_index_list"),
])
def test_bad_test_points_cells(tmp_path, cell, words):
    from densemarks.data.csvio import read_test_points
    path = tmp_path / "test_points.csv"
    path.write_text(f"file_name\tpoint_index_list\na.jpg\t{cell}\n")
    with pytest.raises(DataError) as caught:
        read_test_points(path, 2)
    assert words in str(caught.value) and "line 2" in str(caught.value)


# --- every command that reads a CSV, against a broken one ------------------------------------

BROKEN = {
    "latin1": lambda text: text.replace("\n", "\n\xe9", 2).encode("latin-1"),
    "commas": lambda text: text.replace("\t", ",").encode(),
    "nan": lambda text: _cell(text, "nan"),
    "short_row": lambda text: (text.rstrip("\n").rsplit("\t", 1)[0] + "\n").encode(),
    "empty": lambda text: b"",
    "duplicate": lambda text: (text + text.splitlines()[1] + "\n").encode(),
    "huge": lambda text: _cell(text, "1e30"),  # finite in float32, overflows any integer cast
    "long_digits": lambda text: _cell(text, "9" * 40),
}


def _cell(text: str, value: str) -> bytes:
    lines = text.splitlines()
    cells = lines[1].split("\t")
    cells[1] = value
    return "\n".join([lines[0], "\t".join(cells), *lines[2:]]).encode() + b"\n"


# Every command that reads a competition CSV, against every kind of breakage; `convert` reads
# other formats (a broken annotation there is a listed problem, not an error), so only breakage
# of the file itself applies to it.
CSV_COMMANDS = ["evaluate", "submit", "ensemble", "info", "clean", "analyze", "predict", "export-points"]
CASES = [(c, b) for c in CSV_COMMANDS for b in BROKEN] + [("convert", "latin1"), ("convert", "empty")]


@pytest.mark.slow
@pytest.mark.parametrize("command, broken", CASES)
def test_every_command_refuses_a_broken_csv_in_one_line(few, trained68, tmp_path, command, broken):
    data = tmp_path / "data"
    shutil.copytree(few, data)
    answers = data / "test" / "answers.csv"
    good_predictions = tmp_path / "good.csv"
    shutil.copy(answers, good_predictions)
    bad = tmp_path / "bad.csv"
    target = {"info": data / "train" / "landmarks.csv", "clean": data / "train" / "landmarks.csv",
              "analyze": data / "train" / "landmarks.csv",
              "predict": data / "test" / "test_points.csv"}.get(command, bad)
    source = target if target != bad else answers
    target.write_bytes(BROKEN[broken](source.read_text()))
    out = tmp_path / "out.csv"
    args = {
        "evaluate": ["--predictions", bad, "--answers", answers, "--json", out],
        "submit": ["--predictions", bad, "--points", data / "test" / "test_points.csv", "--out", out],
        "ensemble": [good_predictions, bad, "--out", out],
        "info": ["--data", data],
        "clean": ["--data", data, "--out", tmp_path / "clean"],
        "analyze": ["--data", data, "--out", tmp_path / "report"],
        "predict": ["--checkpoint", trained68 / "best.pt", "--data", data / "test", "--out", out],
        "export-points": [bad, "--format", "pts", "--out", tmp_path / "pts"],
        "convert": [bad, "--format", "csv", "--out", tmp_path / "converted"],
    }[command]
    result = run_cli(command, *args, check=False)
    one_line_error(result, target.name)
    assert not out.exists() and not (tmp_path / "pts").exists() and not (tmp_path / "converted").exists()


@pytest.mark.slow
def test_a_single_file_output_can_be_standard_output(faces68, tmp_path):
    test = faces68 / "test"
    result = run_cli("submit", "--predictions", test / "answers.csv", "--points", test / "test_points.csv", "--out", "-")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("file_name,Point_M0_X") and len(lines) == 1 + len(_requested_rows(test))
    assert "wrote" in result.stderr  # the messages moved out of the way


def test_a_scheme_file_that_is_not_there_is_an_error_not_the_default(faces68, tmp_path):
    answers = faces68 / "test" / "answers.csv"
    for missing in (tmp_path / "shceme.json", tmp_path):
        one_line_error(run_cli("evaluate", "--predictions", answers, "--answers", answers, "--scheme", missing,
                               check=False), str(missing), "not a file" if missing.exists() else "not found")


@pytest.mark.slow
def test_pictures_need_a_picture_name_and_an_export_a_known_opset(faces68, trained68, tmp_path):
    test = faces68 / "test"
    one_line_error(run_cli("predict", "--checkpoint", trained68 / "best.pt", "--data", test, "--out",
                           tmp_path / "p.csv", "--draw", tmp_path / "grid", check=False), "ending in .png")
    one_line_error(run_cli("evaluate", "--predictions", test / "answers.csv", "--answers", test / "answers.csv",
                           "--draw", tmp_path / "worst.gif", check=False), "ending in .png")
    one_line_error(run_cli("export", "--checkpoint", trained68 / "best.pt", "--out", tmp_path / "m.onnx",
                           "--opset", 999, check=False), "opset 999", "knows opsets up to")
    assert sorted(tmp_path.iterdir()) == []


def test_a_cache_folder_that_cannot_be_made_is_a_one_line_error(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "landmarks.csv").write_text("file_name\n")
    shared.chmod(0o555)  # read-only, so derived files go to the user cache
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("DENSEMARKS_CACHE", str(tmp_path / "a file"))
    try:
        with pytest.raises(DataError, match="set DENSEMARKS_CACHE to a writable folder"):
            cache_dir_for(shared / "landmarks.csv")
    finally:
        shared.chmod(0o755)


def _requested_rows(test: Path) -> list[str]:
    return (test / "test_points.csv").read_text().splitlines()[1:]


# --- an output that is one of the command's own inputs -----------------------------------------

ALSO = "is also an input of this command"
# case: (test folder, checkpoint, folder of the test's own files) -> (command args, the input
# they would destroy, the words of the error)
SAME_FILE = {
    "export onto its checkpoint": lambda test, ckpt, tmp: (
        ["export", "--checkpoint", ckpt, "--out", ckpt], ckpt, ALSO),
    "export onto a hard link of it": lambda test, ckpt, tmp: (
        ["export", "--checkpoint", ckpt, "--out", tmp / "linked.onnx"], ckpt, f"the same file as {ckpt}"),
    "predict onto test_points.csv": lambda test, ckpt, tmp: (
        ["predict", "--checkpoint", ckpt, "--data", test, "--out", test / "test_points.csv"],
        test / "test_points.csv", ALSO),
    "predict --mean-shape DATASET onto its training answers": lambda test, ckpt, tmp: (
        ["predict", "--checkpoint", ckpt, "--data", test, "--mean-shape", test.parent,
         "--out", test.parent / "train" / "landmarks.csv"], test.parent / "train" / "landmarks.csv", ALSO),
    "submit onto test_points.csv": lambda test, ckpt, tmp: (
        ["submit", "--predictions", tmp / "preds.csv", "--points", test / "test_points.csv",
         "--out", test / "test_points.csv"], test / "test_points.csv", ALSO),
    "evaluate's JSON onto the answers": lambda test, ckpt, tmp: (
        ["evaluate", "--predictions", tmp / "preds.csv", "--answers", test / "answers.csv",
         "--json", test / "answers.csv"], test / "answers.csv", ALSO),
    "ensemble onto a member": lambda test, ckpt, tmp: (
        ["ensemble", tmp / "preds.csv", test / "answers.csv", "--out", tmp / "preds.csv"], tmp / "preds.csv", ALSO),
    "detect drawing into the photos' folder": lambda test, ckpt, tmp: (
        ["detect", _photo(test), "--checkpoint", ckpt, "--out", tmp / "faces.json", "--draw", test / "images"],
        _photo(test), ALSO),
    "convert --overwrite of the folder holding the source": lambda test, ckpt, tmp: (
        ["convert", tmp / "converted" / "points.csv", "--format", "csv", "--out", tmp / "converted", "--overwrite"],
        tmp / "converted" / "points.csv", "holds an input of this command"),
}


def _photo(test: Path) -> Path:
    return min((test / "images").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SAME_FILE))
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(faces68, trained68, tmp_path, case):
    data, checkpoint = tmp_path / "data", tmp_path / "run" / "best.pt"
    shutil.copytree(faces68, data)
    checkpoint.parent.mkdir()
    shutil.copy(trained68 / "best.pt", checkpoint)
    shutil.copy(data / "test" / "answers.csv", tmp_path / "preds.csv")
    (tmp_path / "linked.onnx").hardlink_to(checkpoint)
    (tmp_path / "converted").mkdir()
    shutil.copy(data / "test" / "answers.csv", tmp_path / "converted" / "points.csv")
    args, kept, words = SAME_FILE[case](data / "test", checkpoint, tmp_path)
    before = kept.read_bytes()
    one_line_error(run_cli(*args, check=False), words)
    assert kept.read_bytes() == before


@pytest.mark.slow
def test_a_trained_run_is_continued_or_replaced_never_silently_overwritten(few, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", few, "--out", run, "--recipe", "fast-cpu", "epochs=1", "augment.size=[64,64]",
            "batch_size=8", "weights=none", "threads=1"]
    run_cli(*args)
    before = (run / "best.pt").read_bytes()
    one_line_error(run_cli(*args, check=False), "holds a trained run already (last.pt)", "--resume", "--overwrite")
    one_line_error(run_cli(*args, "--resume", "--overwrite", check=False), "choose one")
    assert (run / "best.pt").read_bytes() == before
    run_cli(*args, "seed=1", "--overwrite")
    assert (run / "best.pt").read_bytes() != before
    assert len((run / "log.csv").read_text().splitlines()) == 2  # the header and the new run's one epoch
    events = list((run / "tensorboard").glob("events.*")) if (run / "tensorboard").exists() else []
    assert len(events) <= 1  # the replaced run's curves are gone, not mixed with the new one's


@pytest.mark.slow
def test_every_fold_again_keeps_the_finished_folds_unless_overwritten(few, tmp_path):
    args = ["train", "--data", few, "--out", tmp_path / "kf", "--recipe", "fast-cpu", "epochs=1", "augment.size=[64,64]",
            "batch_size=8", "weights=none", "threads=1", "--folds", 2]
    run_cli(*args)
    fold0 = tmp_path / "kf" / "fold0" / "best.pt"
    before = fold0.read_bytes()
    run_cli(*args, "seed=1")  # what a crashed k-fold run is continued with: finished folds are kept
    assert fold0.read_bytes() == before
    run_cli(*args, "seed=1", "--overwrite")
    assert fold0.read_bytes() != before
