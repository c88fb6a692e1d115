"""The expression CNN of Zhu, Fan and Yuan (2019), "Facial Expression Recognition Research Based
on Deep Learning" (arXiv:1904.09737).

Zhu et al. design and train a convolutional network for expression recognition in order to
*analyse* it: the strongest activations of its feature maps are projected back to pixel space
with the deconvolution method of Zeiler & Fergus (max pooling undone with the recorded
*switches*, ReLU, transposed filters), and a distance function between each map's maximal
response and the facial action units (AUs) shows which maps detect which AU. The network is a
plain classifier of that family: convolution layers with ReLU, max pooling, fully connected
layers, softmax. The abstract gives no layer sizes. ferkit's choices, and why:

* input: 48x48 gray (FER2013-style crops; ferkit's aligned faces), normalised with mean 0.5,
  std 0.25 like the other ferkit models;
* four convolution layers, each followed by a ReLU, in the Zeiler & Fergus pattern the
  deconvolution inverts layer by layer: ``conv1`` 5x5, 32 maps (48x48) - max pool 3x3 stride 2
  (24x24); ``conv2`` 5x5, 64 maps - max pool (12x12); ``conv3`` 3x3, 128 maps; ``conv4`` 3x3,
  128 maps - max pool (6x6). 5x5 kernels in the first two layers give the lower maps a field of
  roughly an eye or a mouth corner, the scale of an AU; overlapping 3x3 pools (stride 2) as in
  AlexNet / Zeiler & Fergus. Convolutions have biases and **no batch normalisation** (a plain
  2019-style CNN; :mod:`ferkit.explain.deconv` would also invert BN);
* max pooling is ``nn.MaxPool2d``: the switches are the pooling's indices, which autograd
  records in the forward pass, so ``ferkit explain`` / ``au-analysis`` unpool through them with
  no extra code; ReLUs are ``nn.ReLU`` modules so the deconvnet rule can be swapped in;
* classifier: two fully connected layers, ``128 * 6 * 6 = 4608 -> 512`` (ReLU, dropout 0.5)
  ``-> classes``; hidden FC layers start from He initialisation (a plain network without BN
  trains poorly from tiny weights), the last one near zero (first loss ~ ln K);
* ``width`` scales every layer (``width=1``: 2.6 M parameters, 90% of them in ``fc1``, the
  "too many parameters" the paper sets out to analyse).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import init_weights
from .registry import register


class ZhuCNN(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, width: int = 1, dropout: float = 0.5,
                 input_hw: tuple[int, int] = (48, 48)) -> None:
        super().__init__()
        c1, c2, c3, fc = 32 * width, 64 * width, 128 * width, 512 * width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),
        )
        h, w = (s // 8 for s in input_hw)
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(c3 * h * w, fc), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(fc, num_classes)
        init_weights(self, head=self.head)
        nn.init.kaiming_normal_(self.fc1[1].weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.fc1(self.features(x))))


@register("zhu_cnn", paper="Zhu, Fan & Yuan 2019, arXiv:1904.09737",
          summary="plain CNN: 4 conv + ReLU, max pooling (switches for deconvolution), 2 FC")
def zhu_cnn(num_classes: int = 7, in_chans: int = 1, width: int = 1, dropout: float = 0.5) -> nn.Module:
    """Zhu et al.'s plain expression CNN: conv/ReLU/max-pool stacks and fully connected layers."""
    return ZhuCNN(num_classes, in_chans, width, dropout)
