"""The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for landmark tracks: a low-pass
filter whose cutoff rises with speed, so a still face stops jittering and a moving one does not
lag behind.

Per point: the speed (the filtered derivative's length) sets the cutoff,
`cutoff = min_cutoff + beta * speed`, and the point moves by the exponential smoothing factor
of that cutoff over the frame's time step. Speeds are measured in face sizes per second (the
caller passes the face's size), so the same two parameters suit a face of 40 pixels and one of
400, as MediaPipe's landmark smoothing does with its object scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuro:
    """min_cutoff (Hz): the cutoff of a still point (lower: less jitter, more lag when it starts
    to move); beta (per face size): how fast the cutoff rises with speed (higher: less lag on
    fast motion); d_cutoff (Hz): the cutoff of the speed estimate itself."""

    min_cutoff: float = 1.0
    beta: float = 30.0
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """State for one track: call with each new frame's points (K, 2), its time in seconds and
    the face's size in pixels; returns the filtered points (K, 2)."""

    def __init__(self, params: OneEuro = OneEuro()):
        self.params = params
        self.time: float | None = None
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None  # (K, 2), face sizes per second

    def __call__(self, points: np.ndarray, time: float, size: float) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if self.value is None or self.time is None or time <= self.time:
            self.time, self.value, self.speed = time, points.copy(), np.zeros_like(points)
            return points.copy()
        p = self.params
        dt = time - self.time
        raw_speed = (points - self.value) / (dt * max(size, 1e-6))
        self.speed = self.speed + _alpha(p.d_cutoff, dt) * (raw_speed - self.speed)
        cutoff = p.min_cutoff + p.beta * np.linalg.norm(self.speed, axis=1, keepdims=True)
        self.value = self.value + _alpha(cutoff, dt) * (points - self.value)
        self.time = time
        return self.value.copy()
