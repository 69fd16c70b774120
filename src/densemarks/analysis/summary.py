"""Dataset summary for `densemarks info`: what is in a training folder, at a glance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from densemarks.data.dataset import open_training_data
from densemarks.data.images import content_box, image_size, load_image
from densemarks.data.scheme import derive_flip_index


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    faces: int
    num_points: int
    norm_points: tuple[int, int] | None
    regions: list[str]
    flip_residual: float  # mean mirror mismatch of the mean shape, in RMS-radius units
    flip_fixed_points: int
    image_sizes: np.ndarray  # (n, 2) width, height of a sample of images
    outside_fraction: float  # share of points outside their image (on the sampled images)
    norm_distance_px: float | None  # median distance of the NME pair, pixels
    bordered_fraction: float  # share of a smaller sample of decoded images with black borders


# What shared/docs/competition.md says of the competition's crops, shown beside a dataset's own.
COMPETITION_IMAGES = ("competition: about 125x175 to 470x360 px, some above 1300 px, portrait, "
                      "most with black borders")
BORDER_SAMPLE = 200
BORDER_THRESHOLD = 9  # the recipes' black_threshold


def summarise(train_dir: Path, flip_index_file: Path | None = None, sample: int = 2000) -> DatasetSummary:
    data = open_training_data(train_dir, flip_index_file=flip_index_file)
    points = np.asarray(data.table.points)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(points), min(sample, len(points)), replace=False))
    sizes = np.asarray([image_size(data.images_dir / data.table.file_names[i]) for i in chosen],
                       dtype=np.int64)
    bordered = [content_box(load_image(data.images_dir / data.table.file_names[i]).pixels, BORDER_THRESHOLD)
                for i in chosen[:BORDER_SAMPLE]]
    sub = points[chosen]
    outside = ((sub[..., 0] < 0) | (sub[..., 1] < 0) | (sub[..., 0] >= sizes[:, None, 0])
               | (sub[..., 1] >= sizes[:, None, 1]))
    scheme = data.scheme
    flip = scheme.flip_index
    _, residual = derive_flip_index(points[chosen])
    norm_px = None
    if scheme.norm_points is not None:
        a, b = scheme.norm_points
        norm_px = float(np.median(np.linalg.norm(points[:, a] - points[:, b], axis=1)))
    return DatasetSummary(
        root=data.root, faces=len(points), num_points=scheme.num_points, norm_points=scheme.norm_points,
        regions=[f"{r.name} {r.start}-{r.stop - 1}" for r in scheme.regions], flip_residual=residual,
        flip_fixed_points=int((flip == np.arange(len(flip))).sum()), image_sizes=sizes,
        outside_fraction=float(outside.mean()), norm_distance_px=norm_px,
        bordered_fraction=float(np.mean([(x0, y0, x1 - w, y1 - h) != (0, 0, 0, 0) for (x0, y0, x1, y1), (w, h)
                                         in zip(bordered, sizes)])) if bordered else 0.0,
    )


def print_summary(console: Console, s: DatasetSummary) -> None:
    table = Table(title=f"dataset {s.root}", show_header=False)
    w, h = s.image_sizes[:, 0], s.image_sizes[:, 1]
    rows = [
        ("faces", f"{s.faces:,}"),
        ("points per face", str(s.num_points)),
        ("NME normalising points", str(s.norm_points) if s.norm_points else "unknown (set norm_points)"),
        ("median normalising distance", f"{s.norm_distance_px:.1f} px" if s.norm_distance_px else "-"),
        ("regions", ", ".join(s.regions)),
        ("flip index", f"{s.flip_fixed_points} points map to themselves; mirror residual "
                       f"{s.flip_residual:.3f} (shape radii)"),
        ("image width (min/median/max)", f"{w.min()} / {int(np.median(w))} / {w.max()} px"),
        ("image height (min/median/max)", f"{h.min()} / {int(np.median(h))} / {h.max()} px"),
        ("portrait (taller than wide)", f"{100 * np.mean(h > w):.0f}%"),
        ("longer side above 1300 px", f"{100 * np.mean(np.maximum(w, h) > 1300):.1f}%"),
        (f"black borders (of {min(BORDER_SAMPLE, len(w))} decoded)", f"{100 * s.bordered_fraction:.0f}%"),
        ("", COMPETITION_IMAGES),
        ("points outside their image", f"{100 * s.outside_fraction:.2f}%"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
