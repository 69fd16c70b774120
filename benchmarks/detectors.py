"""Benchmark: face detectors on annotated photos (recall, ms per photo) and the calibration of
their box priors (where the 68 landmarks sit relative to each detector's box).

Detectors that conflict with the main environment run in their own (README, "Detectors"), so
this has two steps: `run` in the detector's environment (needs only numpy, OpenCV, Pillow, the
detector, and densemarks' source on PYTHONPATH) writes a JSON of boxes and times; `score` in the
main environment matches them to the annotations and prints the table.

    PYTHONPATH=src python benchmarks/detectors.py run --detector mtcnn \\
        --photos ../shared/data/afw-photos --train ../shared/data/300w-afw-helen/train \\
        --exclude runs/afw_in_train.txt --out runs/detectors/mtcnn.json
    python benchmarks/detectors.py score runs/detectors/*.json --photos ../shared/data/afw-photos

Calibration uses training crops that are not photo faces (`--exclude`, from photo_overlap.py):
each crop is padded by half its size on every side (detectors miss faces that fill the frame),
and the prior is the median offset and size ratio between the landmark box and the detection
that overlaps it most.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _landmark_rows(path: Path):
    """(names, points) of a tab-separated file with file_name, [face,] Point_i_X, Point_i_Y."""
    import csv
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        start = 2 if header[1] == "face" else 1
        rows = list(reader)
    names = [r[0] for r in rows]
    points = np.asarray([[float(v) for v in r[start:]] for r in rows]).reshape(len(rows), -1, 2)
    return names, points


def run(args) -> None:
    import cv2

    from densemarks.photos.detect import create_detector
    from densemarks.data.images import load_image

    detector = create_detector(args.detector)
    photos = sorted(set(_landmark_rows(args.photos / "faces.csv")[0]))
    record = {"detector": args.detector, "photos": {}, "calibration": []}
    for name in photos[: args.limit]:
        pixels = load_image(args.photos / "images" / name).pixels
        started = time.perf_counter()
        found = detector(pixels)
        ms = (time.perf_counter() - started) * 1000
        record["photos"][name] = {"ms": ms, "boxes": [d.box.tolist() for d in found],
                                  "scores": [d.score for d in found]}
    if args.train is not None:
        names, points = _landmark_rows(args.train / "landmarks.csv")
        excluded = set(args.exclude.read_text().split()) if args.exclude else set()
        rows = [i for i, n in enumerate(names) if n not in excluded]
        rows = np.random.default_rng(0).permutation(rows)[: args.calibrate]
        for i in rows:
            pixels = load_image(args.train / "images" / names[i]).pixels
            h, w = pixels.shape[:2]
            padded = cv2.copyMakeBorder(pixels, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_CONSTANT, value=0)
            found = detector(padded)
            offset = np.array([w // 2, h // 2, w // 2, h // 2], dtype=np.float64)
            record["calibration"].append({"landmark_box": _box(points[i]).tolist(),
                                          "boxes": [(d.box - offset).tolist() for d in found]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record))
    print(f"{args.detector}: {len(record['photos'])} photos, {len(record['calibration'])} calibration crops -> {args.out}")


def _box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _matched(entries: list[dict]):
    """(landmark box, the detector box overlapping it most) for each calibration crop where one
    overlaps it by IoU >= 0.2."""
    from densemarks.core.boxes import iou
    for e in entries:
        if not e["boxes"]:
            continue
        truth = np.asarray(e["landmark_box"])
        boxes = np.asarray(e["boxes"])
        overlap = iou(truth[None], boxes)[0]
        if overlap.max() >= 0.2:
            yield truth, boxes[int(np.argmax(overlap))]


def calibrate(entries: list[dict]):
    shifts, ratios, aspects = [], [], []
    for t, b in _matched(entries):
        bw, bh = b[2] - b[0], b[3] - b[1]
        shifts.append((((t[0] + t[2]) - (b[0] + b[2])) / 2 / bw, ((t[1] + t[3]) - (b[1] + b[3])) / 2 / bh))
        ratios.append(np.sqrt((t[2] - t[0]) * (t[3] - t[1]) / (bw * bh)))
        aspects.append((t[2] - t[0]) / (t[3] - t[1]))
    if not shifts:
        return None, 0, 1.0
    from densemarks.photos.detect import BoxPrior
    dx, dy = np.median(np.asarray(shifts), axis=0)
    prior = BoxPrior(round(float(dx), 3), round(float(dy), 3), round(float(np.median(ratios)), 3))
    return prior, len(shifts), float(np.median(aspects))


def framing_error(entries: list[dict], prior) -> dict[str, tuple[float, float]]:
    """How far the first crop's framing (the prior applied to the detector's box) is from the
    face's own: per calibration crop, the landmark box's centre minus the prior's (x and y, in
    landmark-box sides) and the log of their sizes' ratio; (median, 90th percentile) of each's
    magnitude. Training jitter covers framing errors up to its own range (augment.py)."""
    errors = []
    for t, b in _matched(entries):
        bw, bh = b[2] - b[0], b[3] - b[1]
        side = np.sqrt((t[2] - t[0]) * (t[3] - t[1]))
        errors.append((((t[0] + t[2]) / 2 - (b[0] + b[2]) / 2 - prior.dx * bw) / side,
                       ((t[1] + t[3]) / 2 - (b[1] + b[3]) / 2 - prior.dy * bh) / side,
                       np.log(side / (prior.scale * np.sqrt(bw * bh)))))
    errors = np.abs(np.asarray(errors).reshape(-1, 3))
    return {k: (float(np.median(errors[:, i])), float(np.percentile(errors[:, i], 90)))
            for i, k in enumerate(["x", "y", "log_scale"])} if len(errors) else {}


def score(args) -> None:
    from densemarks.data.csvio import read_photo_faces
    from densemarks.core.boxes import box_of, match

    table = read_photo_faces(args.photos / "faces.csv")
    print(f"| detector | box prior (dx, dy, scale) from | recall ({len(table)} faces) | "
          "ms/photo median | ms/photo mean |")
    print("|---|---|---|---|---|")
    errors = {}
    for path in args.results:
        record = json.loads(Path(path).read_text())
        prior, used, aspect = calibrate(record["calibration"])
        if prior is None:
            from densemarks.photos.detect import BoxPrior
            prior = BoxPrior()
        found = 0
        for name, entry in record["photos"].items():
            truth = table.points[table.file_names == name]
            boxes = np.asarray(entry["boxes"]).reshape(-1, 4)
            # The landmark box the prior predicts (Framing.shape_in_box's rule; the median
            # landmark-box aspect of the calibration crops stands in for the mean shape's).
            bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            cx = (boxes[:, 0] + boxes[:, 2]) / 2 + prior.dx * bw
            cy = (boxes[:, 1] + boxes[:, 3]) / 2 + prior.dy * bh
            side = prior.scale * np.sqrt(bw * bh)
            half = np.stack([side * np.sqrt(aspect), side / np.sqrt(aspect)], axis=1) / 2
            predicted = np.concatenate([np.stack([cx, cy], 1) - half, np.stack([cx, cy], 1) + half], axis=1)
            found += len(match(box_of(truth), predicted, args.min_iou))
        ms = [e["ms"] for e in record["photos"].values()]
        print(f"| {record['detector']} | ({prior.dx}, {prior.dy}, {prior.scale}) {used} crops | "
              f"{found / len(table):.3f} | {np.median(ms):.0f} | {np.mean(ms):.0f} |")
        errors[record["detector"]] = framing_error(record["calibration"], prior)
    print("\nFirst-crop framing error after the prior (calibration crops; median / 90th percentile "
          "of its magnitude): centre in landmark-box sides, size as |log ratio|")
    print("| detector | x | y | size |\n|---|---|---|---|")
    for name, e in errors.items():
        if e:
            print(f"| {name} | " + " | ".join(f"{e[k][0]:.3f} / {e[k][1]:.3f}" for k in ("x", "y", "log_scale")) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    r = sub.add_parser("run")
    r.add_argument("--detector", required=True)
    r.add_argument("--photos", type=Path, required=True)
    r.add_argument("--train", type=Path)
    r.add_argument("--exclude", type=Path)
    r.add_argument("--calibrate", type=int, default=300, help="training crops used for the prior")
    r.add_argument("--limit", type=int)
    r.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("results", nargs="+", type=Path)
    s.add_argument("--photos", type=Path, required=True)
    s.add_argument("--min-iou", type=float, default=0.4)
    args = parser.parse_args()
    run(args) if args.step == "run" else score(args)


if __name__ == "__main__":
    main()
