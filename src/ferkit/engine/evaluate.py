"""Evaluation: a model on a dataset split -> accuracy, macro-F1, per-class, confusion matrix."""

from __future__ import annotations

import json
import os
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


def evaluate(model: ExpressionModel, ds: FaceDataset, tta: str | None = None, batch_size: int = 256) -> dict:
    """Metrics of ``model`` on ``ds``; also ``loss`` (mean negative log-likelihood)."""
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
    return res


def format_table(res: dict) -> str:
    """A plain-text table of per-class results and the totals."""
    lines = [f"{res.get('model', '')} on {res.get('dataset', '')} {res.get('split', '')} (n={res['n']}, "
             f"tta={res.get('tta', 'none')})", "",
             f"{'class':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for c, m in res["per_class"].items():
        lines.append(f"{c:<10} {m['precision']:>9.4f} {m['recall']:>9.4f} {m['f1']:>9.4f} {m['support']:>8d}")
    lines += ["", f"{'accuracy':<10} {res['accuracy']:>9.4f}", f"{'macro F1':<10} {res['macro_f1']:>9.4f}"]
    if res.get("dropped"):
        lines.append(f"dropped (class not in model): {res['dropped']}")
    return "\n".join(lines)


def write_json(res: dict, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res, indent=2) + "\n")
