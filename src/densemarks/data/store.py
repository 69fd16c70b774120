"""The preprocessed image store: every training image decoded once, shrunk so that its longer
side is at most `side` pixels (never enlarged), and kept in one file that later epochs read
instead of decoding full-size JPEGs.

Two formats:
- raw: a uint8 memory map (N, side, side, 3), each image at the top-left of its slot. No
  decoding at all; side**2 * 3 bytes per image (256 px: 197 kB).
- jpeg: the shrunk images re-encoded (quality 95) back to back in one file with an offset
  table; decoding a 256 px JPEG is a fraction of decoding the original. About 15-25 kB each.

An entry comes back as a `LoadedImage` whose `to_pixels` is the exact shrink (per axis), so
augmentation, black-border removal and `geometry.to_original` work in original-image pixels exactly as
with the JPEG files. The store records the landmarks.csv and the image files it was built
from (size and modification time) and is refused when one of them changed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from densemarks.core import geometry
from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path, cache_dir_for
from densemarks.data.images import LoadedImage, content_box, load_image

FORMATS = ("raw", "jpeg")


def store_dir(train_dir: Path, side: int, fmt: str) -> Path:
    """Where the store of a training folder lives: beside landmarks.csv when writable, else in
    the user cache (as the CSV cache)."""
    return cache_dir_for(train_dir / "landmarks.csv") / f"store-{fmt}-{side}"


def default_side(input_size: tuple[int, int]) -> int:
    """1.25 x the larger input side, up to a multiple of 32: room for zoom jitter without
    upsampling."""
    return int(math.ceil(1.25 * max(input_size) / 32) * 32)


def _csv_signature(csv_path: Path) -> dict:
    size, mtime_ns = _file_signature(csv_path)
    return {"csv": str(csv_path.resolve()), "size": size, "mtime_ns": mtime_ns}


def _file_signature(path: Path) -> tuple[int, int]:
    """A file's size and modification time (ns): what the store checks its sources by."""
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def build_store(train_dir: Path, names: np.ndarray, side: int, fmt: str = "raw", threads: int = 2,
                border_threshold: int | None = 9) -> Path:
    """Decode, shrink and store every listed image; returns the store folder. The black-border
    box for `border_threshold` (the recipes' 9) is found on the full-size image and stored,
    so border removal stays as exact as on the files. Written to temporary files and renamed,
    so an interrupted build leaves no store behind."""
    if fmt not in FORMATS:
        raise DataError(None, f"unknown store format {fmt!r}; choose raw or jpeg")
    folder = store_dir(train_dir, side, fmt)
    n = len(names)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if fmt == "raw" and (need := n * side * side * 3) > (free := shutil.disk_usage(existing).free):
        raise DataError(folder, f"a raw store of {n:,} images at {side} px takes {need / 2 ** 30:,.1f} GiB and the "
                                f"disk has {free / 2 ** 30:,.1f} GiB free: choose a smaller --side or --format jpeg")
    folder.mkdir(parents=True, exist_ok=True)
    sizes = np.zeros((n, 2), np.int64)  # original (w, h)
    shapes = np.zeros((n, 2), np.int64)  # stored (w, h)
    boxes = np.zeros((n, 4), np.float64)  # black-border box, original pixels
    files = np.zeros((n, 2), np.int64)  # each image file's size and mtime_ns, as it was read
    images_dir = train_dir / "images"

    def shrink(i: int) -> np.ndarray:
        path = images_dir / str(names[i])
        files[i] = _file_signature(path)
        probe = load_image(path)
        w, h = probe.original_size
        boxes[i] = content_box(probe.pixels, border_threshold) if border_threshold is not None \
            else (0, 0, w, h)
        scale = min(1.0, side / max(w, h))
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        pixels = probe.pixels
        if (pixels.shape[1], pixels.shape[0]) != target:
            pixels = cv2.resize(pixels, target, interpolation=cv2.INTER_AREA)
        sizes[i], shapes[i] = (w, h), target
        return pixels

    offsets = np.zeros(n + 1, np.int64)
    with atomic_path(folder / "pixels.bin") as tmp, ThreadPoolExecutor(threads) as pool:
        if fmt == "raw":  # an (n, side, side, 3) .npy, written in order: memory is one image
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                         "shape": (n, side, side, 3)})
                slot = np.zeros((side, side, 3), np.uint8)
                for pixels in tqdm(_in_order(pool, shrink, n), total=n, desc="preprocess", unit="img"):
                    slot[:] = 0
                    slot[: pixels.shape[0], : pixels.shape[1]] = pixels
                    f.write(slot.data)
        else:
            with open(tmp, "wb") as f:
                encoded = _in_order(pool, lambda i: _encode(shrink(i)), n)
                for i, data in enumerate(tqdm(encoded, total=n, desc="preprocess", unit="img")):
                    f.write(data)
                    offsets[i + 1] = offsets[i] + len(data)
    with atomic_path(folder / "index.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, names=np.asarray(names, dtype=str), sizes=sizes, shapes=shapes, offsets=offsets, boxes=boxes,
                 files=files)
    with atomic_path(folder / "store.json") as tmp:
        tmp.write_text(json.dumps({"format": fmt, "side": side, "count": n, "border_threshold": border_threshold,
                                   **_csv_signature(train_dir / "landmarks.csv")}, indent=2))
    return folder


def _in_order(pool: ThreadPoolExecutor, fn, n: int, block: int = 256):
    """fn(0), fn(1), ... computed by the pool a block at a time (OpenCV releases the GIL), so
    that at most one block of results waits in memory."""
    for start in range(0, n, block):
        yield from pool.map(fn, range(start, min(n, start + block)))


def _encode(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


@dataclass
class ImageStore:
    """Read side of a store. The pixel file is opened lazily in each process (a memory map
    must not be pickled into loader workers: that would copy it)."""

    folder: Path
    fmt: str
    side: int
    names: np.ndarray
    sizes: np.ndarray
    shapes: np.ndarray
    offsets: np.ndarray
    boxes: np.ndarray
    border_threshold: int | None

    def __post_init__(self):
        self._row = {name: i for i, name in enumerate(self.names.tolist())}
        self._data = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def row(self, name: str) -> int:
        try:
            return self._row[name]
        except KeyError:
            raise DataError(self.folder, f"{name} is not in the preprocessed store; run "
                            "`densemarks preprocess` again") from None

    def image(self, name: str) -> LoadedImage:
        i = self.row(name)
        w, h = (int(v) for v in self.shapes[i])
        if self._data is None:
            path = self.folder / "pixels.bin"
            self._data = np.load(path, mmap_mode="r") if self.fmt == "raw" else np.memmap(path, np.uint8, "r")
        if self.fmt == "raw":
            pixels = self._data[i, :h, :w]
        else:
            chunk = self._data[self.offsets[i]: self.offsets[i + 1]]
            pixels = cv2.cvtColor(cv2.imdecode(np.asarray(chunk), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        full_w, full_h = (int(v) for v in self.sizes[i])
        return LoadedImage(np.ascontiguousarray(pixels), (full_w, full_h), geometry.scaling(w / full_w, h / full_h),
                           tuple(float(v) for v in self.boxes[i]), self.border_threshold)


def open_store(train_dir: Path, side: int, fmt: str = "raw") -> ImageStore:
    folder = store_dir(train_dir, side, fmt)
    meta_path = folder / "store.json"
    if not meta_path.is_file():
        raise DataError(folder, f"no preprocessed store; run `densemarks preprocess --data {train_dir} "
                        f"--side {side} --format {fmt}` first")
    meta = json.loads(meta_path.read_text())
    if {k: meta.get(k) for k in ("size", "mtime_ns")} != \
            {k: v for k, v in _csv_signature(train_dir / "landmarks.csv").items() if k != "csv"}:
        raise DataError(folder, "landmarks.csv changed since the store was built; run `densemarks preprocess` again")
    with np.load(folder / "index.npz", allow_pickle=False) as index:
        _check_files(folder, train_dir / "images", index["names"], index["files"] if "files" in index else None)
        return ImageStore(folder, meta["format"], meta["side"], index["names"], index["sizes"],
                          index["shapes"], index["offsets"], index["boxes"], meta["border_threshold"])


def _check_files(folder: Path, images_dir: Path, names: np.ndarray, files: np.ndarray | None) -> None:
    """Every stored image's file as it was when the store was built (size and modification
    time; one stat per image, about a second for 400,000): an image replaced in place would
    otherwise train from its old pixels."""
    again = "; run `densemarks preprocess` again"
    if files is None:
        raise DataError(folder, f"a store from an older densemarks, which did not record its images{again}")
    for name, recorded in zip(names.tolist(), files.tolist()):
        path = images_dir / name
        try:
            now = _file_signature(path)
        except OSError as exc:
            raise DataError(path, f"image of the preprocessed store {folder.name}: {exc.strerror}{again}") from None
        if list(now) != recorded:
            raise DataError(path, f"changed since the preprocessed store {folder.name} was built{again}")


def store_bytes(folder: Path) -> int:
    return os.path.getsize(folder / "pixels.bin")
