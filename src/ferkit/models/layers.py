"""Building blocks shared by the architectures."""

from __future__ import annotations

import torch
import torch.nn as nn


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
