"""Deconvolution visualisation (Zeiler & Fergus 2014): what in the image made a feature map fire.

For a chosen layer and feature map, the strongest activation of the map is kept, every other
activation of the layer is set to zero, and this signal is projected back to pixel space through
the layers below, inverting each one: max pooling is undone with the *switches* recorded in the
forward pass (the signal goes back to the position that won each pooling window), the signal is
*rectified* (ReLU) wherever the forward pass had a ReLU, and convolutions are inverted with their
*transposed filters*.

**Implementation.** This is the gradient of the kept activation with respect to the input, with
one change: at every ReLU the backward signal ``g`` becomes ``relu(g)`` instead of
``g * (x > 0)`` (the "deconvnet" variant of guided backpropagation; Springenberg et al. 2015
showed the three differ only in this rule). Every other layer's gradient *is* the deconvnet's
rule, so the projection is computed with autograd on the unchanged network, with its
``nn.ReLU`` modules swapped for the rectifying one (:func:`~ferkit.explain.layers.patched_relus`).
It works for any registered model built of the modules below; the backward rule of each, as
autograd applies it:

======================  =======================================================================
forward                  backward (deconvnet projection)
======================  =======================================================================
Conv2d                   transposed convolution with the same filters (bias ignored)
depthwise Conv2d         per-channel transposed convolution (``groups`` kept); a depthwise
                         separable conv is the pointwise then the depthwise transpose
BatchNorm2d (eval)       its affine *scale* only: multiply by ``gamma / sqrt(var + eps)``, the
                         shift is dropped, as biases are
ReLU (``nn.ReLU``)       rectification of the backward signal: ``relu(g)``
MaxPool2d                unpooling with the recorded switches (overlapping windows add up)
AvgPool2d, global mean   the signal is spread evenly over each window (transposed average)
residual ``f(x) + g(x)`` sum of the two branches' projections, added where the branches split
Dropout (eval), Identity identity
Linear                   transposed weights
======================  =======================================================================

Other non-linearities (``F.relu`` called inside ``forward``, sigmoid, GELU, ...) keep their
ordinary gradient: the projection is then a plain gradient through them.

The projection is seeded with the activation's value (Zeiler & Fergus' reconstruction), so its
scale compares across images for the same map; pictures normalise each projection by its largest
magnitude.

Where a map's maximum sits in the image, two ways (:mod:`ferkit.explain.au` uses them):

* ``rf``: the centre of the receptive field of the map's peak cell: the centroid of the
  *effective* receptive field of that cell (the gradient footprint of the layer computed on a
  copy of the network with all weights positive, ReLUs removed and max pools replaced by average
  pools, so every path counts; near the borders the centroid moves inward, to the part of the
  field that lies inside the image), refined below one cell by a parabola through the peak and its
  neighbours (not on the map's border row/column, which has a neighbour on one side only) and
  interpolated between cell centres. Computed once per layer: fast. Its resolution is that of the
  layer: at mini-Xception's ``modules_.2`` (6x6) the cells are 7.3 px apart at 48x48, at
  ``modules_.3`` (3x3) 12-13 px, so that peaks gather on a coarse grid.
* ``deconv``: the peak of the map's deconvolution projection (summed over colour channels, its
  magnitude smoothed by a Gaussian of sigma 1 px): the pixel the activation came from. One
  backward pass per image and map: slower, sharper.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn as nn

from ..errors import FerkitError
from .layers import Capture, check_inputs, patched_relus


@dataclass
class Projection:
    """Deconvolution projections of ``T`` targets: ``images`` ``[T, C, H, W]`` (input space),
    and per target the ``map`` index, the ``activation`` value and its ``position`` (row, col) on
    the feature map."""

    images: torch.Tensor
    maps: np.ndarray
    activations: np.ndarray
    positions: np.ndarray


@torch.no_grad()
def activations(net: nn.Module, x: torch.Tensor, layer: str, batch_size: int = 256) -> torch.Tensor:
    """The output of ``layer`` for the (normalised) inputs ``x`` ``[N, C, H, W]``."""
    out = []
    dev = _device(net)
    with patched_relus(net, "plain"):
        for i in range(0, x.shape[0], batch_size):
            cap = Capture(net, layer, stop=True)
            cap.run(x[i:i + batch_size].to(dev))
            assert cap.out is not None
            out.append(cap.out.detach().float().cpu())
    return torch.cat(out)


def _device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def top_maps(acts: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` maps with the strongest maximum in one image's activations ``[K, h, w]``:
    (indices, maxima), strongest first."""
    mx = acts.flatten(1).amax(1)
    k = min(k, mx.numel())
    v, i = torch.topk(mx, k)
    return i.numpy(), v.numpy()


def project(net: nn.Module, x: torch.Tensor, layer: str, maps: np.ndarray | list[int],
            samples: np.ndarray | list[int] | None = None, chunk: int = 128) -> Projection:
    """Deconvnet projections of the strongest activation of feature map ``maps[t]`` of ``layer``
    in image ``samples[t]`` of ``x`` (normalised inputs ``[N, C, H, W]``; ``samples`` defaults to
    image 0 for every target). Returns a :class:`Projection` with one projection per target."""
    check_inputs(net, x, layer)
    maps = np.asarray(maps, dtype=np.int64).reshape(-1)
    samples = np.zeros_like(maps) if samples is None else np.asarray(samples, dtype=np.int64).reshape(-1)
    if len(samples) != len(maps):
        raise FerkitError("maps and samples must have the same length")
    if len(samples) and (samples.min() < 0 or samples.max() >= len(x)):
        raise FerkitError(f"samples must index the {len(x)} image(s) of x, got {samples.tolist()[:8]}")
    imgs, acts, pos = [], [], []
    dev = _device(net)
    was_training = net.training
    net.eval()
    try:
        with patched_relus(net, "deconv"), torch.enable_grad():
            for s in range(0, len(maps), chunk):
                mi = torch.from_numpy(maps[s:s + chunk]).to(dev)
                xi = x[torch.from_numpy(samples[s:s + chunk])].detach().to(dev).clone().requires_grad_(True)
                cap = Capture(net, layer, stop=True)
                cap.run(xi)
                a = cap.out
                assert a is not None
                if int(mi.max()) >= a.shape[1] or int(mi.min()) < 0:
                    raise FerkitError(f"maps must be feature maps of {layer} (0..{a.shape[1] - 1}), got "
                                      f"{maps.tolist()[:8]}")
                t = torch.arange(len(mi), device=dev)
                fm = a[t, mi]  # [T, h, w]
                flat = fm.flatten(1).argmax(1)
                r, c = flat // fm.shape[2], flat % fm.shape[2]
                seed = torch.zeros_like(a)
                val = a[t, mi, r, c]
                seed[t, mi, r, c] = val.detach()
                (g,) = torch.autograd.grad(a, xi, grad_outputs=seed)
                imgs.append(g.detach().float().cpu())
                acts.append(val.detach().float().cpu().numpy())
                pos.append(torch.stack([r, c], 1).cpu().numpy())
    finally:
        net.train(was_training)
    return Projection(torch.cat(imgs), maps, np.concatenate(acts), np.concatenate(pos))


# ---------------------------------------------------------------------------------------
# where a map's maximum is in the image
# ---------------------------------------------------------------------------------------
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh)


def _surrogate(net: nn.Module) -> nn.Module:
    """A copy of ``net`` that is linear with positive weights: every path from a pixel to a
    feature counts, so the input gradient of a feature is its effective receptive field."""
    from .layers import SwitchableReLU

    s = copy.deepcopy(net).eval()
    for name, m in list(s.named_modules()):
        if not name:
            continue
        parent_name, _, leaf = name.rpartition(".")
        parent = s.get_submodule(parent_name) if parent_name else s
        if isinstance(m, (*_ACTIVATIONS, SwitchableReLU)):
            setattr(parent, leaf, nn.Identity())
        elif isinstance(m, nn.MaxPool2d) and m.dilation in (1, (1, 1)):
            setattr(parent, leaf, nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode))
        elif isinstance(m, nn.AdaptiveMaxPool2d):
            setattr(parent, leaf, nn.AdaptiveAvgPool2d(m.output_size))
    with torch.no_grad():
        for m in s.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()  # type: ignore[union-attr]
                if m.running_mean is not None:
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0 - m.eps)  # type: ignore[union-attr]
    return s


def receptive_field_centres(net: nn.Module, layer: str, input_size: tuple[int, int, int]) -> np.ndarray:
    """``[h, w, 2]``: for every cell of ``layer``'s maps, the (x, y) input-pixel coordinates of the
    centroid of its effective receptive field (pixel centres at integers)."""
    s = _surrogate(net).float().cpu()
    c, H, W = input_size
    x = torch.ones(1, c, H, W)
    cap = Capture(s, layer, stop=True)
    with torch.no_grad():
        cap.run(x)
    assert cap.out is not None
    h, w = cap.out.shape[2:]
    out = np.zeros((h, w, 2))
    yy, xx = np.mgrid[:H, :W].astype(np.float64)
    cells = [(i, j) for i in range(h) for j in range(w)]
    for s0 in range(0, len(cells), 64):
        part = cells[s0:s0 + 64]
        xi = x.repeat(len(part), 1, 1, 1).requires_grad_(True)
        cap = Capture(s, layer, stop=True)
        with torch.enable_grad():
            cap.run(xi)
            a = cap.out
            assert a is not None
            seed = torch.zeros_like(a)
            for t, (i, j) in enumerate(part):
                seed[t, :, i, j] = 1.0
            (g,) = torch.autograd.grad(a, xi, grad_outputs=seed)
        g = g.abs().sum(1).numpy().astype(np.float64)
        for t, (i, j) in enumerate(part):
            m = g[t]
            tot = m.sum()
            if tot <= 0:  # a cell no pixel reaches (should not happen): fall back to proportional
                out[i, j] = ((j + 0.5) * W / w - 0.5, (i + 0.5) * H / h - 0.5)
            else:
                out[i, j] = ((m * xx).sum() / tot, (m * yy).sum() / tot)
    return out


def _subcell(a: np.ndarray, idx: np.ndarray, axis_len: int, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Parabolic sub-cell offset in [-0.5, 0.5] of a peak at ``idx`` given its neighbours' values."""
    den = prev - 2 * a + nxt
    off = np.where(den < 0, 0.5 * (prev - nxt) / np.where(den < 0, den, -1.0), 0.0)
    off = np.where((idx > 0) & (idx < axis_len - 1), off, 0.0)
    return np.clip(off, -0.5, 0.5)


def peak_cells(acts: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For activations ``[N, K, h, w]``: the maxima ``[N, K]`` and their sub-cell positions
    ``[N, K, 2]`` as (row, col) floats (argmax cell refined by a parabola through its neighbours)."""
    a = acts.numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts)
    n, k, h, w = a.shape
    flat = a.reshape(n, k, h * w)
    idx = flat.argmax(2)
    r, c = idx // w, idx % w
    vmax = np.take_along_axis(flat, idx[..., None], 2)[..., 0]
    pad = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    up, down = pad[ni, ki, r, c + 1], pad[ni, ki, r + 2, c + 1]
    left, right = pad[ni, ki, r + 1, c], pad[ni, ki, r + 1, c + 2]
    dr = _subcell(vmax, r, h, up, down)
    dc = _subcell(vmax, c, w, left, right)
    return vmax, np.stack([r + dr, c + dc], -1)


def cells_to_pixels(cells: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Sub-cell (row, col) positions ``[..., 2]`` -> input (x, y) by bilinear interpolation of the
    receptive-field centres ``[h, w, 2]``."""
    h, w = centres.shape[:2]
    r = np.clip(cells[..., 0], 0, h - 1)
    c = np.clip(cells[..., 1], 0, w - 1)
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (r - r0)[..., None], (c - c0)[..., None]
    top = centres[r0, c0] * (1 - fc) + centres[r0, c1] * fc
    bot = centres[r1, c0] * (1 - fc) + centres[r1, c1] * fc
    return top * (1 - fr) + bot * fr


def projection_peaks(images: torch.Tensor, sigma: float = 1.0) -> np.ndarray:
    """(x, y) of the strongest point of each projection ``[T, C, H, W]``: magnitude of the
    channel sum, smoothed by a Gaussian of ``sigma`` pixels, argmax refined by a parabola."""
    m = images.sum(1).abs().numpy().astype(np.float32)
    if sigma > 0:
        m = np.stack([cv2.GaussianBlur(x, (0, 0), sigma) for x in m])
    _, cells = peak_cells(m[:, None])
    return cells[:, 0, ::-1].copy()  # (row, col) -> (x, y)
