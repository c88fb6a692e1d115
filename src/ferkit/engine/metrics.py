"""Classification metrics from a confusion matrix (rows = true class, columns = predicted)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], k: int) -> np.ndarray:
    yt, yp = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if yt.shape != yp.shape:
        raise ValueError("y_true and y_pred differ in length")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class; 0 where undefined (no predictions / no samples)."""
    tp = np.diag(cm).astype(np.float64)
    pred = cm.sum(axis=0).astype(np.float64)
    true = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true.astype(np.int64)}


def summarize(cm: np.ndarray, classes: Sequence[str]) -> dict:
    """The metrics dict ferkit writes: accuracy, macro-F1 (over classes present in the data),
    per-class precision/recall/F1/support, the confusion matrix and n."""
    pc = per_class(cm)
    n = int(cm.sum())
    present = pc["support"] > 0
    return {
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": float(pc["f1"][present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]), "f1": float(pc["f1"][i]),
                "support": int(pc["support"][i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "n": n,
    }
