"""Inference as one graph, and its ONNX export.

`InferenceModel` is the whole step from crop to points: RGB crops (B, H, W, 3) uint8 -> the
network's input (float, ImageNet normalisation when the model was trained with it) -> the
network -> its head's decoding -> points (B, K, 2) float32 in crop pixels. The photo pipeline runs
it in torch or, exported by `export_onnx`, in ONNX Runtime, which then also does the conversion
and normalisation; the export is verified against torch on random crops before it is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densemarks.augment import IMAGENET_MEAN, IMAGENET_STD
from densemarks.errors import DataError
from densemarks.fileio import atomic_path
from densemarks.heads import make_head


class InferenceModel(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, head, normalize: bool = True):
        super().__init__()
        self.model = model
        self.head = head
        mean = IMAGENET_MEAN if normalize else np.zeros(3, np.float32)
        std = IMAGENET_STD if normalize else np.ones(3, np.float32)
        # x / 255 then (x - mean) / std, folded into one scale and shift per channel.
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * std)).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(-mean / std).view(1, 3, 1, 1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.permute(0, 3, 1, 2).float() * self.scale + self.shift
        return self.head.decode(self.model(x))


def inference_model(state: dict) -> InferenceModel:
    """The checkpoint's model with its decoding, on the CPU, in eval mode."""
    from densemarks.train import model_from_checkpoint
    model, config, _ = model_from_checkpoint(state, torch.device("cpu"))
    return InferenceModel(model, make_head(config), config.augment.normalize).eval()


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
    from densemarks.train import load_checkpoint
    state = load_checkpoint(checkpoint)
    model = inference_model(state)
    h, w = state["config"]["augment"]["size"]
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
    import onnxruntime as ort
    x = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
