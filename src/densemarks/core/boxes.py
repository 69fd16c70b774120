"""Face boxes (x0, y0, x1, y1 in pixels): a shape's bounding box, overlap, and one-to-one
matching between two sets (evaluation: truth to detections; video: tracks to detections)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_of(points: np.ndarray) -> np.ndarray:
    """(..., K, 2) -> (..., 4) bounding boxes x0, y0, x1, y1."""
    return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) -> (N, M) intersection over union."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def match(truth_boxes: np.ndarray, detected_boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs (truth row, detection row) maximising total IoU, each at least min_iou."""
    if len(truth_boxes) == 0 or len(detected_boxes) == 0:
        return []
    overlap = iou(truth_boxes, detected_boxes)
    rows, cols = linear_sum_assignment(-overlap)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if overlap[r, c] >= min_iou]
