"""Linear probes on frozen features, cross-validated over subjects (``ferkit probe``).

A *linear probe* keeps trained networks fixed and fits only a multinomial logistic regression
on their pooled features: the global average of each network's last feature map (``features()``,
before the classifier), the networks' vectors side by side. On a small dataset (JAFFE: 213
images of 10 people) this asks what the networks learned elsewhere (FER2013, FER+) carries over,
without the few hundred images re-shaping a network of 200,000 weights.

Protocol: the folds of ``ferkit crossval`` (:func:`ferkit.data.fold_splits`; ``--folds 10`` on
JAFFE is leave-one-subject-out). Round ``i`` fits on the ``k - 2`` training folds, chooses the L2
strength from ``lams`` on fold ``i + 1`` (highest accuracy, ties to the lowest log-loss) and
reports fold ``i``. Features are standardised with the training folds' mean and std.

``center="subject"`` subtracts from each image's features the mean feature of *its person's*
images (all of that person's images in the dataset, no labels): what stays is how this face
differs from the person's average face, not who the person is. It is transductive: at test
time it uses every image of the test person at once (for JAFFE ~21, spread over the 7
expressions), which a single photo of a stranger does not offer; a person's video, or a
calibration set of their photos, does. Rows made with it are labelled so in ferkit's results.

The summary (``crossval.json``) has the shape of :func:`ferkit.engine.crossval.crossval`'s,
with ``model`` ``"probe"`` and the probe's settings under ``config``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import normalize, to_float, tta_views
from ..errors import FerkitError
from .crossval import _stats, finish_summary, fold_words, open_folds, per_image
from .metrics import confusion_matrix, summarize

LAMS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
CENTER_WORDS = {"none": "", "subject": ", each person's mean feature subtracted (transductive: no labels, "
                                       "all of the person's images)"}


@torch.inference_mode()
def pooled_features(model, images: torch.Tensor, tta: str | None = None, batch_size: int = 256) -> np.ndarray:
    """``[N, D]`` global-average-pooled last feature maps of ``model`` (an ExpressionModel on torch)
    for uint8 images ``[N, C, H, W]`` at its input size; with a ``tta`` (``flip``, ``tencrop``: see
    :func:`ferkit.data.transforms.tta_views`) the mean over the image's views."""
    net = getattr(model, "net", None)
    if net is None or not hasattr(net, "features"):
        from ..models import create, list_models

        have = [sp.name for sp in list_models() if hasattr(create(sp.name), "features")]
        raise FerkitError(f"{model.name}: no feature extractor to probe (architectures with one: "
                          f"{', '.join(have)})")
    if tta not in (None, "none", "flip", "tencrop"):
        raise FerkitError(f"a probe takes --tta none, flip or tencrop, not {tta}")
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = normalize(to_float(images[i:i + batch_size]), model.mean, model.std)
        views = tta_views(x, tta)
        f = 0
        for v in views:
            m = net.features(v)
            f = f + (m.mean((2, 3)) if m.ndim == 4 else m)
        out.append((f / len(views)).double())
    return torch.cat(out).numpy()


def center_by(features: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """``features`` minus the mean feature of each row's group (its person)."""
    g = np.asarray(groups)
    out = np.array(features, dtype=np.float64, copy=True)
    for s in np.unique(g):
        k = g == s
        out[k] -= out[k].mean(0)
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, k: int, lam: float, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: mean cross-entropy + ``lam`` * ||W||^2, by L-BFGS in
    float64 from zeros (deterministic). Returns ``(W [D, k], b [k])``."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    w = torch.zeros(xt.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        v = F.cross_entropy(xt @ w + b, yt) + lam * (w ** 2).sum()
        v.backward()
        return v

    with torch.enable_grad():
        opt.step(loss)
    return w.detach().numpy(), b.detach().numpy()


def _scores(x: np.ndarray, w: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    logits = torch.as_tensor(x @ w + b)
    pred = logits.argmax(1).numpy()
    loss = float(F.cross_entropy(logits, torch.as_tensor(np.asarray(y), dtype=torch.long))) if len(y) else 0.0
    return float((pred == y).mean()) if len(y) else 0.0, loss, pred


def probe_folds(features: np.ndarray, labels: np.ndarray, fold_of: np.ndarray, folds: int, num_classes: int,
                lams: Sequence[float] = LAMS) -> list[dict]:
    """The k rounds of the protocol on precomputed ``features`` (``fold_of[j]``: image j's fold).
    Each round: ``fold``, ``lam`` chosen, ``accuracy``/``val_accuracy``/``val_loss``, the test
    ``predictions`` and ``confusion_matrix``."""
    labels = np.asarray(labels)
    rounds = []
    for i in range(folds):
        te, va = fold_of == i, fold_of == (i + 1) % folds
        tr = ~(te | va)
        if not te.any() or not va.any() or len(np.unique(labels[tr])) < 2:
            raise FerkitError(f"round {i}: needs images in its test fold, its selection fold and two classes or more "
                              f"in its training folds")
        mu, sd = features[tr].mean(0), features[tr].std(0) + 1e-6
        z = (features - mu) / sd
        best = None
        for lam in lams:
            w, b = fit_logistic(z[tr], labels[tr], num_classes, lam)
            acc, loss, _ = _scores(z[va], w, b, labels[va])
            if best is None or (acc, -loss) > (best[0], -best[1]):
                best = (acc, loss, lam, w, b)
        vacc, vloss, lam, w, b = best
        acc, _, pred = _scores(z[te], w, b, labels[te])
        rounds.append({"fold": i, "val_fold": (i + 1) % folds, "lam": lam, "n_train": int(tr.sum()),
                       "n_val": int(va.sum()), "n_test": int(te.sum()), "accuracy": acc, "val_accuracy": vacc,
                       "val_loss": vloss, "predictions": pred,
                       "confusion_matrix": confusion_matrix(labels[te], pred, num_classes)})
    return rounds


def probe_crossval(models: Sequence[str], dataset: str, data: str, folds: int = 10, detect: str = "none",
                   min_face: int = 20, center: str = "none", tta: str | None = None, lams: Sequence[float] = LAMS,
                   fold_seed: int | None = None, out: str | Path | None = None, command: str = "",
                   skip_bad: bool = False, log: Callable[[str], None] = print) -> dict:
    """Cross-validate a linear probe on the frozen features of ``models`` (shipped names, weight
    files or run folders); see the module docstring. Returns (and with ``out`` writes) the summary."""
    from ..api import load_model
    from .evaluate import face_cropper

    if center not in CENTER_WORDS:
        raise FerkitError(f"--center must be one of: {', '.join(CENTER_WORDS)}; got {center!r}")
    if not models:
        raise FerkitError("name at least one model whose features to probe")
    if folds < 3:
        raise FerkitError(f"--folds must be at least 3 (a test, a selection and a training fold), got {folds}")
    if not lams or not all(np.isfinite(v) and v >= 0 for v in lams):
        raise FerkitError(f"the L2 strengths must be finite numbers, zero or more; got {list(lams)}")
    t0 = time.time()
    nets = []
    for m in models:  # an ensemble (mx3-fer2013, "a+b") is probed as its members, side by side
        loaded = load_model(m, backend="torch")
        nets += list(getattr(loaded, "members", [loaded]))
    shapes = {tuple(n.input_size) for n in nets}
    if len(shapes) > 1:
        raise FerkitError(f"the probed models differ in input size ({', '.join(str(list(s)) for s in shapes)})")
    c, h, w = nets[0].input_size
    mode = "L" if c == 1 else "RGB"
    opts = {**({} if fold_seed is None else {"fold_seed": fold_seed}), **({"skip_bad": True} if skip_bad else {})}
    reader, subjects = open_folds(dataset, data, opts, folds, "probe")
    single = per_image(subjects)
    if single and center == "subject":
        raise FerkitError(f"--center subject: {reader.name} at {data} names no subjects (each image is its own), so "
                          f"each image's features would be centred on themselves, all zero; use --center none, or a "
                          f"dataset with subjects (ckplus, jaffe, kdef)")
    if single:
        log(f"warning: {reader.name} names no subjects: the folds are of single images, NOT subject-independent "
            f"(images of one person can fall in train and test)")
    crop = {}
    if detect not in (None, "none"):
        fn, key = face_cropper(nets[0], detect, min_face)
        crop = {"crop": fn, "crop_key": key}
    parts = [reader.load("all", size=(h, w), mode=mode, **crop)]
    classes = list(parts[0].classes)
    images = torch.cat([p.images for p in parts])
    labels = np.concatenate([np.asarray(p.labels) for p in parts])
    people = [str(s) for p in parts for s in p.subjects]
    fold = {s: i for i, ss in enumerate(subjects) for s in ss}
    fold_of = np.array([fold[s] for s in people])
    no_face = set(s for p in parts for s in p.no_face)
    sources = [s for p in parts for s in p.sources]
    log(f"{len(labels)} images of {len(fold)} people in {folds} folds; features of {', '.join(n.name for n in nets)}")
    feats = np.concatenate([pooled_features(n, images, tta) for n in nets], axis=1)
    if center == "subject":
        feats = center_by(feats, people)
    rounds = probe_folds(feats, labels, fold_of, folds, len(classes), lams)
    per_fold = []
    for r in rounds:
        te = fold_of == r["fold"]
        cm = np.asarray(r["confusion_matrix"])
        f1 = summarize(cm, classes)["macro_f1"]
        row = {"fold": r["fold"], "test_subjects": subjects[r["fold"]], "val_fold": r["val_fold"],
               "val_subjects": subjects[r["val_fold"]], "n_train": r["n_train"], "n_val": r["n_val"],
               "n_test": r["n_test"], "accuracy": r["accuracy"], "macro_f1": f1, "val_accuracy": r["val_accuracy"],
               "val_loss": r["val_loss"], "lam": r["lam"]}
        nf = [s for s, k in zip(sources, te) if k and s in no_face]
        if detect not in (None, "none"):
            row["no_face"] = len(nf)
        per_fold.append(row)
        log(f"fold {r['fold']}: L2 {r['lam']:g} chosen on fold {r['val_fold']} ({r['val_accuracy']:.4f}), "
            f"test fold {r['accuracy']:.4f} (n={r['n_test']})")
    pooled = summarize(np.sum([np.asarray(r["confusion_matrix"]) for r in rounds], axis=0), classes)
    flat = [s for f in subjects for s in f]
    config = {"model": "probe", "backbones": list(models), "center": center, "tta": tta or "none",
              "lams": list(lams), "dataset": dataset, "data": str(data), "detect": detect or "none",
              "min_face": min_face, "select": "accuracy-loss", "seed": 0, "init": None, "command": command}
    summary = {
        "model": "probe", "model_kwargs": {"backbones": list(models), "center": center},
        "dataset": dataset, "data": str(data), "folds": folds,
        "fold_seed": 0 if fold_seed is None else fold_seed, "detect": detect or "none",
        "protocol": f"{folds}-fold {fold_words(single)} of a linear probe (logistic regression) "
                    f"on the frozen pooled features of {' + '.join(models)}{CENTER_WORDS[center]}: round i tests "
                    f"on fold i, chooses the L2 strength on fold i+1 (highest accuracy, ties broken by the lowest "
                    f"loss), fits on the other {folds - 2}",
        "subjects_per_fold": subjects, "subject_disjoint": len(flat) == len(set(flat)),
        "complete": True, "folds_done": list(range(folds)), "per_fold": per_fold,
        "accuracy": _stats([r["accuracy"] for r in per_fold]),
        "macro_f1": _stats([r["macro_f1"] for r in per_fold]),
        "pooled": pooled, "seconds": round(time.time() - t0, 1), "command": command, "config": config,
        "tta": tta or "none",
    }
    return finish_summary(summary, out, log)
