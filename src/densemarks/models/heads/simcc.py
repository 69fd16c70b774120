"""The SimCC head (Li et al., ECCV 2022, "SimCC: a simple coordinate classification
perspective"): each point's x and y are two 1-D classifications over sub-pixel bins, trained
against Gaussian-smoothed labels, decoded by argmax refined to sub-bin precision (or by the
expectation).

Network: the backbone's stride-16 and stride-32 features fused (the coarser upsampled and
added), one 1x1 convolution to K channels, each point's channel flattened and sent through an
MLP shared by all points (flattened grid -> hidden -> x bins and y bins). Its cost grows with
K x (W + H) instead of K x W x H, so every training step supervises all K points (the heatmap
head's K maps at 1/4 of the input only fit K = 971 by training a random subset per step).

Output: (B, K, NX + NY) logits, the x bins then the y bins, one tensor (the head contract).
Bins: `split` per input pixel, bin i centred on input coordinate (i + 0.5) / split - 0.5, so
the bins share the input's outer edges and a mirror of the input is a reversal of the x bins.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from densemarks.core.registry import choose
from densemarks.models.backbones import backbone_stages, create_feature_backbone
from densemarks.models.heads.base import Decoded, blend


@dataclass(frozen=True)
class SimCCCodec:
    """encode: points (B, K, 2) input pixels -> (B, K, NX + NY) log-probabilities of the
    Gaussian labels (sigma input pixels, each axis normalised): logits whose softmax is the
    target, so decode(encode(p)) = p. decode: logits -> (points (B, K, 2) input pixels,
    confidence (B, K)), by

    - "argmax": the best bin refined by one Newton step on the log-softmax over it and its two
      neighbours (exact for a Gaussian, the border included);
    - "expectation": the mean of the softmax over the bins (differentiable; pulled inwards
      near the border).

    confidence: the peak probability over a perfect Gaussian's peak, the lower of x and y, in
    [0, 1]."""

    height: int
    width: int
    split: float = 2.0
    sigma: float = 2.0

    @property
    def bins(self) -> tuple[int, int]:
        """(NX, NY)."""
        return round(self.width * self.split), round(self.height * self.split)

    def _centres(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return (torch.arange(n, device=like.device, dtype=torch.float32) + 0.5) / self.split - 0.5

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        nx, ny = self.bins
        logits = []
        for axis, n in ((0, nx), (1, ny)):
            d = self._centres(n, points) - points[..., axis:axis + 1].float()  # (B, K, n)
            logits.append(torch.log_softmax(-d ** 2 / (2 * self.sigma ** 2), dim=-1))
        return torch.cat(logits, dim=-1)

    def split_axes(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nx, _ = self.bins
        return output[..., :nx], output[..., nx:]

    def decode(self, output: torch.Tensor, method: str = "argmax") -> tuple[torch.Tensor, torch.Tensor]:
        decoder = choose(DECODERS, method, "simcc decoding")
        coords, peaks = [], []
        for logits in self.split_axes(output.float()):
            logp = torch.log_softmax(logits, dim=-1)
            coords.append(decoder(logp) / self.split - 0.5)  # bin index -> input pixels
            peaks.append(logp.amax(dim=-1).exp())
        peak = math.sqrt(2 * math.pi) * self.sigma * self.split  # a Gaussian label's peak is 1/this
        return torch.stack(coords, dim=-1), (torch.minimum(*peaks) * peak).clamp(0, 1)


def refined_argmax_1d(logp: torch.Tensor) -> torch.Tensor:
    """(..., n) log-probabilities -> (...) bin coordinates (bin i's centre at i + 0.5): argmax, then one Newton step from the three bins around it (moved
    inside at the border), the offset limited to 1.5 bins. A Gaussian's log is a parabola: the
    step lands on its centre."""
    n = logp.shape[-1]
    best = logp.argmax(dim=-1)
    if n < 3:
        return best.float() + 0.5
    centre = best.clamp(1, n - 2)

    def at(offset: int) -> torch.Tensor:
        return logp.gather(-1, (centre + offset).unsqueeze(-1)).squeeze(-1)

    left, middle, right = at(-1), at(0), at(1)
    curvature = left - 2 * middle + right
    ok = curvature < -1e-9
    step = -(right - left) / 2 / torch.where(ok, curvature, -torch.ones_like(curvature))
    position = torch.where(ok, centre + step, best.float())
    position = torch.minimum(torch.maximum(position, best - 1.5), best + 1.5).clamp(-0.5, n - 0.5)
    return position + 0.5


def expectation_1d(logp: torch.Tensor) -> torch.Tensor:
    """(..., n) log-probabilities -> (...) the mean bin coordinate (bin centre i + 0.5)."""
    n = logp.shape[-1]
    return (logp.exp() * (torch.arange(n, device=logp.device, dtype=logp.dtype) + 0.5)).sum(-1)


@dataclass(frozen=True)
class BinLabels:
    """Gaussian labels over the few bins they cover, per (B, K) and axis: `index` (B, K, A, S)
    bins (counted across the axes, as in the logits), `weight` (B, K, A, S), each axis summing
    to 1 (0 where no bin is covered), `entropy` (B, K) summed over the axes (so the loss is the
    KL divergence, 0 for a perfect answer)."""

    index: torch.Tensor
    weight: torch.Tensor
    entropy: torch.Tensor

    @staticmethod
    def of(centre: torch.Tensor, sigma: float, sizes: tuple[int, ...]) -> "BinLabels":
        """Labels centred at `centre` (B, K, A) bins (bin i centred at i) of an axis, a
        Gaussian of `sigma` bins cut at 3 sigma and normalised."""
        radius = max(1, math.ceil(3 * sigma))
        offsets = torch.arange(-radius, radius + 1, device=centre.device)
        indices, weights, start = [], [], 0
        for axis, n in enumerate(sizes):
            c = centre[..., axis].float()
            index = torch.round(c).long().unsqueeze(-1) + offsets  # (B, K, 2r + 1)
            inside = (index >= 0) & (index < n)
            weight = torch.exp(-(index - c.unsqueeze(-1)) ** 2 / (2 * sigma ** 2)) * inside
            weights.append(weight / weight.sum(-1, keepdim=True).clamp_min(1e-12))
            indices.append(index.clamp(0, n - 1) + start)
            start += n
        weight = torch.stack(weights, -2)
        entropy = -(weight * torch.log(weight.clamp_min(1e-30))).sum((-2, -1))
        return BinLabels(torch.stack(indices, -2), weight, entropy)

    def mix(self, other: "BinLabels", share: float) -> "BinLabels":
        """(1 - share) x these labels + share x the other's: the KL against the mixture's bins
        equals the same mixture of the two KLs (cross-entropy is linear in the labels), which
        is how a teacher's labels join the ground truth's in one pass (distillation)."""
        return BinLabels(torch.cat([self.index, other.index], -1),
                         torch.cat([(1 - share) * self.weight, share * other.weight], -1),
                         (1 - share) * self.entropy + share * other.entropy)


def label_kl(logits: torch.Tensor, centre: torch.Tensor | BinLabels, sigma: float = 0.0,
             sizes: tuple[int, ...] | None = None) -> torch.Tensor:
    """KL(labels || softmax) per axis, summed over the axes and averaged over (B, K), for
    logits (B, K, N) holding the axes' bins one after the other (`sizes`, default one axis of
    N) and label centres (B, K, A) in bins (bin i centred at i; (B, K) for one axis), or
    `BinLabels` already made. The labels are a Gaussian of `sigma` bins cut at 3 sigma and
    normalised; a centre so far outside that no bin is covered adds nothing.

    Computed from the few bins the labels cover (gathered), with the gradient written directly
    (softmax minus the labels, `_BinKL`): at K = 971 the dense label tensor, the slices' and
    the gather's backward (zeroed copies of the output) and autograd's logsumexp graph were a
    third of a training step."""
    sizes = tuple(sizes or (logits.shape[-1],))
    if not isinstance(centre, BinLabels):
        if centre.dim() == logits.dim() - 1:
            centre = centre.unsqueeze(-1)
        if sum(sizes) != logits.shape[-1] or centre.shape[-1] != len(sizes):
            raise ValueError(f"{logits.shape[-1]} bins and {centre.shape[-1]} centres for axes of {sizes} bins")
        centre = BinLabels.of(centre, sigma, sizes)
    return _BinKL.apply(logits, centre.index, centre.weight, centre.entropy, sizes)


class _BinKL(torch.autograd.Function):
    """sum over axes, mean over (B, K) of -entropy - weight . log_softmax(logits)[index], with
    the gradient softmax x (the axis's label mass, 1 or 0) - weight scattered, over B x K."""

    @staticmethod
    def forward(ctx, logits, index, weight, entropy, sizes):
        logp = _log_softmax_axes(logits, sizes)
        index, weight = index.flatten(-2), weight.flatten(-2)
        ctx.save_for_backward(logp, index, weight)
        ctx.sizes, ctx.count = sizes, max(1, logits.shape[:-1].numel())
        return (-(weight * logp.gather(-1, index)).sum(-1) - entropy).sum() / ctx.count

    @staticmethod
    def backward(ctx, grad):
        logp, index, weight = ctx.saved_tensors
        g = logp.exp_()  # in place: one tensor of B x K x bins less to allocate (and fault in) per step;
        # a second backward through this graph fails on the saved tensor's version, not silently
        _softmax_minus_labels(g, index, weight, ctx.sizes)
        return g.mul_(grad / ctx.count), None, None, None, None


def _softmax_minus_labels(g: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, sizes: tuple[int, ...]) -> None:
    """g (..., N): the softmax, turned in place into the KL's gradient: each axis's part times
    the axis's label mass (1, 0 where nothing is covered, between for mixed labels), minus the
    labels scattered to their bins (index, weight (..., A x S))."""
    mass = weight.unflatten(-1, (len(sizes), -1)).sum(-1)  # (..., A)
    if bool(((mass - 1).abs() > 1e-6).any()):  # most often every mass is 1: g is left as it is
        for part, m in zip(g.split(sizes, -1), mass.unbind(-1)):
            part.mul_(m.unsqueeze(-1))
    g.scatter_add_(-1, index, -weight)


def fused_linear_kl(hidden: torch.Tensor, layer: nn.Module, labels: BinLabels, sizes: tuple[int, ...],
                    chunk_bytes: int | None = None) -> torch.Tensor:
    """label_kl(layer(hidden), labels) without the logits: `hidden` (B, K, H) goes through the
    last layer (an nn.Linear with a bias, or an `AxisLinear`; H -> N bins) and the loss a chunk
    of rows at a time, each chunk's gradient computed at once and folded into the gradients of
    `hidden` and of the layer's weight and bias (the "fused linear cross-entropy" of large-vocabulary
    language models). Same value and gradients as the logits' path (to rounding).

    At K = 971 a batch of 32 has 31,072 rows of 896 bins: the logits, their log-softmax and
    their gradient are 111 MB tensors each, written and read several times a step, and held
    at once (on a GPU at batch 256, 0.9 GB each). Here a chunk (`chunk_bytes` of logits:
    4 MiB on a CPU, 256 MiB on CUDA) is made and consumed while in cache, and nothing of the
    logits' size is kept for the backward."""
    if chunk_bytes is None:
        chunk_bytes = 256 * 2 ** 20 if hidden.is_cuda else 4 * 2 ** 20
    bins = layer.weight.shape[0]
    groups = layer.groups() if isinstance(layer, AxisLinear) else [(slice(0, bins), slice(0, hidden.shape[-1]))]
    return _FusedLinearKL.apply(hidden, layer.weight, layer.bias, labels.index, labels.weight, labels.entropy,
                                sizes, groups, max(16, chunk_bytes // (4 * bins)))


class _FusedLinearKL(torch.autograd.Function):
    """The loss of `fused_linear_kl`; the gradients are made in the forward pass (one pass over
    the chunks) and only scaled in the backward. `groups`: (the weight's rows, the hidden
    features they read) pairs."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, index, label, entropy, sizes, groups, rows):
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.reshape(-1, hidden.shape[-1]).float()
            w = weight.float()
            b = bias.float()
            index, label = index.flatten(-2).reshape(h.shape[0], -1), label.flatten(-2).reshape(h.shape[0], -1)
            grad_h, grad_w, grad_b = torch.empty_like(h), torch.zeros_like(w), torch.zeros_like(b)
            total = -entropy.float().sum()
            for start in range(0, h.shape[0], rows):
                part = slice(start, start + rows)
                logits = [torch.addmm(b[out], h[part, into], w[out].t()) for out, into in groups]
                logp = _log_softmax_axes(logits[0] if len(logits) == 1 else torch.cat(logits, -1), sizes)
                total = total - (label[part] * logp.gather(-1, index[part])).sum()
                g = logp.exp_()
                _softmax_minus_labels(g, index[part], label[part], sizes)
                for out, into in groups:
                    grad_h[part, into] = g[:, out] @ w[out]
                    grad_w[out].addmm_(g[:, out].t(), h[part, into])
                grad_b.add_(g.sum(0))
        count = max(1, h.shape[0])
        ctx.save_for_backward(grad_h.view(hidden.shape).to(hidden.dtype), grad_w.to(weight.dtype), grad_b.to(bias.dtype))
        ctx.count = count
        return total / count

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad / ctx.count
        return grad_h * scale, grad_w * scale, grad_b * scale, None, None, None, None, None, None


def _log_softmax_axes(logits: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """log_softmax over each axis's bins of logits (..., sum(sizes)); one fused call when the
    axes have as many bins (a square input)."""
    if len(set(sizes)) == 1:
        return torch.log_softmax(logits.unflatten(-1, (len(sizes), sizes[0])), -1).flatten(-2)
    return torch.cat([torch.log_softmax(part, -1) for part in logits.split(sizes, -1)], -1)


# simcc_decode: bin coordinate (bin i's centre at i + 0.5) from log-probabilities (..., n).
DECODERS = {"argmax": refined_argmax_1d, "expectation": expectation_1d}


class AxisLinear(nn.Module):
    """The last layer with each axis's bins computed from its own share of the H hidden
    features (x bins from the first H / A, y bins from the next): A times fewer multiply-adds
    than an nn.Linear from all H (`simcc_axes=separate`)."""

    def __init__(self, features: int, sizes: tuple[int, ...]):
        super().__init__()
        if features % len(sizes):
            raise ValueError(f"{features} hidden features do not split into {len(sizes)} axes")
        self.sizes, self.share = tuple(sizes), features // len(sizes)
        reference = nn.Linear(self.share, sum(sizes))  # its initialisation
        self.weight, self.bias = reference.weight, reference.bias

    def groups(self) -> list[tuple[slice, slice]]:
        """(bins, hidden features) per axis."""
        edges = [0, *itertools.accumulate(self.sizes)]
        return [(slice(edges[a], edges[a + 1]), slice(a * self.share, (a + 1) * self.share))
                for a in range(len(self.sizes))]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.linear(hidden[..., into], self.weight[out], self.bias[out]) for out, into in self.groups()],
                         -1)


# simcc_axes: the MLP's last layer from (hidden features, the axes' bins).
AXIS_LAYERS = {"shared": lambda features, sizes: nn.Linear(features, sum(sizes)), "separate": AxisLinear}


def axes_problem(axes: str, hidden: int) -> str | None:
    """Why `simcc_axes` cannot go with `simcc_hidden`, or None."""
    if axes == "separate" and (hidden <= 0 or hidden % 2):
        return (f"simcc_hidden={hidden}: simcc_axes=separate splits it between x and y, so it must be even and "
                "above 0 (or set simcc_axes=shared)")
    return None


class SimCCLayers(nn.Module):
    """Features at strides 16 and 32 -> (B, K, NX + NY) logits."""

    def __init__(self, in_channels: list[int], channels: int, num_points: int, grid: int, hidden: int,
                 sizes: tuple[int, ...], axes: str):
        super().__init__()
        self.lateral16 = nn.Conv2d(in_channels[0], channels, 1)
        self.lateral32 = nn.Conv2d(in_channels[1], channels, 1)
        self.smooth = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.points = nn.Conv2d(channels, num_points, 1)
        layers: list[nn.Module] = [nn.Linear(grid, hidden), nn.GELU()] if hidden else []
        self.classify = nn.Sequential(*layers, choose(AXIS_LAYERS, axes, "simcc_axes")(hidden or grid, sizes))

    def forward(self, f16: torch.Tensor, f32: torch.Tensor, labels: BinLabels | None = None,
                sizes: tuple[int, ...] = ()) -> torch.Tensor:
        lateral = self.lateral16(f16)
        x = F.interpolate(self.lateral32(f32), size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        x = self.points(self.smooth(x + lateral)).flatten(2)  # (B, K, h x w)
        if labels is None:
            return self.classify(x)  # the MLP runs on the last axis: every point alike
        return fused_linear_kl(self.classify[:-1](x), self.classify[-1], labels, sizes)


class LandmarkSimCCModel(nn.Module):
    """Backbone features -> SimCC layers -> (B, K, NX + NY) logits."""

    def __init__(self, features: nn.Module, channels: list[int], num_points: int, size: tuple[int, int],
                 decoder_channels: int, hidden: int, sizes: tuple[int, ...], axes: str):
        super().__init__()
        self.backbone = features  # returns a list of feature maps, strides 4, 8, 16, 32
        h, w = size
        grid = math.ceil(h / 16) * math.ceil(w / 16)
        self.layers = SimCCLayers(channels[-2:], decoder_channels, num_points, grid, hidden, sizes, axes)
        self.num_points = num_points

    def forward(self, images: torch.Tensor, labels: BinLabels | None = None,
                sizes: tuple[int, ...] = ()) -> torch.Tensor:
        """The logits; or, given labels over the axes' bins (`sizes`), the KL loss against them,
        computed without the logits (`fused_linear_kl`, training)."""
        features = self.backbone(images)
        return self.layers(features[-2], features[-1], labels, sizes)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.layers.parameters())

    def stages(self) -> list[list[nn.Parameter]]:
        return backbone_stages(self.backbone, has_head=False)


class SimCCHead:
    def __init__(self, size: tuple[int, int], split: float = 2.0, sigma: float = 2.0, hidden: int = 128,
                 decode: str = "argmax", coord_weight: float = 0.0, decoder_channels: int = 64,
                 head_conv: bool = True, axes: str = "separate"):
        h, w = size
        self.size = (h, w)
        self.codec = SimCCCodec(h, w, split, sigma)
        choose(DECODERS, decode, "simcc decoding")  # an unknown name fails here, not at the first decode
        choose(AXIS_LAYERS, axes, "simcc_axes")
        if problem := axes_problem(axes, hidden):
            raise ValueError(problem)
        self.axes = axes
        self.method = decode
        self.hidden = hidden
        self.coord_weight = coord_weight
        self.decoder_channels = decoder_channels
        self.head_conv = head_conv

    @classmethod
    def from_config(cls, config) -> "SimCCHead":
        return cls(config.augment.size, config.simcc_split, config.simcc_sigma, config.simcc_hidden,
                   config.simcc_decode, config.simcc_coord_weight, config.decoder_channels, config.feature_head_conv,
                   config.simcc_axes)

    def network(self, backbone: str, num_points: int, weights: str) -> LandmarkSimCCModel:
        features, channels = create_feature_backbone(backbone, weights, self.head_conv)
        return LandmarkSimCCModel(features, channels, num_points, self.size, self.decoder_channels, self.hidden,
                                  self.codec.bins, self.axes)

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(points)

    def decode(self, output: torch.Tensor) -> Decoded:
        points, confidence = self.codec.decode(output, self.method)
        return Decoded(points, confidence)

    def loss(self, output: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """KL divergence from the Gaussian labels to the softmax, per axis, summed over the bins
        and averaged over points and faces (`label_kl`); plus coord_weight x L1 of the
        expectation (input pixels)."""
        output = output.float()
        total = label_kl(output, self.labels(points), sizes=self.codec.bins)
        if self.coord_weight:
            axes = self.codec.split_axes(output)
            expected = torch.stack([expectation_1d(torch.log_softmax(a, -1)) for a in axes], dim=-1)
            total = total + self.coord_weight * F.l1_loss(expected / self.codec.split - 0.5, points.float())
        return total

    def start_from(self, model: nn.Module, mean_points) -> None:
        """Nothing: the classifier is shared by all points. A per-point prior over the bins set
        to the mean face was tried and dropped: on the demo's 971-point faces it ended at 13.1%
        NME against 8.8% without it (28 epochs each, BENCHMARKS.md)."""

    def labels(self, points: torch.Tensor) -> BinLabels:
        """The Gaussian labels of points (B, K, 2) input pixels over the x and y bins."""
        centres = (points.float() + 0.5) * self.codec.split - 0.5  # input pixels -> bins
        return BinLabels.of(centres, self.codec.sigma * self.codec.split, self.codec.bins)

    def train_loss(self, model: nn.Module, images: torch.Tensor, points: torch.Tensor,
                   teacher: torch.Tensor | None = None, teacher_weight: float = 0.0) -> torch.Tensor:
        """`loss` (blended with a teacher's); without coord_weight, computed by the model itself
        without materialising the logits (`fused_linear_kl`: the same loss, faster
        training steps at K = 971 on a CPU), the teacher's labels mixed into the ground
        truth's."""
        if self.coord_weight:
            return blend(self.loss, model(images), points, teacher, teacher_weight)
        labels = self.labels(points)
        if teacher is not None and teacher_weight:
            labels = labels.mix(self.labels(teacher), teacher_weight)
        return model(images, labels, self.codec.bins)
