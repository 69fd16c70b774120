"""Backbones from torchvision or timm: a classifier whose last Linear layer gives the head's
outputs (`create_backbone`), or its feature maps at strides 4, 8, 16 and 32
(`create_feature_backbone`); and their parameters in stages from input to output, for
per-stage learning rates and freezing (`backbone_stages`).

Pretrained weights go through torchvision's / timm's own weights APIs and their local caches;
when they are neither cached nor downloadable, `create_model` says which file to put where
rather than falling back to random weights.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from densemarks.core.errors import DataError, last_line
from densemarks.models.packaged import timm_pretrained_overlay


class ModelError(DataError):
    """A model that cannot be built as asked (unknown name, weights unavailable)."""

    def __init__(self, message: str):
        super().__init__(None, message)


def torchvision_names() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def create_backbone(name: str, num_outputs: int, weights: str = "default") -> nn.Module:
    """A classification network with its last Linear layer replaced by one of num_outputs.

    name: a torchvision classification model (resnet50, mobilenet_v2, ...) or a timm model.
    weights: "none", "default", or a torchvision weights name such as "IMAGENET1K_V1".
    """
    if name in torchvision_names():
        model = torchvision.models.get_model(name, weights=_torchvision_weights(name, weights))
        _replace_last_linear(model, num_outputs)
        return model
    return _timm_model(name, num_outputs, weights)


def _torchvision_weights(name: str, weights: str):
    if weights.lower() == "none":
        return None
    enum = torchvision.models.get_model_weights(name)
    key = weights.upper()
    if key not in enum.__members__:
        raise ModelError(f"{name} has no weights {weights!r}; choose none or one of "
                         f"{', '.join(['default', *enum.__members__])}")
    chosen = enum[key]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(chosen.url)
    if not cached.is_file():
        try:
            chosen.get_state_dict(progress=True)  # the library's own download into its cache
        except Exception as exc:  # no network, proxy, DNS: say what to do instead
            raise ModelError(
                f"pretrained weights for {name} ({chosen}) are not cached and could not be "
                f"downloaded ({type(exc).__name__}); put {cached.name} into {cached.parent} "
                f"(or set TORCH_HOME), or train with weights=none") from None
    return chosen


def _require_timm_name(name: str) -> None:
    import timm  # heavy (about a second); only timm model names need it

    if not timm.list_models(name) and not timm.is_model(name):
        known = torchvision_names() + timm.list_models()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"unknown model {name!r}{hint}")


def _timm_model(name: str, num_outputs: int, weights: str) -> nn.Module:
    import timm  # heavy (about a second); only timm model names need it

    _require_timm_name(name)
    pretrained = weights.lower() != "none"
    packaged = timm_pretrained_overlay(name, pretrained)
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_outputs, **packaged)
    except Exception as exc:
        if not pretrained:
            raise
        raise ModelError(f"pretrained weights for timm model {name} are not cached and could not "
                         f"be downloaded ({type(exc).__name__}); fill the Hugging Face cache "
                         f"(HF_HOME) with them, or train with weights=none") from None


def _replace_last_linear(model: nn.Module, num_outputs: int) -> None:
    parent, attr, last = None, None, None
    for module_name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, attr, last = module, child_name, child
    if last is None:
        raise ModelError(f"{type(model).__name__} has no Linear layer to replace")
    setattr(parent, attr, nn.Linear(last.in_features, num_outputs))


def head_and_backbone(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Parameters of the regression head (the last Linear layer) and of everything else."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    head_ids = {id(p) for p in last.parameters()}
    return list(last.parameters()), [p for p in model.parameters() if id(p) not in head_ids]


def backbone_stages(model: nn.Module, count: int = 5, has_head: bool = True) -> list[list[nn.Parameter]]:
    """The backbone in `count` groups from input to output, for staged unfreezing: ResNets'
    stem and layer1..layer4; other networks' blocks split into equal runs. has_head: the
    model ends in a Linear head, which is left out."""
    backbone = head_and_backbone(model)[1] if has_head else list(model.parameters())
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        layers = [getattr(model, f"layer{i}") for i in range(1, 5)]
        in_layers = {id(p) for layer in layers for p in layer.parameters()}
        stem = [p for p in backbone if id(p) not in in_layers]
        return [stem] + [list(layer.parameters()) for layer in layers]
    blocks: list[nn.Module] = []
    for child in model.children():
        blocks.extend(child.children() if isinstance(child, nn.Sequential) else [child])
    if len(blocks) == 1:  # a wrapper (feature extractor): split what it wraps
        return backbone_stages(blocks[0], count, has_head)
    keep = {id(p) for p in backbone}
    groups = [[p for p in b.parameters() if id(p) in keep] for b in blocks]
    groups = [g for g in groups if g]
    size = -(-len(groups) // count)
    return [[p for g in groups[i:i + size] for p in g] for i in range(0, len(groups), size)]


FEATURE_STRIDES = (4, 8, 16, 32)


def create_feature_backbone(name: str, weights: str = "default", head_conv: bool = True,
                            finest: int = 4) -> tuple[nn.Module, list[int]]:
    """A backbone returning its feature maps at strides 4 (or `finest`: 2), 8, 16 and 32 (a
    list), and their channel counts. timm models through `features_only`; torchvision models through
    `create_feature_extractor` at the last module of each stride (found by one dry run).

    head_conv=False: a torchvision model's stride-32 features are taken before a last 1x1
    convolution block that only widens them for the classifier (MobileNetV2's 320 -> 1280
    channels; a ResNet has none). timm's `features_only` always stops there."""
    if name not in torchvision_names():
        import timm  # heavy (about a second); only timm model names need it

        _require_timm_name(name)
        probe = timm.create_model(name, features_only=True, pretrained=False)
        levels = [i for i, r in enumerate(probe.feature_info.reduction()) if r in _strides(finest)]
        pretrained = weights.lower() != "none"
        packaged = timm_pretrained_overlay(name, pretrained, features_only=True)
        try:
            model = timm.create_model(name, features_only=True, out_indices=levels, pretrained=pretrained,
                                      **packaged)
        except Exception as exc:
            raise ModelError(f"pretrained weights for timm model {name} are not cached and could not "
                             f"be downloaded ({type(exc).__name__}); fill the Hugging Face cache "
                             f"(HF_HOME) with them, or train with weights=none") from None
        return model, list(model.feature_info.channels())
    model = torchvision.models.get_model(name, weights=_torchvision_weights(name, weights))
    nodes = _last_module_per_stride(model, head_conv=head_conv, strides=_strides(finest))
    extractor = create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(nodes.values())})
    return _AsList(extractor), _channels(extractor)


def _strides(finest: int) -> tuple[int, ...]:
    return tuple(s for s in (2, *FEATURE_STRIDES) if s >= finest)


def _last_module_per_stride(model: nn.Module, size: int = 128, head_conv: bool = True,
                            strides: tuple[int, ...] = FEATURE_STRIDES) -> dict[int, str]:
    """Name of the last module (two levels deep at most) whose output has each stride; with
    head_conv=False, the stride-32 one is the last before a closing 1x1 convolution block."""
    calls: list[tuple[int, str, nn.Module]] = []  # in the order the hooks run: children before parents
    hooks = []
    for module_name, module in model.named_modules():
        if not module_name or module_name.count(".") > 1:
            continue

        def hook(module, __, output, module_name=module_name):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] > 0:
                stride = size // output.shape[-1]
                if stride in strides and size % output.shape[-1] == 0:
                    calls.append((stride, module_name, module))
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    except (RuntimeError, AssertionError, ValueError) as exc:  # a network made for one input size
        raise ModelError(f"{type(model).__name__} cannot run on a {size}x{size} input to find its feature maps "
                         f"({last_line(exc)}); a heatmap or simcc head needs a convolutional backbone") from None
    finally:
        for h in hooks:
            h.remove()
    # The last call per stride: a parent runs its hook after its children, so this keeps each
    # stride's outermost last module.
    found = {stride: name for stride, name, _ in calls}
    missing = [s for s in strides if s not in found]
    if missing:
        raise ModelError(f"{type(model).__name__} has no feature maps at strides {missing}; "
                         f"this head needs strides {', '.join(map(str, strides))}")
    if not head_conv:
        found[32] = _before_head_conv([(name, module) for stride, name, module in calls if stride == 32])
    return {s: found[s] for s in strides}


def _before_head_conv(calls: list[tuple[str, nn.Module]]) -> str:
    """Of the stride-32 modules in hook order, the one that ran just before a final 1x1
    convolution block (the modules after that block being only its parents); the last one when
    there is no such block."""
    for i in range(len(calls) - 1, 0, -1):
        name, module = calls[i]
        if _is_pointwise_block(module) and all(name.startswith(f"{later}.") for later, _ in calls[i + 1:]):
            return calls[i - 1][0]
    return calls[-1][0]


def _is_pointwise_block(module: nn.Module) -> bool:
    """A 1x1 convolution, alone or as the only convolution of a block (conv, norm, activation)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return len(convs) == 1 and convs[0].kernel_size == (1, 1)


class _AsList(nn.Module):
    def __init__(self, extractor: nn.Module):
        super().__init__()
        self.extractor = extractor

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(images).values())


def _channels(extractor: nn.Module) -> list[int]:
    with torch.no_grad():
        return [f.shape[1] for f in extractor.eval()(torch.zeros(1, 3, 64, 64)).values()]
