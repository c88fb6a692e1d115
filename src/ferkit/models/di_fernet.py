"""DI-FERNet (Zhang et al. 2019, WOCC).

Zhang et al. describe a network for expression recognition built from three things:
**depthwise separable convolutions**, **dilated convolutions** and **residual modules**, fed
with faces aligned by **MTCNN**; they report 97.2% on KDEF and 77.1% on RAF-DB. The abstract
gives no layer count, widths, input size or head. ferkit's choices, and why:

* input: 48x48 gray, normalised like mini-Xception (mean 0.5, std 0.25). The paper's KDEF and
  RAF-DB are colour, but every benchmark ferkit trains on here (FER2013, FER+, CK+48, JAFFE) is
  gray, and ferkit's MTCNN pipeline aligns faces at any size, so the model takes what the data
  has (the paper's MTCNN alignment is :mod:`ferkit.faces.align`);
* stem: 3x3 conv (16 maps) at 48x48, then a stride-2 3x3 conv (32 maps): plain convolutions on
  the one input channel, where a depthwise convolution would have nothing to separate;
* **DI module** (one residual module holding both ideas), ``cin -> cout``, stride ``s``,
  dilation ``r``: two depthwise 3x3 convolutions of the input side by side, one ordinary
  (dilation 1) and one **dilated** (dilation ``r``: a 5x5 or 7x7 field for the price of 3x3),
  both of stride ``s``; their outputs are concatenated and a 1x1 pointwise convolution mixes them
  into ``cout`` maps (so the pair is one **depthwise separable** convolution with a two-scale
  depthwise part) - BN - ReLU - a second depthwise separable 3x3 convolution - BN; the
  **residual** shortcut is the identity, or a 1x1 (strided) convolution + BN where the shape
  changes; ReLU after the sum. BN follows each separable convolution as a whole (no norm or
  non-linearity between its depthwise and pointwise parts, as in Xception);
* three stages of two modules, widths ``(64, 128, 256) * width / 2`` at 24x24, 12x12 and 6x6
  (the first module of stages 2 and 3 has stride 2); dilations 2 then 3 in each stage (co-prime
  rates, so stacked dilated kernels leave no gaps in the field: "hybrid dilated convolution");
* head: global average pooling, dropout (default 0.2), one fully connected layer to the
  classes; the network returns logits (softmax in the loss / at prediction time).

``width=2`` (the default) has about 0.5 M parameters; ``width=1`` about 0.13 M.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvBNReLU, SeparableConv2d, global_avg_pool, init_weights
from .registry import register


class DIModule(nn.Module):
    """Residual module: [depthwise 3x3 | dilated depthwise 3x3] -> pointwise -> BN -> ReLU ->
    separable 3x3 -> BN, + shortcut, ReLU (see the module docstring)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 2) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.dw_dilated = nn.Conv2d(cin, cin, 3, stride, dilation, dilation=dilation, groups=cin, bias=False)
        self.pw = nn.Sequential(nn.Conv2d(2 * cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.sep = SeparableConv2d(cout, cout, 3)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(torch.cat([self.dw(x), self.dw_dilated(x)], dim=1))
        return self.relu(self.sep(y) + self.shortcut(x))


class DIFERNet(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        c0, c1 = 8 * width, 16 * width
        self.stem = nn.Sequential(ConvBNReLU(in_chans, c0, 3), ConvBNReLU(c0, c1, 3, stride=2))
        chans = [c * width // 2 for c in (64, 128, 256)]
        stages, c = [], c1
        for i, o in enumerate(chans):
            stages.append(nn.Sequential(DIModule(c, o, stride=1 if i == 0 else 2, dilation=2),
                                        DIModule(o, o, stride=1, dilation=3)))
            c = o
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c, num_classes)
        init_weights(self, head=self.head)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(global_avg_pool(self.features(x))))


@register("di_fernet", paper="Zhang et al. 2019, WOCC",
          summary="residual modules of depthwise separable + dilated convolutions, GAP, FC")
def di_fernet(num_classes: int = 7, in_chans: int = 1, width: int = 2, dropout: float = 0.2) -> nn.Module:
    """DI-FERNet: residual modules of depthwise separable and dilated convolutions."""
    return DIFERNet(num_classes, in_chans, width, dropout)
