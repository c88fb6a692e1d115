"""vgg_fer: ferkit's own large network, a VGG-style CNN for 48x48 faces.

Why VGG: the best published single network trained only on FER2013 is a tuned VGGNet
(Khaimova & Sokolova 2021, 73.28% on PrivateTest); plain 3x3 convolution stacks with batch
norm train reliably from scratch on 28K faces, and they run well on GPUs. ferkit's choices:

* four stages of two ``3x3 conv - BN - ReLU`` each, then ``2x2`` max pooling
  (48 -> 24 -> 12 -> 6 -> 3); widths ``(64, 128, 256, 512) * width / 64`` (``width=64``: 4.7M
  parameters, 9.4 MB as float16);
* head: the last ``3x3`` map is flattened, not averaged, so the classifier still knows where on the
  face a feature was found (a smile at the bottom, raised brows at the top), then dropout and one
  linear layer: ``512 * 9 * classes`` weights instead of the 4096-wide fully connected layers of
  the original VGG, which would be 20x the whole convolutional part here;
* ``features()`` is the last convolutional map (for linear probes and saliency), as in the other
  architectures.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvBNReLU, init_weights
from .registry import register


class VGGFer(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: int = 64, dropout: float = 0.4) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        c = in_chans
        for o in chans:
            layers += [ConvBNReLU(c, o, 3), ConvBNReLU(o, o, 3), nn.MaxPool2d(2)]
            c = o
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c * 3 * 3, num_classes)
        init_weights(self, head=self.head)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if f.shape[-2:] != (3, 3):  # another input size: pool to the 3x3 grid the head was built for
            f = nn.functional.adaptive_avg_pool2d(f, 3)
        return self.head(self.dropout(f.flatten(1)))


@register("vgg_fer", paper="ferkit (after Simonyan & Zisserman 2015; Khaimova & Sokolova 2021 on FER2013)",
          summary="4 stages of 2 x (3x3 conv, BN, ReLU) + max-pool, flattened 3x3 map, dropout, linear")
def vgg_fer(num_classes: int = 7, in_chans: int = 1, width: int = 64, dropout: float = 0.4) -> nn.Module:
    """vgg_fer: VGG-style 8-conv network with BN; ferkit's large model."""
    return VGGFer(num_classes, in_chans, width, dropout)
