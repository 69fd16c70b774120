"""`densemarks analyze`: a report folder on a training set's shapes and poses.

poses.csv (roll, yaw and pitch proxies, Procrustes disparity per face), poses.png (their
histograms), mean_shape.png (the Procrustes mean with point indices), spread.png and
points.csv (how far each point strays from its mean), image_sizes.png, outliers.csv (the
faces furthest from the mean shape) and summary.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from densemarks.data.csvio import write_table
from densemarks.core.fileio import atomic_path
from densemarks.core.shapes import PoseEstimate, estimate_pose
from densemarks.analysis.summary import DatasetSummary, summarise
from densemarks.analysis.viz import pyplot, save_figure
from densemarks.data.dataset import open_training_data


def write_report(train_dir: Path, out: Path, sample: int = 5000, outliers: int = 50) -> dict:
    summary = summarise(train_dir, sample=sample)
    data = open_training_data(train_dir, check_images=False)
    points = data.table.points  # float32, a memory map: estimate_pose works a block at a time
    pose = estimate_pose(points, data.scheme.flip_index)
    out.mkdir(parents=True, exist_ok=True)
    names = data.table.file_names
    write_table(out / "poses.csv", pa.table({
        "file_name": pa.array(names.tolist()),
        "roll_deg": pa.array(np.round(pose.roll, 3)),
        "yaw_proxy": pa.array(np.round(pose.yaw, 4)),
        "pitch_proxy": pa.array(np.round(pose.pitch, 4)),
        "procrustes_disparity": pa.array(np.round(pose.disparity, 6)),
    }), delimiter=",")
    worst = np.argsort(-pose.disparity)[:outliers]
    write_table(out / "outliers.csv", pa.table({
        "file_name": pa.array(names[worst].tolist()),
        "procrustes_disparity": pa.array(np.round(pose.disparity[worst], 6)),
        "roll_deg": pa.array(np.round(pose.roll[worst], 3)),
    }), delimiter=",")
    with atomic_path(out / "points.csv") as tmp:
        rows = ["point,mean_x,mean_y,spread,mirror_of"] + [
            f"{i},{x:.3f},{y:.3f},{s:.4f},{f}" for i, ((x, y), s, f) in
            enumerate(zip(pose.mean_shape, pose.spread, data.scheme.flip_index))]
        tmp.write_text("\n".join(rows) + "\n")
    _plot_poses(pose, out / "poses.png")
    _plot_mean_shape(pose, data.scheme.flip_index, out / "mean_shape.png")
    _plot_spread(pose, out / "spread.png")
    _plot_sizes(summary, out / "image_sizes.png")
    facts = {
        "faces": len(points), "num_points": data.scheme.num_points,
        "roll_deg": _quantiles(pose.roll), "yaw_proxy": _quantiles(pose.yaw),
        "pitch_proxy": _quantiles(pose.pitch),
        "faces_rolled_over_15_deg": int((np.abs(pose.roll) > 15).sum()),
        "spread_median": float(np.median(pose.spread)), "spread_max_point": int(np.argmax(pose.spread)),
        "image_width": _quantiles(summary.image_sizes[:, 0]), "image_height": _quantiles(summary.image_sizes[:, 1]),
        "image_sizes_sampled": len(summary.image_sizes),
        "points_outside_image_percent": 100 * summary.outside_fraction,
        "outliers": names[worst[:10]].tolist(),
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(facts, indent=2))
    return facts


def _quantiles(values: np.ndarray) -> dict:
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return dict(zip(["min", "p5", "median", "p95", "max"], [round(float(v), 3) for v in q]))


def _figure(*shape, size=(12, 4)):
    plt = pyplot()
    fig, axes = plt.subplots(*shape, figsize=size)
    return plt, fig, axes


def _plot_poses(pose: PoseEstimate, path: Path) -> None:
    plt, fig, axes = _figure(1, 3)
    for ax, values, title in zip(axes, (pose.roll, pose.yaw, pose.pitch),
                                 ("roll (degrees, clockwise +)", "yaw proxy (std)", "pitch proxy (std)")):
        ax.hist(values, bins=50, color="tab:blue")
        ax.set(title=title, ylabel="faces")
    save_figure(fig, path)


def _plot_mean_shape(pose: PoseEstimate, flip_index: np.ndarray, path: Path) -> None:
    plt, fig, ax = _figure(1, 1, size=(10, 10))
    mean = pose.mean_shape
    ax.scatter(mean[:, 0], mean[:, 1], s=6, c=np.arange(len(mean)), cmap="viridis")
    step = max(1, len(mean) // 120)  # at most ~120 labels stay readable
    for i in range(0, len(mean), step):
        ax.annotate(str(i), mean[i], fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set(title=f"mean shape (Procrustes), every {step} point(s) labelled", aspect="equal")
    ax.invert_yaxis()
    save_figure(fig, path)


def _plot_spread(pose: PoseEstimate, path: Path) -> None:
    plt, fig, ax = _figure(1, 1, size=(8, 8))
    mean = pose.mean_shape
    dots = ax.scatter(mean[:, 0], mean[:, 1], s=8 + 400 * pose.spread / max(pose.spread.max(), 1e-9),
                      c=pose.spread, cmap="magma_r", alpha=0.7)
    fig.colorbar(dots, ax=ax, label="RMS distance from the mean (pixels of the mean shape)")
    ax.set(title="per-point spread after alignment", aspect="equal")
    ax.invert_yaxis()
    save_figure(fig, path)


def _plot_sizes(summary: DatasetSummary, path: Path) -> None:
    plt, fig, axes = _figure(1, 2, size=(10, 4))
    axes[0].hist(summary.image_sizes[:, 0], bins=40, color="tab:green")
    axes[0].set(title=f"image width ({len(summary.image_sizes)} sampled)", xlabel="pixels")
    axes[1].hist(summary.image_sizes[:, 1], bins=40, color="tab:purple")
    axes[1].set(title="image height", xlabel="pixels")
    save_figure(fig, path)
