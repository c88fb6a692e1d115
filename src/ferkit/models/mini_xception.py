"""mini-Xception (Li et al. 2022, after Arriaga et al. 2017).

Li et al. describe: a small convolutional stem, **four** residual modules built from depthwise
separable convolutions, batch normalization after every convolution, ReLU, **no fully
connected layer** (a last convolution to one map per class, then global average pooling) and
softmax. The abstract gives no widths; ferkit's choices, and why:

* stem: two 3x3 convolutions without padding (48 -> 44), as in Arriaga's mini-Xception;
* module ``i``: SepConv(3x3) - BN - ReLU - SepConv(3x3) - BN - MaxPool(3x3, stride 2), plus a
  1x1 stride-2 convolution + BN shortcut; widths ``(16, 32, 64, 128) * width`` and stem
  ``8 * width``. ``width=1`` is the original 57K-parameter network; the shipped model uses
  ``width=2`` (201K parameters), which costs ~2x the CPU time and is worth a few points of
  accuracy on FER2013 while staying real-time;
* a depthwise separable convolution counts as one convolution: BN follows the pointwise part
  (as in Keras' SeparableConv2D used by the original); every other convolution has its BN;
* head: 3x3 convolution to ``num_classes`` maps, global average pooling; the network returns
  logits and softmax is applied by the loss / at prediction time. Optional dropout before the
  head (default 0, i.e. off).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvBNReLU, SeparableConv2d, global_avg_pool, init_weights
from .registry import register


class XceptionModule(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        self.sep1 = SeparableConv2d(cin, cout)
        self.relu = nn.ReLU(inplace=True)
        self.sep2 = SeparableConv2d(cout, cout)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.sep2(self.relu(self.sep1(x)))) + self.shortcut(x)


class MiniXception(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        stem = 8 * width
        chans = [c * width for c in (16, 32, 64, 128)]
        self.stem = nn.Sequential(ConvBNReLU(in_chans, stem, 3, padding=0), ConvBNReLU(stem, stem, 3, padding=0))
        mods, c = [], stem
        for o in chans:
            mods.append(XceptionModule(c, o))
            c = o
        self.modules_ = nn.Sequential(*mods)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(c, num_classes, 3, padding=1)
        init_weights(self, head=self.head)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.modules_(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_avg_pool(self.head(self.dropout(self.features(x))))


@register("mini_xception", paper="Li et al. 2022, QRS-C (after Arriaga et al. 2017)",
          summary="stem + 4 residual depthwise-separable modules, BN, no FC, global average pooling")
def mini_xception(num_classes: int = 7, in_chans: int = 1, width: int = 1, dropout: float = 0.0) -> nn.Module:
    """mini-Xception: 4 residual depthwise separable modules, BN + ReLU, no FC layer, GAP."""
    return MiniXception(num_classes, in_chans, width, dropout)
