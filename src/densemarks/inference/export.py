"""ONNX export of the inference graph (`landmarker.InferenceModel`: uint8 RGB crops in, points in
crop pixels out), verified against torch on random crops before it is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.landmarker import InferenceModel


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float  # ONNX Runtime vs torch, network-input pixels, over the check batch
    input_size: tuple[int, int]


def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int = 18, tolerance: float | None = None,
                check_batch: int = 4) -> ExportResult:
    """Write the checkpoint's InferenceModel as ONNX (dynamic batch) to `out`, then check that
    ONNX Runtime's points equal torch's within `tolerance` input pixels (default 1e-3 of the
    crop size) on random crops; a failed check leaves no file."""
    state = Checkpoint.load(checkpoint)
    model = InferenceModel.from_checkpoint(state)
    h, w = state.config.augment.size
    tolerance = 1e-3 * max(h, w) if tolerance is None else tolerance
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)
    out = Path(out)
    with atomic_path(out) as tmp:
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                    dynamic_shapes={"crops": {0: torch.export.Dim("batch")}},
                                    input_names=["crops"], output_names=["points"], verbose=False)
        program.save(str(tmp), external_data=False)
        diff = _max_diff(model, tmp, check_batch, h, w)
        if not diff <= tolerance:
            raise DataError(out, f"ONNX Runtime differs from torch by {diff:.4g} input pixels "
                            f"(allowed {tolerance:.4g}); nothing written")
    return ExportResult(out, diff, (h, w))


def _max_diff(model: torch.nn.Module, path: Path, batch: int, h: int, w: int) -> float:
    import onnxruntime as ort  # optional (the `photos` extra)
    x = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
