"""The training loop behind ``ferkit train``.

One run = one folder::

    runs/NAME/config.json        the full configuration (re-used by --resume)
    runs/NAME/log.csv, log.json  one row per epoch
    runs/NAME/curves.png         loss / accuracy / learning rate
    runs/NAME/last.ckpt          everything needed to resume (written every epoch)
    runs/NAME/best.safetensors   best epoch on the validation split (+ best.json card)
    runs/NAME/model.safetensors  the final model: best weights + card with measured metrics
    runs/NAME/metrics.json       validation and test metrics of the final model
    runs/NAME/confusion_<test split>.png  the final model's confusion matrix on the test split

The best epoch is chosen on the validation split only (FER2013 PublicTest, FER+ Valid, the
next fold for cross-validation); the test split is evaluated once, at the end, for the record.

Auxiliary losses: in training mode a model may return a dict holding ``"logits"`` and whatever
else its extra objectives need, and define ``aux_loss(out, x, target) -> {name: loss}`` (terms
already weighted by the model's own options). The loss is then cross-entropy +
``aux_weight * sum(terms)`` (during the first ``aux_epochs`` epochs, or all); ``train_loss`` in
the log is that total, and each term's epoch mean is logged as ``train_<name>``. In eval mode
(validation, evaluation, export) every model returns plain logits. PCNN uses this.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import json
import math
import numbers
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import __version__
from .. import weights as _weights
from ..api import ExpressionModel
from ..data import FaceDataset, open_dataset
from ..data.readers import dataset_key
from ..data.restore import shift_warnings, split_stats
from ..data.transforms import AugmentConfig, augment, normalize, to_float
from ..errors import SEED_MAX, FerkitError, FerkitWarning, ModelError, check_whole
from ..models import count_params, create, get_spec
from ..models.registry import builder_options
from .evaluate import evaluate
from .plots import plot_confusion, plot_curves


@dataclass
class TrainConfig:
    model: str = "mini_xception"
    model_kwargs: dict = field(default_factory=dict)
    dataset: str = "fer2013"
    data: str = ""
    out: str = "runs/exp"
    dataset_options: dict = field(default_factory=dict)  #: vote, folds, fold, fold_seed, angles, skip_bad
    train_split: str | None = None  #: None: the dataset's standard training split
    val_split: str | None = None  #: None: the standard validation split, or a held-out part of train
    test_split: str | None = None  #: None: the standard test split; "none" to skip
    val_fraction: float = 0.1  #: held out of train (stratified) when the dataset has no val split
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "adamw"  #: adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  #: SGD (Nesterov) only
    schedule: str = "cosine"  #: cosine | plateau | constant
    warmup_epochs: float = 2.0
    min_lr_ratio: float = 0.01  #: cosine ends at lr * min_lr_ratio
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    label_smoothing: float = 0.1
    class_weights: str = "none"  #: none | balanced
    soft_targets: bool = False  #: train on the vote distribution (FER+)
    augment: dict = field(default_factory=lambda: AugmentConfig().to_dict())
    seed: int = 0
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    amp: bool = True  #: bfloat16 autocast on CUDA (on the CPU: see cpu_amp)
    #: bfloat16 autocast on the CPU too (``--cpu-amp``): up to 2.5x faster training steps where the CPU has
    #: native bfloat16 (Intel AMX, AVX512-BF16; docs/benchmarks_train.md), slower where it has not; off by
    #: default, so that CPU runs stay float32
    cpu_amp: bool = False
    #: after training, re-estimate batch-norm statistics on (up to 8192) un-augmented training images and
    #: keep them if the validation accuracy rises (``--recalibrate-bn``; ``ferkit recalibrate`` does it to
    #: a finished network)
    recalibrate_bn: bool = False
    threads: int | None = None
    limit: int | None = None  #: use at most this many samples per split (smoke tests)
    early_stop: int | None = None  #: stop after this many epochs without a better val accuracy
    #: seconds of training (from the first epoch's start) to fit in: after the first epoch and each
    #: warm-up epoch, ``epochs`` is set (at most the asked number) to what the measured epoch time
    #: allows, before the cosine schedule starts, so that it still ends (see fit_time_budget)
    time_budget: float | None = None
    select: str = "accuracy"  #: accuracy | accuracy-loss: how the best epoch is chosen (see better_epoch)
    channels_last: bool = True  #: on CUDA only (see train())
    #: deterministic kernels (reproducible runs); False lets cuDNN pick its fastest ones (GPU training)
    deterministic: bool = True
    init: str | None = None  #: start from these ferkit weights (name, .safetensors or run folder); see init_from
    aux_weight: float = 1.0  #: multiplier of a model's auxiliary loss terms (PCNN's); 0 turns them off
    aux_epochs: int | None = None  #: use the auxiliary terms in the first N epochs only (None: all)
    teacher: str | None = None  #: distil: a model (or ensemble "a+b") whose probabilities the student also learns
    kd_weight: float = 0.5  #: loss = (1 - kd_weight) * cross-entropy + kd_weight * T^2 * KL(teacher || student)
    kd_temperature: float = 2.0  #: T: both distributions are softened by it
    teacher_tta: str = "flip"  #: the teacher's views of each training image, averaged: "flip" or "tencrop"
    #: keep an exponential moving average of the weights, with this decay per step (e.g. 0.999); the
    #: average is what is validated, chosen as the best epoch and saved (see ema_update)
    ema: float | None = None
    detect: str = "none"  #: none | mtcnn | haar: find and align the face in each image (full photos: JAFFE, KDEF)
    min_face: int = 20  #: with detect: the smallest face searched for, in pixels
    name: str | None = None  #: model name in the card (default: the run folder's name)
    command: str = ""  #: the command line that started the run (recorded in the card)

    def __post_init__(self) -> None:
        # one name per dataset in cards, summaries and run names ("ck", "CK+" -> "ckplus"): a run's
        # card is matched to --dataset by it (the folds it was trained on)
        self.dataset = dataset_key(self.dataset)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# keys that may differ between the saved config and a --resume invocation
RESUME_OVERRIDABLE = {"epochs", "device", "threads", "command", "early_stop", "time_budget", "recalibrate_bn"}
#: settings a resumed run takes from the new command only when it names them (``given``): a
#: dataset that moved, a learning rate lowered after a NaN loss
RESUME_IF_GIVEN = {"data", "lr"}
RESUMED = "  # resumed by: "  #: joins a run's first command and its resumes in ``command``


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> cuda when there is one, else cpu; a device that does not exist here is a FerkitError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FerkitError(f"unknown device {device!r}; use auto, cpu or cuda (cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FerkitError(f"device {device!r} (--device) asked for, but torch sees no CUDA device here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FerkitError(f"device {device!r} (--device): there are {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise FerkitError(f"device {device!r} is not supported; use auto, cpu or cuda (cuda:N)")
    return dev


def git_state(start: Path | None = None) -> dict:
    """The commit of the checkout that holds ferkit's source (``start``: this file's folder), whether
    tracked files differ from it, and which (``git_dirty_files``, when some do). None when that folder
    holds no file the checkout tracks: ferkit installed (pip) into a virtual environment inside a
    user's own project would record that project's commit and changed files as ferkit's."""
    where = str(start or Path(__file__).resolve().parent)
    try:
        tracked = subprocess.run(["git", "ls-files", "--", "."], cwd=where, capture_output=True, text=True, timeout=10)
        if tracked.returncode != 0 or not tracked.stdout.strip():
            return {"git_commit": None, "git_dirty": None}
        r = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=where, capture_output=True,
                           text=True, timeout=10)
        commit = r.stdout.strip() if r.returncode == 0 else ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout  # "XY path" lines
        files = [ln[3:] for ln in dirty.splitlines() if ln.strip()]
        return {"git_commit": commit or None, "git_dirty": bool(files), **({"git_dirty_files": files} if files else {})}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), holding out ``fraction`` of each class."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        held.append(idx[: max(1, int(round(len(idx) * fraction)))] if len(idx) > 1 else idx[:0])
    h = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), h), h


def _limit(ds: FaceDataset, n: int | None, seed: int) -> FaceDataset:
    if n is None or len(ds) <= n:
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return ds.subset(idx)


def per_image_subjects(ds: FaceDataset) -> bool:
    """Whether each image of ``ds`` is its own subject (a folder that names no people: its folds are
    of single images, not subject-independent)."""
    return bool(ds.subjects) and all(s == p for s, p in zip(ds.subjects, ds.sources))


#: the datasets whose folds of single images were said to be so (once a process, as crossval's rounds load each)
_WARNED_PER_IMAGE: set[tuple[str, str]] = set()


def load_splits(cfg: TrainConfig, size: tuple[int, int], mode: str, log: Callable[[str], None] = print,
                used: dict | None = None) -> tuple[FaceDataset, FaceDataset, FaceDataset | None]:
    """Train / val / test splits of the configured dataset; logs reader notes and warns when the
    training images differ in sharpness or contrast from the validation images. ``used`` (a dict)
    gets the fold settings the reader used, defaults included (for the card: which subjects the
    run trained on). Training images that are also in the validation or test split are refused."""
    reader = open_dataset(cfg.dataset, cfg.data, **cfg.dataset_options)
    idle = sorted(k for k in ("folds", "fold", "fold_seed") if k in cfg.dataset_options)
    if idle and not getattr(reader, "has_folds", False):  # (an image folder of train/ and test/ takes them, unused)
        log(f"warning: {', '.join('--' + k.replace('_', '-') for k in idle)} do(es) nothing here: {reader.name} here "
            f"has its own splits ({', '.join(reader.splits)}), not folds")
    if used is not None and getattr(reader, "has_folds", False):  # a split layout has no folds to record
        used.update({k: v for k, v in reader.options().items() if k in ("folds", "fold", "fold_seed")})
    tr_name = cfg.train_split or reader.train_split
    if tr_name is None:
        raise FerkitError(f"{reader.name}: no standard training split; pass --train-split")
    crop = face_crop(cfg, reader.classes, size, mode)
    train = reader.load(tr_name, size=size, mode=mode, **crop)
    va_name = cfg.val_split or reader.val_split
    if va_name is not None:
        val = reader.load(va_name, size=size, mode=mode, **crop)
    else:
        tr_idx, va_idx = stratified_holdout(train.labels, cfg.val_fraction, cfg.seed)
        train, val = train.subset(tr_idx), train.subset(va_idx, split=f"{train.split}[held-out {cfg.val_fraction:g}]")
    te_name = cfg.test_split if cfg.test_split is not None else reader.test_split
    test = None if te_name in (None, "none") else reader.load(te_name, size=size, mode=mode, **crop)
    if getattr(reader, "has_folds", False) and per_image_subjects(train) \
            and (cfg.dataset, cfg.data) not in _WARNED_PER_IMAGE:  # (once a process: not again each crossval round)
        # a folder that names no people: each image is its own "subject" (crossval and `ferkit data` say so)
        _WARNED_PER_IMAGE.add((cfg.dataset, cfg.data))
        log(f"WARNING: {reader.name}'s folds are of single images, NOT subject-independent (no subjects known): "
            f"near-identical images of one person can fall in train and test; a dataset of named subjects (ckplus, "
            f"jaffe, kdef) keeps each person in one fold")
    if test is not None and va_name is not None and reader.resolve_split(te_name) == reader.resolve_split(va_name):
        raise FerkitError("the validation split must differ from the test split (selection on test is not allowed)")
    seen = set(train.sources)
    for ds, what in ((val, "validation"), (test, "test")):
        both = 0 if ds is None else sum(1 for s in ds.sources if s in seen)
        if both:
            raise FerkitError(f"the training split {train.split!r} holds {both} image(s) of the {what} split "
                              f"{ds.split!r}: a model cannot be {'selected' if what == 'validation' else 'tested'} "
                              f"on images it trained on (choose splits that do not overlap)")
    # the same pictures under other names (a copy across split folders, one photo in two formats): the paths
    # differ, the pixels do not; said with their count (FER2013 holds one such pair, PublicTest-Training)
    def digests(ds: FaceDataset) -> list[bytes]:
        return [hashlib.blake2b(x.numpy().tobytes(), digest_size=8).digest() for x in ds.images]

    known = set(digests(train))
    for ds, what in ((val, "validation"), (test, "test")):
        same = 0 if ds is None else sum(1 for d in digests(ds) if d in known)
        if same:
            log(f"WARNING: {same} of the {what} split {ds.split!r}'s {len(ds)} images have the same pixels as "
                f"training images (copies across splits?): the {what} number overstates the model by them")
    for note in getattr(reader, "notes", []):
        log(note)
    for w in shift_warnings([split_stats(train.images, "train"), split_stats(val.images, "val")]):
        if w.startswith("split train:"):  # the same shift seen from the other side is not news
            log(f"WARNING: training {w[len('split train: '):]} (see `ferkit data --check` and docs/data-notes.md)")
    return (_limit(train, cfg.limit, cfg.seed), _limit(val, cfg.limit, cfg.seed + 1),
            None if test is None else _limit(test, cfg.limit, cfg.seed + 2))


def face_crop(cfg: TrainConfig, classes: Sequence[str], size: tuple[int, int], mode: str) -> dict:
    """``crop``/``crop_key`` arguments of :meth:`~ferkit.data.Reader.load` for ``cfg.detect``: each
    image's face found and aligned at ``size`` as :func:`~ferkit.engine.evaluate.face_cropper` (and
    ``ferkit predict``) does; ``{}`` when ``cfg.detect`` is ``none``."""
    if cfg.detect in (None, "none"):
        return {}
    from .evaluate import face_cropper

    spec = get_spec(cfg.model)
    card = {"name": cfg.model, "architecture": cfg.model, "classes": list(classes),
            "input_size": [1 if mode == "L" else 3, *size], "mean": list(spec.mean), "std": list(spec.std)}
    crop, key = face_cropper(ExpressionModel(nn.Identity(), card), cfg.detect, cfg.min_face)  # only its size is used
    return {"crop": crop, "crop_key": key}


def init_from(model: nn.Module, source: str, classes: Sequence[str], log: Callable[[str], None] = print) -> dict:
    """Start ``model`` from ferkit weights ``source`` (shipped name, ``.safetensors`` file or run
    folder), to fine-tune them: every tensor whose name and shape match is copied. In the
    classifier layers (the model's ``class_layers``, default ``("head",)``) rows are matched by
    class *name*: a class both have keeps its trained row, a class the weights lack (e.g. CK+'s
    contempt from FER2013 weights) keeps its fresh initialisation. Returns what was done."""
    path = _weights.resolve(source)
    card = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    try:
        src = _weights.load_state(path, card)
    except ModelError as e:
        raise FerkitError(f"--init {source}: {e}") from None
    src_classes = list(card.get("classes", []))
    heads = tuple(getattr(model, "class_layers", ("head",)))
    rows = [(i, src_classes.index(c)) for i, c in enumerate(classes) if c in src_classes]
    own = model.state_dict()
    new, skipped, head_keys = {}, [], []
    for k, v in own.items():
        s = src.get(k)
        if s is None:
            skipped.append(k)
        elif any(k == h or k.startswith(h + ".") for h in heads) and src_classes != list(classes):
            if s.shape[1:] == v.shape[1:] and s.shape[0] == len(src_classes) and v.shape[0] == len(classes):
                t = v.clone()
                for i, j in rows:
                    t[i] = s[j]
                new[k] = t
                head_keys.append(k)
            else:
                skipped.append(k)
        elif s.shape == v.shape:
            new[k] = s.to(v.dtype)
        else:
            skipped.append(k)
    arch = getattr(model, "ferkit_arch", None)
    if arch and card.get("architecture") == arch:  # the same architecture built with other options (width)?
        want = builder_options(arch, **(card.get("arch_kwargs") or {}))
        have = builder_options(arch, **getattr(model, "ferkit_kwargs", {}))
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        shaped = [k for k in skipped if k in src and src[k].shape != own[k].shape
                  and not any(k == h or k.startswith(h + ".") for h in heads)]
        if diff and shaped:
            raise FerkitError(
                f"--init {source}: its weights are {arch} with " + ", ".join(f"{k}={want.get(k)}" for k in diff)
                + ", this model has " + ", ".join(f"{k}={have.get(k)}" for k in diff) + f" ({len(shaped)} tensors "
                f"differ in shape, e.g. {shaped[0]}): pass " + " ".join(f"--model-arg {k}={want.get(k)}" for k in diff))
    partial = {k.rsplit(".", 1)[0] for k in skipped}  # a layer is copied whole or not at all
    for k in [k for k in new if k.rsplit(".", 1)[0] in partial]:
        del new[k]
        skipped.append(k)
    head_keys = [k for k in head_keys if k in new]
    if not new:
        raise FerkitError(f"--init {source}: no tensor matches {getattr(model, 'ferkit_arch', 'the model')} by name "
                          f"and shape (weights of architecture {card.get('architecture', '?')})")
    model.load_state_dict({**own, **new})
    kept = list(classes) if src_classes == list(classes) else [classes[i] for i, _ in rows if head_keys]
    fresh = [c for c in classes if c not in kept]
    info = {"weights": str(source), "architecture": card.get("architecture"), "copied": len(new), "of": len(own),
            "not_copied": skipped, "classes_kept": kept, "classes_fresh": fresh}
    msg = f"init from {source}: {len(new)} of {len(own)} tensors copied"
    if fresh:
        msg += f"; classifier rows kept for {', '.join(kept) or 'no class'}, fresh for {', '.join(fresh)}"
    if skipped:
        msg += f"; not copied: {', '.join(skipped[:4])}{' ...' if len(skipped) > 4 else ''}"
    log(msg)
    return info


def teacher_probs(cfg: TrainConfig, train_ds: FaceDataset, out: Path, device: torch.device,
                  log: Callable[[str], None] = print, teacher: ExpressionModel | None = None) -> torch.Tensor:
    """The teacher's class probabilities of every training image (``[N, K]``, columns in the
    dataset's class order; the mean over the image and its mirror image), computed once and kept
    in the run folder (``teacher_probs.npy`` + ``teacher.json``) for ``--resume``.

    Offline distillation: the teacher sees each image unaugmented while the student sees it
    augmented, as is usual; a teacher on a few pixels' shift gives nearly the same answer, and
    computing it once costs one inference pass instead of one per epoch. ``teacher``: the model
    ``cfg.teacher`` names, when loaded already."""
    from ..api import load_model

    meta_path, npy = out / "teacher.json", out / "teacher_probs.npy"
    # the cache is the teacher's answers on these very images: the same count of other images (another
    # fold, --limit with another seed) or a retrained teacher of the same name must not reuse it
    meta = {"teacher": cfg.teacher, "n": len(train_ds), "classes": list(train_ds.classes), "tta": cfg.teacher_tta,
            "images_sha256": _images_digest(train_ds), "teacher_sha256": _teacher_digest(cfg.teacher)}
    if meta_path.exists() and npy.exists() and json.loads(meta_path.read_text()) == meta:
        return torch.from_numpy(np.load(npy, allow_pickle=False))
    if teacher is None:
        teacher = load_model(cfg.teacher, device=str(device))
        _check_teacher_classes(cfg, teacher.classes, train_ds)
    t0 = time.time()
    tp = teacher.predict_tensor(train_ds.images, tta=cfg.teacher_tta)
    probs = torch.zeros(len(train_ds), len(train_ds.classes))  # a class with no training image: probability 0
    for i, c in enumerate(train_ds.classes):
        if c in teacher.classes:
            probs[:, i] = tp[:, teacher.classes.index(c)]
    probs = (probs / probs.sum(1, keepdim=True).clamp_min(1e-12)).float()
    y = train_ds.labels
    agree = float((probs.argmax(1) == y).float().mean())
    log(f"teacher {teacher.name}: probabilities of {len(train_ds)} training images in {time.time() - t0:.0f}s; "
        f"it agrees with the labels on {agree:.2%} of them")
    np.save(npy, probs.numpy(), allow_pickle=False)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return probs


def _images_digest(ds: FaceDataset) -> str:
    """sha256 of a dataset's pixels, labels and sources, in order (what a teacher's cache answers for)."""
    h = hashlib.sha256()
    h.update(ds.images.contiguous().numpy().tobytes())
    h.update(ds.labels.numpy().astype(np.int64).tobytes())
    h.update("\n".join(ds.sources).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _teacher_digest(teacher: str) -> list[str | None]:
    """sha256 of each weights file an ensemble ``A+B`` (or one model) names; None where it is not a
    file ferkit resolves (then the name alone keys the cache)."""
    out: list[str | None] = []
    for part in str(teacher).split("+"):
        try:
            out.append(_weights.sha256(_weights.resolve(part)))
        except (FerkitError, OSError):  # a name load_model resolves otherwise: keyed by name only
            out.append(None)
    return out


def _check_teacher_classes(cfg: TrainConfig, classes: Sequence[str], train_ds: FaceDataset) -> None:
    """A teacher must have every class the training images carry."""
    counts = torch.bincount(train_ds.labels, minlength=len(train_ds.classes))
    missing = [c for c, n in zip(train_ds.classes, counts.tolist()) if c not in classes and n > 0]
    if missing:
        raise FerkitError(f"--teacher {cfg.teacher}: it has no class {', '.join(missing)} of {cfg.dataset} "
                          f"(its classes: {', '.join(classes)})")


def distill_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(teacher_T || student_T)`` (Hinton et al. 2015): both distributions softened by
    ``T``; the teacher is given as probabilities (softened as ``softmax(log p / T)``)."""
    t = float(temperature)
    soft = F.softmax(torch.log(teacher.clamp_min(1e-8)) / t, dim=1)
    return F.kl_div(F.log_softmax(logits / t, dim=1), soft, reduction="batchmean") * t * t


SELECT_RULES = ("accuracy", "accuracy-loss")


def ema_decay(decay: float, step: int) -> float:
    """The decay used at ``step`` (0-based): ``min(decay, (1 + step) / (10 + step))``, so that early
    in a run the average follows the weights closely rather than keeping the random start for
    thousands of steps. It reaches 0.99 at step 890 and 0.999 at step 8,990: a short run (CK+,
    JAFFE: a few steps per epoch) averages over fewer steps than ``decay`` says (the log gives
    the decay reached)."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """One step of the weights' exponential moving average: ``ema = d * ema + (1 - d) * model``
    (``d = ema_decay(decay, step)``) over parameters and floating-point buffers (batch-norm
    statistics); counters are copied. One fused call per kind of tensor (few kernel launches)."""
    d = ema_decay(decay, step)
    ef, pf, ei, pi = [], [], [], []
    for e, p in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.dtype.is_floating_point:
            ef.append(e)
            pf.append(p.detach().to(e.dtype))
        else:
            ei.append(e)
            pi.append(p)
    if ef:
        torch._foreach_mul_(ef, d)
        torch._foreach_add_(ef, pf, alpha=1.0 - d)
    if ei:
        torch._foreach_copy_(ei, pi)


def better_epoch(rule: str, acc: float, loss: float, best_acc: float, best_loss: float) -> bool:
    """Whether an epoch with validation ``acc`` and ``loss`` replaces the best one so far.

    ``accuracy``: a strictly higher accuracy (ties keep the earlier epoch). ``accuracy-loss``: a
    higher accuracy, or the same accuracy with a lower loss. On a small validation split the
    accuracy saturates (CK+'s selection folds reach 100% by epoch 3 of 40), and ``accuracy`` then
    keeps an epoch from the first minutes of fine-tuning; the loss still tells those apart."""
    if rule == "accuracy":
        return acc > best_acc
    if rule == "accuracy-loss":
        return acc > best_acc or (acc == best_acc and loss < best_loss)
    raise FerkitError(f"unknown selection rule {rule!r}; use {' or '.join(SELECT_RULES)}")


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise FerkitError(f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd")


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bfloat16 natively (the ``amx_bf16`` or ``avx512_bf16`` flag), as
    ``--cpu-amp`` wants; None where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base LR at global ``step``: linear warm-up, then cosine (or constant)."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule != "cosine":
        return 1.0
    total = max(1, cfg.epochs * steps_per_epoch - warm)
    t = min(1.0, (step - warm) / total)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def make_card(cfg: TrainConfig, model: nn.Module, classes: tuple[str, ...], extra: dict) -> dict:
    spec = get_spec(cfg.model)
    return {
        "name": cfg.name or Path(cfg.out).name,
        "architecture": cfg.model,
        "arch_kwargs": dict(getattr(model, "ferkit_kwargs", cfg.model_kwargs)),
        "classes": list(classes),
        "input_size": list(spec.input_size),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "params": count_params(model),
        **extra,
    }


def _short(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "n", "loss") if k in m}


def differences(keys, given: TrainConfig, saved: TrainConfig) -> str:
    """The settings ``keys`` in which ``given`` differs from a run's ``saved`` ones, in words:
    ``lr (0.01; the run's: 0.003)`` (long ones by name only)."""
    said = []
    for k in sorted(keys):
        if k == "dataset_options":  # the dataset's options by their flags (--clean-from changes the images)
            a, b = getattr(given, k) or {}, getattr(saved, k) or {}
            said += [f"--{o.replace('_', '-')} ({a.get(o)!r}; the run's: {b.get(o)!r})"
                     for o in sorted(set(a) | set(b)) if a.get(o) != b.get(o)] or [k]
        else:
            said.append(k if k in ("command", "augment") else
                        f"{k} ({getattr(given, k)!r}; the run's: {getattr(saved, k)!r})")
    return ", ".join(said)


CHECKPOINT_KEYS = ("config", "model", "optimizer", "generator", "torch_rng", "history", "epoch", "best_acc",
                   "best_epoch")


def read_checkpoint(path: Path) -> dict:
    """A run's ``last.ckpt`` (tensors and plain values only: ``weights_only``), or a FerkitError
    saying why not: cut short (a run stopped while writing it), not a checkpoint, or one without
    the parts a resume needs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise FerkitError(f"{path}: cannot read it ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - the unpickler's errors on a broken file are of many kinds
        # (torch's own words run to a paragraph on weights_only: its first line, cut at a sentence's end)
        why = (str(e).splitlines() or [""])[0].split(". ")[0][:160]
        done = (Path(path).parent / "model.safetensors").is_file()
        raise FerkitError(f"{path}: not a readable training checkpoint ({type(e).__name__}"
                          f"{': ' + why if why else ''}); a run stopped while writing it leaves it cut short: "
                          f"remove it" + (" and the finished run's model.safetensors and model.json beside it"
                                          if done else "")
                          + " to train again from the start (without --resume)") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise FerkitError(f"{path}: not a ferkit training checkpoint (no {', '.join(missing)})")
    if not isinstance(state["config"], dict):
        raise FerkitError(f"{path}: not a ferkit training checkpoint (its config is a {type(state['config']).__name__})")
    return state


_WARNED_WARMUP: set[tuple] = set()


def check_settings(cfg: TrainConfig, remark: bool = True) -> None:
    """The settings that need no data: refused with a clear message before the run folder exists;
    ``remark``: also :func:`warmup_remark` (train says it later, once the run's settings are known)."""
    check_whole("--seed", cfg.seed, 0, SEED_MAX)
    if cfg.teacher_tta not in ("flip", "tencrop"):
        raise FerkitError(f"teacher_tta must be 'flip' or 'tencrop', got {cfg.teacher_tta!r}")
    if cfg.schedule not in ("cosine", "plateau", "constant"):
        raise FerkitError(f"unknown schedule {cfg.schedule!r}; use cosine, plateau or constant")
    if cfg.class_weights not in ("none", "balanced"):
        raise FerkitError(f"unknown class weighting {cfg.class_weights!r}; use none or balanced")
    better_epoch(cfg.select, 0.0, 0.0, -1.0, math.inf)  # an unknown selection rule
    at_least_one = {"--epochs": cfg.epochs, "--batch-size": cfg.batch_size, "--limit": cfg.limit,
                    "--min-face": cfg.min_face}
    for flag, v in at_least_one.items():
        if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1):
            raise FerkitError(f"{flag} must be a whole number of 1 or more, got {v!r}")
    if cfg.early_stop is not None and (not isinstance(cfg.early_stop, numbers.Integral) or cfg.early_stop < 0):
        raise FerkitError(f"--early-stop must be a whole number of epochs (0: off), got {cfg.early_stop!r}")
    ranges = [  # (flag, value, low, high, low inclusive, high inclusive, what)
        ("--lr", cfg.lr, 0, math.inf, False, False, "the peak learning rate"),
        ("--weight-decay", cfg.weight_decay, 0, math.inf, True, False, ""),
        ("--momentum", cfg.momentum, 0, 1, True, False, ""),
        ("--label-smoothing", cfg.label_smoothing, 0, 1, True, False, ""),
        ("--warmup", cfg.warmup_epochs, 0, math.inf, True, False, "epochs"),
        ("--aux-weight", cfg.aux_weight, 0, math.inf, True, False, ""),
        ("--aux-epochs", cfg.aux_epochs, 0, math.inf, True, False, "epochs"),
        ("--time-budget", cfg.time_budget, 0, math.inf, False, False, "seconds"),
        ("--kd-weight", cfg.kd_weight, 0, 1, True, True, "the distillation term's share of the loss"),
        ("--kd-temperature", cfg.kd_temperature, 0, math.inf, False, False, ""),
        ("--ema", cfg.ema, 0, 1, False, False, "the weights' average's decay per step, e.g. 0.999"),
    ]
    aug = {**AugmentConfig().to_dict(), **(cfg.augment or {})}
    ranges += [("--flip", aug["flip"], 0, 1, True, True, "a probability"),
               ("--erase", aug["erase"], 0, 1, True, True, "a probability"),
               ("--shift", aug["shift"], 0, 1, True, False, "a fraction of the image size"),
               ("--scale", aug["scale"], 0, 1, True, False, "zoom in [1 - scale, 1 + scale]"),
               ("--rotate", aug["rotate"], 0, 180, True, True, "degrees"),
               ("--brightness", aug["brightness"], 0, 1, True, True, ""),
               ("--contrast", aug["contrast"], 0, 1, True, True, "")]
    for flag, v, lo, hi, lo_in, hi_in, what in ranges:
        if v is None:
            continue
        ok = (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
              and (v >= lo if lo_in else v > lo) and (hi == math.inf or (v <= hi if hi_in else v < hi)))
        if not ok:
            span = (f"{'at least' if lo_in else 'more than'} {lo:g}" if hi == math.inf else
                    f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}")
            raise FerkitError(f"{flag} must be {span}{f' ({what})' if what else ''}, got {float(v):g}"
                              if isinstance(v, numbers.Real) else f"{flag} must be a number, got {v!r}")
    if remark:
        warmup_remark(cfg)


def warmup_remark(cfg: TrainConfig) -> None:
    """A warning (once a process) where --warmup covers the whole run: the rate never decays."""
    said = (cfg.warmup_epochs, cfg.epochs, cfg.lr)
    if not cfg.time_budget and cfg.epochs is not None and 0 < cfg.epochs <= cfg.warmup_epochs \
            and said not in _WARNED_WARMUP:  # (once a process: not again for every crossval round)
        import warnings

        peak = (f"reaches --lr {cfg.lr:g} only at its last step" if cfg.warmup_epochs == cfg.epochs else
                f"never reaches --lr {cfg.lr:g} (at most {cfg.epochs / cfg.warmup_epochs:.0%} of it)")
        warnings.warn(f"--warmup {cfg.warmup_epochs:g} covers all {cfg.epochs} epoch(s): the learning rate rises "
                      f"the whole run, {peak}, and never decays; give fewer warm-up epochs (e.g. --warmup "
                      f"{cfg.epochs / 10:g}) or more epochs", FerkitWarning, stacklevel=2)
        _WARNED_WARMUP.add(said)  # (after: a warning turned into an error is raised again next time)


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None,
          log: Callable[[str], None] = print, given: Sequence[str] = (), keep: Sequence[str] = ()) -> dict:
    """Train according to ``cfg``; returns the final card. See the module docstring for outputs.

    Resuming keeps the run's saved settings but for :data:`RESUME_OVERRIDABLE` (less ``keep``: those
    the command line left to their defaults, e.g. ``epochs`` or ``model``, which the run keeps then,
    unsaid), and for those
    of :data:`RESUME_IF_GIVEN` named in ``given`` (the options the command line set explicitly). A
    finished run resumed with nothing more to do is left as it is (its card is returned); fewer
    ``epochs`` than it has trained is refused."""
    if not 0 < cfg.val_fraction < 1:
        raise FerkitError(f"--val-fraction must be between 0 and 1 (the share of train held out for selection when "
                          f"the dataset has no validation split), got {cfg.val_fraction}")
    # before anything is written: a bad setting leaves no --out folder behind (none of these settings
    # is one a resumed run takes from the new command, RESUME_OVERRIDABLE / RESUME_IF_GIVEN)
    check_settings(cfg, remark=False)  # (the warm-up remark: once the architecture is known, and a resume's own)
    out = Path(cfg.out)
    ckpt_path = out / "last.ckpt"
    state, resume_asked, new_lr, saved_early_stop = None, None, False, None
    if ckpt_path.exists():
        if not resume:
            raise FerkitError(f"{out} already holds a run (last.ckpt): pass --resume to continue it, or choose "
                              f"another --out")
        state = read_checkpoint(ckpt_path)
        try:
            saved = TrainConfig.from_dict(state["config"])
        except (TypeError, ValueError, KeyError) as e:
            raise FerkitError(f"{ckpt_path}: its saved settings cannot be read ({type(e).__name__}: {e})") from None
        other = [f"{k} {getattr(saved, k)!r} (asked: {getattr(cfg, k)!r})" for k in ("model", "dataset", "model_kwargs")
                 if k in given and getattr(saved, k) != getattr(cfg, k)]
        # another fold, fold count or fold assignment (named on the command line): another test set
        fold_defaults = {"folds": 10, "fold": 0, "fold_seed": 0}  # (the readers' own: a run saves only what was typed)
        other += [f"{k} {saved.dataset_options.get(k, v)!r} (asked: {cfg.dataset_options.get(k, v)!r})"
                  for k, v in fold_defaults.items() if f"fold_option:{k}" in given
                  and saved.dataset_options.get(k, v) != cfg.dataset_options.get(k, v)]
        if other:  # named on the command line: another experiment's folder, as crossval refuses it
            what = " and ".join({"model_kwargs": "network (--model-arg)"}.get(k.split()[0], k.split()[0])
                                for k in other)
            raise FerkitError(f"{out} holds a run of another {what}: {', '.join(other)}; choose another --out, or "
                              f"resume it with its own")
        named = RESUME_IF_GIVEN & set(given)
        saved_early_stop = saved.early_stop
        take = (RESUME_OVERRIDABLE - set(keep)) | named | {"out"}  # a moved or copied run folder writes where it is now
        budget = saved.time_budget if "time_budget" in keep else cfg.time_budget  # (the one the run goes on with)
        if saved.time_budget is not None and budget == saved.time_budget:
            # the same budget: the epoch count it was fitted to stands (the command's --epochs is
            # the count asked for, which the budget lowered), and so does what the run has used of it
            take = take - {"epochs"}
            resume_asked = state.get("asked_epochs", cfg.epochs)
        done = int(state["epoch"])
        if "epochs" in take and cfg.epochs < done and not cfg.time_budget:
            raise FerkitError(f"{out} has trained {done} epochs already: --epochs {cfg.epochs} is fewer (give {done} "
                              f"or more to train on, or leave --epochs out: the run keeps its {saved.epochs})")
        diff = {k for k, v in asdict(cfg).items() if k not in take and asdict(saved).get(k) != v}
        diff -= set(keep)  # (left to their defaults by the command: the run's own are no difference to say)
        if diff:
            log(f"resuming with the run's saved settings; ignoring differing: {differences(diff, cfg, saved)}")
        new_epochs = "epochs" in take and cfg.epochs != saved.epochs and not cfg.time_budget and not saved.time_budget
        said_epochs = (f"resuming with --epochs {cfg.epochs} (was {saved.epochs}): the learning-rate schedule is "
                       f"fitted to {cfg.epochs} epochs from here on (the card's command keeps both commands)")
        changed = sorted(k for k in named if getattr(saved, k) != getattr(cfg, k))
        new_lr = "lr" in changed
        said_changed = ("resuming with the new " + ", ".join(f"{k} {getattr(cfg, k)} (was {getattr(saved, k)})"
                                                             for k in changed)) if changed else ""
        new_command = cfg.command
        cfg = dataclasses.replace(saved, **{k: getattr(cfg, k) for k in take})
        if saved.command and new_command != saved.command:
            # the card keeps the command that started the run, then each resume, as shell comments
            # (pasted, the line runs the first command; the resumes say how the run was continued)
            cfg = dataclasses.replace(cfg, command=f"{saved.command}{RESUMED}{new_command}")
        card = _finished_card(out, state, cfg, saved)
        if card is not None:  # a finished run with nothing more to do: left as it is
            stale_now = state.get("stale", 0)
            why = (f"it stopped early at epoch {done} (no better val accuracy for {stale_now} "
                   f"epoch{'s' * (stale_now != 1)}, --early-stop {cfg.early_stop}); nothing to do (a larger "
                   f"--early-stop, or 0, trains it on)"
                   if done < cfg.epochs else
                   f"{done} epochs trained; nothing to do (a larger --epochs trains it on)")
            log(f"{out} is finished: {why}; its model is {out / 'model.safetensors'}")
            return card
        # (said once it is known the run goes on: a finished one left as it is said only that)
        if new_epochs:  # (with a time budget the count is the budget's to fit, and said where it is refitted)
            log(said_epochs)
        if said_changed:
            log(said_changed)
    else:
        # a model another verb wrote (average, recalibrate, a finished run's folder without its checkpoint)
        # or a cross-validation: a new run would overwrite it (or mix its files in) without a word
        held = [f for f in ("model.safetensors", "crossval.json", "best.safetensors") if (out / f).is_file()]
        if held:
            what = {"model.safetensors": "a model", "crossval.json": "a cross-validation",
                    "best.safetensors": "an earlier run's best weights (its checkpoint, last.ckpt, is gone: it "
                                        "cannot be resumed)"}[held[0]]
            raise FerkitError(f"{out} holds {what} already ({held[0]}), which a new run would overwrite: choose "
                              f"another --out (or remove it first)")
        if resume:
            log(f"{ckpt_path} not found: starting a new run")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
    spec = get_spec(cfg.model)
    warmup_remark(cfg)  # (after an unknown architecture's error, and with a resumed run's own settings)
    c, h, w = spec.input_size
    used: dict = {}
    train_ds, val_ds, test_ds = load_splits(cfg, (h, w), "L" if c == 1 else "RGB", log, used)
    classes = train_ds.classes
    check_classes_present(train_ds, log)
    if state is not None and (out / "best.json").is_file():  # a resume on data of other classes (a moved --data)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            had = list(json.loads((out / "best.json").read_text())["classes"])
            if had != list(classes):
                raise FerkitError(f"{out}: the run was trained on the classes {', '.join(had)}, and {cfg.data} holds "
                                  f"{', '.join(classes)}: resume it with the data it was trained on")
    model = create(cfg.model, num_classes=len(classes), **cfg.model_kwargs)
    if cfg.init and state is None:
        init_from(model, cfg.init, classes, log)
    model = model.to(device)
    # channels_last on CUDA only: on CPU torch 2.13 corrupts memory training mini_xception in it with
    # 2 threads and some batch sizes (3, 33: a segfault or "double free"), and it gains little there
    cl = cfg.channels_last and device.type == "cuda"
    mf = torch.channels_last if cl else torch.contiguous_format
    model = model.to(memory_format=mf)
    opt = make_optimizer(cfg, model)
    # the weights' moving average (--ema): validated, selected and saved in the model's place
    ema_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema else None
    steps_per_epoch = max(1, len(train_ds) // cfg.batch_size)  # drop the last partial batch
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
               if cfg.schedule == "plateau" else None)
    g = torch.Generator().manual_seed(cfg.seed)
    aug_cfg = AugmentConfig(**cfg.augment)
    weight = None
    if cfg.class_weights == "balanced":
        counts = torch.bincount(train_ds.labels, minlength=len(classes)).float().clamp(min=1)
        weight = (counts.sum() / (len(classes) * counts)).to(device)
    if cfg.soft_targets and train_ds.soft is None:
        raise FerkitError(f"--soft-targets: dataset {cfg.dataset} has no vote distributions (only ferplus does)")
    teacher = None
    if cfg.teacher:  # an unknown teacher, or one without a class of the data, is said before the run folder is made
        from ..api import ensemble_names, load_model

        for part in ensemble_names(cfg.teacher) or [cfg.teacher]:
            _weights.resolve(part)
        teacher = load_model(cfg.teacher, device=str(device))
        _check_teacher_classes(cfg, teacher.classes, train_ds)
    out.mkdir(parents=True, exist_ok=True)  # once the data and the model are there: a run that cannot start leaves none
    t_probs = teacher_probs(cfg, train_ds, out, device, log, teacher) if cfg.teacher else None

    history: list[dict] = []
    start_epoch, best_acc, best_loss, best_epoch, stale = 1, -1.0, math.inf, 0, 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if ema_model is not None:
                ema_model.load_state_dict(state.get("ema") or state["model"])
            if plateau is not None and state.get("plateau"):
                plateau.load_state_dict(state["plateau"])
            g.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if new_lr:  # the optimizer's state holds the old rate (the plateau schedule would keep it)
                for grp in opt.param_groups:
                    grp["lr"] = cfg.lr
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise FerkitError(f"{ckpt_path}: does not fit the run it belongs to ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
        history = state["history"]
        start_epoch = state["epoch"] + 1
        best_acc, best_epoch, stale = state["best_acc"], state["best_epoch"], state.get("stale", 0)
        best_loss = state.get("best_loss", math.inf)
        log(f"resumed {out} at epoch {start_epoch} (best val acc {best_acc:.4f} at epoch {best_epoch})")

    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    # the code each stretch of epochs ran under: a resume under another commit (or other changed files)
    # is said, and the card lists every stretch (its git_commit is the last one's)
    code = git_state()
    segments = list(state.get("segments") or []) if state is not None else []
    if state is not None and not segments:  # a checkpoint written before runs kept their code: its stretch unknown
        segments = [{"from_epoch": 1, "git_commit": None, "note": "not recorded (a checkpoint from before ferkit "
                                                                  "kept it)"}]
    here = {"from_epoch": start_epoch, "git_commit": code["git_commit"],
            **({"git_dirty_files": code["git_dirty_files"]} if code.get("git_dirty_files") else {})}
    if segments and "note" not in segments[-1] and _code_of(segments[-1]) != _code_of(here):
        last = segments[-1]
        log(f"warning: resuming under other code: epochs {last['from_epoch']}-{start_epoch - 1} ran at "
            f"{_code_words(last)}, the epochs from {start_epoch} run at {_code_words(here)} (the card lists both: "
            f"training.segments)")
    if not segments or _code_of(segments[-1]) != _code_of(here):
        segments.append(here)
    base_info = {
        "dataset": {"name": cfg.dataset, "options": {**cfg.dataset_options, **used},
                    # folds of single images (a folder naming no people): said on the card too
                    **({"subject_independent": False} if "fold" in used and per_image_subjects(train_ds) else {}),
                    "train_split": train_ds.split,
                    "val_split": val_ds.split, "test_split": None if test_ds is None else test_ds.split,
                    "n_train": len(train_ds), "n_val": len(val_ds),
                    # which images the test split held (a fold's members move when files are added or removed:
                    # `ferkit evaluate` compares, and warns where its test split holds others now)
                    **({"test_digest": split_digest(test_ds, cfg.data)} if test_ds is not None else {})},
        "training": {"command": cfg.command, **code, "ferkit_version": __version__,
                     "torch_version": torch.__version__, "device": str(device),
                     "machine": f"{platform.machine()} {os.cpu_count()} cpu", "config": asdict(cfg),
                     **({"segments": segments} if len(segments) > 1 else {}),
                     # the weights --init and --teacher named, by content (a run folder named may change later)
                     **({"init_sha256": _teacher_digest(cfg.init)[0]} if cfg.init else {}),
                     **({"teacher_sha256": _teacher_digest(cfg.teacher)} if cfg.teacher else {})},
    }
    nparams = count_params(model)
    log(f"training {cfg.model} {cfg.model_kwargs or ''} ({nparams:,} params) on {cfg.dataset}: "
        f"training split {train_ds.split!r} n={len(train_ds)}, selection split {val_ds.split!r} n={len(val_ds)}, "
        f"device {device}")
    amp = cfg.amp if device.type == "cuda" else cfg.cpu_amp
    if amp and device.type == "cpu" and cpu_has_bf16() is False:
        log("warning: --cpu-amp on a CPU without native bfloat16 (no amx_bf16 or avx512_bf16 in /proc/cpuinfo): "
            "emulated, likely slower than float32")
    show = sys.stderr.isatty() if progress is None else progress
    n = len(train_ds)
    t_start = time.time()
    # --time-budget refits below this as epochs are timed (the first one is the slowest)
    asked = cfg.epochs if resume_asked is None else resume_asked
    before = sum(r.get("seconds", 0.0) for r in history)  # training time of the run before this resume
    epoch = start_epoch
    if state is not None and cfg.time_budget and resume_asked is None and history:
        # resumed with a new budget (or a first one): the count is refitted now, from the time the run
        # has used and its last epoch's, before the schedule goes on (the same budget keeps its count)
        cfg, base_info = fit_time_budget(cfg, base_info, start_epoch - 1, float(history[-1].get("seconds", 0.0)),
                                         before, out, log, asked)
    # a run resumed after its early stop (interrupted while finishing) only finishes
    stopped = state is not None and bool(cfg.early_stop) and stale >= cfg.early_stop
    if stopped and saved_early_stop and stale >= saved_early_stop:
        log(f"the run had stopped early at epoch {start_epoch - 1} (no better val accuracy for {stale} epochs): "
            f"finishing it")
    elif stopped:  # the run had not stopped: the new --early-stop ends it where it is
        log(f"--early-stop {cfg.early_stop}: the run's last {stale} epochs (to epoch {start_epoch - 1}) brought no "
            f"better val accuracy, so it stops here: finishing it")
    while epoch <= cfg.epochs and not stopped:
        model.train()
        t0 = time.time()
        perm = torch.randperm(n, generator=g)
        tot_loss, tot_correct, seen = 0.0, 0, 0
        tot_aux: dict[str, float] = {}
        use_aux = cfg.aux_weight > 0 and (cfg.aux_epochs is None or epoch <= cfg.aux_epochs)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not show, mininterval=1.0)
        for it in bar:
            step = (epoch - 1) * steps_per_epoch + it
            if plateau is None:
                f = lr_factor(cfg, step, steps_per_epoch)
                for grp in opt.param_groups:
                    grp["lr"] = cfg.lr * f
            elif step < cfg.warmup_epochs * steps_per_epoch:
                for grp in opt.param_groups:
                    grp["lr"] = cfg.lr * lr_factor(cfg, step, steps_per_epoch)
            idx = perm[it * cfg.batch_size:(it + 1) * cfg.batch_size]
            x = augment(to_float(train_ds.images[idx].to(device)), aug_cfg, g)
            x = normalize(x, spec.mean, spec.std).contiguous(memory_format=mf)
            y = train_ds.labels[idx].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                pred = model(x)  # logits; or, in training mode, a dict with "logits" and what aux_loss needs
            logits = (pred["logits"] if isinstance(pred, dict) else pred).float()
            target = train_ds.soft[idx].to(device) if cfg.soft_targets else y
            loss = F.cross_entropy(logits, target, weight=weight, label_smoothing=cfg.label_smoothing)
            if t_probs is not None:
                kd = distill_loss(logits, t_probs[idx].to(device), cfg.kd_temperature)
                tot_aux["kd"] = tot_aux.get("kd", 0.0) + kd.item() * len(idx)
                loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * kd
            if use_aux and isinstance(pred, dict) and hasattr(model, "aux_loss"):
                aux = model.aux_loss(pred, x, target)  # named, already weighted terms
                for k, v in aux.items():
                    tot_aux[k] = tot_aux.get(k, 0.0) + v.item() * len(idx)
                loss = loss + cfg.aux_weight * sum(aux.values())
            where = (f"the last good epoch is in {ckpt_path}: run again with a lower --lr and --resume"
                     if ckpt_path.exists() else "no epoch had finished: run again with a lower --lr")
            if not torch.isfinite(loss):
                raise FerkitError(f"loss became {loss.item()} at epoch {epoch}, step {it}: lower --lr ({where})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            try:
                opt.step()
            except RuntimeError as e:  # a rate beyond float32 (e.g. --lr 1e38 times a schedule factor)
                if "overflow" not in str(e):
                    raise
                raise FerkitError(f"the update overflowed at epoch {epoch}, step {it}: lower --lr ({where})") from None
            if ema_model is not None:
                ema_update(ema_model, model, cfg.ema, step)
            tot_loss += loss.item() * len(idx)
            tot_correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if show:
                bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_correct / seen:.4f}", refresh=False)
        bar.close()
        card_now = make_card(cfg, model, classes, base_info)
        extra = {}
        if ema_model is not None:  # the raw weights' accuracy too, for the record (the average is the model)
            raw = evaluate(ExpressionModel(model, card_now, device), val_ds)
            extra = {"val_acc_raw": raw["accuracy"], "val_loss_raw": raw["loss"],
                     "ema_decay": ema_decay(cfg.ema, epoch * steps_per_epoch - 1)}
        kept = model if ema_model is None else ema_model
        vm = evaluate(ExpressionModel(kept, card_now, device), val_ds)
        lr_now = opt.param_groups[0]["lr"]
        if plateau is not None and epoch > cfg.warmup_epochs:
            plateau.step(vm["accuracy"])
        row = {"epoch": epoch, "train_loss": tot_loss / seen, "train_acc": tot_correct / seen,
               "val_loss": vm["loss"], "val_acc": vm["accuracy"], "val_macro_f1": vm["macro_f1"], "lr": lr_now,
               "seconds": time.time() - t0, **{f"train_{k}": v / seen for k, v in tot_aux.items()}, **extra}
        history.append(row)
        improved = better_epoch(cfg.select, vm["accuracy"], vm["loss"], best_acc, best_loss)
        shown_epochs, said = cfg.epochs, []  # (the count before a time budget fits it, as the line always said)
        # the epoch's files are written before its line is printed, with Ctrl+C held meanwhile: a user who
        # waits for the line and then interrupts loses nothing (the checkpoint came after the plot, a second later)
        with interrupt_deferred():
            if improved:
                best_acc, best_loss, best_epoch, stale = vm["accuracy"], vm["loss"], epoch, 0
                _weights.save(kept, out / "best.safetensors",
                              {**card_now, "best_epoch": epoch, "metrics": {val_ds.split: _short(vm)}})
            else:
                stale += 1
            if cfg.time_budget and (epoch == 1 or epoch <= cfg.warmup_epochs):
                # fitted before the checkpoint is written, so that a resume reads the fitted count
                cfg, base_info = fit_time_budget(cfg, base_info, epoch, time.time() - t0,
                                                 before + time.time() - t_start, out, said.append, asked)
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "ema": ema_model.state_dict() if ema_model is not None else None,
                        "plateau": plateau.state_dict() if plateau is not None else None,
                        "generator": g.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                        "epoch": epoch, "best_acc": best_acc, "best_loss": best_loss, "best_epoch": best_epoch,
                        "stale": stale, "asked_epochs": asked, "segments": segments,
                        "config": asdict(cfg)}, str(ckpt_path) + ".tmp")
            os.replace(str(ckpt_path) + ".tmp", ckpt_path)
            _write_log(out, history)
        log(f"epoch {epoch:3d}/{shown_epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} f1 {row['val_macro_f1']:.4f}  "
            f"lr {lr_now:.2e}  {row['seconds']:.0f}s{'  *best' if improved else ''}"
            + "".join(f"  ({k} {v / seen:.4f})" for k, v in tot_aux.items())
            + (f"  (raw weights: val acc {extra['val_acc_raw']:.4f}; average's decay {extra['ema_decay']:.4g})"
               if extra else ""))
        for line in said:
            log(line)
        plot_curves(history, out / "curves.png", title=f"{cfg.model} on {cfg.dataset} ({out.name})")
        if cfg.early_stop and stale >= cfg.early_stop:
            log(f"early stop: no better val accuracy for {stale} epochs")
            break
        epoch += 1
    code_now = {k: v for k, v in base_info["training"].items() if k.startswith("git_") or k == "segments"}
    return finalize(cfg, out, device, test_ds, val_ds, history, log, train_ds=train_ds, code=code_now)


@contextlib.contextmanager
def interrupt_deferred():
    """Ctrl+C (SIGINT) held until the block ends, then raised: files written in the block are all
    written or none is (on the main thread; elsewhere, where signals cannot be handled, a plain block)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # ignored (SIG_IGN: a script's background job), default, or a host's own: left alone
        yield
        return
    try:
        signal.signal(signal.SIGINT, lambda *_: got.append(True))
    except (ValueError, OSError):  # (no signal handling here)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if got:
        raise KeyboardInterrupt


def split_digest(ds: FaceDataset, root: str | os.PathLike | None) -> str:
    """A short digest of which images ``ds`` holds: its sources' names relative to the dataset's
    folder ``root`` (as given elsewhere, or moved, they are the same names), sorted."""
    base = os.path.abspath(os.path.expanduser(root)) if root else None
    names = []
    for src in ds.sources:  # (lexically: no file is asked for, a CSV row's "source" included)
        rel = os.path.relpath(os.path.abspath(src), base) if base is not None else str(src)
        names.append(str(src) if rel.startswith("..") else Path(rel).as_posix())
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _code_of(segment: dict) -> tuple:
    """What tells two stretches' code apart: the commit and the files changed from it."""
    return segment.get("git_commit"), tuple(segment.get("git_dirty_files") or ())


def _code_words(segment: dict) -> str:
    """A stretch's code in words: ``commit 48fbc88`` (``with src/x.py changed``), or ``no git checkout``."""
    commit, dirty = _code_of(segment)
    if commit is None:
        return "no git commit known"
    return f"commit {commit[:7]}" + (f" with {', '.join(dirty[:3])}{' ...' if len(dirty) > 3 else ''} changed"
                                     if dirty else "")


def _finished_card(out: Path, state: dict, cfg: TrainConfig, saved: TrainConfig) -> dict | None:
    """The card of a finished run that a resume with ``cfg`` (the settings it goes on with) would not
    change: its last epoch trained (or early-stopped), its model written from that checkpoint (the
    card's ``epochs_run``), and no --recalibrate-bn newly asked for (that re-runs the finish). Else
    None: the resume trains on, or finishes a run stopped while finishing."""
    done, stale = int(state["epoch"]), state.get("stale", 0)
    over = done >= cfg.epochs or (bool(cfg.early_stop) and stale >= cfg.early_stop)
    final, card_path = out / "model.safetensors", out / "model.json"
    if not over or not final.is_file() or not card_path.is_file() or (cfg.recalibrate_bn and not saved.recalibrate_bn):
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and card.get("epochs_run") == len(state.get("history", [])) else None


def check_classes_present(train_ds: FaceDataset, log: Callable[[str], None]) -> None:
    """Before training: images of two classes or more (a one-class run trained to its end, then its
    card was refused), and a warning for each class with no training image (an empty class folder, a
    dataset's fixed class list): the model would have an output it never learned."""
    counts = torch.bincount(train_ds.labels, minlength=len(train_ds.classes)).tolist()
    present = [c for c, n in zip(train_ds.classes, counts) if n > 0]
    if len(present) < 2:
        raise FerkitError(f"the training split {train_ds.split!r} holds images of {len(present)} class"
                          f"{'es' * (len(present) != 1)} only ({', '.join(present) or 'none'}): an expression "
                          f"classifier needs two or more (`ferkit data` shows the counts)")
    empty = [c for c, n in zip(train_ds.classes, counts) if n == 0]
    if empty:
        log(f"WARNING: no training image of {', '.join(empty)}: the model keeps {'them' if len(empty) > 1 else 'it'} "
            f"as a class it never learns (add images; for a folder of one's own, remove an empty class folder: "
            f"a named dataset keeps its fixed class list)")


def fit_time_budget(cfg: TrainConfig, base_info: dict, epoch: int, last: float, elapsed: float, out: Path,
                    log: Callable[[str], None], asked: int | None = None) -> tuple[TrainConfig, dict]:
    """``cfg`` with ``epochs`` set so that the rest, at ``last`` seconds an epoch, ends within
    ``cfg.time_budget`` seconds of training: never below ``epoch``, never above ``asked`` (the
    command's ``--epochs``; default ``cfg.epochs``). Called after the first epoch and after each
    warm-up epoch (the first is slowed by one-off start-up work, so later ones can raise the count
    again), before the cosine schedule starts; the count goes into config.json and the card."""
    asked = cfg.epochs if asked is None else asked
    fit = epoch + int(max(0.0, cfg.time_budget - elapsed) // max(last, 1e-9))
    epochs = max(epoch, min(asked, fit))
    if epochs == cfg.epochs:
        return cfg, base_info
    log(f"time budget {cfg.time_budget:g}s: epoch {epoch} took {last:.1f}s, so {epochs} epoch{'s' * (epochs != 1)} "
        f"in all (was {cfg.epochs}); the LR schedule is fitted to {epochs}")
    cfg = dataclasses.replace(cfg, epochs=epochs)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    base_info = {**base_info, "training": {**base_info["training"], "config": asdict(cfg)}}
    return cfg, base_info


#: training images that re-estimate batch-norm statistics (--recalibrate-bn), as `ferkit recalibrate`'s default
BN_IMAGES = 8192


def finalize(cfg: TrainConfig, out: Path, device: torch.device, test_ds: FaceDataset | None, val_ds: FaceDataset,
             history: list[dict], log: Callable[[str], None] = print, train_ds: FaceDataset | None = None,
             code: dict | None = None) -> dict:
    """Best weights -> ``model.safetensors`` with the final card (val and test metrics); ``code``:
    the git state the run finished under and its stretches (``segments``), where not the best
    epoch's card's (a resume under other code after the best epoch). With
    ``cfg.recalibrate_bn``, the batch-norm statistics re-estimated on ``train_ds`` replace the
    trained ones when they score higher on ``val_ds`` (the card's ``bn_recomputed`` says which)."""
    em = ExpressionModel(*_weights.load(out / "best.safetensors"), device=device)
    card = dict(em.card)
    metrics = {}
    det = None if cfg.detect in (None, "none") else cfg.detect
    vm = evaluate(em, val_ds, detector=det)
    bn = None
    if cfg.recalibrate_bn and train_ds is not None:
        from .soup import recompute_bn

        trained = copy.deepcopy(em.net.state_dict())
        images = _limit(train_ds, BN_IMAGES, cfg.seed).images
        layers = recompute_bn(em.net, images, lambda x: normalize(to_float(x.to(device)), em.mean, em.std))
        if layers == 0:
            log(f"--recalibrate-bn: {cfg.model} has no batch norm; nothing re-estimated")
        else:
            again = evaluate(em, val_ds, detector=det)
            kept = again["accuracy"] > vm["accuracy"]
            bn = {"split": train_ds.split, "images": len(images), "layers": layers,
                  "val_before": vm["accuracy"], "val_after": again["accuracy"], "kept": kept}
            log(f"batch-norm statistics re-estimated on {len(images)} {train_ds.split} images: val accuracy "
                f"{vm['accuracy']:.4f} -> {again['accuracy']:.4f}, "
                + ("kept" if kept else "not kept (the trained statistics stay)"))
            if kept:
                vm = again
            else:
                em.net.load_state_dict(trained)
    metrics[val_ds.split] = _short(vm)
    if test_ds is not None:
        tm = evaluate(em, test_ds, detector=det)
        metrics[test_ds.split] = _short(tm)
        plot_confusion(tm["confusion_matrix"], tm["classes"], out / f"confusion_{test_ds.split}.png",
                       title=f"{card['name']} on {test_ds.name} {test_ds.split}: acc {tm['accuracy']:.4f}")
        log(f"test split {test_ds.split!r}: accuracy {tm['accuracy']:.4f}, macro-F1 {tm['macro_f1']:.4f} "
            f"(n={tm['n']})")
    (out / "metrics.json").write_text(json.dumps({"val": vm, "test": tm if test_ds is not None else None},
                                                 indent=2) + "\n")
    card.pop("weights_file", None)
    card.pop("sha256", None)
    if "training" in card:  # the config as it ended (--time-budget may have changed epochs after the best one)
        # and the command with its resumes (the best epoch's card has those made before that epoch only)
        card["training"] = {**card["training"], "config": asdict(cfg), **({"bn_recomputed": bn} if bn else {}),
                            **({"command": cfg.command} if "command" in card["training"] else {})}
        if code:  # the code the run ended under, and every stretch's (not the best epoch's alone)
            card["training"] = {**{k: v for k, v in card["training"].items()
                                   if not (k.startswith("git_") or k == "segments")}, **code}
    card.update({"metrics": metrics, "epochs_run": len(history),
                 "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "train_seconds": round(sum(h["seconds"] for h in history))})
    _weights.save(em.net, out / "model.safetensors", card)
    log(f"best val accuracy {max(h['val_acc'] for h in history):.4f}; model: {out / 'model.safetensors'}")
    return card


def _write_log(out: Path, history: list[dict]) -> None:
    (out / "log.json").write_text(json.dumps(history, indent=1) + "\n")
    with open(out / "log.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for h in history for k in h)))
        wr.writeheader()
        wr.writerows(history)
