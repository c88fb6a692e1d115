"""Naming, listing and capturing a network's layers, and the ReLU swap the explanations rely on.

Any module of a network can be explained by its dotted name (``model.named_modules()``, e.g.
``modules_.2`` or ``stem.1.2`` for mini-Xception) as long as its output is a 4-D feature map
``[N, C, H, W]``. :func:`list_layers` runs one dummy image through the network and lists every
such module with its output shape, in the order the network computes them. A container whose
output *is* one of its children's outputs (a ``Sequential``'s last child) is listed as an alias
of that child.

:func:`patched_relus` temporarily replaces every ``nn.ReLU`` of a network by a non-inplace ReLU
whose backward rule can be switched: ``plain`` (the ordinary gradient; used for every forward
pass that captures activations, so that in-place ReLUs never overwrite a captured tensor),
``deconv`` (Zeiler & Fergus: the backward signal is rectified, ``relu(grad)``) or ``guided``
(Springenberg et al.: ``relu(grad) * (input > 0)``). Networks that call ``F.relu`` inside their
``forward`` instead of using ``nn.ReLU`` modules keep the plain gradient there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import FerkitError


class _RectifiedBackward(torch.autograd.Function):
    """``relu`` forward; backward ``relu(grad)`` (deconvnet) or ``relu(grad) * (x > 0)`` (guided)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, guided: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.guided = guided
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        g = grad.clamp(min=0)
        if ctx.guided:
            g = g * (x > 0).to(g.dtype)
        return g, None


class SwitchableReLU(nn.Module):
    """A non-inplace ReLU with a chosen backward rule: ``plain``, ``deconv`` or ``guided``."""

    def __init__(self, mode: str = "plain") -> None:
        super().__init__()
        if mode not in ("plain", "deconv", "guided"):
            raise ValueError(f"unknown ReLU backward mode {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "plain":
            return torch.relu(x)
        return _RectifiedBackward.apply(x, self.mode == "guided")

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def _set_child(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)  # also right for Sequential / ModuleList children ("0", "1", ...)


@contextlib.contextmanager
def patched_relus(net: nn.Module, mode: str = "plain") -> Iterator[nn.Module]:
    """Within the block, every ``nn.ReLU`` of ``net`` is a :class:`SwitchableReLU` of ``mode``
    (same name, so layer names keep working); the originals are put back afterwards."""
    swapped = [(n, m) for n, m in net.named_modules() if type(m) is nn.ReLU or isinstance(m, SwitchableReLU)]
    try:
        for n, _ in swapped:
            _set_child(net, n, SwitchableReLU(mode))
        yield net
    finally:
        for n, m in swapped:
            _set_child(net, n, m)


@dataclass(frozen=True)
class LayerInfo:
    """One explainable layer: its dotted ``name``, module ``kind``, output ``shape`` (C, H, W),
    execution ``order`` and, for containers that only pass a child's output on, ``alias_of``."""

    name: str
    kind: str
    shape: tuple[int, int, int]
    order: int
    alias_of: str | None = None

    @property
    def depth(self) -> int:
        return self.name.count(".")


def list_layers(net: nn.Module, input_size: tuple[int, int, int]) -> list[LayerInfo]:
    """Every module of ``net`` whose output is a 4-D feature map, in execution order, found by
    running one blank image of ``input_size`` (C, H, W) through it."""
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    done: set[str] = set()
    hooks = []
    with patched_relus(net, "plain"), torch.no_grad():
        for name, mod in net.named_modules():
            if not name:
                continue

            def hook(m, inp, out, name=name):
                if name not in done and isinstance(out, torch.Tensor) and out.dim() == 4:
                    done.add(name)
                    seen.append((name, m, out))
            hooks.append(mod.register_forward_hook(hook))
        try:
            p = next(net.parameters(), None)
            net(torch.zeros(1, *input_size, device=p.device if p is not None else "cpu"))
        finally:
            for h in hooks:
                h.remove()
    out: list[LayerInfo] = []
    by_tensor: dict[int, str] = {}
    for i, (name, m, t) in enumerate(seen):
        alias = by_tensor.get(id(t))
        if alias is None:
            by_tensor[id(t)] = name
        kind = "ReLU" if isinstance(m, SwitchableReLU) else type(m).__name__
        out.append(LayerInfo(name, kind, tuple(t.shape[1:]), i, alias))  # type: ignore[arg-type]
    return out


def get_layer(net: nn.Module, layers: list[LayerInfo], name: str) -> LayerInfo:
    """The layer called ``name``; a clear error listing a few valid names otherwise."""
    for li in layers:
        if li.name == name:
            return li
    names = [li.name for li in layers if li.alias_of is None]
    try:
        mod = net.get_submodule(name)
        why = f"module {name!r} ({type(mod).__name__}) does not output a 4-D feature map"
    except AttributeError:
        why = f"no layer {name!r} in this model"
    sample = ", ".join(names[-8:])
    raise FerkitError(f"{why}; valid layers include {sample} (all of them: ferkit explain --list-layers --model M)")


def _class_maps(layers: list[LayerInfo], num_classes: int | None) -> set[str]:
    """The trailing layers with one map per class (a class-map convolution and what pools it)."""
    out: set[str] = set()
    if num_classes is None:
        return out
    for li in reversed([x for x in layers if x.alias_of is None]):
        if li.shape[0] != num_classes:
            break
        out.add(li.name)
    return out


def default_layer(layers: list[LayerInfo], purpose: str, input_size: tuple[int, int, int],
                  num_classes: int | None = None) -> LayerInfo:
    """The layer used when none is named.

    ``purpose="gradcam"``: the last feature layer before the classifier, as Grad-CAM does (when
    that is a pooling, the last layer before it: vgg_fer's ``stages.10``, 6x6, not ``stages.11``):
    among layers at the smallest resolution above 1x1 (the trailing layers with one map per class,
    a class-map convolution, excluded), the shallowest-named one computed last (for mini-Xception:
    ``modules_.3``, the last residual module, 3x3), unless a layer computed later has a container
    name as shallow that does not hold it (lite_plain: ``body.5``, its last conv block, whose output
    is its last child's, not ``body.4``, the pooling before it).

    (The AU default keeps the shallowest name alone: vgg_fer's is ``stages.8``, the pooling before
    its last 6x6 blocks, as docs/au-analysis was made.)

    ``purpose="au"`` (also the deconvolution default): the same rule at the smallest resolution
    of at least 1/8 of the input side and at least 4 (mini-Xception at 48x48: ``modules_.2``,
    6x6, whose maps are fine enough to tell the brows from the eyes and the mouth corners)."""
    heads = _class_maps(layers, num_classes)
    cands = [li for li in layers if li.alias_of is None and min(li.shape[1:]) > 1 and li.name not in heads
             and li.kind not in ("Identity", "Dropout", "Dropout2d")]
    if purpose == "au":
        floor = max(4, min(input_size[1:]) // 8)
        cands = [li for li in cands if min(li.shape[1:]) >= floor] or cands
    if not cands:
        raise FerkitError("this model has no convolutional feature layer to explain")
    res = min(li.shape[1] * li.shape[2] for li in cands)
    at = [li for li in cands if li.shape[1] * li.shape[2] == res]
    pick = min(at, key=lambda li: (li.depth, -li.order))
    last = max(at, key=lambda li: li.order)
    if purpose == "gradcam" and last is not pick:  # a later output under a container's name (not one
        # that holds ``pick`` too); the AU default keeps its rule (its documented analyses use it)
        names = [a for a in layers if a.alias_of == last.name and a.depth <= pick.depth
                 and not pick.name.startswith(a.name + ".")]
        if names:
            return max(names, key=lambda a: a.depth)
    if purpose == "gradcam" and pick.kind in ("MaxPool2d", "AvgPool2d"):
        # a pooling that ends the features (vgg_fer's last MaxPool, 3x3): Grad-CAM takes the last
        # convolution's maps before it (6x6), as its authors did for VGG; the pooled grid is coarser
        # (3x3 cells: the centre cell, over the nose, was the peak of nearly every face)
        before = [li for li in cands if li.order < pick.order and li.shape[1] * li.shape[2] > res]
        if before:
            prev = max(before, key=lambda li: li.order)
            names = [a for a in layers if a.alias_of == prev.name]
            return min(names, key=lambda a: a.depth) if names else prev
    return pick


def check_inputs(net: nn.Module, x: torch.Tensor, layer: str | None = None) -> None:
    """The low-level functions' inputs, as ferkit errors (they surfaced as torch's own, deep inside)."""
    if net is None:  # a model loaded on onnxruntime (the default backend on a CPU) has no torch network
        raise FerkitError("net is None: the model runs on onnxruntime, which explanations cannot look into; load it "
                          "with load_model(name, backend='torch') and pass its .net")
    if not isinstance(net, nn.Module):
        raise FerkitError(f"net must be the network (a torch module: model.net), not a {type(net).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise FerkitError("x must be a float tensor [N, C, H, W] of normalised faces (ferkit.explain.image's "
                          "explain_image does it from a photo; by hand: faces / 255, minus the card's mean, over "
                          f"its std), got {type(x).__name__}"
                          + (f" {x.dtype} {list(x.shape)}" if isinstance(x, torch.Tensor) else ""))
    if layer is not None:
        try:
            net.get_submodule(layer)
        except AttributeError:
            raise FerkitError(f"no layer {layer!r} in this network (ferkit explain --list-layers --model M lists "
                              f"them)") from None



class Capture:
    """Forward hook that keeps the output of one module; with ``stop=True`` the forward pass
    ends right there (raising :class:`Capture.Stop`, caught by :meth:`run`)."""

    class Stop(Exception):
        pass

    def __init__(self, net: nn.Module, name: str, stop: bool = False) -> None:
        self.net, self.name, self.stop = net, name, stop
        self.out: torch.Tensor | None = None

    def run(self, x: torch.Tensor) -> torch.Tensor | None:
        """Run ``net(x)``; returns the network's output (None when stopped early)."""
        mod = self.net.get_submodule(self.name)

        def hook(m, inp, out):
            self.out = out
            if self.stop:
                raise Capture.Stop
        h = mod.register_forward_hook(hook)
        try:
            return self.net(x)
        except Capture.Stop:
            return None
        finally:
            h.remove()
