"""Weight averaging ("model soup", Wortsman et al. 2022): one network whose weights are the
weighted mean of several networks' weights.

It only makes sense for networks of one architecture that share a start (one fine-tuned from
the other, or several fine-tuned from one network): their weights then lie in one basin, and
the mean often scores like their ensemble at the cost of one network. Networks trained from
scratch apart do not average (their units are in different orders). The result is written as a
run folder (``model.safetensors`` + card), whose card records the members and the weights, and
is measured like any run: ``ferkit evaluate --model OUT``.

Batch-norm running statistics are averaged too; they are not those of the averaged weights,
so :func:`recompute_bn` can re-estimate them with forward passes over a split's images (no labels
used), as SWA does (Izmailov et al. 2018): ``ferkit average --dataset/--data``. The same on one
network is ``ferkit recalibrate`` (:func:`recalibrated_card`) and ``ferkit train --recalibrate-bn``:
the statistics of un-augmented faces instead of the augmented training batches'.
"""

from __future__ import annotations

import math
import os
import platform
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn

from .. import __version__
from .. import weights as _weights
from ..errors import FerkitError, FerkitWarning

# what must agree between the members for their weights to be averaged
_SAME = ("architecture", "arch_kwargs", "classes", "input_size", "mean", "std")


def parse_weights(text: str | None, n: int) -> list[float]:
    """``"0.3,0.7"`` -> the members' weights, normalised to sum 1; None -> equal weights."""
    if text is None:
        return [1.0 / n] * n
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        raise FerkitError(f"--weights {text!r}: give one number per model, comma-separated (e.g. 0.5,0.5)") from None
    if len(w) != n:
        raise FerkitError(f"--weights gives {len(w)} number(s) for {n} model(s): one per model")
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise FerkitError(f"--weights {text!r}: the numbers must be 0 or more, and not all 0")
    return [x / sum(w) for x in w]


def average(models: Sequence[str], mix: Sequence[float]) -> tuple[nn.Module, dict, list[dict]]:
    """Load ``models`` (shipped names, files or run folders) and return (network with the
    weighted mean of their tensors, the first member's card, every member's card). Integer
    buffers (batch norm's batch counts) are taken from the first member."""
    if len(models) < 2:
        raise FerkitError("averaging needs two or more models (--models A,B)")
    if len(mix) != len(models):
        raise FerkitError(f"{len(mix)} weight(s) for {len(models)} model(s)")
    nets, cards = [], []
    for name in models:
        net, card = _weights.load(name)
        nets.append(net)
        cards.append(card)
    first = cards[0]
    for name, card in zip(models[1:], cards[1:]):
        for key in _SAME:
            if (card.get(key) or None) != (first.get(key) or None):
                verb = "differ" if key.endswith("es") else "differs"  # (classes)
                raise FerkitError(f"{name}: its {key} ({card.get(key)!r}) {verb} from {models[0]}'s "
                                  f"({first.get(key)!r}): only networks of one architecture, classes and input "
                                  f"average")
    names = {c.get("name") for c in cards} | set(models)
    inits = [(c.get("training") or {}).get("config", {}).get("init") for c in cards]
    if not (len(set(inits)) == 1 and inits[0]) and not any(i in names for i in inits if i):
        warnings.warn(f"{', '.join(models)}: their cards show no shared start (each one's --init: "
                      f"{', '.join(str(i) for i in inits)}); networks trained apart do not average (their mean is "
                      f"then a poor network), so measure it", FerkitWarning, stacklevel=2)
    states = [n.state_dict() for n in nets]
    out = {}
    for key, t in states[0].items():
        if t.is_floating_point():
            out[key] = sum(w * s[key].double() for w, s in zip(mix, states)).to(t.dtype)
        else:
            out[key] = t.clone()
    net = nets[0]
    net.load_state_dict(out)
    net.eval()
    return net, first, cards


@torch.no_grad()
def recompute_bn(net: nn.Module, images: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int = 256) -> int:
    """Re-estimate every batch-norm layer's running mean and variance from ``images`` (uint8
    [N, C, H, W], prepared by ``prepare`` as the network's input): the cumulative average over
    all batches (momentum None), with dropout off. Returns how many layers were reset (0: the
    network has no batch norm, and nothing changed)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.eval()
    for m in bns:
        m.train()
    try:
        for i in range(0, len(images), batch_size):
            net(prepare(images[i:i + batch_size]))
    finally:
        for m in bns:
            m.momentum = saved[m]
        net.eval()
    return len(bns)


def one_view_each(x: torch.Tensor, tta: str | None) -> torch.Tensor:
    """A float batch with image ``i`` replaced by its test-time view ``i mod n`` (the ``n`` views of
    ``tta``: flip 2, tencrop 10; see :func:`ferkit.data.transforms.tta_views`), so that statistics
    taken over the batch are those of the views the network will be shown, at one forward pass an
    image. ``None``/``"none"``: the batch as it is."""
    from ..data.transforms import tta_views

    if not tta or tta == "none":
        return x
    views = tta_views(x, tta)
    pick = torch.arange(len(x)) % len(views)
    return torch.stack([views[int(v)][i] for i, v in enumerate(pick)])


def soup_card(first: dict, cards: Sequence[dict], models: Sequence[str], mix: Sequence[float], command: str,
              bn: dict | None, name: str) -> dict:
    """The averaged network's card: the members' shared fields, and a ``training`` section that
    names the members, their weights and how each was trained (its ``config`` is the first
    member's, with ``averaged`` added, so readers that know cards find what they expect)."""
    from .train import git_state

    members = []
    for model, card, w in zip(models, cards, mix):
        t = card.get("training") or {}
        members.append({"model": model, "weight": w, "name": card.get("name"), "sha256": card.get("sha256"),
                        "command": t.get("command"), "git_commit": t.get("git_commit"),
                        "device": t.get("device"), "config": t.get("config")})
    t0 = first.get("training") or {}
    inits = {(c.get("training") or {}).get("config", {}).get("init") for c in cards}
    config = {**(t0.get("config") or {}), "averaged": True}
    # the members' shared start, when they have one (else None: the members list each one's)
    config["init"] = next(iter(inits)) if len(inits) == 1 else None
    return {
        "name": name,
        **{k: first[k] for k in _weights.CARD_KEYS},
        "params": first.get("params"),
        "dataset": first.get("dataset"),
        "training": {"command": command, **git_state(), "ferkit_version": __version__,
                     "torch_version": torch.__version__, "device": "cpu",
                     "machine": f"{platform.machine()} {os.cpu_count()} cpu", "config": config,
                     "averaged_from": members, **({"bn_recomputed": bn} if bn else {})},
        "metrics": {},
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": ("weights averaged from " + ", ".join(f"{m} ({w:.3g})" for m, w in zip(models, mix))
                  + "; not measured yet: `ferkit evaluate --model <this folder>`"),
    }


def write(out: str | os.PathLike, net: nn.Module, card: dict) -> Path:
    """Write ``out/model.safetensors`` and its card; returns the weights path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _weights.save(net, out / "model.safetensors", card)
    return out / "model.safetensors"


def recalibrated_card(card: dict, model: str, command: str, bn: dict, name: str) -> dict:
    """The card of ``model`` with its batch-norm statistics re-estimated: the same network,
    classes and input; the metrics dropped (they were the old statistics'); ``training`` keeps the
    original's config (so its start, seed and recipe still read as they were) and says what was
    done on top: ``recalibrated_from`` (the network and how it was trained) and ``bn_recomputed``."""
    from .train import git_state

    t = card.get("training") or {}
    new = {k: v for k, v in card.items() if k not in ("metrics", "best_epoch", "weights_file", "sha256",
                                                         "weights_dtype", "crossval", "int8")}
    new.update({
        "name": name, "metrics": {},
        "training": {"command": command, **git_state(), "ferkit_version": __version__,
                     "torch_version": torch.__version__, "device": "cpu",
                     "machine": f"{platform.machine()} {os.cpu_count()} cpu", "config": t.get("config") or {},
                     "recalibrated_from": {"model": model, "name": card.get("name"), "sha256": card.get("sha256"),
                                           "command": t.get("command"), "git_commit": t.get("git_commit"),
                                           "device": t.get("device")},
                     "bn_recomputed": bn},
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notes": (f"{model} with its batch-norm statistics re-estimated on {bn['images']} images of "
                  f"{bn['dataset']} {bn['split']}; not measured yet: `ferkit evaluate --model <this folder>`"),
    })
    return new
