"""Benchmark: samples/s on one core at 224 px, densemarks' sample pipeline against the course
baseline's chain, on the same images in one run.

    python benchmarks/augment_speed.py [--data ../shared/data/300w-afw-helen/train] [--images 300] [--repeats 5]

Both chains end in the same product: a normalised (32, 3, 224, 224) float32 batch and the moved
points, so batching (torch.stack) and normalisation are timed for both.
Course chain (per sample, as its ScaleMinSideToSize/CropCenter/TransformByKeys did): OpenCV
decode, BGR->RGB, resize short side to 224 (INTER_AREA), centre crop 224, to PIL, torchvision
ToTensor, Normalize; points moved by the same scale and crop; then torch.stack.
densemarks: decode (OpenCV; reduced-size JPEG decoding when large), black-border removal, one
affine matrix (crop + rotation + zoom + shift + flip in the "training" row), one warp, a planar
split, a brightness/contrast draw; then torch.stack of uint8 and `normalize_batch` (which also
applies the brightness/contrast) into a reused buffer (on a GPU that last step runs on the
device).
From the store: the same training augmentation, reading images that `densemarks preprocess`
decoded and shrank once (longest side 288 px): a memory map, or re-encoded small JPEGs.
One thread per chain: the figures are samples/s per loader worker.
Without --data the images come from `densemarks synth`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from densemarks.data.augment import AugmentConfig, LandmarkTransform, normalize_batch
from densemarks.data.csvio import read_landmarks
from densemarks.data.dataset import LandmarkDataset
from densemarks.data.scheme import resolve_scheme
from densemarks.data.store import build_store, default_side, open_store
from densemarks.data.synth import synthesize

SIZE = 224
BATCH = 32


class CourseChain:
    """The course baseline's per-sample chain (resize short side, centre crop, PIL, tensor)."""

    def __init__(self):
        self.to_tensor = transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def __call__(self, path: Path, points: np.ndarray):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        scale = SIZE / min(h, w)
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        nh, nw = image.shape[:2]
        top, left = (nh - SIZE) // 2, (nw - SIZE) // 2
        image = image[top:top + SIZE, left:left + SIZE]
        moved = points * scale - np.array([left, top], dtype=np.float32)
        return self.to_tensor(Image.fromarray(image)), torch.from_numpy(moved)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None, help="a train folder (images/, landmarks.csv)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory()
        synthesize(Path(tmp.name) / "d", args.images, 1, 971, seed=0)
        args.data = Path(tmp.name) / "d" / "train"
    table = read_landmarks(args.data / "landmarks.csv")
    n = min(args.images, len(table))
    names, points = table.file_names[:n], np.asarray(table.points[:n])
    scheme = resolve_scheme(args.data / "landmarks.csv", np.asarray(table.points))
    course = CourseChain()
    plain = LandmarkDataset(args.data / "images", names, points,
                            LandmarkTransform(AugmentConfig(size=(SIZE, SIZE)), scheme.flip_index))
    train_config = AugmentConfig(size=(SIZE, SIZE), flip_p=0.5, rotate_deg=30, scale_jitter=0.1,
                                 shift_jitter=0.05, brightness=0.2, contrast=0.2)
    augmented = LandmarkDataset(args.data / "images", names, points,
                                LandmarkTransform(train_config, scheme.flip_index, train=True))
    # The preprocessed store (`densemarks preprocess`): built once outside the timing, in a
    # scratch copy of the CSV's folder so the benchmark leaves nothing behind.
    scratch = tempfile.TemporaryDirectory()
    shutil.copy(args.data / "landmarks.csv", Path(scratch.name) / "landmarks.csv")
    (Path(scratch.name) / "images").symlink_to((args.data / "images").resolve())
    side = default_side((SIZE, SIZE))
    for fmt in ("raw", "jpeg"):
        build_store(Path(scratch.name), names, side, fmt)
    stores = {fmt: open_store(Path(scratch.name), side, fmt) for fmt in ("raw", "jpeg")}
    from_store = {fmt: LandmarkDataset(args.data / "images", names, points,
                                       LandmarkTransform(train_config, scheme.flip_index, train=True), store=store)
                  for fmt, store in stores.items()}

    def course_batches():
        for start in range(0, n, BATCH):
            items = [course(args.data / "images" / names[i], points[i]) for i in range(start, min(n, start + BATCH))]
            torch.stack([image for image, _ in items]), torch.stack([p for _, p in items])

    buffer = torch.empty(BATCH, 3, SIZE, SIZE)

    def densemarks_batches(dataset):
        for start in range(0, n, BATCH):
            items = [dataset[i] for i in range(start, min(n, start + BATCH))]
            images = torch.stack([item["image"] for item in items])
            normalize_batch(images, out=buffer[: len(items)], tone=torch.stack([item["tone"] for item in items]))
            torch.stack([item["points"] for item in items])

    runners = {
        "course chain (resize, crop, PIL, ToTensor, Normalize)": course_batches,
        "densemarks, evaluation (border crop, cover)": lambda: densemarks_batches(plain),
        "densemarks, training (+ flip, rotation, zoom, shift, brightness/contrast)":
            lambda: densemarks_batches(augmented),
        "densemarks, training, from the preprocessed store (raw memory map)":
            lambda: densemarks_batches(from_store["raw"]),
        "densemarks, training, from the preprocessed store (re-encoded JPEG)":
            lambda: densemarks_batches(from_store["jpeg"]),
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits all alike
        for key, run in runners.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    sizes = np.array([Image.open(args.data / "images" / f).size for f in names])
    print(f"{n} images, median size {int(np.median(sizes[:, 0]))} x {int(np.median(sizes[:, 1]))} px, "
          f"one thread, batches of {BATCH}, {args.repeats} interleaved repeats")
    base = n / statistics.median(times[next(iter(runners))])
    print("| pipeline | samples/s per core (median) | ratio to course chain |")
    print("|---|---|---|")
    for key, values in times.items():
        rate = n / statistics.median(values)
        print(f"| {key} | {rate:.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
