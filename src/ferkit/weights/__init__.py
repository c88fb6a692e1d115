"""Weight files: safetensors + a JSON model card, side by side. Loading never unpickles.

A model card (``<name>.json``) holds everything needed to use and to reproduce the weights:
architecture and its options, classes in order, input size, normalisation, the exact command
and git commit that trained them, the dataset and splits, and the metrics measured.

Shipped weights live in this folder and are named ``<architecture>-<dataset>``, or
``<architecture>-<dataset>-<variant>`` for a second network of the same kind (``-s1``: another
seed; ``-r2``: a second round of training, started from the first; ``-r2s1``, ``-r2s2``, ``-r2s3``: the
same second round with seeds 1, 2 and 3; ``-fromferplus``: fine-tuned from the FER+ weights; ``-bn``:
the network of the name without it, its batch-norm statistics re-estimated by ``ferkit recalibrate``,
stored as the few tensors that differ, whose card's ``base`` pins that network by sha256).
``default``, ``best-fer2013``, ``best-ferplus``, ``mx3-fer2013``, ``mx4-ferplus`` and ``fast`` are
aliases (see :data:`ALIASES`);
an alias may name an ensemble ``a+b`` (:func:`ferkit.load_model` averages its members).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:  # (torch and safetensors are imported where used: the CLI reads ALIASES without them)
    import torch.nn as nn

SHIPPED_DIR = Path(__file__).resolve().parent
ALIASES: dict[str, str] = {
    # the model every command uses unless told otherwise: vgg_fer-fer2013-bn (PublicTest 70.91%,
    # PrivateTest 71.16%) since 2026-12-07: vgg_fer-fer2013 (trained on a GPU; PublicTest 69.77%,
    # PrivateTest 70.69%) with its batch-norm statistics re-estimated on plain training faces (`ferkit
    # recalibrate`), chosen on PublicTest. vgg_fer-fer2013 itself was the default from 2026-12-04, by the
    # accuracy issue's rule (a model that keeps the live pipeline at >= 30 frames/s on 2 cores and beats
    # the default becomes it: one face well above 30 frames/s with the video default, docs/benchmarks.md);
    # until then `default` named mini_xception-fer2013 (PublicTest 66.34%). The cards, results, benchmarks
    # and AU reports made before say which they mean where their commands read `--init default` or
    # `--model default`.
    "default": "vgg_fer-fer2013-bn",
    # the most accurate shipped FER2013 network, chosen on PublicTest (docs/results.md; use it with
    # --tta flip): the default (PublicTest 71.05% with flip; vgg_fer-fer2013, which this alias named
    # from 2026-11-30 to 2026-12-07: 70.13%; mx3-fer2013, which it named before: 68.49%; lite_cnn-fer2013's
    # card and older notes that say "--teacher best-fer2013" mean those three)
    "best-fer2013": "vgg_fer-fer2013-bn",
    # the most accurate shipped FER+ model, chosen on Valid (use it with --tta flip): vgg_fer
    # (Valid 85.79% with flip, against 84.22% of mx4-ferplus, which this alias named until 2026-11-30)
    "best-ferplus": "vgg_fer-ferplus",
    # the CPU-trained ensembles: three mini_xceptions on FER2013, four second-round ones on FER+
    "mx3-fer2013": "mini_xception-fer2013+mini_xception-fer2013-s1+mini_xception-fer2013-fromferplus",
    "mx4-ferplus": ("mini_xception-ferplus-r2+mini_xception-ferplus-r2s1+mini_xception-ferplus-r2s2+"
                    "mini_xception-ferplus-r2s3"),
    # the fastest FER2013 model: lite_cnn, ~5x faster per face than mini_xception-fer2013 (docs/benchmarks.md,
    # "The classifier budget"); with the batch-norm statistics of both re-estimated, 4.3 points less accurate
    # on PrivateTest (64.34% against mini_xception-fer2013-bn's 68.68%). Until 2026-12-07: lite_cnn-fer2013
    # (PrivateTest 62.78%)
    "fast": "lite_cnn-fer2013-bn",
}
CARD_KEYS = ("architecture", "arch_kwargs", "classes", "input_size", "mean", "std")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_tensors(state: dict, path: str | os.PathLike, metadata: dict) -> None:
    """safetensors' ``save_file``, then the usual permissions: it makes its file readable by its
    owner alone (0600), so that another user could not load a run's weights beside its 0644 card."""
    from safetensors.torch import save_file

    from ..io import give_usual_mode

    save_file(state, str(path), metadata=metadata)
    give_usual_mode(path)


def save(model: nn.Module, path: str | os.PathLike, card: dict) -> Path:
    """Write ``path`` (``.safetensors``) and its card (same stem, ``.json``). Returns the card path."""

    path = Path(path).with_suffix(".safetensors")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ModelError(f"model card lacks {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _save_tensors(state, path, {"architecture": card["architecture"]})
    card = {**card, "weights_file": path.name, "sha256": sha256(path)}
    cpath = path.with_suffix(".json")
    cpath.write_text(json.dumps(card, indent=2) + "\n")
    return cpath


def shipped_name_ok(name: str, card: dict) -> bool:
    """Whether ``name`` is ``<architecture>-<dataset>`` or ``<architecture>-<dataset>-<variant>``."""
    base = f"{card['architecture']}-{card['dataset']['name']}"
    return name == base or (name.startswith(base + "-") and name[len(base) + 1:].isalnum())


def publish(run_dir: str | os.PathLike, dest_dir: str | os.PathLike = SHIPPED_DIR, variant: str | None = None,
            crossval: str | os.PathLike | None = None, base: str | None = None) -> Path:
    """Copy a run's final model (``model.safetensors`` + card) to ``dest_dir`` under its shipped
    name ``<architecture>-<dataset>`` (``-<variant>`` appended when given), byte for byte (the
    card's hash still holds). Returns the weights path. Used as
    ``python -c "from ferkit import weights; weights.publish('runs/NAME')"``.

    ``crossval``: the ``crossval.json`` of a ``ferkit crossval`` whose round the run repeats (same
    recipe, one ``--fold``): its protocol number (mean +- std over the folds) goes into the card
    under ``crossval``, since the run's own test split is a single fold.

    ``base``: a shipped name the run's network was made from without training (``ferkit
    recalibrate``, which changes only batch-norm statistics): only the tensors that differ from
    the base's are written (kilobytes instead of megabytes), in float32, and the card pins the
    base by name and sha256 (:func:`load_state` puts the two together). The metrics measured on
    the run hold for the published file as they are."""
    import shutil

    src = Path(run_dir) / "model.safetensors"
    card = json.loads(src.with_suffix(".json").read_text())
    if sha256(src) != card.get("sha256"):
        raise ModelError(f"{src}: weights do not match the card's sha256")
    name = f"{card['architecture']}-{card['dataset']['name']}" + (f"-{variant}" if variant else "")
    if not shipped_name_ok(name, card):
        raise ModelError(f"{name!r}: a variant is letters and digits only")
    if crossval is not None:
        card["crossval"] = crossval_summary(card, crossval)
    dest = Path(dest_dir) / f"{name}.safetensors"
    if base is not None:
        return _publish_delta(src, card, name, base, dest)
    shutil.copyfile(src, dest)
    card.update({"name": name, "weights_file": dest.name})
    dest.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return dest


def _publish_delta(src: Path, card: dict, name: str, base: str, dest: Path) -> Path:
    """:func:`publish` with ``base``: the tensors of ``src`` that differ from shipped ``base``'s."""
    import torch
    from safetensors.torch import load_file

    bpath = SHIPPED_DIR / f"{ALIASES.get(base, base)}.safetensors"
    if not bpath.is_file():
        raise ModelError(f"base {base!r}: not a shipped name")
    bcard = json.loads(bpath.with_suffix(".json").read_text())
    made_from = (card.get("training") or {}).get("recalibrated_from") or {}
    # made from the base itself, or from a file of differences laid over it (a second recalibration)
    via = SHIPPED_DIR / f"{made_from.get('name')}.json"
    via_card = json.loads(via.read_text()) if made_from.get("name") and via.is_file() else {}
    over = via_card.get("base") or {}
    if made_from.get("sha256") != sha256(bpath) and not (
            made_from.get("sha256") == via_card.get("sha256") and over.get("name") == bpath.stem
            and over.get("sha256") == sha256(bpath)):
        raise ModelError(f"{src}: not made from {bpath.stem} by `ferkit recalibrate` (its card's "
                         f"training.recalibrated_from does not pin {bpath.stem}'s sha256)")
    if "base" in bcard:
        raise ModelError(f"base {base!r}: itself holds only differences from {bcard['base']['name']}; name that")
    differ = [k for k in CARD_KEYS if k != "mean" and k != "std" and bcard.get(k) != card.get(k)]
    differ += [k for k in ("mean", "std") if [round(v, 6) for v in bcard[k]] != [round(v, 6) for v in card[k]]]
    if differ:
        raise ModelError(f"{src}: not the same network as {bpath.stem} ({', '.join(differ)} differ)")
    state, full = load_file(str(src)), load_file(str(bpath))
    if set(state) != set(full) or any(state[k].shape != full[k].shape for k in state):
        raise ModelError(f"{src}: not the same network as {bpath.stem}: {_state_mismatch(full, state)}")
    delta = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()
             if not torch.equal(v, full[k].to(v.dtype))}
    if not delta:
        raise ModelError(f"{src}: its tensors are {bpath.stem}'s: nothing to publish")
    _save_tensors(delta, dest, {"architecture": card["architecture"], "base": bpath.stem})
    card = {**card, "name": name, "weights_file": dest.name, "sha256": sha256(dest),
            "base": {"name": bpath.stem, "sha256": sha256(bpath), "tensors": len(delta), "of": len(full)}}
    card.setdefault("best_epoch", bcard.get("best_epoch"))  # (the trained weights are the base's)
    card.pop("weights_dtype", None)
    dest.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return dest


def base_file(card: dict) -> Path | None:
    """The shipped weights file a card of differences (``base``, see :func:`publish`) lays its
    tensors over; None for a card of whole weights."""
    base = card.get("base")
    return SHIPPED_DIR / f"{base['name']}.safetensors" if isinstance(base, dict) and "name" in base else None


def load_state(path: str | os.PathLike, card: dict) -> dict:
    """The tensors of weights file ``path`` whose card is ``card``. A card with ``base`` (see
    :func:`publish`) holds only what differs from a shipped network's: that network's tensors are
    read, checked against the pinned sha256, and overlaid."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    base = card.get("base")
    if base is None:
        return state
    if not (isinstance(base, dict) and isinstance(base.get("name"), str) and isinstance(base.get("sha256"), str)):
        raise ModelError(f"{path}: the card's base must name a shipped network and its sha256, got {base!r}")
    bpath = base_file(card)
    if not bpath.is_file():
        raise ModelError(f"{path}: holds only the tensors that differ from {base['name']}, which is not shipped")
    if sha256(bpath) != base["sha256"]:
        raise ModelError(f"{path}: holds only the tensors that differ from {base['name']}, whose weights are no "
                         f"longer the ones it was made from (sha256 differs)")
    full = load_file(str(bpath))
    if any(k not in full or full[k].shape != v.shape for k, v in state.items()):
        raise ModelError(f"{path}: its tensors are not {base['name']}'s: {_state_mismatch(full, {**full, **state})}")
    return {**full, **state}


def halve(path: str | os.PathLike) -> Path:
    """Rewrite weights ``path`` (and its card's ``sha256``) with float16 tensors, half the bytes.
    Loading casts them back to the model's float32; the card gets ``weights_dtype: float16``. The
    card's metrics were measured on the float32 weights: measure them again on these. Returns
    the weights path."""
    from safetensors.torch import load_file

    path = Path(path).with_suffix(".safetensors")
    cpath = path.with_suffix(".json")
    card = json.loads(cpath.read_text())
    state = load_file(str(path))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    _save_tensors(half, tmp, {"architecture": card["architecture"]})
    os.replace(tmp, path)
    card.update({"weights_dtype": "float16", "sha256": sha256(path)})
    cpath.write_text(json.dumps(card, indent=2) + "\n")
    return path


# settings a cross-validation round may differ in from the cross-validation itself
_ROUND_KEYS = {"out", "name", "command", "threads", "device", "dataset_options"}


def crossval_summary(card: dict, path: str | os.PathLike) -> dict:
    """The part of a ``crossval.json`` a card keeps, after checking that the card's run is one of
    its rounds: the same recipe (every training setting but the run folder, name, threads and
    device) and a fold it covers."""
    from dataclasses import asdict

    from ..engine.train import TrainConfig

    s = json.loads(Path(path).read_text())
    # settings added to ferkit after a run take their default (what the run used)
    cfg, cv = (asdict(TrainConfig.from_dict(c)) for c in (card["training"]["config"], s["config"]))
    # with --time-budget each round fits its own epoch count to its measured epoch time
    free = _ROUND_KEYS | ({"epochs"} if cv.get("time_budget") and cfg.get("time_budget") == cv["time_budget"] else set())
    differ = sorted(k for k in set(cfg) | set(cv) if k not in free and cfg.get(k) != cv.get(k))
    opts = {k: v for k, v in cfg.get("dataset_options", {}).items() if k != "fold"}
    cv_opts = {**{k: v for k, v in cv.get("dataset_options", {}).items() if k != "fold"}, "folds": s["folds"]}
    if differ or opts != cv_opts:
        raise ModelError(f"{path}: not this run's cross-validation (settings differ: "
                         f"{', '.join(differ) or 'dataset options'})")
    fold = cfg["dataset_options"].get("fold", 0)
    if fold not in s["folds_done"]:
        raise ModelError(f"{path}: fold {fold} is not among its finished rounds")
    return {"protocol": s["protocol"], "folds": s["folds"], "folds_done": len(s["folds_done"]),
            "accuracy_mean": s["accuracy"]["mean"], "accuracy_std": s["accuracy"]["std"],
            "macro_f1_mean": s["macro_f1"]["mean"], "command": s["command"], "summary": Path(path).name,
            "this_round": fold}


INT8_DIR = SHIPPED_DIR / "int8"  #: shipped static-int8 activation ranges, ``<name>.json`` (tools/int8_ranges.py)


def int8_ranges(weights_path: str | os.PathLike) -> dict | None:
    """The shipped static-int8 calibration of a weights file: the activation ranges onnxruntime
    measured on a selection split (per tensor, no images), with how they were made; ``None`` when
    there are none for exactly these weights (matched by the weights' sha256)."""
    p = Path(weights_path)
    f = INT8_DIR / f"{p.stem}.json"
    if p.parent.resolve() != SHIPPED_DIR.resolve() or not f.is_file():
        return None
    try:
        d = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{f}: not valid JSON ({e})") from None
    return d if d.get("weights_sha256") == sha256(p) and "cache" in d else None


def shipped() -> list[dict]:
    """Cards of the weights shipped with ferkit (sorted by name), each with ``name``."""
    out = []
    for cpath in sorted(SHIPPED_DIR.glob("*.json"), key=lambda p: p.stem):
        if cpath.with_suffix(".safetensors").exists():
            card = json.loads(cpath.read_text())
            card.setdefault("name", cpath.stem)
            out.append(card)
    return out


def _unfinished(run: Path) -> None:
    """Say that a run folder without its model.safetensors is an unfinished run whose best weights so far
    are used (it was taken as a finished model in silence)."""
    import warnings

    from ..errors import FerkitWarning

    so_far = ""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        best = json.loads((run / "best.json").read_text()).get("best_epoch")
        planned = json.loads((run / "config.json").read_text()).get("epochs")
        so_far = f", epoch {best} of {planned} planned" if best and planned else f", epoch {best}" if best else ""
    warnings.warn(f"{run}: an unfinished run (no model.safetensors): its best weights so far are used "
                  f"(best.safetensors{so_far}); `ferkit train ... --out {run} --resume` finishes it", FerkitWarning,
                  stacklevel=3)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Path of the ``.safetensors`` file for a shipped name, an alias, a file or a run folder."""
    s = str(name_or_path)
    if not s.strip():
        raise ModelError("no model named (an empty name): give a shipped name (`ferkit models`), a .safetensors "
                         "file with its JSON card, a run folder or an .onnx export")
    s = ALIASES.get(s, s)
    if "+" in s and not Path(s).expanduser().exists():
        raise ModelError(f"{name_or_path!r} is an ensemble ({s}): here one network is needed, e.g. "
                         f"{s.split('+')[0]!r}")
    if (SHIPPED_DIR / f"{s}.safetensors").exists():
        return SHIPPED_DIR / f"{s}.safetensors"
    p = Path(s).expanduser()
    if p.is_dir():
        if (p / "model.safetensors").exists():
            return p / "model.safetensors"
        if (p / "best.safetensors").exists():
            _unfinished(p)
            return p / "best.safetensors"
        rounds = sorted(d.name for d in p.glob("fold[0-9][0-9]") if (d / "model.safetensors").is_file())
        if (p / "crossval.json").is_file() or rounds:  # a cross-validation: a model per round, none of its own
            which = f" ({', '.join(rounds[:3])}{', ...' if len(rounds) > 3 else ''})" if rounds else ""
            raise ModelError(f"{p}: a cross-validation folder, with a model per round and none of its own: name a "
                             f"round's folder{which}, e.g. {p / (rounds[0] if rounds else 'fold00')}; `ferkit "
                             f"crossval-eval {p}` evaluates every round on its own test fold")
        raise ModelError(f"{p}: no model.safetensors or best.safetensors in this folder")
    if p.suffix == ".json" and p.with_suffix(".safetensors").exists():
        return p.with_suffix(".safetensors")
    if p.suffix.lower() == ".json" and p.is_file():
        try:
            is_card = "architecture" in json.loads(p.read_text())
        except (OSError, ValueError, TypeError):
            is_card = False
        if is_card:
            raise ModelError(f"{p}: a model card without its weights ({p.with_suffix('.safetensors').name} is not "
                             f"beside it)")
        raise ModelError(f"{p}: not a model card (no 'architecture': an evaluation's results or other JSON); give "
                         f"a shipped name, a .safetensors file with its JSON card, a run folder or an .onnx export")
    if p.exists():
        if p.suffix in (".pt", ".pth", ".pkl", ".ckpt"):
            raise ModelError(f"{p}: ferkit loads only safetensors weights with a JSON card (never pickles)")
        from ..io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

        if p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
            raise ModelError(f"{p}: an image or video, not a model: give a shipped name, a .safetensors file "
                             f"with its JSON card, a run folder or an .onnx export")
        if p.suffix.lower() not in (".safetensors", ".onnx"):  # (an .onnx export: its callers load it)
            raise ModelError(f"{p}: not a model file (ferkit loads .safetensors weights with their JSON card, run "
                             f"folders and .onnx exports)")
        return p
    if p.suffix.lower() in (".safetensors", ".onnx", ".json") or "/" in s or os.sep in s:
        # a path, not a name: say what is missing (not the list of shipped names)
        where = next((a for a in p.parents if a.exists()), None)
        raise ModelError(f"{p}: no such file" + (" or folder" if not p.suffix else "")
                         + (f" (its folder {p.parent} does not exist either)"
                                                  if where is not None and where != p.parent else ""))
    names = [c["name"] for c in shipped()]
    from ..models import list_models

    arch = [m.name for m in list_models()]
    hint = ""
    if s in arch:  # an architecture's name: its shipped weights are named <architecture>-<dataset>
        own = [n for n in names if n.startswith(s + "-")]
        hint = f"; {s} is an architecture: its shipped weights are {', '.join(own)}" if own else \
            f"; {s} is an architecture with no shipped weights (train it: ferkit train --model {s})"
    raise ModelError(f"no model {s!r}: not a shipped name ({', '.join(names + list(ALIASES)) or 'none shipped'}), "
                     f"nor a weights file or run folder{hint}")


def check_card(card: dict, where: str | os.PathLike) -> None:
    """Raise :class:`ModelError` unless the card's values can be used: ``input_size`` [C, H, W]
    with C 1 or 3 and H, W positive; ``mean``/``std`` C finite numbers, std > 0; ``classes``
    unique names."""
    size = card.get("input_size")
    if (not isinstance(size, (list, tuple)) or len(size) != 3 or not all(isinstance(v, int) for v in size)
            or size[0] not in (1, 3) or min(size[1:]) < 1):
        raise ModelError(f"{where}: input_size must be [C, H, W] with C 1 or 3 and H, W 1 or more, got {size!r}")
    for key in ("mean", "std"):
        v = card.get(key)
        if (not isinstance(v, (list, tuple)) or len(v) != size[0]
                or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)):
            raise ModelError(f"{where}: {key} must be {size[0]} finite number(s) (one per channel), got {v!r}")
    if not all(x > 0 for x in card["std"]):
        raise ModelError(f"{where}: std must be more than 0, got {card['std']!r}")
    kwargs = card.get("arch_kwargs")
    if kwargs is not None and not (isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
        raise ModelError(f"{where}: arch_kwargs must be an object of the architecture's options, got {kwargs!r}")
    classes = card.get("classes")
    if (not isinstance(classes, (list, tuple)) or len(classes) < 2 or not all(isinstance(c, str) for c in classes)
            or len(set(classes)) != len(classes)):
        raise ModelError(f"{where}: classes must be two or more distinct names, got {classes!r}")


def _state_mismatch(want: dict, got: dict) -> str:
    """What differs between a network's tensors (``want``) and a file's (``got``), in a line."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shapes = [f"{k} {tuple(got[k].shape)} (the network: {tuple(want[k].shape)})" for k in want
              if k in got and tuple(got[k].shape) != tuple(want[k].shape)]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {what}: {', '.join(keys[:3])}{more}")
    return "; ".join(parts) or "the tensors differ"


def load(name_or_path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Build the architecture its card names and load the weights; returns (model in eval mode, card)."""
    import torch

    from ..models import create

    path = resolve(name_or_path)
    cpath = path.with_suffix(".json")
    if not cpath.exists():
        raise ModelError(f"{path}: model card {cpath.name} is missing next to the weights")
    try:
        card = json.loads(cpath.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{cpath}: model card is not valid JSON ({e})") from None
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ModelError(f"{cpath}: model card lacks {missing}")
    check_card(card, cpath)
    card.setdefault("name", path.stem if path.parent != SHIPPED_DIR else path.stem)
    model = create(card["architecture"], num_classes=len(card["classes"]), **(card.get("arch_kwargs") or {}))
    state = load_state(path, card)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise ModelError(f"{path}: weights do not match architecture {card['architecture']} "
                         f"{card.get('arch_kwargs', {})}: {_state_mismatch(model.state_dict(), state)}") from None
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *card["input_size"]))
    except RuntimeError as e:
        raise ModelError(f"{cpath}: the network does not run on its card's input_size {card['input_size']}: "
                         f"{str(e).splitlines()[0]}") from None
    return model, card
