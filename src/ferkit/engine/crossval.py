"""k-fold subject-independent cross-validation behind ``ferkit crossval``.

For datasets without an official split (CK+, JAFFE, KDEF, flat image folders) the standard
protocol is k-fold cross-validation over *subjects*: round ``i`` tests on fold ``i``, selects the
best epoch on fold ``i + 1`` (never on the test fold) and trains on the other ``k - 2`` folds
(:func:`ferkit.data.fold_splits`). With ``k`` = the number of subjects (JAFFE: 10) every fold is
one person: leave-one-subject-out. Each round is an ordinary :func:`~ferkit.engine.train.train`
run; its test metrics come from :func:`~ferkit.engine.evaluate.evaluate` (``metrics.json``).

One cross-validation = one folder::

    runs/NAME/crossval.json            config, per-fold results, mean and std over folds, the
                                       pooled confusion matrix and per-class metrics (rewritten
                                       after every fold; "complete" says whether all folds are in)
    runs/NAME/crossval_confusion.png   the pooled confusion matrix (every test image once)
    runs/NAME/crossval_folds.png       accuracy per fold, with the mean
    runs/NAME/fold00/ ... fold09/      one training run folder per round (see ferkit.engine.train)

``resume=True`` skips finished rounds (``model.safetensors`` written), continues an interrupted
one from its ``last.ckpt`` and starts the rest, with the saved configuration (only epochs,
device, threads, early stop and the command may change, as for ``ferkit train --resume``).

Figures: ``accuracy.mean`` / ``accuracy.std`` are the mean and the sample standard deviation
(ddof = 1) of the per-fold accuracies (what papers report for k-fold protocols); ``pooled`` sums
the folds' confusion matrices, so its accuracy weighs folds by their size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data import open_dataset
from ..data.readers import dataset_key
from ..errors import FerkitError
from .metrics import summarize
from .plots import plot_confusion
from .train import (_WARNED_WARMUP, RESUME_OVERRIDABLE, RESUMED, TrainConfig, _limit, check_settings,
                    differences, train)

SUMMARY = "crossval.json"
SELECT_WORDS = {"accuracy-loss": " (highest accuracy, ties broken by the lowest loss)"}  # how, when not the default


def fold_dir(out: str | Path, fold: int) -> Path:
    return Path(out) / f"fold{fold:02d}"


def open_folds(dataset: str, data: str, opts: dict, folds: int, verb: str = "cross-validate", hint: str = ""):
    """``(reader, subjects)``: the dataset opened at round 0 of ``folds`` subject folds and the
    subjects of each fold (no image is decoded); a dataset with official splits is an error."""
    reader = open_dataset(dataset, data, **opts)
    if not getattr(reader, "has_folds", False):
        raise FerkitError(f"{reader.name} has official splits ({', '.join(reader.splits)}), not subject folds: "
                          f"{verb} ckplus, jaffe, kdef or a flat <class>/* image folder{hint}")
    reader = open_dataset(dataset, data, **opts, folds=folds, fold=0)
    recs, skipped = reader.all_records()
    if not recs:
        raise reader.none_found(skipped)
    return reader, [sorted({str(recs[i].subject) for i in idx}) for idx in reader.fold_indices(recs)]


def fold_words(single_images: bool) -> str:
    """How a protocol's folds are made, for its description."""
    return ("cross-validation over single images (no subjects known: NOT subject-independent; images of one "
            "person can fall in train and test)" if single_images else "subject-independent cross-validation")


def fold_subjects(cfg: TrainConfig, folds: int) -> list[list[str]]:
    """The subjects of each of the ``folds`` folds of ``cfg``'s dataset (no image is decoded)."""
    opts = {k: v for k, v in cfg.dataset_options.items() if k not in ("folds", "fold")}
    return open_folds(cfg.dataset, cfg.data, opts, folds, hint=", or use `ferkit train`")[1]


def per_image(subjects: list[list[str]]) -> bool:
    """Folds whose "subjects" are image files: an image folder names no people, and each of its
    images is its own subject."""
    from ..io import is_image_file

    flat = [s for f in subjects for s in f]
    return bool(flat) and all(is_image_file(s) for s in flat)


def _fold_result(d: Path, fold: int, subjects: list[list[str]]) -> dict:
    card = json.loads((d / "model.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    test, val = metrics["test"], metrics["val"]
    k = len(subjects)
    res = {"fold": fold, "test_subjects": subjects[fold], "val_fold": (fold + 1) % k,
           "val_subjects": subjects[(fold + 1) % k], "n_train": card["dataset"]["n_train"],
           "n_val": card["dataset"]["n_val"], "n_test": test["n"], "accuracy": test["accuracy"],
           "macro_f1": test["macro_f1"], "val_accuracy": val["accuracy"], "best_epoch": card.get("best_epoch"),
           "epochs_run": card.get("epochs_run"), "train_seconds": card.get("train_seconds"),
           "classes": test["classes"], "confusion_matrix": test["confusion_matrix"]}
    if "no_face" in test:
        res["no_face"] = test["no_face"]
    return res


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    # one fold (--only I) has no spread to measure: std None, not a misleading 0
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None,
            "min": float(a.min()), "max": float(a.max())}


def mean_pm_std(stats: dict) -> str:
    """``0.9502 +- 0.0328``; a single fold's mean says it has no std."""
    if stats["std"] is None:
        return f"{stats['mean']:.4f} (one fold: no std)"
    return f"{stats['mean']:.4f} +- {stats['std']:.4f}"


def summarize_folds(cfg: TrainConfig, folds: int, results: list[dict], subjects: list[list[str]],
                    seconds: float) -> dict:
    """The ``crossval.json`` content for the finished ``results`` (one dict per fold)."""
    results = sorted(results, key=lambda r: r["fold"])
    flat = [s for f in subjects for s in f]
    summary = {
        "model": cfg.model, "model_kwargs": cfg.model_kwargs, "dataset": cfg.dataset, "data": cfg.data,
        "folds": folds, "fold_seed": cfg.dataset_options.get("fold_seed", 0), "detect": cfg.detect,
        "protocol": f"{folds}-fold {fold_words(per_image(subjects))}: round i tests on fold i, selects the best "
                    f"epoch on fold i+1{SELECT_WORDS.get(cfg.select, '')}, trains on the other {folds - 2}",
        "subjects_per_fold": subjects, "subject_disjoint": len(flat) == len(set(flat)),
        "complete": len(results) == folds, "folds_done": [r["fold"] for r in results],
        "per_fold": [{k: v for k, v in r.items() if k not in ("classes", "confusion_matrix")} for r in results],
        "accuracy": _stats([r["accuracy"] for r in results]),
        "macro_f1": _stats([r["macro_f1"] for r in results]),
        "pooled": None,
        "seconds": round(seconds, 1),
        "command": cfg.command,
        "config": asdict(cfg),
    }
    if results:
        classes = results[0]["classes"]
        if any(r["classes"] != classes for r in results):
            raise FerkitError("the folds' models have different classes; cannot pool their confusion matrices")
        cm = np.sum([np.asarray(r["confusion_matrix"], dtype=np.int64) for r in results], axis=0)
        summary["pooled"] = summarize(cm, classes)
    return summary


def plot_folds(summary: dict, path: str | Path) -> None:
    """Bar chart of the test accuracy of each fold, the mean as a line."""
    from .._figure import subplots

    rows = summary["per_fold"]
    fig, ax = subplots(figsize=(1.6 + 0.55 * max(len(rows), 2), 3.4), dpi=110)
    ax.bar([str(r["fold"]) for r in rows], [r["accuracy"] for r in rows], color="#4c72b0")
    m = summary["accuracy"]
    if m["mean"] is not None:
        ax.axhline(m["mean"], color="red", lw=1.2, label=f"mean {mean_pm_std(m)}")
        ax.legend(loc="lower right", fontsize=8)
    for i, r in enumerate(rows):
        ax.text(i, r["accuracy"], f"{r['accuracy']:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("test fold")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{summary['model']} on {summary['dataset']}: {len(rows)} of {summary['folds']} folds", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def finish_summary(summary: dict, out: str | Path | None, log: Callable[[str], None]) -> dict:
    """Log the mean +- std over the test folds next to the selection folds' mean; write with ``out``."""
    a, rows = summary["accuracy"], summary["per_fold"]
    sel = float(np.mean([r["val_accuracy"] for r in rows]))
    log(f"{len(rows)} of {summary['folds']} folds: accuracy {mean_pm_std(a)}"
        f"{' (mean +- std over folds)' if len(rows) > 1 else ''}; selection folds {sel:.4f}")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_summary(summary, out)
    return summary


def summary_kind(s: dict) -> str:
    """What wrote a ``crossval.json``: ``"crossval-eval"`` (a re-evaluation: it lists the folders it
    read), ``"probe"`` (a linear probe) or ``"crossval"`` (a cross-validation with its rounds' models)."""
    if "runs" in s:
        return "crossval-eval"
    cfg = s.get("config")
    return "probe" if isinstance(cfg, dict) and cfg.get("model") == "probe" else "crossval"


def check_summary_out(out: str | os.PathLike | None, kind: str) -> None:
    """Before any work: ``--out`` of ``ferkit crossval-eval`` / ``probe`` (``kind``) holds no
    ``crossval.json`` of another kind (a cross-validation's, which ``--resume`` reads back as its
    settings): that would be overwritten. One of the same kind is a rerun's, replaced."""
    if out is None or not (Path(out) / SUMMARY).is_file():
        return
    try:
        found = summary_kind(json.loads((Path(out) / SUMMARY).read_text()))
    except (OSError, ValueError):
        found = "file ferkit cannot read"
    if found != kind:
        what = {"crossval": "cross-validation (`ferkit crossval`)", "probe": "probe's summary (`ferkit probe`)",
                "crossval-eval": "re-evaluation (`ferkit crossval-eval`)"}.get(found, found)
        raise FerkitError(f"--out {out} already holds a {what} in {SUMMARY}: it would be overwritten; choose "
                          f"another --out")


def write_summary(summary: dict, out: Path) -> None:
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if summary["pooled"] is not None:
        p = summary["pooled"]
        plot_confusion(p["confusion_matrix"], p["classes"], out / "crossval_confusion.png",
                       title=f"{summary['model']} on {summary['dataset']}, {len(summary['per_fold'])} test folds "
                             f"pooled: acc {p['accuracy']:.4f}")
        plot_folds(summary, out / "crossval_folds.png")


def crossval(cfg: TrainConfig, folds: int | None = 10, only: Sequence[int] | None = None, resume: bool = False,
             progress: bool | None = None, log: Callable[[str], None] = print,
             asked: Sequence[str] = ("dataset", "model"), keep: Sequence[str] = ()) -> dict:
    """Cross-validate ``cfg`` (its ``out`` is the cross-validation folder; its dataset options'
    ``fold`` is ignored) over ``folds`` subject-independent folds; ``only``: run just these
    rounds (the summary covers every finished one); None: 10, or a resumed cross-validation's own.
    Returns the summary (``crossval.json``).
    ``resume`` into a folder of another ``asked`` setting (dataset, model) is refused; ``keep``: the
    resumable settings (epochs, early_stop, time_budget, recalibrate_bn) the command left to their
    defaults, which a resume keeps from the cross-validation, as ``train``'s ``keep``."""
    marked = set(_WARNED_WARMUP)  # (a remark held back and never said is not marked as said)
    with warnings.catch_warnings(record=True) as said_early:  # (said once the dataset is known to have folds)
        warnings.simplefilter("always")
        check_settings(cfg)  # before anything is written: a bad setting leaves no folder behind
    out = Path(cfg.out)
    spath = out / SUMMARY
    cfg = dataclasses.replace(cfg, dataset_options={k: v for k, v in cfg.dataset_options.items() if k != "fold"})
    started = [d for d in sorted(out.glob("fold*")) if (d / "last.ckpt").exists()]
    new_command = cfg.command  # (a round resumed from its checkpoint joins it to its own first command itself)
    resumed_command = None  # the first command and this resume: the summary's once this resume trains a round
    asked_folds, folds = folds, 10 if folds is None else folds
    check_summary_out(out, "crossval")  # a probe's or crossval-eval's summary is neither resumed nor overwritten
    # a training run's folder (ferkit train, average, recalibrate): its model would sit beside the rounds, and
    # `evaluate --model OUT` would read it as this cross-validation's (with --resume too: it is no crossval)
    held = [f for f in ("model.safetensors", "last.ckpt") if (out / f).is_file()]
    if held:
        raise FerkitError(f"{out} holds a training run ({held[0]}), not a cross-validation: choose another --out "
                          f"(the rounds go in its fold00, fold01, ... subfolders)")
    if spath.exists() or started:
        if not resume:
            raise FerkitError(f"{out} already holds a cross-validation ({SUMMARY} or fold runs): pass --resume to "
                              f"continue it, or choose another --out")
        if spath.exists():
            prev = json.loads(spath.read_text())
            saved = TrainConfig.from_dict(prev["config"])
            # (a default the command did not name is not another count: --epochs 100 was refused as one)
            cfg = dataclasses.replace(cfg, **{k: getattr(saved, k) for k in set(keep) & RESUME_OVERRIDABLE})
            diff = {k for k, v in asdict(cfg).items() if k not in RESUME_OVERRIDABLE and asdict(saved).get(k) != v}
            diff -= set(keep)  # (a --model or --dataset left to its default: the run's own, no difference to say)
            diff.discard("out")
            # (``asked``: the settings the command named itself; a default left as it is resumes)
            other = [f"{k} {getattr(saved, k)!r} (asked: {getattr(cfg, k)!r})"
                     for k in ("dataset", "model", "model_kwargs") if k in diff and k in asked]
            if other:  # another experiment's folder: carrying it on under this command would mislead
                raise FerkitError(f"{out} holds a cross-validation of another {' and '.join(k.split()[0] for k in other)}"
                                  f": {', '.join(other)}; choose another --out, or resume it with its own")
            other_folds = asked_folds is not None and prev["folds"] != asked_folds  # (a count typed, not the default)
            if diff or other_folds:
                said = [differences(diff, cfg, saved)] if diff else []
                if other_folds:
                    said.append(f"folds ({folds}; the run's: {prev['folds']})")
                log(f"resuming with the cross-validation's saved settings; ignoring differing: {', '.join(said)}")
            if cfg.epochs != saved.epochs and cfg.time_budget is None and saved.time_budget is None:
                done = [i for i in range(int(prev["folds"])) if (fold_dir(out, i) / "model.safetensors").exists()]
                if done:  # one cross-validation, one recipe: its summary would give one count for both
                    raise FerkitError(f"{out}: round{'s' * (len(done) > 1)} {', '.join(map(str, done))} finished with "
                                      f"{saved.epochs} epochs; resuming with --epochs {cfg.epochs} would train the "
                                      f"others to another count: resume with --epochs {saved.epochs}, or start a new "
                                      f"--out")
                log(f"resuming with --epochs {cfg.epochs} (was {saved.epochs}; no round had finished)")
            # the same for the other settings of the recipe a resume may change: finished rounds keep theirs
            other = [(k, flag) for k, flag in (("early_stop", "--early-stop"), ("recalibrate_bn", "--recalibrate-bn"))
                     if getattr(cfg, k) != getattr(saved, k)]
            done = [i for i in range(int(prev["folds"])) if (fold_dir(out, i) / "model.safetensors").exists()]
            if other and done:
                said = ", ".join(f"{flag} {getattr(saved, k)} (asked: {getattr(cfg, k)})" for k, flag in other)
                raise FerkitError(f"{out}: round{'s' * (len(done) > 1)} {', '.join(map(str, done))} finished with "
                                  f"{said}: the rounds left would follow another recipe than theirs; resume without "
                                  f"it, or start a new --out")
            cfg = dataclasses.replace(saved, out=str(out), **{k: getattr(cfg, k) for k in RESUME_OVERRIDABLE})
            if saved.command and new_command and new_command != saved.command:  # the first command, then each resume
                # (kept by the summary once a round trains: a resume of a finished one, or of no round, is
                # no part of how the numbers were made)
                resumed_command = f"{saved.command}{RESUMED}{new_command}"
                cfg = dataclasses.replace(cfg, command=saved.command)
            folds = int(prev["folds"])
    try:
        subjects = fold_subjects(cfg, folds)  # validates the dataset and k
    except FerkitError:
        _WARNED_WARMUP.intersection_update(marked)  # (held back, never said: a later run in this process says it)
        raise
    for w in said_early:  # (a --warmup remark, say, before "fer2013 has official splits" misled)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    rounds = list(range(folds)) if only is None else sorted({int(i) for i in only})
    bad = [i for i in rounds if not 0 <= i < folds]
    if bad:
        raise FerkitError(f"fold(s) {', '.join(map(str, bad))} out of range: there are {folds} folds, 0..{folds - 1}")
    fresh, existed = not spath.exists() and not started, out.exists()
    if resume and fresh:
        log(f"{out}: no cross-validation to resume there: starting a new one")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    seconds = float(json.loads(spath.read_text()).get("seconds", 0.0)) if spath.exists() else 0.0

    def finished() -> list[dict]:
        return [_fold_result(fold_dir(out, i), i, subjects) for i in range(folds)
                if (fold_dir(out, i) / "model.safetensors").exists() and (fold_dir(out, i) / "metrics.json").exists()]

    write_summary(summarize_folds(cfg, folds, finished(), subjects, seconds), out)
    kind = ("folds of single images, NOT subject-independent (no subjects known)" if per_image(subjects)
            else "subject-independent folds")
    log(f"cross-validating {cfg.model} on {cfg.dataset}: {folds} {kind} "
        f"({', '.join(str(len(s)) for s in subjects)} subjects), rounds {', '.join(map(str, rounds))}, into {out}")
    for i in rounds:
        d = fold_dir(out, i)
        if (d / "model.safetensors").exists() and (d / "metrics.json").exists():
            log(f"fold {i}: finished earlier ({d}), kept")
            continue
        if resumed_command is not None:  # this resume trains: the summary's command says so from here on
            cfg, resumed_command = dataclasses.replace(cfg, command=resumed_command), None
        fcfg = dataclasses.replace(cfg, out=str(d), dataset_options={**cfg.dataset_options, "folds": folds, "fold": i},
                                   name=f"{cfg.name or out.name}-fold{i:02d}",
                                   command=new_command if (d / "last.ckpt").exists() else cfg.command)
        t0 = time.time()
        try:
            train(fcfg, resume=(d / "last.ckpt").exists(), progress=progress,
                  log=lambda s, i=i: log(f"[round {i + 1} of {folds}, test fold {i}] {s}"))
        except BaseException:
            if fresh and not any(fold_dir(out, k).exists() for k in range(folds)):
                # refused before any round began (an unknown model, a bad --model-arg, --init or
                # --teacher: train checks them before making its folder): leave nothing behind, or
                # the summary would hold the bad setting and block the same --out without --resume
                spath.unlink(missing_ok=True)
                if not existed:
                    with contextlib.suppress(OSError):
                        out.rmdir()
            raise
        seconds += time.time() - t0
        r = _fold_result(d, i, subjects)
        subj = r["test_subjects"]  # (an image folder without subjects: each image its own, named by its path)
        said = " ".join(subj) if len(subj) <= 12 else f"{len(subj)}: {' '.join(subj[:3])} ..."
        log(f"fold {i}: test accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f} (n={r['n_test']}, "
            f"subjects {said}) in {time.time() - t0:.0f}s")
        write_summary(summarize_folds(cfg, folds, finished(), subjects, seconds), out)
    summary = summarize_folds(cfg, folds, finished(), subjects, seconds)
    write_summary(summary, out)
    a, p = summary["accuracy"], summary["pooled"]
    if p is not None:
        several = len(summary["per_fold"]) > 1
        # each figure says what it is: the fold mean's macro-F1 beside the fold mean's accuracy, the pooled ones
        # (every test image once) together (the fold mean's macro-F1 followed the pooled accuracy, read as pooled)
        log(f"{len(summary['per_fold'])} of {folds} folds: accuracy {mean_pm_std(a)}, macro-F1 "
            f"{summary['macro_f1']['mean']:.4f}{' (means +- std over folds)' if several else ''}; pooled: accuracy "
            f"{p['accuracy']:.4f}, macro-F1 {p['macro_f1']:.4f}; {out / SUMMARY} ({time.time() - t_start:.0f}s)")
    return summary


# settings the cross-validations averaged by evaluate_crossval must share (the protocol)
_SAME_PROTOCOL = ("dataset", "folds", "fold_seed", "detect", "subjects_per_fold")


def evaluate_crossval(runs: Sequence[str | Path], tta: str | None = None, out: str | Path | None = None,
                      command: str = "", batch_size: int = 256, log: Callable[[str], None] = print,
                      progress: bool | None = None) -> dict:
    """Evaluate finished cross-validations again, without training: round ``i``'s model (or, for
    several runs of one protocol, the mean of their round-``i`` models' probabilities) on its
    selection fold ``i + 1`` and its test fold ``i``, with test-time augmentation ``tta``.

    Returns (and, with ``out``, writes as ``out/crossval.json`` with its plots) a summary shaped like
    :func:`crossval`'s, plus ``runs`` and ``tta``; its ``config`` is the first run's. So seed ensembles
    and TTA on k-fold protocols are chosen the way every ferkit number is: on the selection folds
    (``per_fold[i]["val_accuracy"]``), then reported on the test folds."""
    from ..api import load_model
    from .evaluate import evaluate
    from .train import face_crop

    runs = [Path(r) for r in runs]
    if not runs:
        raise FerkitError("name at least one cross-validation folder")
    sums = []
    for r in runs:
        if not r.exists():
            raise FerkitError(f"{r}: no such folder")
        if not (r / SUMMARY).is_file():
            raise FerkitError(f"{r}: no {SUMMARY}; is it a `ferkit crossval` folder?")
        try:
            s = json.loads((r / SUMMARY).read_text())
            s["folds"], s["folds_done"], s["config"]  # noqa: B018 - the keys used below
            int(s["folds"]), [int(i) for i in s["folds_done"]]
            TrainConfig.from_dict(s["config"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise FerkitError(f"{r / SUMMARY} is not a ferkit crossval summary ({type(e).__name__}: {e})") from None
        kind = summary_kind(s)
        if kind != "crossval":
            raise FerkitError(f"{r}: its {SUMMARY} is a{' re-evaluation' if kind == 'crossval-eval' else ' probe'}'s "
                              f"summary, without the rounds' models; crossval-eval reads the folders `ferkit crossval` "
                              f"writes")
        sums.append(s)
    base = sums[0]
    for r, s in zip(runs[1:], sums[1:]):
        diff = [k for k in _SAME_PROTOCOL if (dataset_key(s.get(k, "")) != dataset_key(base.get(k, "")) if k == "dataset"
                                              else s.get(k) != base.get(k))]
        if diff:
            raise FerkitError(f"{r} and {runs[0]} are not the same protocol (they differ in {', '.join(diff)}): "
                              f"only rounds of the same folds can be averaged")
    folds = int(base["folds"])
    done = sorted(set.intersection(*(set(s["folds_done"]) for s in sums)))
    if not done:
        raise FerkitError(f"no round is finished in every one of {', '.join(map(str, runs))}")
    left = sorted(set().union(*(set(s["folds_done"]) for s in sums)) - set(done))
    if left:
        log(f"rounds {', '.join(map(str, left))} are not finished in every folder: evaluating the "
            f"{len(done)} that are ({', '.join(map(str, done))})")
    if out is not None and any(Path(out).resolve() == Path(r).resolve() for r in runs):
        raise FerkitError(f"--out {out} is one of the cross-validation folders read: its crossval.json would be "
                          f"overwritten; write into another folder")
    cfg = TrainConfig.from_dict(base["config"])
    opts = {k: v for k, v in cfg.dataset_options.items() if k not in ("folds", "fold")}
    det = None if cfg.detect in (None, "none") else cfg.detect
    t0 = time.time()
    results, failed = [], []
    for i in done:
        try:  # a round whose model is missing or broken is reported, and the other rounds evaluated
            for r in runs:
                if not fold_dir(r, i).is_dir():
                    raise FerkitError(f"{fold_dir(r, i)}: round {i}'s model is missing ({r / SUMMARY} lists the "
                                      f"round as done; was the folder moved or copied without its fold folders?)")
            model = load_model("+".join(str(fold_dir(r, i)) for r in runs), backend="torch")
        except FerkitError as e:
            failed.append({"fold": i, "error": str(e)})
            log(f"fold {i}: not evaluated: {e}")
            continue
        reader = open_dataset(cfg.dataset, cfg.data, **opts, folds=folds, fold=i)
        c, h, w = model.input_size
        mode = "L" if c == 1 else "RGB"
        crop = face_crop(cfg, reader.classes, (h, w), mode)
        val, test = (reader.load(sp, size=(h, w), mode=mode, progress=progress, **crop) for sp in ("val", "test"))
        # a run trained with --limit was selected and tested on the same subsets: repeat them
        val, test = _limit(val, cfg.limit, cfg.seed + 1), _limit(test, cfg.limit, cfg.seed + 2)
        vm, tm = (evaluate(model, ds, tta=tta, batch_size=batch_size, detector=det) for ds in (val, test))
        res = {"fold": i, "test_subjects": base["subjects_per_fold"][i], "val_fold": (i + 1) % folds,
               "val_subjects": base["subjects_per_fold"][(i + 1) % folds], "n_val": vm["n"], "n_test": tm["n"],
               "accuracy": tm["accuracy"], "macro_f1": tm["macro_f1"], "val_accuracy": vm["accuracy"],
               "val_loss": vm["loss"], "classes": tm["classes"], "confusion_matrix": tm["confusion_matrix"]}
        if "no_face" in tm:
            res["no_face"] = tm["no_face"]
        results.append(res)
        log(f"fold {i}: selection fold {vm['accuracy']:.4f}, test fold {tm['accuracy']:.4f} (n={tm['n']})")
    if not results:
        raise FerkitError(f"no round could be evaluated; round {failed[0]['fold']}: {failed[0]['error']}")
    summary = summarize_folds(cfg, folds, results, base["subjects_per_fold"], time.time() - t0)
    if failed:
        summary["failed_rounds"] = failed
    what = "the mean of " + " + ".join(map(str, runs)) + " (each round's models)" if len(runs) > 1 else str(runs[0])
    limited = f", at most {cfg.limit} images per fold as in training (--limit)" if cfg.limit else ""
    summary.update({"protocol": base["protocol"] + f"; evaluated again: {what}, tta {tta or 'none'}{limited}",
                    "runs": [str(r) for r in runs], "run_commands": [s["command"] for s in sums],
                    "run_seeds": [s["config"].get("seed", 0) for s in sums],
                    "tta": tta or "none", "command": command})
    return finish_summary(summary, out, log)
