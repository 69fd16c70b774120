"""The crop-to-points step, as one graph, and the backends that run it.

`InferenceModel` is the whole step: RGB crops (B, H, W, 3) uint8 -> the network's input (float,
ImageNet normalisation when the model was trained with it) -> the network -> its head's
decoding -> points (B, K, 2) float32 in crop pixels. Test folders and validation run it in torch;
photos run it in torch (`TorchLandmarker`) or, exported by `inference.export`, in ONNX Runtime
(`OnnxLandmarker`). Test-time views go through `predict_views` in every case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from densemarks.core.errors import DataError
from densemarks.data.augment import IMAGENET_MEAN, IMAGENET_STD
from densemarks.inference.checkpoint import Checkpoint
from densemarks.inference.tta import Tta, average_views, with_mirrors
from densemarks.models.heads import Head


class InferenceModel(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, head: Head, normalize: bool = True):
        super().__init__()
        self.model = model
        self.head = head
        mean = IMAGENET_MEAN if normalize else np.zeros(3, np.float32)
        std = IMAGENET_STD if normalize else np.ones(3, np.float32)
        # x / 255 then (x - mean) / std, folded into one scale and shift per channel, made on the
        # model's device (validation wraps a model already on the GPU).
        device = next(model.parameters(), torch.empty(0)).device
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * std), device=device).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(-mean / std, device=device).view(1, 3, 1, 1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        # (B, H, W, 3) -> (B, 3, H, W): from a contiguous HWC batch this is channels_last.
        x = crops.permute(0, 3, 1, 2).float() * self.scale + self.shift
        return self.head.decode(self.model(x)).points

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, device: torch.device | str = "cpu") -> "InferenceModel":
        """The checkpoint's model with its decoding, on `device`, in eval mode."""
        model = checkpoint.build_model(device)
        return cls(model, checkpoint.head(), checkpoint.config.augment.normalize).to(device).eval()


Crops = TypeVar("Crops")


def predict_views(run: Callable[[Crops], np.ndarray], crops: Crops, mirror: Callable[[Crops], Crops],
                  to_input: np.ndarray, mirrored: np.ndarray, tta: Tta, flip_index: np.ndarray) -> np.ndarray:
    """Points (N, K, 2) in original pixels for N faces seen in V views, the mirrors included
    when tta.flip: the one test-time path of test folders, validation and photos (torch or ONNX).

    crops (V * N, H, W, 3), view-major: an array for a backend, a tensor for torch; run: crops ->
    points (V * N, K, 2) in crop pixels, as a numpy array; mirror: crops flipped left to right;
    to_input (V, N, 3, 3): original pixels -> each crop; mirrored (V, N) bool: crops that are
    mirrored already (a flipped sample)."""
    points = run(crops)
    if tta.flip:
        points = np.concatenate([points, run(mirror(crops))])
        to_input, mirrored = with_mirrors(to_input, mirrored, int(crops.shape[2]))
    return average_views(points.reshape(*to_input.shape[:2], *points.shape[1:]), to_input, mirrored, flip_index)


class TorchLandmarker:
    """RGB crops (B, H, W, 3) uint8 -> points (B, K, 2) in crop pixels, in torch on the CPU."""

    def __init__(self, model: InferenceModel, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(crops))).numpy()


class OnnxLandmarker:
    """The same computation from an exported ONNX file, in ONNX Runtime (CPU)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort  # optional (the `photos` extra)
        except ImportError:
            raise DataError(None, "the onnx backend needs onnxruntime: pip install onnxruntime") from None
        if not Path(path).is_file():
            raise DataError(path, "no such ONNX file: write it with `densemarks export --checkpoint CKPT --out "
                                  f"{path}`, or use --backend torch")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for missing or broken files
            raise DataError(path, f"cannot load ONNX model ({str(exc).splitlines()[0][:120]})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(crops)})[0]
