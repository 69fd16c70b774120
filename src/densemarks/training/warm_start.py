"""Warm start (`init=CHECKPOINT` of any recipe): a new run's weights start from a trained
model's wherever a layer has the same name and shape, instead of from `weights` alone.

Two uses: fine-tuning a model on other data (the same recipe: every layer matches, head
included), and a student starting from its teacher's backbone (`fast-cpu` from an
`accurate-cpu` run: the same MobileNetV2 under another head; the head itself starts fresh).
The heads wrap the backbone differently (a regression network holds the torchvision model, the
map heads a feature extractor around it), so names are compared without those wrappers:
`backbone.extractor.features.3.conv.0.0.weight` and `backbone.features.3.conv.0.0.weight` are
the same layer. BatchNorm statistics come with their layers. A checkpoint of another backbone
shares no layer with the model and is refused.

A model that trained on this run's validation faces (a teacher or a start from another split
of the same data) makes validation optimistic: `seen_validation_faces` counts them, and
training says so.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from densemarks.core.errors import DataError
from densemarks.inference.checkpoint import Checkpoint


def layer_name(key: str) -> str:
    """A state-dict key without the map heads' feature-extractor wrapper."""
    return key.replace("backbone.extractor.", "backbone.", 1) if key.startswith("backbone.extractor.") else key


def warm_start(model: nn.Module, checkpoint: Checkpoint) -> tuple[int, int]:
    """Copy into `model` every tensor of `checkpoint` whose layer name and shape match one of
    the model's; (tensors copied, tensors in the model). The model's other tensors keep their
    values."""
    by_name = {layer_name(key): value for key, value in checkpoint.model.items()}
    state = model.state_dict()
    matched = {key: source for key, value in state.items()
               if (source := by_name.get(layer_name(key))) is not None and source.shape == value.shape}
    if not any(torch.is_floating_point(value) for value in matched.values()):
        raise DataError(checkpoint.path, f"init: no layer of this checkpoint ({checkpoint.config.model}) "
                                         "fits the model being trained; start from a checkpoint of the same backbone")
    model.load_state_dict(matched, strict=False)
    return len(matched), len(state)


def seen_validation_faces(checkpoint: Checkpoint, fingerprint: str, val_rows: np.ndarray) -> int:
    """How many of this run's validation faces (`val_rows` of the data with `fingerprint`)
    were training faces of `checkpoint`: 0 for a model of other data, which cannot be told."""
    if checkpoint.split is None or checkpoint.fingerprint != fingerprint:
        return 0
    return int(np.count_nonzero(~np.isin(val_rows, checkpoint.split.val_rows)))
