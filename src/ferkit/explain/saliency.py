"""Saliency: which pixels a class decision rests on. Grad-CAM and guided backpropagation.

* **Grad-CAM** (Selvaraju et al. 2017): at a feature layer ``A`` (default: the last one before
  the classifier, see :func:`~ferkit.explain.layers.default_layer`), each map is weighted by the
  spatial mean of the class score's gradient, ``w_k = mean_ij dy_c / dA_kij``, and
  ``cam = relu(sum_k w_k A_k)``. The map is brought to the input's size by interpolating
  bilinearly between the cells, which tile the input evenly (or, given ``centres``, placed at
  their receptive fields' centres), then scaled to [0, 1] (``raw`` keeps the cells unscaled).
* **Guided backpropagation** (Springenberg et al. 2015): the gradient of the class score with
  respect to the input, where each ReLU passes back only positive signal at positions its input
  was positive (``relu(g) * (x > 0)``). It is nearly the same for every class (Adebayo et al.
  2018, "Sanity checks for saliency maps": it mostly recovers the image's edges), so on its own it
  is no evidence for a class. **Guided Grad-CAM**, its product with Grad-CAM, is class-specific.

Both work on any registered model (Grad-CAM on any layer with a 4-D output; guided
backpropagation through ``nn.ReLU`` modules, see :func:`~ferkit.explain.layers.patched_relus`).
Inputs are normalised tensors ``[N, C, H, W]``; the class is the predicted one unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..errors import FerkitError
from .deconv import _device
from .layers import Capture, check_inputs, patched_relus


@dataclass
class CAM:
    """Grad-CAM of ``N`` images: ``maps`` ``[N, H, W]`` in [0, 1] at input size, ``raw``
    ``[N, h, w]`` at the layer's resolution (unscaled), the explained ``targets`` and the
    class ``probs`` ``[N, K]``."""

    maps: np.ndarray
    raw: np.ndarray
    targets: np.ndarray
    probs: np.ndarray


def _targets(logits: torch.Tensor, target: int | np.ndarray | list[int] | None) -> torch.Tensor:
    n, k = logits.shape
    if target is None:
        return logits.argmax(1)
    try:
        a = np.asarray(target)
        if a.dtype.kind not in "iu":
            raise ValueError
        t = torch.as_tensor(a.astype(np.int64).reshape(-1), device=logits.device)
    except (ValueError, TypeError):
        raise FerkitError(f"target must be class indices (0..{k - 1}; a name's: model.classes.index('happy')), "
                          f"got {target!r}") from None
    if t.numel() not in (1, n) or bool(((t < 0) | (t >= k)).any()):
        raise FerkitError(f"target must be one class index or one per image ({n}), each 0..{k - 1}; got "
                          f"{a.reshape(-1).tolist()[:8]}")
    return t.expand(n) if t.numel() == 1 else t


def upsample(cells: np.ndarray, centres: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray:
    """``[N, h, w]`` cell values -> ``[N, H, W]``: bilinear between cells placed at their
    receptive-field ``centres`` (``[h, w, 2]`` (x, y); None: an even tiling of the input)."""
    n, h, w = cells.shape
    H, W = hw
    if centres is None:
        cy = (np.arange(h) + 0.5) * H / h - 0.5
        cx = (np.arange(w) + 0.5) * W / w - 0.5
    else:
        cy, cx = centres[:, :, 1].mean(1), centres[:, :, 0].mean(0)
    # fractional cell coordinates of every pixel (clamped at the outer cells)
    fr = np.interp(np.arange(H), cy, np.arange(h)) if h > 1 else np.zeros(H)
    fc = np.interp(np.arange(W), cx, np.arange(w)) if w > 1 else np.zeros(W)
    r0, c0 = np.floor(fr).astype(int), np.floor(fc).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    wr, wc = (fr - r0)[:, None], (fc - c0)[None, :]
    a = cells[:, r0][:, :, c0] * (1 - wc) + cells[:, r0][:, :, c1] * wc
    b = cells[:, r1][:, :, c0] * (1 - wc) + cells[:, r1][:, :, c1] * wc
    return a * (1 - wr) + b * wr


def gradcam(net: nn.Module, x: torch.Tensor, layer: str, target: int | np.ndarray | list[int] | None = None,
            centres: np.ndarray | None = None) -> CAM:
    """Grad-CAM of class ``target`` (default: each image's predicted class) at ``layer``. ``x``: float
    faces ``[N, C, H, W]``, normalised as the model's card says (``(pixels / 255 - mean) / std``)."""
    check_inputs(net, x, layer)
    was_training = net.training
    net.eval()
    try:
        with patched_relus(net, "plain"), torch.enable_grad():
            xi = x.detach().to(_device(net))
            cap = Capture(net, layer)
            logits = cap.run(xi)
            assert logits is not None and cap.out is not None
            a = cap.out
            t = _targets(logits, target)
            score = logits.gather(1, t[:, None]).sum()
            (g,) = torch.autograd.grad(score, a)
    finally:
        net.train(was_training)
    w = g.mean((2, 3), keepdim=True)
    raw = torch.relu((w * a).sum(1)).detach().float().cpu().numpy().astype(np.float64)
    up = upsample(raw, centres, tuple(x.shape[2:]))
    mx = up.reshape(len(up), -1).max(1)
    maps = up / np.where(mx > 0, mx, 1.0)[:, None, None]
    return CAM(maps, raw, t.cpu().numpy(), torch.softmax(logits.detach().float(), 1).cpu().numpy())


def guided_backprop(net: nn.Module, x: torch.Tensor, target: int | np.ndarray | list[int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Guided backpropagation of class ``target`` (default: predicted): (gradients ``[N, C, H, W]``,
    explained targets ``[N]``). ``x`` as for :func:`gradcam`."""
    check_inputs(net, x)
    was_training = net.training
    net.eval()
    try:
        with patched_relus(net, "guided"), torch.enable_grad():
            xi = x.detach().to(_device(net)).clone().requires_grad_(True)
            logits = net(xi)
            t = _targets(logits, target)
            (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xi)
    finally:
        net.train(was_training)
    return g.detach().float().cpu().numpy(), t.cpu().numpy()
