"""Batched tensor transforms: normalisation, training augmentation, test-time augmentation.

Everything works on whole batches (``[N, C, H, W]``) on the training device, so a 2-core CPU
spends its time in the network, not in per-image Python. Randomness comes from an explicit
``torch.Generator`` so that runs are reproducible with ``--seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N,C,H,W]`` -> float32 in [0, 1]."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


@dataclass
class AugmentConfig:
    """Training augmentation. Geometric parts are one random affine warp per image."""

    flip: float = 0.5  #: probability of a horizontal flip
    shift: float = 0.1  #: max translation as a fraction of the size (random crop/shift)
    rotate: float = 15.0  #: max rotation in degrees
    scale: float = 0.15  #: zoom in [1 - scale, 1 + scale]
    brightness: float = 0.3  #: additive brightness in [-b, b] (x0.5, images in [0,1])
    contrast: float = 0.3  #: contrast factor in [1 - c, 1 + c]
    erase: float = 0.5  #: probability of random erasing (one rectangle, 2-20% of the area)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a float batch in [0, 1]. Random numbers are drawn on the CPU generator ``g``
    (so results do not depend on the device), then applied on ``x.device``."""
    n, c, h, w = x.shape
    dev = x.device
    if cfg.rotate or cfg.scale or cfg.shift or cfg.flip:
        ang = _uniform(n, -cfg.rotate, cfg.rotate, g) * (math.pi / 180.0)
        sc = _uniform(n, 1.0 - cfg.scale, 1.0 + cfg.scale, g)
        tx = _uniform(n, -cfg.shift, cfg.shift, g) * 2.0  # affine_grid coordinates span [-1, 1]
        ty = _uniform(n, -cfg.shift, cfg.shift, g) * 2.0
        flip = (torch.rand(n, generator=g) < cfg.flip).float() * -2.0 + 1.0  # -1 flips
        cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
        theta = torch.stack([
            torch.stack([cos * flip, -sin, tx], dim=1),
            torch.stack([sin * flip, cos, ty], dim=1),
        ], dim=1).to(dev)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.brightness or cfg.contrast:
        b = _uniform(n, -cfg.brightness, cfg.brightness, g).view(n, 1, 1, 1).to(dev) * 0.5
        k = _uniform(n, 1.0 - cfg.contrast, 1.0 + cfg.contrast, g).view(n, 1, 1, 1).to(dev)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * k + mean + b).clamp_(0.0, 1.0)
    if cfg.erase:
        do = torch.rand(n, generator=g) < cfg.erase
        area = _uniform(n, 0.02, 0.2, g) * h * w
        ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g))
        eh = (area * ratio).sqrt().clamp(1, h).long()
        ew = (area / ratio).sqrt().clamp(1, w).long()
        y0 = (torch.rand(n, generator=g) * (h - eh + 1).float()).long()
        x0 = (torch.rand(n, generator=g) * (w - ew + 1).float()).long()
        fill = torch.rand(n, generator=g)
        ys = torch.arange(h).view(1, h, 1)
        xs = torch.arange(w).view(1, 1, w)
        mask = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1)) &
                (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)) & do.view(n, 1, 1))
        mask = mask.unsqueeze(1).to(dev)
        x = torch.where(mask, fill.view(n, 1, 1, 1).to(dev, x.dtype), x)
    return x


def tta_views(x: torch.Tensor, mode: str | None) -> list[torch.Tensor]:
    """Test-time views of a float batch: ``None`` -> [x]; ``flip`` -> [x, mirrored x];
    ``tencrop`` -> 4 corner + centre crops of 90% size (resized back), each also mirrored."""
    if not mode or mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "tencrop":
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * 0.9)), max(1, round(w * 0.9))
        offs = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
        views = []
        for oy, ox in offs:
            crop = F.interpolate(x[..., oy:oy + ch, ox:ox + cw], size=(h, w), mode="bilinear", align_corners=False)
            views += [crop, crop.flip(-1)]
        return views
    from ..errors import FerkitError

    raise FerkitError(f"unknown TTA mode {mode!r}; use none, flip or tencrop")
