"""Evaluation: a model on a dataset split -> accuracy, macro-F1, per-class, confusion matrix.

Datasets of full photos (JAFFE, KDEF) are evaluated through the face pipeline: load the split
with :func:`face_cropper`'s function, which detects the faces (MTCNN or Haar) and keeps the
best one aligned exactly as :class:`ferkit.Recognizer` aligns it for ``predict``::

    crop, key = face_cropper(model, "mtcnn", min_face=20)
    ds = reader.load("all", size=model.input_size[1:], mode="L", crop=crop, crop_key=key)
    res = evaluate(model, ds, detector="mtcnn")     # res["no_face"]: images with no face found
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..api import ExpressionModel
from ..data.base import FaceDataset
from ..errors import FerkitError
from .metrics import confusion_matrix, summarize


def align_labels(ds: FaceDataset, model_classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Dataset labels in the model's class order. Returns (indices of kept samples, labels,
    {class: count} of samples dropped because the model has no such class)."""
    to_model = np.array([model_classes.index(c) if c in model_classes else -1 for c in ds.classes])
    y = to_model[ds.labels.numpy()]
    keep = np.flatnonzero(y >= 0)
    dropped = {c: int((ds.labels.numpy() == i).sum()) for i, c in enumerate(ds.classes)
               if to_model[i] < 0 and (ds.labels.numpy() == i).any()}
    return keep, y[keep], dropped


def face_cropper(model: ExpressionModel, detector: str = "mtcnn", min_face: int = 20
                 ) -> tuple[Callable[[np.ndarray], tuple[np.ndarray | None, bool]], str]:
    """A ``crop`` function for :meth:`ferkit.data.Reader.load` and its cache key.

    ``crop(rgb)`` detects the faces of an RGB image with ``detector`` (``mtcnn`` or ``haar``,
    faces of at least ``min_face`` pixels), takes the highest-scoring one and returns it aligned
    at the model's input size by :meth:`ferkit.Recognizer.crops` (gray or RGB as the model
    wants) with ``True``; ``(None, False)`` when there is no face. The key names the detector,
    ``min_face`` and the alignment template, e.g. ``mtcnn:min20:t1a2b3c4d``."""
    from ..faces import TEMPLATE
    from ..faces.detect import HAAR_LANDMARKS
    from ..pipeline import Recognizer

    if detector not in ("mtcnn", "haar"):
        raise FerkitError(f"unknown face detector {detector!r} for evaluation; choose from: mtcnn, haar")
    if int(min_face) < 1:
        raise FerkitError(f"the smallest face size must be at least 1 pixel, got {min_face}")
    if detector == "mtcnn" and int(min_face) < 12:  # before any image: else the first image's error
        raise FerkitError(f"--min-face must be 12 pixels or more with MTCNN (its smallest window), got {min_face}")
    recs: list[Recognizer] = []  # made at the first call: a cached split needs no detector

    def crop(rgb: np.ndarray) -> tuple[np.ndarray | None, bool]:
        if not recs:
            recs.append(Recognizer(model, detector=detector, min_face_size=int(min_face)))
        rec = recs[0]
        dets = rec.detect(rgb)
        if not dets:
            return None, False
        best = max(dets, key=lambda d: d.score)
        return rec.crops(rgb, [best])[0], True

    tpl = hashlib.sha256(TEMPLATE.tobytes() + HAAR_LANDMARKS.tobytes()).hexdigest()[:8]
    return crop, f"{detector}:min{int(min_face)}:t{tpl}"


def evaluate(model: ExpressionModel, ds: FaceDataset, tta: str | None = None, batch_size: int = 256,
             detector: str | None = None, predictions: bool = False) -> dict:
    """Metrics of ``model`` on ``ds``; also ``loss`` (mean negative log-likelihood). ``predictions``:
    also ``predictions``, one row per image evaluated (:func:`prediction_rows`).

    ``detector``: the face detector ``ds`` was loaded through (see :func:`face_cropper`), or
    ``"none"``; when given, the result names it and, for a real detector, counts the images
    with no face found (``no_face``, which kept the whole image) and lists them (``no_face_files``)."""
    keep, y, dropped = align_labels(ds, model.classes)
    if len(keep) == 0:
        raise FerkitError(f"none of the dataset's classes ({', '.join(ds.classes)}) is among the model's "
                          f"({', '.join(model.classes)})")
    if tuple(ds.image_size[1:]) != tuple(model.input_size[1:]) or ds.image_size[0] != model.input_size[0]:
        raise FerkitError(f"dataset images are {ds.image_size}, model wants {model.input_size}: load the split at "
                          f"the model's input size")
    probs = model.predict_tensor(ds.images[torch.as_tensor(keep)], tta=tta, batch_size=batch_size).numpy()
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred, len(model.classes))
    res = summarize(cm, model.classes)
    res["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    res.update({"model": model.name, "dataset": ds.name, "split": ds.split, "tta": tta or "none"})
    if dropped:
        res["dropped"] = dropped
    if ds.skipped:
        res["skipped_files"] = len(ds.skipped)
    if detector is not None:
        res["detector"] = detector
    if (detector is not None and detector != "none") or ds.no_face:
        kept = {ds.sources[i] for i in keep}
        files = [s for s in ds.no_face if s in kept]
        res["no_face"] = len(files)
        res["no_face_files"] = files
    if predictions:
        res["predictions"] = prediction_rows([ds.sources[i] for i in keep], y, probs, model.classes)
    return res


def prediction_rows(sources: list[str], labels, probs: np.ndarray, classes) -> list[dict]:
    """One row per image: ``source``, its ``label``, the ``predicted`` class, ``correct`` (1 or 0)
    and each class's probability (6 decimals): ``ferkit evaluate --predictions``' CSV, which
    ``ferkit compare`` reads to compare two models image by image."""
    rows = []
    for src, t, p in zip(sources, labels, probs):
        k = int(np.argmax(p))
        rows.append({"source": src, "label": classes[int(t)], "predicted": classes[k], "correct": int(k == int(t)),
                     **{c: round(float(v), 6) for c, v in zip(classes, p)}})
    return rows


def write_predictions(rows: list[dict], path, classes) -> None:
    """The rows of :func:`prediction_rows` as CSV (columns fixed: a header also for no rows)."""
    import csv

    cols = ["source", "label", "predicted", "correct", *classes]
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def format_table(res: dict) -> str:
    """A plain-text table of per-class results and the totals."""
    lines = [f"{res.get('model', '')} on {res.get('dataset', '')} {res.get('split', '')} (n={res['n']}, "
             f"tta={res.get('tta', 'none')}" + (f", {res['runtime']}" if res.get("runtime") else "")
             + (f"; --limit: {res['limit']['n']} of {res['limit']['of']} images" if res.get("limit") else "") + ")", "",
             f"{'class':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for c, m in res["per_class"].items():
        lines.append(f"{c:<10} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {m['support']:>8d}")
    lines += ["", f"{'accuracy':<10} {res['accuracy']:>9.4f}", f"{'macro F1':<10} {res['macro_f1']:>9.4f}"]
    if res.get("dropped"):
        lines.append(f"dropped (class not in model): {res['dropped']}")
    if res.get("skipped_files"):
        lines.append(f"skipped (unreadable or malformed, --skip-bad): {res['skipped_files']} item(s), not counted in n")
    if res.get("detector") not in (None, "none") or res.get("no_face"):
        files = res.get("no_face_files", [])
        lines.append(f"faces: {res.get('detector', '?')} detector; no face found in {res.get('no_face', 0)} of "
                     f"{res['n']} images" + (" (the whole image was used):" if files else ""))
        lines += [f"  {f}" for f in files[:10]]
        if len(files) > 10:
            lines.append(f"  ... and {len(files) - 10} more (all listed in the JSON)")
    return "\n".join(lines)


def trained_members(spec: str, model: ExpressionModel) -> dict[str, dict]:
    """How each member of ``spec`` (a model name as given to ``--model``; ``a+b`` an ensemble) that is
    not shipped weights was trained: ``{member: {command, git_commit, device, config: {seed, init, teacher,
    select, ema, cpu_amp}, averaged_from (``ferkit average``'s members), recalibrated_from
    and bn_recomputed (``ferkit recalibrate``)}}`` from its card. A run folder is git-ignored and stays on the machine that trained it;
    kept in the evaluation's JSON, the training behind a committed number travels with it."""
    from ..api import ensemble_names
    from ..weights import ALIASES, SHIPPED_DIR

    parts = ensemble_names(spec) or [str(spec)]
    cards = model.card.get("members") or [model.card]
    out = {}
    for part, card in zip(parts, cards):
        t = card.get("training")
        if part in ALIASES or (SHIPPED_DIR / f"{part}.safetensors").exists() or not isinstance(t, dict):
            continue
        cfg = t.get("config") or {}
        out[part] = {"command": t.get("command"), "git_commit": t.get("git_commit"), "device": t.get("device"),
                     "config": {k: cfg.get(k, 0 if k == "seed" else None)
                                for k in ("seed", "init", "teacher", "select", "ema", "cpu_amp")}}
        if t.get("recalibrated_from"):  # `ferkit recalibrate`: the network whose statistics were re-estimated
            r = t["recalibrated_from"]
            out[part]["recalibrated_from"] = {k: r.get(k) for k in ("model", "command", "git_commit")}
        if t.get("bn_recomputed"):  # recalibrate, average --dataset, train --recalibrate-bn
            out[part]["bn_recomputed"] = t["bn_recomputed"]
        if t.get("averaged_from"):  # `ferkit average`: how each of the averaged networks was trained
            out[part]["averaged_from"] = [{k: m.get(k) for k in ("model", "weight", "command", "git_commit")}
                                          for m in t["averaged_from"]]
    return out


def write_json(res: dict, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res, indent=2) + "\n")
