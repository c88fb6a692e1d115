"""Building blocks shared by the architectures."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU (``relu=False`` drops the ReLU)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | None = None,
                 dilation: int = 1, groups: int = 1, relu: bool = True) -> None:
        pad = dilation * (k - 1) // 2 if padding is None else padding
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableConv2d(nn.Sequential):
    """Depthwise separable convolution followed by batch norm: a ``k x k`` depthwise conv and a
    1x1 pointwise conv with no norm or non-linearity between them (as Keras' SeparableConv2D
    and Xception, which found an intermediate non-linearity hurts), then BN."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> None:
        pad = dilation * (k - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cin, k, stride, pad, dilation=dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )


def init_weights(model: nn.Module, head: nn.Module | None = None) -> None:
    """He init for convs, unit BN, small normal for linear layers and for ``head`` (the
    classifier, so that the first logits are near zero and the first loss near ln K)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    if head is not None:
        for m in head.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


class BasicBlock(nn.Module):
    """ResNet's basic residual block: 3x3 conv - BN - ReLU - 3x3 conv - BN, plus the input (through
    a 1x1 conv + BN where the stride or the width changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(cin, cout, 3, stride)
        self.conv2 = ConvBNReLU(cout, cout, 3, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def identity_grid(h: int, w: int) -> torch.Tensor:
    """``[h * w, 3]`` rows ``(x, y, 1)`` of the pixel centres of an ``h x w`` map in
    ``grid_sample``'s coordinates (``align_corners=False``): ``grid = identity_grid @ theta^T``."""
    ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(h * w)], dim=1)


def affine_warp(x: torch.Tensor, theta: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Warp ``x`` ``[N, C, H, W]`` by the affine ``theta`` ``[N, 2, 3]`` (a spatial transformer's
    sampler). Same as ``grid_sample(x, affine_grid(theta, x.shape))`` but with the grid built from
    ``base`` (:func:`identity_grid`) by a matmul, which ONNX exports (``affine_grid`` needs opset 20;
    ``grid_sample`` needs opset 16)."""
    h, w = x.shape[-2:]
    grid = torch.matmul(base, theta.transpose(1, 2)).reshape(-1, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
