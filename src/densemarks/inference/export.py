"""ONNX export of the inference graph (`landmarker.InferenceModel`: uint8 RGB crops in, points in
crop pixels out), verified against torch on random crops before it is kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densemarks.core.errors import DataError
from densemarks.core.fileio import atomic_path, user_cache
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
    try:
        import onnx  # optional (the `photos` extra)
    except ImportError:
        raise DataError(None, "export needs the onnx and onnxscript packages: pip install 'densemarks[photos]'") from None
    if opset > onnx.defs.onnx_opset_version():  # before torch's converter, which logs a traceback
        raise DataError(out, f"opset {opset}: the installed onnx {onnx.__version__} knows opsets up to "
                             f"{onnx.defs.onnx_opset_version()}; nothing written")
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
        written = _opset(program.model_proto)
        if written != opset:  # torch converts to another opset where it can, and keeps its own where not
            raise DataError(out, f"torch's ONNX exporter cannot write opset {opset} (it wrote {written}); "
                                 "nothing written")
        program.save(str(tmp), external_data=False)
        diff = _max_diff(model, tmp, check_batch, h, w)
        if not diff <= tolerance:
            raise DataError(out, f"ONNX Runtime differs from torch by {diff:.4g} input pixels "
                            f"(allowed {tolerance:.4g}); nothing written")
    return ExportResult(out, diff, (h, w))


# Part of the user cache's key: raise it when the exported graph changes (2: the heatmap
# decoder's upsampling by a fixed factor), so that caches made by older code are not used.
GRAPH_REVISION = 2


def cached_onnx(checkpoint: str | Path, opset: int = 18) -> tuple[Path, bool]:
    """The checkpoint's ONNX file: CHECKPOINT.onnx when it is there and newer than the
    checkpoint, else an export kept in the user cache under the checkpoint's content hash, the
    opset and GRAPH_REVISION (made now if missing). Returns (path, whether it was exported now)."""
    checkpoint = Path(checkpoint)
    beside = checkpoint.with_suffix(".onnx")
    if beside.is_file() and beside.stat().st_mtime >= checkpoint.stat().st_mtime:
        return beside, False
    digest = hashlib.sha1(f"opset {opset}, graph {GRAPH_REVISION}\n".encode())
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    cached = user_cache() / "onnx" / f"{digest.hexdigest()[:20]}.onnx"
    if cached.is_file():
        return cached, False
    export_onnx(checkpoint, cached, opset=opset)
    return cached, True


def _opset(model_proto) -> int:
    """The default domain's opset of an exported model (read in memory, before it is saved)."""
    return next(o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx"))


def _max_diff(model: torch.nn.Module, path: Path, batch: int, h: int, w: int) -> float:
    import onnxruntime as ort  # optional (the `photos` extra)
    x = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
