"""The heatmap head: a backbone's multi-scale features, a light U-Net style decoder, K maps at
1/4 (or 1/2) of the input size; the codec between maps and points; adaptive wing on the maps and/or L1
on the soft-argmax coordinates; training on a random subset of the points each step.

Targets are never stored: `HeatmapCodec.encode` builds the Gaussian maps on the training device
from the batch's coordinates (two small separable profiles and one outer product per point).
Decoding is batched over faces and points: no loop over either.

Frames: points in network-input pixels (pixel centres at integers). Map pixel centres sit at
input coordinates stride * (u + 0.5) - 0.5, so map and input share their outer edges and a
horizontal mirror of the input is exactly a mirror of the maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from densemarks.core.errors import DataError
from densemarks.core.registry import choose
from densemarks.models.backbones import backbone_stages, create_feature_backbone
from densemarks.models.heads.base import Decoded, blend
from densemarks.models.losses import adaptive_wing_elementwise


@dataclass(frozen=True)
class HeatmapCodec:
    """encode: points (B, K, 2) input pixels -> maps (B, K, H/stride, W/stride) in [0, 1], a
    Gaussian of `sigma` map pixels at each point. decode: maps -> (points (B, K, 2) input
    pixels, score (B, K) the peak value), by

    - "integral": soft-argmax, the expectation of softmax(beta * maps) (differentiable);
    - "argmax": the highest map pixel refined by one Newton step on the log map (exact for a
      Gaussian, whatever its position, also at the border)."""

    height: int
    width: int
    stride: int = 4
    sigma: float = 1.5
    beta: float = 25.0

    def __post_init__(self):
        if self.height % self.stride or self.width % self.stride:
            raise ValueError(f"input {self.height}x{self.width} is not a multiple of the map stride {self.stride}")

    @property
    def map_size(self) -> tuple[int, int]:
        return self.height // self.stride, self.width // self.stride

    def to_map(self, points: torch.Tensor) -> torch.Tensor:
        return (points + 0.5) / self.stride - 0.5

    def from_map(self, coords: torch.Tensor) -> torch.Tensor:
        return (coords + 0.5) * self.stride - 0.5

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        h, w = self.map_size
        u = self.to_map(points.float())
        xs = torch.arange(w, device=points.device, dtype=torch.float32)
        ys = torch.arange(h, device=points.device, dtype=torch.float32)
        gx = torch.exp(-(xs - u[..., 0:1]) ** 2 / (2 * self.sigma ** 2))  # (B, K, w)
        gy = torch.exp(-(ys - u[..., 1:2]) ** 2 / (2 * self.sigma ** 2))  # (B, K, h)
        return gy.unsqueeze(-1) * gx.unsqueeze(-2)

    def decode(self, maps: torch.Tensor, method: str = "argmax") -> tuple[torch.Tensor, torch.Tensor]:
        coords = choose(DECODERS, method, "heatmap decoding")(maps, self.beta)
        return self.from_map(coords), maps.flatten(2).amax(dim=2)


def soft_argmax(maps: torch.Tensor, beta: float) -> torch.Tensor:
    """(B, K, h, w) -> (B, K, 2) map coordinates: the expectation of softmax(beta * maps)."""
    b, k, h, w = maps.shape
    p = torch.softmax(beta * maps.float().flatten(2), dim=2).view(b, k, h, w)
    xs = torch.arange(w, device=maps.device, dtype=p.dtype)
    ys = torch.arange(h, device=maps.device, dtype=p.dtype)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=-1)


def refined_argmax(maps: torch.Tensor, beta: float = 0.0, eps: float = 1e-6) -> torch.Tensor:
    """(B, K, h, w) -> (B, K, 2) map coordinates: argmax, then one Newton step on log(maps)
    from the 3x3 neighbourhood around it (moved inside the map at the border), the offset
    limited to 1.5 pixels. The log of a Gaussian is quadratic: the step lands on its centre.
    beta is unused (the signature of `DECODERS`)."""
    h, w = maps.shape[-2:]
    flat = maps.float().flatten(2)
    index = flat.argmax(dim=2)
    y, x = index // w, index % w
    cy, cx = y.clamp(1, max(1, h - 2)), x.clamp(1, max(1, w - 2))
    if h < 3 or w < 3:
        return torch.stack([x, y], dim=-1).float()
    # The 3x3 neighbourhood in one gather, and the log of those 9 values only.
    offsets = torch.tensor([dy * w + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], device=maps.device)
    logs = torch.log(flat.gather(2, (cy * w + cx).unsqueeze(-1) + offsets).clamp_min(eps))

    def at(dy: int, dx: int) -> torch.Tensor:
        return logs[..., (dy + 1) * 3 + dx + 1]

    centre = at(0, 0)
    gx, gy = (at(0, 1) - at(0, -1)) / 2, (at(1, 0) - at(-1, 0)) / 2
    hxx = at(0, 1) - 2 * centre + at(0, -1)
    hyy = at(1, 0) - 2 * centre + at(-1, 0)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy ** 2
    ok = (hxx < 0) & (det > 1e-12)  # a proper maximum; elsewhere keep the argmax
    safe = torch.where(ok, det, torch.ones_like(det))
    dx = -(hyy * gx - hxy * gy) / safe
    dy = -(hxx * gy - hxy * gx) / safe
    px = torch.where(ok, cx + dx, x.float())
    py = torch.where(ok, cy + dy, y.float())
    px = torch.minimum(torch.maximum(px, x - 1.5), x + 1.5).clamp(-0.5, w - 0.5)
    py = torch.minimum(torch.maximum(py, y - 1.5), y + 1.5).clamp(-0.5, h - 0.5)
    return torch.stack([px, py], dim=-1)


def heatmap_loss(maps: torch.Tensor, target: torch.Tensor, omega: float = 14.0, theta: float = 0.5,
                 epsilon: float = 1.0, alpha: float = 2.1, foreground_weight: float = 10.0) -> torch.Tensor:
    """Adaptive wing loss on the maps (Wang et al. 2019), with its weight map: pixels near a
    point (the target dilated by 3x3, above 0.2) count 1 + foreground_weight times."""
    loss = adaptive_wing_elementwise(maps.float(), target, omega, theta, epsilon, alpha)
    near = F.max_pool2d(target, 3, stride=1, padding=1) > 0.2
    return (loss * (1 + foreground_weight * near)).mean()


class UNetDecoder(nn.Module):
    """Top-down path over features of strides 4 (or 2, 4), 8, 16, 32 (coarsest last): each level is
    projected to `channels`, the coarser result upsampled and added, then a 3x3 conv; a 1x1
    conv gives K maps at the finest level. Thin on purpose: with K = 971 the last layer
    dominates, so the decoder stays a fraction of the backbone's cost.

    fine_channels (0: `channels`): the finest level's width. Its 3x3 conv at 1/4 (1/2) of the input
    is the decoder's costliest layer; a narrower level gets the coarser result through a 1x1
    conv before the upsampling."""

    def __init__(self, in_channels: list[int], channels: int, num_points: int, fine_channels: int = 0):
        super().__init__()
        widths = [fine_channels or channels] + [channels] * (len(in_channels) - 1)
        self.lateral = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(in_channels, widths))
        self.narrow = nn.ModuleList(nn.Conv2d(coarse, fine, 1) if coarse != fine else nn.Identity()
                                    for fine, coarse in zip(widths, widths[1:]))
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
            for w in widths[:-1])
        self.out = nn.Conv2d(widths[0], num_points, 1)

    def forward(self, features: list[torch.Tensor], points: torch.Tensor | None = None) -> torch.Tensor:
        """Maps of all K points, or (points: indices (S,)) of those points only: the last
        layer is then computed for S channels, which is what makes training at K = 971 cheap."""
        x = self.lateral[-1](features[-1])
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            x = self.smooth[i](upsample_to(self.narrow[i](x), lateral.shape[-2:]) + lateral)
        if points is None:
            return self.out(x)
        return F.conv2d(x, self.out.weight[points], self.out.bias[points])


def upsample_to(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear upsampling of x to `size`, by a scale factor of 2 where that is exact (inputs
    divisible by 32): the same values, but exported as a fixed scale, which ONNX Runtime keeps
    in its blocked layout (no reorder around it, the add fused into the next conv): accurate-cpu's
    exported network then takes 0.91-0.96x the time."""
    if tuple(size) == (2 * x.shape[-2], 2 * x.shape[-1]):
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LandmarkHeatmapModel(nn.Module):
    """Backbone features -> decoder -> maps (B, K, H/s, W/s), s the finest feature stride (4 or 2)."""

    def __init__(self, features: nn.Module, channels: list[int], num_points: int, decoder_channels: int = 64,
                 fine_channels: int = 0):
        super().__init__()
        self.backbone = features  # returns a list of feature maps, strides (2,) 4, 8, 16, 32
        self.decoder = UNetDecoder(channels, decoder_channels, num_points, fine_channels)
        self.num_points = num_points

    def forward(self, images: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.backbone(images), points)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())

    def stages(self) -> list[list[nn.Parameter]]:
        return backbone_stages(self.backbone, has_head=False)


# heatmap_decode: map coordinates from maps (B, K, h, w) and the soft-argmax sharpness beta.
DECODERS = {"argmax": refined_argmax, "integral": soft_argmax}
# heatmap_loss: which terms the loss has (adaptive wing on the maps, L1 on soft-argmax coords).
HEATMAP_LOSSES = {"maps": (True, False), "coords": (False, True), "both": (True, True)}


class HeatmapHead:
    def __init__(self, size: tuple[int, int], sigma: float = 1.5, loss: str = "both", coord_weight: float = 0.1,
                 decode: str = "argmax", points_per_step: int = 64, decoder_channels: int = 64,
                 fine_channels: int = 0, head_conv: bool = True, stride: int = 4):
        h, w = size
        if h % stride or w % stride:
            raise DataError(None, f"head=heatmap needs augment.size divisible by {stride} (maps at 1/{stride}), "
                                  f"got {h}x{w}")
        self.codec = HeatmapCodec(h, w, stride=stride, sigma=sigma)
        self.use_maps, self.use_coords = choose(HEATMAP_LOSSES, loss, "heatmap loss")
        self.coord_weight = coord_weight if self.use_maps else 1.0
        choose(DECODERS, decode, "heatmap decoding")  # an unknown name fails here, not at the first decode
        self.method = decode
        self.points_per_step = points_per_step
        self.decoder_channels = decoder_channels
        self.fine_channels = fine_channels
        self.head_conv = head_conv

    @classmethod
    def from_config(cls, config) -> "HeatmapHead":
        return cls(config.augment.size, config.heatmap_sigma, config.heatmap_loss, config.coord_weight,
                   config.heatmap_decode, config.heatmap_points_per_step, config.decoder_channels,
                   config.decoder_fine_channels, config.feature_head_conv, config.heatmap_stride)

    def network(self, backbone: str, num_points: int, weights: str) -> LandmarkHeatmapModel:
        features, channels = create_feature_backbone(backbone, weights, self.head_conv, finest=self.codec.stride)
        return LandmarkHeatmapModel(features, channels, num_points, self.decoder_channels, self.fine_channels)

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(points)

    def decode(self, output: torch.Tensor) -> Decoded:
        points, peak = self.codec.decode(output.float(), self.method)
        return Decoded(points, peak.clamp(0, 1))

    def loss(self, output: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        total = output.new_zeros((), dtype=torch.float32)
        if self.use_maps:
            total = total + heatmap_loss(output, self.codec.encode(points))
        if self.use_coords:
            coords = self.codec.from_map(soft_argmax(output, self.codec.beta))
            total = total + self.coord_weight * F.l1_loss(coords, points.float())
        return total

    def start_from(self, model: nn.Module, mean_points) -> None:
        """Nothing to set: a map's peak is wherever the features put it (the decoder starts from
        scratch)."""

    def train_loss(self, model: nn.Module, images: torch.Tensor, points: torch.Tensor,
                   teacher: torch.Tensor | None = None, teacher_weight: float = 0.0) -> torch.Tensor:
        """The loss on a random subset of the points (points_per_step; 0 = all), drawn anew each
        step from torch's seeded generator: every point is trained in expectation, and the last
        layer and the loss cost S/K of the full maps."""
        k = points.shape[1]
        if 0 < self.points_per_step < k:
            subset = torch.randperm(k)[: self.points_per_step].to(points.device)
            picked = None if teacher is None else teacher[:, subset]
            return blend(self.loss, model(images, subset), points[:, subset], picked, teacher_weight)
        return blend(self.loss, model(images), points, teacher, teacher_weight)
