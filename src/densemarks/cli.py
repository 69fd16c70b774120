"""The `densemarks` command: one typer app, a subcommand per task; each maps its arguments to
library calls and prints the result.

Bad input raises DataError anywhere below; `main` prints it as one line and exits with 2.
Each command imports the layers it calls when it runs (the one place imports sit inside
functions): `densemarks --help`, `synth` and `info` would otherwise load torch and every model
first (5-10 s on 2 cores). The registries the help texts list (TTA modes, detectors, recipes)
are light modules.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from densemarks.core.errors import MAX_SEED, MAX_THREADS, MAX_WORKERS, DataError, env_int, last_line
from densemarks.core.registry import names
from densemarks.data.formats import READERS as FORMATS, WRITERS as EXPORT_FORMATS
from densemarks.inference.tta import TTA_MODES, parse_tta
from densemarks.photos.detect import DETECTORS
from densemarks.recipes.catalog import recipe_names

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and run dense facial landmark models (competition data layout).")
console = Console()


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to create (train/ and test/ inside).")],
    train: Annotated[int, typer.Option(min=1, help="Training faces.")] = 1000,
    test: Annotated[int, typer.Option(min=1, help="Test faces.")] = 200,
    points: Annotated[int, typer.Option(help="Points per face (K).")] = 971,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Random seed; same seed, same dataset.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    workers: Annotated[int, typer.Option(min=1, max=MAX_WORKERS, help="Processes rendering faces (same output for any number).")] = 1,
):
    """Write a synthetic dataset in the competition layout."""
    from densemarks.data.synth import synthesize

    _will_write(out, folder=True)
    synthesize(out, train, test, points, seed, overwrite=overwrite, workers=workers)
    console.print(f"wrote {train} training and {test} test faces with {points} points to {out}")


@app.command()
def info(
    data: Annotated[Path, typer.Option(help="Dataset folder (holding train/) or a train folder.")],
    flip_index: Annotated[Optional[Path], typer.Option(help="Flip index file overriding the derived one.")] = None,
    sample: Annotated[int, typer.Option(min=1, help="Images whose size is read for the summary.")] = 2000,
):
    """Summarise a dataset: faces, points, scheme, image sizes, points outside the image."""
    from densemarks.analysis.summary import print_summary, summarise

    print_summary(console, summarise(data, flip_index, sample))


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Annotations: a folder of .pts files, a dlib XML, a WFLW list, a COCO JSON, or a plain CSV/JSON.")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write (train/, optionally test/).")],
    format: Annotated[str, typer.Option("--format", help=f"{names(FORMATS)}, or auto (from the folder or suffix).")] = "auto",
    images: Annotated[Optional[Path], typer.Option(help="Folder the annotations' image names are relative to (default: beside them).")] = None,
    margin: Annotated[float, typer.Option(min=0, max=2, help="Crop margin around the points' extent, as a share of the face's size, on each side.")] = 0.25,
    max_side: Annotated[int, typer.Option(min=0, help="Shrink crops larger than this many pixels (0: keep).")] = 0,
    test_fraction: Annotated[float, typer.Option(min=0, max=0.99, help="Share of photos written to test/ (answers.csv, test_points.csv).")] = 0.0,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Chooses the test photos.")] = 0,
    category: Annotated[Optional[str], typer.Option(help="COCO: the keypoint category (name or id); default the first with keypoints, or WholeBody's face points.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
):
    """Cut annotated faces out of their photos into the competition layout (crops, landmarks.csv, scheme.json)."""
    from densemarks.data.formats import guess_format, reader
    from densemarks.data.formats.convert import convert as run_convert

    _will_write(out, folder=True, inputs=[source, images], replaces_folder=overwrite)
    name = guess_format(source) if format == "auto" else format
    read = reader(name)
    found = read(source, images, category) if name == "coco" else read(source, images)
    summary = run_convert(found, out, margin=margin, max_side=max_side, test_fraction=test_fraction,
                          seed=seed, overwrite=overwrite)
    console.print(f"{name}: {summary.faces} faces with {summary.num_points} points from {summary.photos} photos -> {out} "
                  f"(train {summary.train}, test {summary.test})")
    console.print(summary.scheme_note)
    if summary.problems:
        console.print(f"{len(summary.problems)} annotation(s) left out (all in {out / 'problems.txt'}):")
        for line in summary.problems[:5]:
            console.print(f"  {line}", markup=False)


@app.command("export-points")
def export_points(
    predictions: Annotated[Path, typer.Argument(help="Predictions: a CSV from `predict` or a .json from `detect`.")],
    out: Annotated[Path, typer.Option(help="Output: a folder (pts) or a file (dlib .xml, coco .json).")],
    format: Annotated[str, typer.Option("--format", help=f"{names(EXPORT_FORMATS)}.")],
    images: Annotated[Optional[Path], typer.Option(help="CSV predictions: the images they were made on (default: images/ beside the CSV).")] = None,
    sources: Annotated[Optional[Path], typer.Option(help="sources.csv of a `convert`ed folder: points go back to the original photos.")] = None,
    reference: Annotated[Optional[Path], typer.Option(help="coco: the annotation file whose image ids the results use (COCO's results format).")] = None,
):
    """Write predictions as .pts files, a dlib XML or COCO keypoints, for other tools."""
    from densemarks.data.formats import writer
    from densemarks.data.formats.export import photos_from_predictions

    _will_write(out, folder=format == "pts", inputs=[predictions, sources, reference])
    write = writer(format)
    photos = photos_from_predictions(predictions, images, sources)
    if format == "coco":
        count = write(photos, out, reference, images)
    else:
        count = write(photos, out)
    console.print(f"wrote {count} faces of {len(photos)} photos to {out} ({format})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Dataset folder holding train/ (or a train folder).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, log.csv, curves.png, tensorboard/.")],
    recipe: Annotated[str, typer.Option(help=f"Recipe: {names(recipe_names())} (recipes/NAME.yaml), or a YAML path.")] = "seed",
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt exactly where it stopped.")] = False,
    time_limit: Annotated[Optional[str], typer.Option(help="Stop after this long, e.g. 30m; keeps the best checkpoint.")] = None,
    exclude: Annotated[Optional[Path], typer.Option(help="File of image names (one a line) to leave out of training.")] = None,
    folds: Annotated[Optional[int], typer.Option(min=2, help="k-fold: validate on one of K folds (fixed by split_seed).")] = None,
    fold: Annotated[Optional[int], typer.Option(min=0, help="The fold to validate on; omitted with --folds: train every fold into OUT/fold{i} and merge OUT/oof.csv.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the trained run OUT already holds (without it, that is refused); "
                                                "with --folds and no --fold, train every fold again instead of keeping those that finished.")] = False,
):
    """Train a model. Extra KEY=VALUE arguments override the recipe (augment.flip_p=0.5)."""
    from densemarks.data.dataset import read_name_list
    from densemarks.training.kfold import train_folds
    from densemarks.training.loop import train as run_training
    from densemarks.training.setup import resolve_config

    _will_write(out, folder=True)
    every_fold = folds is not None and fold is None
    if not every_fold:  # every fold: the folds that finished are kept, the others trained again
        _check_run_folder(out, resume, overwrite)
    config = resolve_config(recipe, ctx.args, resume_from=out / "last.pt" if resume else None,
                            time_limit=time_limit, folds=folds, fold=fold)
    _announce_threads(config.threads)
    global _kept_on_interrupt
    _kept_on_interrupt = (f"{out}/last.pt holds the last finished epoch (if one finished); the same command with "
                          "--resume continues from it")
    excluded = read_name_list(exclude) if exclude is not None else None
    if every_fold:
        merged = train_folds(data, config, out, keep_finished=not overwrite, exclude=excluded)
        console.print(f"trained {folds} folds in {out}; out-of-fold predictions in {merged}")
        return
    result = run_training(data, config, out, resume=resume, exclude=excluded)
    if _main_process():
        console.print(f"best epoch {result.best_epoch}: validation {result.best_metric:.4f}; "
                      f"checkpoints in {out}" + (" (stopped by the time limit)" if result.stopped_by_time else ""))


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A run folder that holds a trained run is continued (--resume) or replaced (--overwrite),
    never silently overwritten by a new run."""
    if resume and overwrite:
        raise DataError(out, "--resume continues the run in this folder and --overwrite replaces it: choose one")
    held = [p.name for p in (out / "last.pt", out / "best.pt") if p.is_file()]
    if held and not resume and not overwrite:
        raise DataError(out, f"holds a trained run already ({held[0]}): --resume continues it, --overwrite "
                             "replaces it, or choose another --out")


@app.command("ensemble")
def ensemble_command(
    predictions: Annotated[list[Path], typer.Argument(help="Prediction files of the models (same faces).")],
    out: Annotated[Path, typer.Option(help="Averaged predictions CSV to write.")],
    weights: Annotated[str, typer.Option(help="equal, auto (fitted on validation predictions), or w1,w2,...")] = "equal",
    answers: Annotated[Optional[Path], typer.Option(help="auto: the truth (landmarks.csv layout, e.g. train/landmarks.csv).")] = None,
    val: Annotated[Optional[list[Path]], typer.Option(help="auto: validation predictions of the same models, in the same order; repeat. Default: PREDICTIONS themselves.")] = None,
    per_region: Annotated[bool, typer.Option(help="auto: fit separate weights for each region of the scheme.")] = False,
    scheme: Annotated[Optional[Path], typer.Option(help="scheme.json for regions and NME; found beside --answers when omitted.")] = None,
):
    """Average several models' predictions, with given or fitted non-negative weights."""
    from densemarks.inference.ensemble import ensemble_files

    _will_write(out, inputs=[*predictions, *(val or []), answers, scheme])
    chosen, fit, faces = ensemble_files(predictions, out, weights, answers, val, per_region, scheme)
    if fit is not None:
        for path, m in zip(val or predictions, fit.members):
            console.print(f"validation {path}: {_score_text(m)}")
        console.print(f"validation ensemble (fitted on these faces): {_score_text(fit.ensemble)}")
    for path, w in zip(predictions, chosen.weights):
        console.print(f"  {w:.3f}  {path}")
    for region, values in chosen.region_weights.items():
        console.print(f"  {region}: " + ", ".join(f"{v:.3f}" for v in values))
    console.print(f"wrote the ensemble of {len(predictions)} files ({faces} faces) to {out}")


def _score_text(m) -> str:
    return f"score {m.competition_score:.2f}" + (f", NME {m.nme:.3f}%" if m.nme is not None else "")


@app.command()
def preprocess(
    data: Annotated[Path, typer.Option(help="Dataset folder holding train/ (or a train folder).")],
    side: Annotated[Optional[int], typer.Option(min=16, max=8192, help="Longest stored side in pixels (default: 1.25 x the recipe's input).")] = None,
    recipe: Annotated[str, typer.Option(help="Recipe whose input size sets the default side.")] = "seed",
    format: Annotated[str, typer.Option("--format", help="raw (a memory map, no decoding) or jpeg (re-encoded, compact): data.store.FORMATS.")] = "raw",
    threads: Annotated[int, typer.Option(min=1, max=MAX_THREADS, help="Decoding threads.")] = 2,
):
    """Decode and shrink every training image once into one store file; train with store_side=N."""
    from densemarks.data.dataset import open_training_data
    from densemarks.data.store import build_store
    from densemarks.recipes.config import load_recipe
    from densemarks.data.store import default_side, store_bytes

    training = open_training_data(data)
    side = side or default_side(load_recipe(recipe).augment.size)
    folder = build_store(training.root, training.table.file_names, side, format, threads)
    console.print(f"stored {len(training.table)} images at most {side} px ({store_bytes(folder) / 2 ** 20:.0f} MB, "
                  f"{format}) in {folder}; train with store_side={side} store_format={format}")


@app.command("merge-folds")
def merge_folds(
    runs: Annotated[list[Path], typer.Argument(help="The run folders of every fold.")],
    out: Annotated[Path, typer.Option(help="Out-of-fold predictions CSV to write.")],
):
    """Merge the folds' validation predictions into one out-of-fold file (training order)."""
    from densemarks.training.kfold import merge_out_of_fold

    _will_write(out, inputs=[p for run in runs for p in (run / "val_predictions.csv", run / "last.pt", run / "best.pt")])
    console.print(f"wrote {merge_out_of_fold(runs, out)} out-of-fold predictions to {out}")


ThreadsOption = Annotated[int, typer.Option(min=0, max=MAX_THREADS, help="torch CPU threads; 0: the cores other processes leave free (core/threads.py).")]
ShapePriorOption = Annotated[bool, typer.Option(help="Pass the points through the checkpoint's shape prior, where "
                                                      "training fitted one (inference/shape_prior.py).")]
TtaOption = Annotated[str, typer.Option(
    help=f"Test-time augmentation: {names(TTA_MODES)} (passes: "
         + ", ".join(f"{k} {m.passes}" for k, m in TTA_MODES.items()) + ").")]


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint (RUN/best.pt).")],
    data: Annotated[Path, typer.Option(help="Test folder: images/ and optionally test_points.csv.")],
    out: Annotated[Path, typer.Option(help="Predictions CSV (landmarks.csv layout, image pixels).")],
    tta: TtaOption = "none",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    workers: Annotated[int, typer.Option(min=0, max=MAX_WORKERS)] = 1,
    draw: Annotated[Optional[Path], typer.Option(help="Also save a PNG grid of predictions here.")] = None,
    mean_shape: Annotated[Optional[Path], typer.Option(help="Instead of the model, predict the mean shape of this training folder (the baseline).")] = None,
    shape_prior: ShapePriorOption = True,
    threads: ThreadsOption = 0,
    keep_freed_memory: Annotated[bool, typer.Option(help="Reuse the memory a batch frees for the next (faster, a little more memory; core/memory.py).")] = True,
):
    """Predict every point of every face, in original-image pixels."""
    from densemarks.analysis.viz import prediction_grid
    from densemarks.data.csvio import write_landmarks
    from densemarks.core import memory
    from densemarks.data.dataset import train_folder
    from densemarks.inference.predict import mean_shape_folder, predict_folder

    read = [checkpoint, data / "test_points.csv", mean_shape and train_folder(mean_shape) / "landmarks.csv"]
    _will_write(out, inputs=read)
    _will_write(draw, inputs=read, picture=True)
    parse_tta(tta)  # a bad name fails before any work
    _announce_threads(threads)
    if mean_shape is not None:
        names, points = mean_shape_folder(checkpoint, data, mean_shape)
    else:
        if keep_freed_memory:
            memory.keep_freed_memory()
        names, points = predict_folder(checkpoint, data, tta=tta, batch_size=batch_size, workers=workers,
                                       shape_prior=shape_prior)
    if not _main_process():
        return
    write_landmarks(out, names, points)
    if draw is not None:
        prediction_grid(data / "images", names, points, draw)
    console.print(f"wrote {len(names)} predictions to {out}" + (f" and {draw}" if draw else ""))


@app.command()
def submit(
    predictions: Annotated[Path, typer.Option(help="Predictions CSV from `densemarks predict`.")],
    points: Annotated[Path, typer.Option(help="The test folder's test_points.csv.")],
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")],
):
    """Write the Kaggle submission: requested points, rounded, in test_points.csv order."""
    from densemarks.inference.submission import write_submission

    _will_write(out, inputs=[predictions, points])
    rows = write_submission(predictions, points, out)
    console.print(f"wrote {rows} rows to {out}")


@app.command()
def evaluate(
    predictions: Annotated[list[Path], typer.Option(help="Predictions CSV; repeat to compare several.")],
    answers: Annotated[Path, typer.Option(help="The truth, landmarks.csv layout.")],
    points: Annotated[Optional[Path], typer.Option(help="test_points.csv: score only the requested points.")] = None,
    scheme: Annotated[Optional[Path], typer.Option(help="scheme.json (NME pair, regions); found beside the data when omitted.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here (default: on stdout, after the table).")] = None,
    draw: Annotated[Optional[Path], typer.Option(help="PNG of the first faces and the worst: truth beside the (first) predictions, regions as lines.")] = None,
):
    """Competition score, MSE, NME, failure rate and per-region NME, as a table and JSON."""
    from densemarks.analysis.evaluate import draw_evaluation, evaluate_files, metrics_table
    from densemarks.core.fileio import atomic_path

    read = [*predictions, answers, points, scheme]
    _will_write(json_out, inputs=read)
    _will_write(draw, inputs=read, picture=True)
    results = evaluate_files(predictions, answers, points, scheme)
    console.print(metrics_table(results))
    text = json.dumps({str(k): v.to_dict() for k, v in results.items()}, indent=2)
    if json_out is None:
        print(text)
    else:
        with atomic_path(json_out) as tmp:
            tmp.write_text(text)
    if draw is not None:
        draw_evaluation(predictions[0], answers, draw, scheme_file=scheme)
        Console(stderr=True).print(f"truth (red) beside {predictions[0]} (green), and the worst face: {draw}")


@app.command()
def clean(
    data: Annotated[Path, typer.Option(help="Dataset folder holding train/ (or a train folder).")],
    out: Annotated[Path, typer.Option(help="Report folder: ranked.csv, exclude.txt, worst.png.")],
    oof: Annotated[Optional[Path], typer.Option(help="Out-of-fold predictions of the training faces (train --folds K).")] = None,
    top: Annotated[float, typer.Option(min=0, max=1, help="Share of faces listed in exclude.txt.")] = 0.01,
    gallery: Annotated[int, typer.Option(min=1, help="Worst faces drawn in worst.png.")] = 24,
):
    """Rank training faces by likely label noise: out-of-fold error and Procrustes residual."""
    from densemarks.analysis.noise import clean_report

    _will_write(out, folder=True)
    ranking, count = clean_report(data, out, oof, top, gallery)
    console.print(f"ranked {len(ranking.rows)} faces; top {count} in {out / 'exclude.txt'} "
                  f"(train --exclude it); labels (green) and out-of-fold predictions (red) in {out / 'worst.png'}")


@app.command()
def analyze(
    data: Annotated[Path, typer.Option(help="Dataset folder holding train/ (or a train folder).")],
    out: Annotated[Path, typer.Option(help="Report folder to write.")],
    sample: Annotated[int, typer.Option(min=1, help="Images whose size is read.")] = 5000,
):
    """Head pose (roll, yaw, pitch proxies), mean shape, point spread, sizes and outliers."""
    from densemarks.analysis.report import write_report

    _will_write(out, folder=True)
    facts = write_report(data, out, sample)
    roll = facts["roll_deg"]
    console.print(f"{facts['faces']} faces; roll median {roll['median']:.1f} deg (5-95%: {roll['p5']:.1f} to "
                  f"{roll['p95']:.1f}); {facts['faces_rolled_over_15_deg']} rolled over 15 deg; report in {out}")


# Options shared by the photo commands.
DetectorOption = Annotated[str, typer.Option(help=f"Face detector: {names(DETECTORS)}.")]
BackendOption = Annotated[str, typer.Option(help="torch, or onnx (the model from `densemarks export`): photos.predictor.BACKENDS.")]
OnnxOption = Annotated[Optional[Path], typer.Option(help="ONNX file for --backend onnx (default: CKPT with .onnx).")]
RefineOption = Annotated[Optional[int], typer.Option(min=0, help="Re-framing passes after the first crop "
                                                    "(default: 0 when the detector's keypoints turned it, else 1).")]
KeypointsOption = Annotated[bool, typer.Option(help="Turn each first crop by the face's roll from the detector's "
                                                    "keypoints (MTCNN's eyes and mouth corners).")]


def _photo_predictor(checkpoint: Path, detector: str, backend: str, onnx: Optional[Path], tta: str,
                     refine: Optional[int], threads: int, video: bool = False, keypoints: bool = True,
                     shape_prior: bool = True):
    """backend "auto": ONNX Runtime with --onnx or CKPT.onnx when there is one; for video, with
    an export kept in the user cache when there is none (made once); else torch."""
    from densemarks.photos.predictor import Predictor

    choice = _announce_threads(threads)
    if backend == "auto":
        beside = checkpoint.with_suffix(".onnx")
        if onnx is not None or beside.is_file():
            backend = "onnx"
        elif video:
            from densemarks.inference.export import cached_onnx

            onnx, made = cached_onnx(checkpoint)
            backend = "onnx"
            if made:
                console.print(f"exported the model for ONNX Runtime once: {onnx}", highlight=False)
        else:
            backend = "torch"
    return Predictor.from_checkpoint(checkpoint, detector=detector, backend=backend, onnx=onnx,
                                     refine=refine, tta=tta, threads=choice.threads, keypoints=keypoints,
                                     shape_prior=shape_prior)


def _announce_threads(threads: int):
    """Choose torch's thread count for this process and say so (rank 0 only; on standard error
    when standard output carries the result)."""
    from densemarks.core.threads import choose_threads

    choice = choose_threads(threads)
    if _main_process():
        console.print(choice.describe(), highlight=False, soft_wrap=True)
    return choice


@app.command()
def detect(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos; or one video (a file, or a folder of numbered frames with --video).")],
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint (RUN/best.pt).")],
    out: Annotated[Path, typer.Option(help="Output: .json or .csv of faces and points; for a video .jsonl, a line per frame.")],
    detector: DetectorOption = "mtcnn",
    backend: Annotated[str, typer.Option(help="auto (ONNX Runtime when CKPT.onnx or --onnx is there, and always for video: "
                                              "exported once into the user cache), torch, or onnx.")] = "auto",
    onnx: OnnxOption = None,
    tta: TtaOption = "none",
    refine: RefineOption = None,
    keypoints: KeypointsOption = True,
    shape_prior: ShapePriorOption = True,
    draw: Annotated[Optional[Path], typer.Option(help="Photos: a folder for each photo with its faces drawn. "
                                                     "Video: a video file (.mp4, .avi, .mkv) with the faces drawn.")] = None,
    threads: ThreadsOption = 0,
    video: Annotated[bool, typer.Option("--video", help="The input is one video: a folder of numbered frames, or a file with an unusual suffix.")] = False,
    fps: Annotated[Optional[float], typer.Option(min=0.1, max=1000, help="Video: frames per second (default: the file's; 30 for frames).")] = None,
    detect_every: Annotated[int, typer.Option(min=1, help="Video: frames between detector calls while faces are tracked.")] = 15,
    smooth: Annotated[bool, typer.Option(help="Video: One Euro smoothing of the points.")] = True,
    min_cutoff: Annotated[float, typer.Option(min=0.001, help="Video: smoothing cutoff (Hz) of a still face: lower, less jitter.")] = 1.0,
    beta: Annotated[float, typer.Option(min=0, help="Video: how fast the cutoff rises with speed (per face size): higher, less lag.")] = 30.0,
):
    """Find every face in ordinary photos, or follow the faces through a video, and predict
    their landmarks in photo (frame) pixels."""
    from densemarks.video.frames import is_video

    videos = [p for p in photos if is_video(p) or video]
    if videos:
        if len(photos) > 1:
            raise DataError(videos[0], "give one video per call (photos and videos do not mix either)")
        _detect_video(videos[0], checkpoint, out, detector, backend, onnx, tta, refine, draw, threads, fps,
                      detect_every, smooth, min_cutoff, beta, keypoints, shape_prior)
        return
    from densemarks.core.fileio import check_not_input
    from densemarks.photos.predictor import detect_photos, drawing_names, list_photos

    files = list_photos(photos)
    _will_write(out, inputs=[*files, checkpoint, onnx])
    _will_write(draw, folder=True)
    if draw is not None:  # a drawn picture must not replace a photo (--draw into the photos' folder)
        check_not_input([draw / name for name in drawing_names(files)], files)
    predictor = _photo_predictor(checkpoint, detector, backend, onnx, tta, refine, threads, keypoints=keypoints,
                                 shape_prior=shape_prior)
    result = detect_photos(predictor, files, out, draw)
    none = [str(f) for f, n in zip(files, result.faces) if n == 0]
    found = sum(n for n in result.faces if n)
    console.print(f"{found} faces in {len(files)} photos -> {out}" + (f"; pictures in {draw}" if draw else ""))
    if none:
        console.print(f"no face found in {len(none)} photo(s): " + ", ".join(none[:5]) + (" ..." if len(none) > 5 else ""))
    if result.failures:
        Console(stderr=True).print(f"{len(result.failures)} photo(s) could not be read (listed in {out}): "
                                   + "; ".join(result.failures[:3]) + (" ..." if len(result.failures) > 3 else ""),
                                   markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _detect_video(path: Path, checkpoint: Path, out: Path, detector: str, backend: str, onnx: Optional[Path], tta: str,
                  refine: Optional[int], draw: Optional[Path], threads: int, fps: Optional[float], detect_every: int,
                  smooth: bool, min_cutoff: float, beta: float, keypoints: bool, shape_prior: bool) -> None:
    from densemarks.video.frames import open_video
    from densemarks.video.run import FOURCC, detect_video
    from densemarks.video.smoothing import OneEuro
    from densemarks.video.tracker import FaceTracker, TrackOptions

    if out.suffix.lower() != ".jsonl":
        raise DataError(out, "video output must end in .jsonl (one JSON line per frame)")
    if draw is not None and draw.suffix.lower() not in FOURCC:
        raise DataError(draw, f"the drawn video must end in one of {', '.join(FOURCC)}")
    _will_write(out, inputs=[path, checkpoint, onnx])
    _will_write(draw, inputs=[path, checkpoint, onnx])
    source = open_video(path, fps)  # a file that is not a video fails here, before the model loads
    predictor = _photo_predictor(checkpoint, detector, backend, onnx, tta, refine, threads, video=True,
                                 keypoints=keypoints, shape_prior=shape_prior)
    options = TrackOptions(detect_every=detect_every, smoothing=OneEuro(min_cutoff, beta) if smooth else None)
    result = detect_video(FaceTracker(predictor, options), source, out, draw=draw)
    console.print(f"{result.frames} frames, {result.faces} faces in {result.tracks} track(s) -> {out}"
                  + (f"; drawn: {draw}" if draw else "")
                  + f"; {result.fps:.1f} frames/s, detector on {result.detector_calls} frames", highlight=False)
    if result.skipped:
        Console(stderr=True).print(f"warning: {result.skipped} frame(s) could not be decoded and were skipped "
                                   f"(listed in {out}): " + "; ".join(result.errors[:2]),
                                   markup=False, highlight=False, soft_wrap=True)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint (RUN/best.pt).")],
    out: Annotated[Path, typer.Option(help="ONNX file to write.")],
    opset: Annotated[int, typer.Option(min=18, help="ONNX opset (torch's exporter writes 18 and later).")] = 18,
):
    """Export the model with its decoding to ONNX; verified against torch before it is kept."""
    from densemarks.inference.export import export_onnx

    _will_write(out, inputs=[checkpoint])
    result = export_onnx(checkpoint, out, opset=opset)
    h, w = result.input_size
    console.print(f"wrote {out}: input crops (B, {h}, {w}, 3) uint8 RGB, output points (B, K, 2) in crop pixels; "
                  f"ONNX Runtime vs torch max difference {result.max_abs_diff:.2e} px")


@app.command("evaluate-photos")
def evaluate_photos_command(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint (RUN/best.pt).")],
    data: Annotated[Path, typer.Option(help="Folder with images/ and faces.csv (file_name, face, points).")],
    detector: DetectorOption = "mtcnn",
    backend: BackendOption = "torch",
    onnx: OnnxOption = None,
    tta: TtaOption = "none",
    refine: RefineOption = None,
    keypoints: KeypointsOption = True,
    shape_prior: ShapePriorOption = True,
    min_iou: Annotated[float, typer.Option(min=0.01, max=1, help="Box overlap for a detection to count as a face.")] = 0.4,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N photos.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for per_face.csv, report.json, examples.png.")] = None,
    threads: ThreadsOption = 0,
):
    """Detection recall, NME over found faces, failure rate (missed faces fail), time per photo."""
    from densemarks.photos.evaluate import evaluate_photos, write_photo_report

    _will_write(out, folder=True)
    predictor = _photo_predictor(checkpoint, detector, backend, onnx, tta, refine, threads, keypoints=keypoints,
                                 shape_prior=shape_prior)
    drawn = []
    report = evaluate_photos(predictor, data, min_iou=min_iou, limit=limit,
                             on_photo=(lambda *a: drawn.append(a) if len(drawn) < 12 else None) if out else None)
    summary = report.summary()
    table = Table("photos", "faces", "found", "recall", "NME %", "NME median", "failure % (NME>10 or missed)", "ms/photo")
    table.add_row(str(report.photos), str(report.faces), str(report.found), f"{report.recall:.3f}",
                  f"{report.nme:.2f}", f"{report.nme_median:.2f}", f"{report.failure_rate:.1f}",
                  f"{report.ms_per_photo:.0f}")
    console.print(table)
    print(json.dumps(summary))
    if out is not None:
        write_photo_report(report, drawn, out)
        console.print(f"per-face results and pictures in {out}")
    if report.unreadable:
        Console(stderr=True).print(f"{len(report.unreadable)} photo(s) could not be read and were left out: "
                                   + "; ".join(report.unreadable[:3]) + (" ..." if len(report.unreadable) > 3 else ""),
                                   markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


# What an interrupted command leaves behind (train says how to resume): the last line on Ctrl-C.
KEPT_BY_DEFAULT = "nothing half-written was left (each output is written whole or not at all)"
_kept_on_interrupt = KEPT_BY_DEFAULT


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _will_write(path: Optional[Path], folder: bool = False, inputs=(), replaces_folder: bool = False,
                picture: bool = False) -> None:
    """Check an output before any long work (core/fileio.check_output), and that it is none of
    the command's `inputs` (nor, for a folder the command replaces, holds one); `-` for a file
    means standard output, and this command's messages then go to standard error. picture: the
    file is a picture, its format named by its suffix."""
    from densemarks.core.fileio import check_not_input, check_output

    if path is None:
        return
    if picture and path.suffix.lower() not in PICTURE_SUFFIXES:
        raise DataError(path, f"a picture is written here: give a file name ending in {', '.join(PICTURE_SUFFIXES)}")
    check_output(path, folder=folder)
    check_not_input([path], inputs, replaces_folder=replaces_folder)
    if str(path) == "-":
        console.file = sys.stderr


def _main_process() -> bool:
    """False in the other ranks of a torchrun job: only rank 0 writes and reports."""
    return env_int("RANK", 0) == 0


def _close_progress_bars() -> None:
    """Close the bars an exception left open, so the last line on screen is the message."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, torch's OutOfMemoryError (CUDA) or its
    CPU allocator's RuntimeError."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or \
        "can't allocate memory" in str(exc) or "out of memory" in str(exc)


def main(argv: list[str] | None = None) -> None:
    """The console script; argv: the arguments (default: the process's)."""
    global _kept_on_interrupt
    console.file = None  # standard output, whatever it is now (a command writing to `-` moves it)
    _kept_on_interrupt = KEPT_BY_DEFAULT
    try:
        app(args=argv, prog_name="densemarks")
    except DataError as exc:
        _close_progress_bars()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"interrupted: {_kept_on_interrupt}", file=sys.stderr)
        sys.exit(130)
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        _close_progress_bars()
        print(f"error: out of memory ({last_line(exc, 200)}); {_kept_on_interrupt}; try a smaller batch_size=, augment.size=, "
              "model or decoder", file=sys.stderr)
        sys.exit(2)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into a silent exit 130
            _close_progress_bars()
            print(f"interrupted: {_kept_on_interrupt}", file=sys.stderr)
        raise
    finally:
        if "densemarks.core.distributed" in sys.modules:  # leave a torchrun process group cleanly
            sys.modules["densemarks.core.distributed"].shutdown()
