"""The one door to every architecture: ``create(name, num_classes=...)``.

Each architecture registers itself with its default config (input size, normalisation,
paper), the way timm does, so a model is never separated from how to feed it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

from ..errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int] = (1, 48, 48)  #: C, H, W
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    paper: str = ""
    summary: str = ""
    defaults: dict = field(default_factory=dict)  #: default builder kwargs


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, input_size=(1, 48, 48), mean=(0.5,), std=(0.25,), paper: str = "", summary: str = "",
             **defaults) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ModelError(f"architecture {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, fn, tuple(input_size), tuple(mean), tuple(std), paper,
                                    summary or (fn.__doc__ or "").strip().split("\n")[0], dict(defaults))
        return fn
    return deco


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ModelError(f"unknown architecture {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]


def builder_options(name: str, **kwargs) -> dict:
    """Every option architecture ``name`` is built with: its builder's defaults, the registered
    defaults, then ``kwargs`` (without ``num_classes`` / ``in_chans``)."""
    import inspect

    spec = get_spec(name)
    base = {k: p.default for k, p in inspect.signature(spec.builder).parameters.items()
            if p.default is not inspect.Parameter.empty and k not in ("num_classes", "in_chans")}
    return {**base, **spec.defaults, **kwargs}


def create(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    """Build architecture ``name`` with ``num_classes`` outputs (logits); kwargs go to its builder."""
    spec = get_spec(name)
    args = {**spec.defaults, **kwargs}
    known = builder_options(name)
    for k, v in kwargs.items():
        if k not in known:
            raise ModelError(f"{name}: unknown model option {k!r}; its options: "
                             f"{', '.join(f'{o}={d!r}' for o, d in known.items()) or 'none'}")
        d = known[k]
        # the default's type is the option's (numpy numbers pass as Python's do); None: any
        if isinstance(d, bool):
            ok, what = isinstance(v, bool), "true or false"
        elif isinstance(d, (int, float)):
            ok = isinstance(v, numbers.Integral if isinstance(d, int) else numbers.Real) and not isinstance(v, bool)
            what = "a whole number" if isinstance(d, int) else "a number"
        else:
            ok, what = True, ""
        if not ok:
            raise ModelError(f"{name}: model option {k}={v!r} wants {what} (default {d!r})")
        # the options every architecture has, checked before any layer is built
        if k == "width" and v < 1:
            raise ModelError(f"{name}: model option width must be at least 1, got {v}")
        if k == "dropout" and not 0 <= v < 1:  # NaN fails this too
            raise ModelError(f"{name}: model option dropout must be in [0, 1), got {v}")
    try:
        model = spec.builder(num_classes=num_classes, in_chans=spec.input_size[0], **args)
    except (TypeError, ValueError) as e:  # an unknown option, or a value the builder refuses (width=0)
        raise ModelError(f"{name}: bad model option(s) {sorted(kwargs)}: {e}") from None
    model.ferkit_arch = name  # type: ignore[attr-defined]
    model.ferkit_kwargs = dict(args)  # type: ignore[attr-defined]
    return model


def list_models() -> list[ModelSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
