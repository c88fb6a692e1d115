"""The ``ferkit`` command: one verb per job. ``ferkit VERB --help`` explains each."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import SEED_MAX, FerkitError

EPILOG = """examples:
  ferkit models
  ferkit data --dataset ferplus --data ../shared/data/ferplus
  ferkit train --model mini_xception --dataset fer2013 --data ../shared/data/fer2013 --out runs/mx
  ferkit evaluate --model default --dataset fer2013 --data ../shared/data/fer2013 --split PrivateTest --json r.json
  ferkit crossval --model mini_xception --dataset ckplus --data ../shared/data/ckplus48 --folds 10 --out runs/cv
  ferkit predict examples/astronaut.jpg
  ferkit export --model default --format onnx --out fer.onnx
  ferkit serve --port 8000

docs/ and examples/, named in these help texts, are in ferkit's source repository (a
wheel or sdist holds the package, README and LICENSE only).
"""


# ---------------------------------------------------------------------------------------
# shared argument groups
# ---------------------------------------------------------------------------------------
def _model_help(tta: bool = True) -> str:
    """--model's help; ``tta``: the verb has --tta (serve has not)."""
    from .weights import ALIASES

    return (f"shipped name or alias (`ferkit models`; default = {ALIASES['default']}; best-fer2013 / best-ferplus: "
            f"the most accurate on FER2013 / FER+{', more with --tta flip' if tta else ''}; fast: the fastest, less "
            "accurate), .safetensors file, run folder or .onnx export (`ferkit export`); A+B+C: an ensemble "
            "(mean probabilities)")


def _int8_note() -> str:
    """What static int8 costs the default in accuracy, from its shipped ranges' report and its card
    (FER2013 PrivateTest), so --backend/--int8 help cannot go stale when the default changes."""
    from .weights import ALIASES, INT8_DIR, SHIPPED_DIR

    name = ALIASES["default"]
    try:
        q = json.loads((INT8_DIR / f"{name}.json").read_text())["int8_metrics"]["splits"]["PrivateTest"]["accuracy"]
        f = json.loads((SHIPPED_DIR / f"{name}.json").read_text())["metrics"]["PrivateTest"]["accuracy"]
    except (OSError, KeyError, TypeError, ValueError):
        return "the default's accuracy change: `ferkit models`"
    return f"{100 * (f - q):.2f} points {'less' if q <= f else 'more'} accurate on FER2013 PrivateTest for the default"


MODEL_HELP = _model_help()
#: what --plot may end in (matplotlib's formats; none: .png)
PLOT_SUFFIXES = frozenset({"", ".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp"})
TTA_HELP = ("test-time augmentation: flip (each face and its mirror, 2x the classifier's cost) or tencrop (the "
            "four corner and the centre crops of 90%% size, each mirrored: 10x); the views' probabilities "
            "are averaged")


def _add_backend_arg(s: argparse.ArgumentParser, gpu: bool = True) -> None:
    s.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto",
                   help="classifier runtime: onnx (onnxruntime, several times faster on CPU), onnx-int8 "
                        "(int8-quantised: static from shipped ranges where ferkit has them, 2.4-3.7x faster "
                        f"than onnx on our 2-core CPUs (docs/benchmarks_classifier.md), {_int8_note()}; else "
                        "dynamic), torch (PyTorch); auto: " + (
                            "onnx on the CPU, torch on a GPU" if gpu else "onnx (the server runs on the CPU)"))


def _add_detect_args(s: argparse.ArgumentParser, detect_help: str) -> None:
    """--detect and --min-face (train, crossval, evaluate: datasets of full photos)."""
    g = s.add_argument_group("faces (for datasets of full photos such as JAFFE or KDEF)")
    g.add_argument("--detect", "--detector", choices=["none", "mtcnn", "haar"], default="none", help=detect_help)
    g.add_argument("--min-face", type=int, default=20, metavar="PX",
                   help="with --detect: smallest face searched for, in pixels")


def _add_dataset_args(p: argparse.ArgumentParser, required: bool = True, kfold: bool = False) -> None:
    """--dataset, --data and the readers' options; ``kfold``: for the k-fold commands (crossval):
    their datasets, without the options of datasets with official splits (--vote, --clean-from;
    hidden, and left to the reader to refuse) or --fold (each round's)."""
    g = p.add_argument_group("dataset")
    hide = argparse.SUPPRESS if kfold else None
    g.add_argument("--dataset", required=required, metavar="NAME",
                   help="ckplus | jaffe | kdef | imagefolder (a dataset of subjects, or a flat folder of <class>/ "
                        "folders; FER2013, FER+ and RAF-DB have official splits: `ferkit train`)" if kfold else
                        "fer2013 | ferplus | ckplus | jaffe | rafdb | kdef | imagefolder")
    g.add_argument("--data", required=required, metavar="PATH", help="the dataset's folder (or fer2013.csv)")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip (and count) unreadable images and malformed rows instead of stopping at the first")
    g.add_argument("--vote", choices=["majority", "strict"], default=None,
                   help=hide or "ferplus: label rule: 'majority' = most-voted of the 10 columns, dropping unknown / "
                        "not-a-face (default); 'strict' = Microsoft's rule (>50%% after removing single votes)")
    g.add_argument("--folds", type=int, default=None, metavar="K",
                   help="ckplus/jaffe/kdef/imagefolder: number of subject-independent folds (default 10; evaluate: "
                        "a fold run's own, from its card)")
    g.add_argument("--fold", type=int, default=None, metavar="I",
                   help=hide or "cross-validation round: fold I is 'test', fold I+1 'val', the rest 'train' "
                                "(default 0; evaluate: a fold run's own round, from its card)")
    g.add_argument("--fold-seed", type=seed_int, default=None, metavar="S",
                   help="seed of the subject-to-fold assignment (default 0; evaluate: a fold run's own)")
    g.add_argument("--angles", default=None, metavar="A,B", help="kdef: views to keep, e.g. S or S,HL,HR (default all)")
    g.add_argument("--clean-from", default=None, metavar="FERPLUS_DIR",
                   help=hide or "fer2013 image folders: replace blurred Training images by their clean twins from a FER+ "
                        "folder (FER2013Train/ holds the same faces), keeping FER2013 labels; see docs/data-notes.md")


def _dataset_options(a: argparse.Namespace) -> dict:
    opts = {"skip_bad": a.skip_bad or None, "vote": a.vote, "folds": a.folds, "fold": a.fold,
            "fold_seed": a.fold_seed, "angles": tuple(a.angles.split(",")) if a.angles else None,
            "clean_from": a.clean_from}
    return {k: v for k, v in opts.items() if v is not None}


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return v


def _kv(items: Sequence[str]) -> dict:
    out = {}
    for it in items or ():
        if "=" not in it:
            raise FerkitError(f"--model-arg wants KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            try:
                out[k] = float(v)  # ".5", "1e-3." : numbers JSON does not spell
            except ValueError:
                out[k] = v
                if "," in v:  # "16,24,64,192", as `ferkit models` shows a list: that list
                    try:
                        out[k] = json.loads(f"[{v}]")
                    except json.JSONDecodeError:
                        pass
    return out


# ---------------------------------------------------------------------------------------
# verbs
# ---------------------------------------------------------------------------------------
#: ferkit's cache folders: (subfolder, what it holds)
CACHE_PARTS = (("datasets", "decoded dataset splits"), ("onnx", "models exported for onnxruntime"),
               ("matches", "FER2013 Training's clean twins in FER+ (--clean-from)"))


def cmd_cache(a: argparse.Namespace) -> int:
    """``ferkit cache``: where ferkit's cache is, what it holds; ``--clear`` empties it. Only the
    files directly in its own subfolders are counted and removed (not links, not other folders:
    ``$FERKIT_CACHE`` may name a folder that holds more)."""
    from ._paths import cache_dir

    root = cache_dir()
    parts = []
    for name, what in CACHE_PARTS:
        d = root / name
        files = []
        if d.is_dir() and not d.is_symlink():
            for f in sorted(d.iterdir()):
                with contextlib.suppress(OSError):
                    if f.is_file() and not f.is_symlink():
                        files.append((f, f.stat().st_size))
        removed, failed = 0, []
        if a.clear:
            for f, _ in files:
                try:
                    f.unlink()
                    removed += 1
                except FileNotFoundError:
                    removed += 1  # (gone meanwhile: another process cleared it)
                except OSError as e:
                    failed.append(f"{f}: {e.strerror or e}")
        parts.append({"name": name, "what": what, "folder": str(d), "files": len(files),
                      "bytes": sum(n for _, n in files), **({"removed": removed, "failed": failed} if a.clear else {})})
    total = sum(p["bytes"] for p in parts)
    if a.json:
        print(json.dumps({"cache": str(root), "env": "FERKIT_CACHE", "parts": parts, "bytes": total,
                          "cleared": bool(a.clear)}, indent=2))
    else:
        print(f"ferkit's cache: {_shown(root)} (set $FERKIT_CACHE to move it)")
        for p in parts:
            print(f"  {p['name']:<9} {p['files']:>6} files {p['bytes'] / 1e6:>9.1f} MB   {p['what']}")
        print(f"  {'total':<9} {sum(p['files'] for p in parts):>6} files {total / 1e6:>9.1f} MB")
        if a.clear:
            gone = sum(p["removed"] for p in parts)
            print(f"removed {gone} file(s), {total / 1e6:.1f} MB" if not any(p["failed"] for p in parts) else
                  f"removed {gone} file(s); not removed:")
        elif total:
            print("each entry is made again when next needed; `ferkit cache --clear` removes them")
    errors = [e for p in parts for e in p.get("failed", [])]
    for e in errors[:20]:
        print(f"  {_shown(e)}", file=sys.stderr)
    return 1 if errors else 0


def cmd_models(a: argparse.Namespace) -> int:
    from . import weights
    from .models import count_params, create, list_models
    from .models.registry import builder_options

    archs = []
    for s in list_models():
        opts = {k: v for k, v in builder_options(s.name).items() if v is None or isinstance(v, (bool, int, float, str))}
        archs.append({"name": s.name, "params": count_params(create(s.name)), "input_size": list(s.input_size),
                      "paper": s.paper, "summary": s.summary, "options": opts})
    cards = weights.shipped()
    aliases: dict[str, list[str]] = {}  # a file may have several names (default and best-fer2013)
    for k, v in weights.ALIASES.items():
        aliases.setdefault(v, []).append(k)
    int8 = {}  # name -> what its shipped int8 ranges say (static int8 with --backend onnx-int8)
    for c in cards:
        r = weights.int8_ranges(weights.SHIPPED_DIR / f"{c['name']}.safetensors")
        if r is not None:
            int8[c["name"]] = {"calibration": r.get("calibration"), "metrics": r.get("int8_metrics")}
    if a.json:
        cards = [{**c, **({"int8_static": int8[c["name"]]} if c["name"] in int8 else {})} for c in cards]
        print(json.dumps({"architectures": archs, "weights": cards, "aliases": weights.ALIASES}, indent=2))
        return 0
    print("architectures (ferkit.models.create(name, num_classes=...); parameters at their default options):")
    for r in archs:
        print(f"  {r['name']:<16} {r['params']:>9,} params  input {'x'.join(map(str, r['input_size']))}  "
              f"{r['summary']}  [{r['paper']}]")
        if r["options"]:  # what --model-arg takes, at its defaults (width: base channels in one, a multiplier in
            # another)
            print(f"  {'':<16} --model-arg options (defaults): "
                  + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in r["options"].items()))
    print("\nshipped weights (ferkit.load_model(name)):")
    if not cards:
        print("  (none)")
    from . import labels as L

    def classes_said(cl: list[str]) -> str:
        """``7 classes``, and how they differ from the usual seven (CK+'s contempt, FER+'s eighth)."""
        extra = [c for c in cl if c not in L.CANONICAL]
        missing = [c for c in L.CANONICAL if c not in cl]
        return f"{len(cl)} classes" + (f" ({', '.join([*(f'with {c}' for c in extra), *(f'no {c}' for c in missing)])})"
                                       if extra or missing else "")

    def size_mb(c: dict) -> float:
        """What loading it reads: its file, and for a file of differences (-bn) its base's too."""
        own = (weights.SHIPPED_DIR / f"{c['name']}.safetensors").stat().st_size
        base = c.get("base")
        if isinstance(base, dict) and (weights.SHIPPED_DIR / f"{base.get('name')}.safetensors").is_file():
            own += (weights.SHIPPED_DIR / f"{base['name']}.safetensors").stat().st_size
        return own / 1e6

    rows = []
    for c in cards:
        ms = "  ".join(f"{split} acc {m['accuracy']:.4f}" for split, m in c.get("metrics", {}).items())
        if "crossval" in c:  # a k-fold protocol: its number first; the file is one round of it
            cv = c["crossval"]
            sd = cv.get("accuracy_std")
            ms = (f"{cv['folds']}-fold CV acc {cv['accuracy_mean']:.4f}"
                  + (f" +- {sd:.4f}  " if sd is not None else " (one fold)  ") +
                  f"(this file: round {cv['this_round']}, {ms})")
        rows.append((c["name"] + (f" (= {', '.join(aliases[c['name']])})" if c["name"] in aliases else ""),
                     " ".join([c["architecture"], *(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                                                    for k, v in (c.get("arch_kwargs") or {}).items())]),
                     f"{size_mb(c):4.1f} MB  "
                     f"{classes_said(c['classes'])}  {ms}", int8.get(c["name"]), c.get("base")))
    w0 = max((len(r[0]) for r in rows), default=0) + 2
    w1 = max((len(r[1]) for r in rows), default=0) + 2
    for name, arch, rest, q8, base in rows:
        print(f"  {name:<{w0}}{arch:<{w1}}{rest}")
        if isinstance(base, dict):  # a file of differences: say from what
            print(f"  {'':<{w0}}{'':<{w1}}{base.get('name')} with its batch-norm statistics re-estimated "
                  f"(ferkit recalibrate): this file holds the {base.get('tensors')} tensors that differ (the size "
                  f"counts both files)")
        if q8 is not None:  # the int8 model's own numbers (it rounds differently from the card's float32 ones)
            m = q8["metrics"] or {}
            got = "  ".join(f"{s} acc {v['accuracy']:.4f}" for s, v in m.get("splits", {}).items())
            print(f"  {'':<{w0}}{'':<{w1}}static int8 (--backend onnx-int8): "
                  + (f"{got}  (measured on {m.get('cpu', 'an unnamed processor')})" if got else "ranges shipped"))
    for alias, target in weights.ALIASES.items():
        if "+" in target:
            print(f"  {alias:<{w0}}ensemble of {' + '.join(target.split('+'))} (mean probabilities)")
    print("\nnames: <architecture>-<dataset trained on>; -bn: batch-norm statistics re-estimated (ferkit "
          "recalibrate); -s1: a second run with another seed; -r2: a second round of training, started "
          "from the first network (-r2s1: that with seed 1); -fromferplus: fine-tuned from the FER+ network; "
          "-ckplus and -jaffe: round 0 of their cross-validation (the CV number is the rounds' mean). Accuracies "
          "are the card's: selection split, then test split. docs/results.md has every row with the command "
          "that measured it.")
    return 0


def cmd_data(a: argparse.Namespace) -> int:
    from .data import open_dataset

    reader = open_dataset(a.dataset, a.data, **_dataset_options(a))
    _warn_unused_folds(a, reader)
    splits = [a.split] if a.split else list(reader.splits)
    report = {"dataset": reader.name, "root": str(reader.root), "classes": list(reader.classes),
              "layout": reader.layout, "splits": {}}
    left_out: dict[str, str] = {}  # source -> reason, over the splits (a file in two splits once)
    for s in splits:
        report["splits"][reader.resolve_split(s)] = reader.summary(s, None if a.check else left_out)
    # the folds, unless every image is asked for without them (--split all: too few subjects for
    # the folds is where the advice to use it comes from)
    if getattr(reader, "has_folds", False) and set(report["splits"]) != {"all"}:
        recs, skipped = reader.all_records()
        if not recs:
            raise reader.none_found(skipped)
        folds = reader.fold_indices(recs)
        subj = [sorted({recs[i].subject for i in f}) for f in folds]
        report["folds"] = [{"fold": i, "n": len(f), "subjects": subj[i]} for i, f in enumerate(folds)]
        report["folds_subject_disjoint"] = len(set().union(*map(set, subj))) == sum(map(len, subj))
        # an image folder without subjects: each image is its own (as listed, before any decoding)
        report["folds_per_image"] = all(len(s_) == len(f) for s_, f in zip(subj, folds))
    # a folded reader's files left out of the listing (a notes.txt beside the images) belong to no
    # split: counted once, not in each split's row
    listing: set[str] = set()
    if getattr(reader, "has_folds", False) and set(report["splits"]) != {"all"}:
        listing = {src for src, _ in skipped}
        for k, r in report["splits"].items():
            r["skipped"] = len(listing) if k == "all" else 0
        report["skipped_listing"] = len(listing)
    if a.check:
        from .data.restore import shift_warnings, split_stats

        stats = []
        for s in report["splits"]:
            with warnings.catch_warnings():  # what is left out is listed below, once
                warnings.simplefilter("ignore")
                ds = reader.load(s)
            left_out.update(dict(ds.skipped))  # the listing's and the decoding's
            # the table counts what decoded, and leaves out what did not (it counted the listing)
            report["splits"][s].update(n=len(ds), per_class=ds.class_counts(),
                                       skipped=sum(s == "all" or src not in listing for src, _ in ds.skipped),
                                       subjects=len({x for x in ds.subjects if x is not None}))
            st = split_stats(ds.images, s)
            stats.append(st)
            report["splits"][s]["image_stats"] = {"sharpness": st.sharpness, "contrast": st.contrast,
                                                  "brightness": st.brightness}
        report["warnings"] = shift_warnings(stats)
        report["notes"] = list(getattr(reader, "notes", []))
        if "folds" in report:  # the folds count what decoded too, as the table does
            for f, idx in zip(report["folds"], folds):
                kept = [i for i in idx if recs[i].source not in left_out]
                f["n"] = len(kept)
                # a subject none of whose images decodes gives its fold nothing: not listed as one of its
                # subjects, but named apart (the folds are dealt from the listing, as crossval deals them)
                readable = {recs[i].subject for i in kept}
                gone = [x for x in f["subjects"] if x not in readable]
                if gone:
                    f["subjects"] = [x for x in f["subjects"] if x in readable]
                    f["subjects_unreadable"] = gone
    report["left_out"] = [{"source": k, "reason": v} for k, v in left_out.items()]
    if a.json:
        print(json.dumps(report, indent=2))
        return 0
    vote = f", {reader.vote} vote labels" if getattr(reader, "vote", None) else ""
    print(f"{reader.name} at {reader.root}  ({reader.layout}{vote})")
    w = max(len(c) for c in reader.classes)
    head = f"  {'split':<12} {'n':>6}  " + " ".join(f"{c[:w]:>{max(6, len(c))}}" for c in reader.classes)
    print(head)
    for s, r in report["splits"].items():
        row = " ".join(f"{r['per_class'][c]:>{max(6, len(c))}}" for c in reader.classes)
        extra = f"  subjects {r['subjects']}" if r["subjects"] and not report.get("folds_per_image") else ""
        extra += f"  skipped {r['skipped']}" if r["skipped"] else ""
        print(f"  {s:<12} {r['n']:>6}  {row}{extra}")
    if listing and "all" not in report["splits"]:
        print(f"  (and {len(listing)} file(s) of the folder left out before the folds were dealt: listed below)")
    if left_out:
        what = "listed or decoded" if a.check else "listed; --check also decodes every image"
        print(f"\n  left out: {len(left_out)} item(s) ({what}):")
        for k, v in list(left_out.items())[:20]:
            print(f"    {k}: {v}")
        if len(left_out) > 20:
            print(f"    ... and {len(left_out) - 20} more (--json lists them all)")
    if a.check:
        print("\n  image statistics (medians over up to 2000 images per split):")
        print(f"  {'split':<12} {'sharpness':>9} {'contrast':>9} {'brightness':>10}")
        for s, r in report["splits"].items():
            st = r["image_stats"]
            print(f"  {s:<12} {st['sharpness']:>9.3f} {st['contrast']:>9.1f} {st['brightness']:>10.1f}")
        for n in report["notes"]:
            print(f"  note: {n}")
        for w_ in report["warnings"]:
            print(f"  WARNING: {w_}")
        if not report["warnings"]:
            print("  no train/test shift in sharpness or contrast (brightness listed, not judged)")
    if "folds" in report:
        per_image = report["folds_per_image"]
        if per_image:  # an image folder without subjects: each image is its own
            print(f"\n  {len(report['folds'])} folds (fold_seed {reader.fold_seed}) of single images: no subject is "
                  f"known, so each image counts as one; NOT subject-independent (near-identical images of one "
                  f"person can fall in train and test)")
        else:
            print(f"\n  {len(report['folds'])} subject-independent folds (fold_seed {reader.fold_seed}); "
                  f"subject-disjoint: {report['folds_subject_disjoint']}")
        for f in report["folds"]:
            subjects = f["subjects"]
            shown = " ".join(subjects) if len(subjects) <= 20 else \
                " ".join(subjects[:8]) + f" ... ({len(subjects)} in all; --json lists them)"
            gone = f.get("subjects_unreadable", [])
            if gone and not per_image:  # (--check: listed, but none of their images decodes)
                names = " ".join(gone) if len(gone) <= 20 else " ".join(gone[:8]) + f" ... ({len(gone)} in all)"
                shown = (shown or "none") + f"; without an image that decodes: {names}"
            print(f"    fold {f['fold']}: {f['n']:>4} images" + ("" if per_image else f", subjects {shown}"))
    return 0


def _warn_whole_frames(a: argparse.Namespace) -> None:
    """A warning when a dataset of full photos (JAFFE, KDEF) is read without --detect: each whole
    frame would be shrunk to the network's input, not its face."""
    from .data.readers import READERS, dataset_key

    cls = READERS.get(dataset_key(getattr(a, "dataset", "")))
    if cls is not None and cls.full_photos and getattr(a, "detect", "none") == "none":
        print(f"ferkit: warning: {cls.name} holds full photos, not face crops: without --detect each whole "
              f"frame is shrunk to the network's input, far from the faces it learns from (add --detect mtcnn)",
              file=sys.stderr)


#: the settings a resumed run or cross-validation takes from the command, each only where it is named
#: (left to its default, the run's own stays: --epochs 100 took a finished 2-epoch run on to 100)
RESUME_FLAGS = (("epochs", "--epochs"), ("early_stop", "--early-stop"), ("time_budget", "--time-budget"),
                ("recalibrate_bn", "--recalibrate-bn"))


def _given(a: argparse.Namespace, flag: str) -> bool:
    """Whether the command line named ``flag`` itself (not left to its default), in any spelling the
    parser took: ``--epoch 30`` (an abbreviation) or ``--detector`` for ``--detect`` too (worked out on
    the first call, as ``given_flags``: only the verbs that ask pay for it, not every start-up; a
    namespace made by hand, without a verb, is read from its ``argv`` words)."""
    if not hasattr(a, "given_flags") and getattr(a, "verb", None) and getattr(a, "argv", None) is not None:
        a.given_flags = _given_flags(a.argv, a.verb)
    flags = getattr(a, "given_flags", None)
    if flags is not None:
        return flag in flags
    return any(t == flag or t.startswith(flag + "=") for t in getattr(a, "argv", None) or [])


#: the options that set a TrainConfig field whose own name, dashed, is not its option
FIELD_FLAGS = {"model_kwargs": ("--model-arg",), "warmup_epochs": ("--warmup",), "amp": ("--no-amp",),
               "deterministic": ("--nondeterministic",),
               "augment": ("--aug", "--flip", "--shift", "--rotate", "--scale", "--brightness", "--contrast",
                           "--erase"),
               "dataset_options": ("--skip-bad", "--vote", "--folds", "--fold", "--fold-seed", "--angles",
                                   "--clean-from")}


def _left_default(a: argparse.Namespace) -> list[str]:
    """The settings (TrainConfig fields) the command leaves to their defaults, which a resume keeps
    from its run unsaid (train's and crossval's ``keep``): :data:`RESUME_FLAGS`, --model and
    --dataset among them; a difference in one of the others is said only where it was typed."""
    from .engine.train import TrainConfig

    # (device and threads are this machine's: a resume elsewhere takes the command's, typed or not)
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("command", "out", "device", "threads")]
    return [k for k in fields if not any(_given(a, flag) for flag in FIELD_FLAGS.get(k, ("--" + k.replace("_", "-"),)))]


def _card_dataset_is(card: dict, dataset: str) -> bool:
    """Whether the model's card names ``dataset`` as the one it was trained on ("ck" and "CK+" are ckplus)."""
    from .data.readers import dataset_key

    name = (card.get("dataset") or {}).get("name")
    return bool(name) and dataset_key(name) == dataset_key(dataset)


def _given_flags(args: Sequence[str], verb: str | None) -> set[str] | None:
    """Every option string of the options ``args`` set (all spellings of each), as the parser reads
    them: parsed again with every default suppressed, what is left in the namespace was given.
    None where that cannot be told (then :func:`_given` reads the words)."""
    parser = build_parser()

    def suppress(p: argparse.ArgumentParser) -> None:
        p._defaults.clear()  # (set_defaults: fn)
        for act in p._actions:
            if isinstance(act, argparse._SubParsersAction):
                for sub in act.choices.values():
                    suppress(sub)
            else:
                act.default = argparse.SUPPRESS

    suppress(parser)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ns, _ = parser.parse_known_args(list(args))
    except SystemExit:
        return None
    sub = next((x for x in parser._actions if isinstance(x, argparse._SubParsersAction)), None)
    p = sub.choices.get(verb) if sub is not None and verb else None
    dests = set(vars(ns))
    return {o for act in (p or parser)._actions if act.dest in dests for o in act.option_strings}


def _warn_unused_folds(a: argparse.Namespace, reader) -> None:
    """--folds/--fold/--fold-seed given for a dataset read by its own splits (FER2013, an image folder
    of train/ and test/...): said to do nothing, not ignored in silence."""
    idle = not getattr(reader, "has_folds", False)
    why = f"{reader.name} here has its own splits ({', '.join(reader.splits)}), not folds"
    _warn_unused(a, [(flag, idle, why) for flag in ("--folds", "--fold", "--fold-seed")])


def _warn_unused(a: argparse.Namespace, pairs: list[tuple[str, bool, str]]) -> None:
    """One warning per option given where it does nothing: ``(flag, idle, why)``."""
    for flag, idle, why in pairs:
        if idle and _given(a, flag):
            print(f"ferkit: warning: {flag} does nothing here: {why}", file=sys.stderr)


def _train_config(a: argparse.Namespace):
    """The TrainConfig of `ferkit train` (and `ferkit crossval`) arguments."""
    from .data.transforms import AugmentConfig
    from .engine.train import TrainConfig

    _warn_whole_frames(a)
    if a.name is not None and (re.search(r"[/\\\x00-\x1f\x7f]", a.name) or a.name.strip(". ") == ""):
        raise FerkitError(f"--name {a.name!r}: a model's name names files (its export, `ferkit models`): no slashes, "
                          f"control characters or bare dots")
    no_teacher = not a.teacher
    _warn_unused(a, [("--kd-weight", no_teacher, "no --teacher"), ("--kd-temperature", no_teacher, "no --teacher"),
                     ("--teacher-tta", no_teacher, "no --teacher"),
                     ("--momentum", a.optimizer != "sgd", "--optimizer sgd only"),
                     ("--min-face", a.detect == "none", "without --detect no face is searched for"),
                     ("--aux-epochs", a.aux_weight == 0, "--aux-weight 0 turns the auxiliary losses off")])

    if a.warmup < 0:
        raise FerkitError(f"--warmup must be 0 or more epochs, got {a.warmup}")
    # (a --warmup as long as the run: training warns, once, saying how far the rate gets)
    aug = AugmentConfig.none() if a.aug == "none" else AugmentConfig()
    for k in ("flip", "shift", "rotate", "scale", "brightness", "contrast", "erase"):
        v = getattr(a, k)
        if v is not None:
            setattr(aug, k, v)
    return TrainConfig(
        model=a.model, model_kwargs=_kv(a.model_arg), dataset=a.dataset, data=a.data, out=a.out,
        dataset_options=_dataset_options(a), train_split=a.train_split, val_split=a.val_split,
        test_split=a.test_split, val_fraction=a.val_fraction, epochs=a.epochs, batch_size=a.batch_size,
        optimizer=a.optimizer, lr=a.lr, weight_decay=a.weight_decay, momentum=a.momentum, schedule=a.schedule,
        warmup_epochs=a.warmup, label_smoothing=a.label_smoothing, class_weights=a.class_weights,
        soft_targets=a.soft_targets, augment=aug.to_dict(), seed=a.seed, device=a.device, amp=not a.no_amp,
        cpu_amp=a.cpu_amp, recalibrate_bn=a.recalibrate_bn,
        threads=a.threads, limit=a.limit, early_stop=a.early_stop, time_budget=a.time_budget, deterministic=not a.nondeterministic,
        select=a.select,
        name=a.name, init=a.init, aux_weight=a.aux_weight, aux_epochs=a.aux_epochs, teacher=a.teacher, kd_weight=a.kd_weight,
        kd_temperature=a.kd_temperature, teacher_tta=a.teacher_tta, ema=a.ema, detect=a.detect, min_face=a.min_face,
        command=_command(a) if a.command is None else a.command,
    )


def _meets_data(path: str, data: str | None) -> str | None:
    """How an output ``path`` meets the ``--data`` path: ``"file"`` or ``"folder"`` (it is that),
    ``"inside"`` (within the --data folder), or None."""
    from .io import resolved_path

    if not data:
        return None
    p, d = resolved_path(Path(path).expanduser()), resolved_path(Path(data).expanduser())
    if p == d:
        return "folder" if d.is_dir() else "file"
    return "inside" if d.is_dir() and d in p.parents else None


def _out_not_in_data(a: argparse.Namespace) -> None:
    """A run folder inside the dataset's folder would become part of it (an image folder's next read
    takes it for a class folder, its plots for images): refused."""
    if a.out and _meets_data(a.out, a.data) in ("folder", "inside"):
        raise FerkitError(f"--out {a.out}: inside the --data folder {a.data} (the run's files would join the "
                          f"dataset's): choose a folder outside it")


def cmd_train(a: argparse.Namespace) -> int:
    from .engine.train import train
    from .io import check_out_folder

    check_out_folder("--out", a.out)
    _out_not_in_data(a)
    cfg = _train_config(a)
    try:
        given = [k for k, flag in (("data", "--data"), ("lr", "--lr"), ("model", "--model"), ("dataset", "--dataset"),
                                   ("model_kwargs", "--model-arg"))
                 if _given(a, flag)]
        given += [f"fold_option:{k}" for k, flag in (("folds", "--folds"), ("fold", "--fold"),
                                                     ("fold_seed", "--fold-seed")) if _given(a, flag)]
        train(cfg, resume=a.resume, progress=None if not a.no_progress else False, given=given, keep=_left_default(a))
    except KeyboardInterrupt:
        if (Path(a.out) / "last.ckpt").exists():
            print(f"\nferkit: interrupted; the last finished epoch is saved in {a.out}/last.ckpt: run the same "
                  f"command with --resume to continue", file=sys.stderr)
        else:
            kept = (Path(a.out) / "teacher_probs.npy").exists()
            print("\nferkit: interrupted before the first epoch finished: no weights saved"
                  + (f" (the teacher's probabilities are kept in {a.out} for a rerun with the same images)"
                     if kept else ""), file=sys.stderr)
        return 130
    return 0


CROSSVAL_EXAMPLES = """examples:
  ferkit crossval --model mini_xception --dataset ckplus --data ../shared/data/ckplus48 --folds 10 \\
      --epochs 60 --out runs/cv-ck-mx                                   # CK+: 10 subject-independent folds
  ferkit crossval --model mini_xception --dataset ckplus --data ../shared/data/ckplus48 --folds 10 \\
      --init mini_xception-fer2013 --out runs/cv-ck-ft                  # fine-tune a shipped FER2013 model
  ferkit crossval --model pcnn --dataset jaffe --data ../shared/data/jaffe --folds 10 --detect mtcnn \\
      --out runs/cv-jaffe                                               # JAFFE: leave one subject (of 10) out
  ferkit crossval ... --out runs/cv-ck-mx --resume                      # continue after an interruption
  ferkit crossval ... --only 0,1 --epochs 3 --limit 200                 # a smoke test: two rounds, small"""


def cmd_crossval(a: argparse.Namespace) -> int:
    from .engine.crossval import crossval
    from .io import check_out_folder

    check_out_folder("--out", a.out)
    _out_not_in_data(a)
    if a.fold is not None:
        raise FerkitError("--fold picks one round for `ferkit train`; crossval runs every round (--only I,J runs some)")
    if a.train_split or a.val_split or a.test_split:
        raise FerkitError("crossval sets the splits itself: test = fold i, val = fold i+1, train = the other folds")
    try:
        only = [int(v) for v in a.only.split(",")] if a.only is not None else None
    except ValueError:
        raise FerkitError(f"--only wants fold numbers separated by commas, e.g. 0,1; got {a.only!r}") from None
    try:
        crossval(_train_config(a), folds=a.folds, only=only, resume=a.resume,
                 progress=None if not a.no_progress else False,
                 asked=[k for k, flag in (("dataset", "--dataset"), ("model", "--model"),
                                          ("model_kwargs", "--model-arg")) if _given(a, flag)],
                 keep=_left_default(a))
    except KeyboardInterrupt:
        print(f"\nferkit: interrupted; finished folds and the current fold's last epoch are saved in {a.out}: run the "
              f"same command with --resume to continue", file=sys.stderr)
        return 130
    return 0


CROSSVAL_EVAL_EXAMPLES = """examples:
  ferkit crossval-eval runs/cv-ck-mx --tta flip                         # the same rounds, with flip TTA
  ferkit crossval-eval runs/cv-ck-mx runs/cv-ck-mx-s1 --out runs/cv-ck-ens  # two seeds averaged round by round"""


def cmd_crossval_eval(a: argparse.Namespace) -> int:
    from .engine.crossval import check_summary_out, evaluate_crossval
    from .io import check_out_folder

    check_out_folder("--out", a.out)
    check_summary_out(a.out, "crossval-eval")

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    summary = evaluate_crossval(a.runs, tta=None if a.tta == "none" else a.tta, out=a.out, batch_size=a.batch_size,
                                command=_command(a), progress=False if a.no_progress else None)
    failed = summary.get("failed_rounds", [])
    if failed:  # the others are evaluated and summarised; the exit status says the job is not whole
        print(f"ferkit: {len(failed)} round(s) not evaluated: " + "; ".join(f"round {f['fold']}: {f['error']}"
                                                                           for f in failed), file=sys.stderr)
        return 1
    return 0


COMPARE_EXAMPLES = """examples:
  ferkit evaluate --model vgg_fer-fer2013 --dataset fer2013 --data ../shared/data/fer2013 --predictions a.csv
  ferkit evaluate --model mini_xception-fer2013 --dataset fer2013 --data ../shared/data/fer2013 --predictions b.csv
  ferkit compare a.csv b.csv                     # B - A, its 95% interval, McNemar's p on PrivateTest"""


def cmd_compare(a: argparse.Namespace) -> int:
    from .engine.compare import compare, format_comparison

    if a.json is not None:
        from .io import check_writable

        if not a.json.strip() or a.json.endswith(("/", os.sep)) or Path(a.json).is_dir():
            raise FerkitError(f"--json {a.json!r}: name a file (e.g. comparison.json)")
        _outputs_are_not_inputs([("--json", a.json)], None, None)
        if Path(a.json).resolve() in (Path(a.a).resolve(), Path(a.b).resolve()):
            raise FerkitError(f"--json {a.json}: one of the files compared; name another")
        check_writable("--json", a.json)
    r = compare(a.a, a.b, resamples=a.resamples, seed=a.seed)
    print(format_comparison(r))
    if a.json:
        again = _replacing(a.json)
        Path(a.json).write_text(json.dumps({**r, "command": _command(a)}, indent=2) + "\n")
        print(f"\nwrote {a.json}{again}")
    return 0


PROBE_EXAMPLES = """examples:
  ferkit probe --models mini_xception-fer2013 --dataset jaffe --data ../shared/data/jaffe --detect mtcnn \\
      --out runs/probe-jaffe                                            # JAFFE, leave one subject out
  ferkit probe --models mini_xception-fer2013,mini_xception-fer2013-s1 --dataset jaffe \\
      --data ../shared/data/jaffe --detect mtcnn --center subject --out runs/probe-jaffe-c   # per-person centering"""


def cmd_probe(a: argparse.Namespace) -> int:
    from .engine.crossval import check_summary_out
    from .engine.probe import probe_crossval
    from .io import check_out_folder

    check_out_folder("--out", a.out)
    check_summary_out(a.out, "probe")
    _warn_whole_frames(a)

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    try:  # --min-face is checked by the face cropper, when --detect uses it
        lams = [float(v) for v in a.l2.split(",") if v.strip()]
    except ValueError:
        raise FerkitError(f"--l2 wants numbers separated by commas, e.g. 1e-3,1e-2; got {a.l2!r}") from None
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    probe_crossval(models, a.dataset, a.data, folds=a.folds, detect=a.detect, min_face=a.min_face, center=a.center,
                   tta=None if a.tta == "none" else a.tta, lams=lams, fold_seed=a.fold_seed, out=a.out,
                   command=_command(a), skip_bad=a.skip_bad)
    return 0


def say_dynamic_int8(model, backend: str | None) -> None:
    """With --backend onnx-int8, a note where the model runs on dynamic int8 (weights without shipped
    activation ranges: the user's own): export and evaluate said so, predict and serve did not."""
    if backend != "onnx-int8":
        return
    for m in getattr(model, "members", None) or [model]:
        quant = (getattr(m, "card", {}).get("onnx") or {}).get("quantization") or {}
        if quant.get("mode") == "dynamic":
            print(f"note: {m.name}: no shipped int8 ranges for these weights, so --backend onnx-int8 runs it on "
                  f"dynamic int8 (activation ranges found at run time); `ferkit export --model {m.name} --int8 static "
                  f"--dataset ... --data ...` makes a static file calibrated on your images", file=sys.stderr)


def _runtime(model) -> str:
    """What computed the numbers: ``torch``, ``onnxruntime``, ``onnxruntime int8 (static)``, or
    for an ensemble its members' joined by `` + ``."""
    members = getattr(model, "members", None)
    if members:
        return " + ".join(_runtime(m) for m in members)
    if getattr(model, "backend", None) not in ("onnx", "onnx-int8"):  # (onnx-int8: the `.backend` of 2026-12-07)
        return "torch"
    quant = (getattr(model, "card", {}).get("onnx") or {}).get("quantization")
    return f"onnxruntime int8 ({quant.get('mode', '?')})" if quant else "onnxruntime"


def _fold_of_card(a: argparse.Namespace, card: dict) -> None:
    """A run trained on one round of a k-fold dataset is evaluated on that round's folds (its card
    says which) unless --folds/--fold/--fold-seed say otherwise; a different round is warned about:
    its test subjects were among the run's training ones."""
    ds = card.get("dataset") or {}
    from .data.readers import dataset_key

    if dataset_key(ds.get("name", "")) != dataset_key(a.dataset):  # ("ck" and "CK+" are ckplus)
        return
    opts = dict(ds.get("options") or {})
    if "folds" in opts or "fold" in opts:  # a fold run (cards before 2026-12-05 named only what was given):
        import inspect

        from .data.readers import FoldedReader

        defaults = inspect.signature(FoldedReader.__init__).parameters  # the reader's defaults
        for key in ("folds", "fold", "fold_seed"):
            opts.setdefault(key, defaults[key].default)
    taken = []
    for key, flag in (("folds", "--folds"), ("fold", "--fold"), ("fold_seed", "--fold-seed")):
        if key not in opts:
            continue
        given = getattr(a, key)
        if given is None:
            setattr(a, key, opts[key])
            taken.append(flag)
        elif given != opts[key]:
            print(f"ferkit: warning: {flag} {given}, but the model was trained with {flag} {opts[key]}: this "
                  f"round's test subjects were among its training ones, so the number overstates it",
                  file=sys.stderr)
    if a.folds is not None and a.fold is not None and not 0 <= a.fold < a.folds:  # (before anything is said of it)
        raise FerkitError(f"--fold must be in 0..{a.folds - 1} (--folds {a.folds}), got {a.fold}")
    if taken and a.folds is not None and a.fold is not None:  # (what the header's "test" is: said, not guessed)
        seed = a.fold_seed if a.fold_seed is not None else 0
        same = all(getattr(a, k) == opts[k] for k in ("folds", "fold", "fold_seed") if k in opts)
        print(f"evaluating on round {a.fold} of {a.folds} folds (fold seed {seed})"
              + (", the round the model was trained on" if same else "")
              + f" ({', '.join(taken)} from its card; name them for another)")


def _detect_of_card(a: argparse.Namespace, card: dict) -> None:
    """A run trained on faces found and aligned by a detector (JAFFE, KDEF: ``--detect mtcnn``) is
    evaluated the same way unless --detect is named: it took the fold from its card but read whole
    frames, and its number halved."""
    from .data.readers import READERS, dataset_key

    trained = ((card.get("training") or {}).get("config") or {}).get("detect")
    if trained in (None, "none") or _given(a, "--detect") or _given(a, "--detector"):
        return
    # the same dataset, or another of full photos (JAFFE's model on KDEF); not crops (FER2013, CK+48):
    # MTCNN would search 48x48 faces for faces
    cls = READERS.get(dataset_key(a.dataset))
    if not _card_dataset_is(card, a.dataset) and not (cls is not None and cls.full_photos):
        return
    a.detect = trained
    print(f"evaluating with --detect {trained}: the model was trained on faces found and aligned so (its card); "
          f"--detect none for whole images")


def _warn_trained_split(a: argparse.Namespace, card: dict, split: str) -> None:
    """A warning when the split evaluated holds the images the model was trained or selected on (its
    card's dataset and splits; 'all' holds them too): the number overstates it."""
    from .data.readers import dataset_key

    ds = card.get("dataset") or {}
    if not _card_dataset_is(card, a.dataset):
        return
    if dataset_key(a.dataset) == "imagefolder":  # a folder of one's own: the same only where it is the same folder
        data = ((card.get("training") or {}).get("config") or {}).get("data")
        if not data or Path(data).expanduser().resolve() != Path(a.data).expanduser().resolve():
            return
    train_s, val_s, test_s = ds.get("train_split"), ds.get("val_split"), ds.get("test_split")
    instead = f"its test split, {test_s!r}" if test_s and test_s != split else "a split it never saw"
    if train_s and split in (train_s, "all", "trainval"):
        print(f"ferkit: warning: split {split!r} holds the images this model was trained on ({train_s!r}, its card): "
              f"the number overstates it; evaluate on {instead}", file=sys.stderr)
    elif val_s and split == val_s:  # (reported as such, e.g. FER2013's PublicTest: a validation figure)
        print(f"note: the model was selected on {split!r} (its best epoch; its card): a validation figure, a little "
              f"above what a split it never saw would give" + (f" ({instead})" if test_s and test_s != split else ""))


def _warn_moved_test_split(a: argparse.Namespace, card: dict, ds) -> None:
    """A warning when the model's test split (its card: the same dataset, split and folds) holds
    other images now than when it was trained: files added or removed deal a fold's members anew,
    and some of the model's training images may be among them."""
    from .engine.train import split_digest

    info = card.get("dataset") or {}
    want = info.get("test_digest")
    if not want or not _card_dataset_is(card, a.dataset) or ds.split != info.get("test_split"):
        return
    opts = info.get("options") or {}
    if any(k in opts and getattr(a, k, None) is not None and getattr(a, k) != opts[k]
           for k in ("folds", "fold", "fold_seed")):  # another round's test fold: other images by design
        return
    config = (card.get("training") or {}).get("config") or {}
    limit = config.get("limit")
    tested = ds
    if limit and len(ds) > limit:  # trained with --limit: tested then on a subset of the split, all of it now
        from .engine.train import _limit

        reads = (f"{min(a.limit, len(ds))} (--limit {a.limit})" if getattr(a, "limit", None)
                 else f"all {len(ds)}")
        print(f"note: the model was trained with --limit {limit}, so its card's test number is of {limit} of this "
              f"split's images; this evaluation reads {reads}")
        tested = _limit(ds, limit, int(config.get("seed", 0)) + 2)  # (the subset training drew: its digest)
    if split_digest(tested, a.data) != want:
        print(f"ferkit: warning: split {ds.split!r} holds other images than when this model was trained (its card; "
              f"{len(ds)} now): images were added, removed or renamed since; where the split is a fold, its members "
              f"are dealt anew, and some of the model's training images may be in it now: the number may overstate "
              f"it", file=sys.stderr)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .io import STDOUT

    if a.json != STDOUT:
        return _evaluate(a, None)
    results_out = sys.stdout  # --json -: the metrics to standard output, the table to standard error
    with contextlib.redirect_stdout(sys.stderr):
        return _evaluate(a, results_out)


def _evaluate(a: argparse.Namespace, results_out) -> int:
    from .api import load_model
    from .data import open_dataset
    from .engine.evaluate import evaluate, face_cropper, format_table, trained_members, write_json
    from .engine.plots import plot_confusion

    if a.detect == "mtcnn" and a.min_face < 12:  # (as predict says it: one message for every value MTCNN refuses)
        raise FerkitError(f"--min-face must be 12 pixels or more with MTCNN (its smallest window), got {a.min_face}")
    if a.min_face < 1:
        raise FerkitError(f"--min-face must be at least 1 pixel, got {a.min_face}")
    for option, value in (("--json", a.json), ("--plot", a.plot), ("--predictions", a.predictions)):
        if value is not None and not value.strip():  # (a script's unset variable: nothing would be written)
            raise FerkitError(f"{option}: an empty path; name a file")
        if value and value != "-" and (value.endswith(("/", os.sep)) or Path(value).expanduser().is_dir()):
            example = {"--json": "metrics.json", "--plot": "confusion.png"}.get(option, "predictions.csv")
            raise FerkitError(f"{option} {value}: is a folder; name a file (e.g. {value.rstrip('/' + os.sep) or '.'}"
                              f"/{example})")
    from .io import check_writable

    # --json's confusion matrix beside it (unless --plot names another place); none beside a --json
    # that is no regular file (/dev/null, a pipe)
    default_plot = None
    if not a.plot and a.json and results_out is None and not (Path(a.json).exists() and not Path(a.json).is_file()):
        default_plot = str(Path(a.json).with_suffix("")) + "_confusion.png"
    plot = a.plot or default_plot
    if plot and not Path(plot).suffix:
        plot += ".png"  # what matplotlib would write anyway: say so
    outputs = [(o, p) for o, p in (("--json", a.json if results_out is None else None),
                                   ("--plot" if a.plot else "--json's confusion plot", plot),
                                   ("--predictions", a.predictions)) if p]
    _outputs_are_not_inputs(outputs, a.data, a.model)
    for option, path in outputs:  # checked now, not after the evaluation
        check_writable(option, path)
    if a.plot and Path(a.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise FerkitError(f"--plot {a.plot}: name an image file ({', '.join(sorted(PLOT_SUFFIXES - {''}))}, or no "
                          f"extension for .png)")
    model = load_model(a.model, device=a.device, backend=a.backend)
    _fold_of_card(a, getattr(model, "card", None) or {})
    _detect_of_card(a, getattr(model, "card", None) or {})
    if a.detect == "mtcnn" and a.min_face < 12:  # (again: the card may have chosen MTCNN)
        raise FerkitError(f"--min-face must be 12 pixels or more with MTCNN (its smallest window), got {a.min_face}")
    _warn_unused(a, [("--min-face", a.detect == "none", "without --detect no face is searched for")])
    _warn_whole_frames(a)
    reader = open_dataset(a.dataset, a.data, **_dataset_options(a))
    _warn_unused_folds(a, reader)
    split = a.split or reader.test_split
    if split is None:
        raise FerkitError(f"{reader.name} has no standard test split here: pass --split, one of: "
                          f"{', '.join(reader.splits) or 'none'}")
    c, h, w = model.input_size
    crop, crop_key = face_cropper(model, a.detect, a.min_face) if a.detect != "none" else (None, None)
    ds = reader.load(split, size=(h, w), mode="L" if c == 1 else "RGB", crop=crop, crop_key=crop_key,
                     progress=False if a.no_progress else None)
    _warn_trained_split(a, getattr(model, "card", None) or {}, ds.split)  # (its own name: 'train' is 'Training')
    _warn_moved_test_split(a, getattr(model, "card", None) or {}, ds)
    folded = reader.options()
    card_ds = (getattr(model, "card", None) or {}).get("dataset") or {}
    fold_run = "fold" in (card_ds.get("options") or {})  # a model trained on these folds: other folds would leak
    if a.split is None and getattr(reader, "has_folds", False) and folded.get("folds") is not None \
            and folded.get("fold") is not None and not fold_run:
        # a layout without splits: its "test" is one fold, a tenth of the images by default; said, as
        # someone evaluating a folder of their own photos would expect all of them
        print(f"note: {reader.name}'s test split is fold {folded['fold']} of {folded['folds']} ({len(ds)} "
              f"images): --split all evaluates every image, --fold N another fold")
    limited = None
    if a.limit is not None and len(ds) > a.limit:
        from .engine.train import _limit

        limited = {"n": a.limit, "of": len(ds), "seed": 0}
        ds = _limit(ds, a.limit, 0)
        print(f"note: --limit {a.limit}: {a.limit} of the split's {limited['of']} images, drawn at random (seed 0): "
              f"a quick check, not the split's number")
    res = evaluate(model, ds, tta=None if a.tta == "none" else a.tta, batch_size=a.batch_size, detector=a.detect,
                   predictions=bool(a.predictions))
    rows = res.pop("predictions", None)
    if limited:
        res["limit"] = limited
    if a.detect != "none":
        res["min_face"] = a.min_face
    res["runtime"] = _runtime(model)
    opts = {k: v for k, v in reader.options().items() if v is not None and v is not False}
    if opts:  # which records the split held: the fold and its seed, the vote rule, ...
        res["dataset_options"] = opts
    res["command"] = _command(a)
    trained = trained_members(a.model, model)
    if trained:
        res["members_trained"] = trained
    print(format_table(res))
    if results_out is not None:
        from .io import write_to_stdout

        text = json.dumps(res, indent=2) + "\n"
        write_to_stdout(results_out, lambda f: f.write(text))
    elif a.json:
        again = _replacing(a.json)
        write_json(res, a.json)
        print(f"\nwrote {a.json}{again}")
    if plot:
        again = _replacing(plot)
        # the title says what the number is of: how many images (of how many, with --limit) and the TTA
        n = f"n={res['n']}" + (f" of {limited['of']} (--limit)" if limited else "")
        tta = "" if a.tta == "none" else f", tta {a.tta}"
        plot_confusion(res["confusion_matrix"], res["classes"], plot,
                       title=f"{model.name} on {ds.name} {ds.split} ({n}{tta}): accuracy {res['accuracy']:.4f}")
        print(f"wrote {plot}{again}")
    if rows is not None:
        from .engine.evaluate import write_predictions

        again = _replacing(a.predictions)
        root = Path(a.data).resolve()
        for r in rows:  # named from the dataset's folder: two evaluations from other folders still match up
            with contextlib.suppress(ValueError, OSError):
                r["source"] = Path(r["source"]).resolve().relative_to(root).as_posix()
        write_predictions(rows, a.predictions, res["classes"])
        print(f"wrote {a.predictions}{again} ({len(rows)} images)")
    return 0


def _replacing(path: str) -> str:
    """`` (replacing the earlier file)`` when ``path`` is a regular file already: said, not silent."""
    return " (replacing the earlier file)" if Path(path).is_file() else ""


#: the files of a run folder that record its training (not to be written over by an evaluation's outputs)
RUN_RECORD = ("config.json", "log.csv", "log.json", "last.ckpt", "curves.png", "crossval.json")


def _outputs_are_not_inputs(outputs: list[tuple[str, str]], data: str | None, model: str | None) -> None:
    """Refuse output files that would destroy an input: the ``--data`` file, anything inside the
    ``--data`` folder (a plot there would be read as an image of the dataset next time), the
    ``--model`` file and its card; and two outputs at the same path (one would replace the other)."""
    from .api import ensemble_names
    from .io import resolved_path

    def model_files(name: str) -> set[Path]:  # the files a --model path loads: weights and card
        m = Path(name).expanduser()
        if not m.exists():
            return set()
        if m.is_dir():
            weights = [m / f for f in os.listdir(m) if f.endswith((".safetensors", ".onnx"))]
            # a run folder's record of its training: its settings, log and checkpoint (--predictions log.csv
            # replaced the training log)
            record = {resolved_path(m / f) for f in RUN_RECORD if (m / f).exists()}
        else:
            record = set()
            weights = [m.with_suffix(".safetensors") if m.suffix == ".json" else m]
        own = set(record)
        for w in weights:  # each named as given (a link's card lies beside the link) and resolved
            cards = [w.with_suffix(".json")] if w.suffix == ".safetensors" else []
            for f in [w, *cards, w.with_name(w.name + ".json")]:
                own |= {resolved_path(f.parent) / f.name, resolved_path(f)}
        return own

    own = set().union(*(model_files(n) for n in (ensemble_names(model) or [model]))) if model else set()
    seen: dict[Path, str] = {}
    for option, path in outputs:
        p = resolved_path(Path(path).expanduser())
        if p in seen:
            raise FerkitError(f"{option} {path}: the same file as {seen[p]}: name another")
        seen[p] = option
        met = _meets_data(path, data)
        if met:
            raise FerkitError(f"{option} {path}: " + (f"is the --data {met}" if met != "inside" else
                                                      "inside the --data folder (the dataset's own files): write "
                                                      "it elsewhere"))
        if p in own:
            raise FerkitError(f"{option} {path}: is a file of --model {model} (its weights, card or training "
                              f"record)")


def cmd_predict(a: argparse.Namespace) -> int:
    from .predict import predict_cli

    if getattr(a, "backend", "auto") != "auto":  # the Recognizer takes a loaded model as it takes a name
        from .api import load_model

        a.model = load_model(a.model, device=a.device, backend=a.backend)
    return predict_cli(a)


EXPORT_EXAMPLES = """examples:
  ferkit export --model default --format onnx --out fer.onnx           # + fer.onnx.json (the model card)
  ferkit export --model runs/mx --format onnx --out exports/ --opset 17  # a folder: exports/<name>.onnx
  ferkit export --model default --format onnx --out fer-int8.onnx --int8  # int8: static from shipped ranges, else dynamic
  ferkit export --model default --out fer-int8d.onnx --int8 dynamic      # dynamic int8 (weights only; no ranges)
  ferkit export --model default --format onnx --out fer-int8s.onnx --int8 \\
      --dataset fer2013 --data ../shared/data/fer2013 --calibration-split PublicTest   # static int8
  ferkit predict photo.jpg --model fer.onnx                             # run the exported file

in Python, with onnxruntime only:
  sess = onnxruntime.InferenceSession("fer.onnx")
  probs = sess.run(["probabilities"], {"image": faces_float32_N1x48x48_0to255})[0]"""


def cmd_export(a: argparse.Namespace) -> int:
    from .runtime import RangesMisfit, export_onnx

    if a.out is not None and not str(a.out).strip():
        raise FerkitError("--out is empty: name the .onnx file to write (or a folder to write it into)")
    if (a.dataset or a.data) and not a.int8:
        raise FerkitError("--dataset/--data calibrate int8 quantisation: add --int8")
    if a.calibration_split and not (a.int8 and a.dataset and a.data):
        raise FerkitError("--calibration-split chooses static int8 calibration images: it needs --int8, "
                          "--dataset and --data")
    if a.int8 == "dynamic" and (a.dataset or a.data):
        raise FerkitError("--dataset/--data calibrate static int8: not with --int8 dynamic")
    calibration, mode, ranges, source = None, "dynamic" if a.int8 else False, None, None
    if a.int8 in ("auto", "static") and not (a.dataset or a.data):  # ferkit's calibration, where it ships one
        from . import weights

        ranges = weights.int8_ranges(weights.resolve(a.model))
        if ranges is not None:
            mode = "static"
            c = ranges["calibration"]
            print(f"static int8 from the shipped ranges (calibrated on {c['images']} images of {c['dataset']} "
                  f"{c['split']}; --dataset/--data calibrate on yours)")
        elif a.int8 == "static":
            raise FerkitError(f"--int8 static: ferkit ships no int8 ranges for {a.model}; calibrate on images of a "
                              f"selection split with --dataset/--data (or use --int8 dynamic)")
        else:
            print(f"ferkit: note: ferkit ships no int8 ranges for {a.model}: dynamic int8 (weights only, which is "
                  f"not faster than float32 on our CPUs: docs/benchmarks_classifier.md); --dataset/--data "
                  f"calibrate static int8 on your images", file=sys.stderr)
    if a.int8 and (a.dataset or a.data):
        import numpy as np

        from .api import load_model
        from .data import open_dataset

        if not (a.dataset and a.data):
            raise FerkitError("static int8 calibration needs both --dataset and --data")
        if a.calibration_images < 1:
            raise FerkitError(f"--calibration-images must be at least 1, got {a.calibration_images}")
        reader = open_dataset(a.dataset, a.data, **_dataset_options(a))
        split = a.calibration_split or reader.val_split or reader.train_split
        if split is None:
            raise FerkitError(f"{reader.name}: pass --calibration-split (a split that is not the test split)")
        if reader.test_split and reader.resolve_split(split) == reader.resolve_split(reader.test_split):
            print(f"ferkit: warning: {reader.resolve_split(split)} is {reader.name}'s test split: int8 ranges "
                  f"calibrated on it tune the model to the images its accuracy is then reported on (calibrate on "
                  f"{reader.val_split or 'a validation split'})", file=sys.stderr)
        c, h, w = load_model(a.model, backend="torch").input_size
        ds = reader.load(split, size=(h, w), mode="L" if c == 1 else "RGB")
        pick = np.random.default_rng(0).permutation(len(ds.images))[: a.calibration_images]
        calibration, mode = ds.images.numpy()[np.sort(pick)], "static"
        source = {"dataset": reader.name, "data": str(a.data), "split": reader.resolve_split(split),
                  "images": int(len(calibration)), "of": int(len(ds.images)), "pick": "random, seed 0"}
        print(f"calibrating on {len(calibration)} images of {reader.name} {reader.resolve_split(split)}")
    given = Path(a.out).expanduser()  # (as export_onnx reads it: `--out=~/m.onnx` reaches us unexpanded)
    # what is there already: the file named, or the .onnx files of the folder named
    existing = ({p.name for p in given.glob("*.onnx")} if given.is_dir() else
                {given.name} if given.is_file() else set())
    try:
        card = export_onnx(a.model, a.out, opset=a.opset, int8=mode, calibration=calibration, int8_ranges=ranges,
                           calibration_source=source)
    except RangesMisfit as e:
        if a.int8 != "auto":  # --int8 static asked for them: its error
            raise
        print(f"ferkit: warning: {e}; dynamic int8 instead", file=sys.stderr)
        mode = "dynamic"
        card = export_onnx(a.model, a.out, opset=a.opset, int8=mode)
    o = card["onnx"]
    out = given / o["file"] if given.is_dir() else given
    replaced = out.name in existing
    size = out.stat().st_size / 1024
    ins = o["input"]
    raised = f", raised from {o['opset_requested']} by the quantiser" if "opset_requested" in o else ""
    print(f"wrote {out} ({size:,.0f} KB, opset {o['opset']}{raised}{', int8 ' + mode if mode else ''}) and "
          f"{out}.json (the model card, also inside the file)" + (", replacing the earlier file" if replaced else ""))
    print(f"  input  {ins['name']}: float32 [{', '.join(map(str, ins['shape']))}], {ins['color']} pixels 0..255 "
          f"(normalisation is in the graph)")
    print(f"  output probabilities: [{', '.join(map(str, o['outputs'][0]['shape']))}] softmax over "
          f"{', '.join(card['classes'])}; logits: the same before softmax")
    print(f"  max |onnx - torch| on random images: {o['max_abs_diff_vs_torch']:.2e}"
          + (f" (int8 against float32 torch: expected to differ; float32 export {o['max_abs_diff_fp32_export']:.1e}; "
             f"measure the accuracy change with `ferkit evaluate --model {out} ...`)" if mode else ""))
    print(f"  input faces: aligned as ferkit does (5 landmarks onto the template, similarity warp): the card's "
          f"onnx.face says how")
    return 0


SERVE_EXAMPLES = """examples:
  ferkit serve                                  # http://127.0.0.1:8000/ : the web page (photo or webcam)
  ferkit serve --host 0.0.0.0 --port 8080       # reachable from other machines (webcam needs https there)
  ferkit serve --max-upload-mb 20 --timeout 60 --workers 4
  curl -F file=@examples/astronaut.jpg http://127.0.0.1:8000/v1/analyze
  curl -F file=@examples/astronaut.jpg 'http://127.0.0.1:8000/v1/analyze?annotated=1' -o annotated.png
  curl http://127.0.0.1:8000/healthz"""


AVERAGE_EXAMPLES = """examples:
  ferkit average --models vgg_fer-fer2013,runs/vgg-ft --out runs/vgg-soup          # equal weights
  ferkit average --models vgg_fer-fer2013,runs/vgg-ft --weights 0.3,0.7 --out runs/vgg-soup73
  ferkit average --models vgg_fer-fer2013,runs/vgg-ft --out runs/vgg-soup-bn \\
      --dataset fer2013 --data ../shared/data/fer2013 --clean-from ../shared/data/ferplus   # + batch-norm statistics
  ferkit evaluate --model runs/vgg-soup --dataset fer2013 --data ../shared/data/fer2013 --split PublicTest"""


def _run_out(a: argparse.Namespace, what: str) -> Path:
    """--out of average/recalibrate: a run folder, not a file, not holding a model unless --force."""
    if not str(a.out).strip():
        raise FerkitError("--out is empty: name the run folder to write")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise FerkitError(f"--out {a.out}: a file; name a folder (the {what} run's)")
    if (out / "model.safetensors").exists() and not a.force:
        raise FerkitError(f"--out {a.out}: holds a model already; --force replaces it")
    _outputs_are_not_inputs([("--out", str(out / "model.safetensors"))], a.data, None)
    return out


def _load_split(a: argparse.Namespace, reader, split: str, net, card: dict):
    """A split at the network's input size (its faces found and aligned first with --detect, as
    evaluate --detect does: full photos such as JAFFE or KDEF)."""
    c, h, w = card["input_size"]
    crop, crop_key = None, None
    if a.detect != "none":
        from .api import ExpressionModel
        from .engine.evaluate import face_cropper

        crop, crop_key = face_cropper(ExpressionModel(net, card), a.detect, a.min_face)
    return reader.load(split, size=(h, w), mode="L" if c == 1 else "RGB", crop=crop, crop_key=crop_key,
                       progress=False if a.no_progress else None)


def _recompute_bn(a: argparse.Namespace, reader, net, card: dict) -> dict | None:
    """Re-estimate ``net``'s batch-norm statistics on --bn-images images (``BN_IMAGES`` unless
    given) of ``reader``'s --bn-split (its training split by default); None when the network has none."""
    from .data.transforms import normalize, to_float
    from .engine import soup
    from .engine.train import BN_IMAGES, _limit

    split = a.bn_split or reader.train_split
    if reader.test_split is not None and split == reader.test_split:
        raise FerkitError(f"--bn-split {split}: {reader.name}'s test split; its faces would shape the network that "
                          f"is then tested on them: use the training or the validation split")
    ds = _limit(_load_split(a, reader, split, net, card), a.bn_images or BN_IMAGES, 0)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    layers = soup.recompute_bn(net, ds.images, lambda x: normalize(soup.one_view_each(to_float(x), a.bn_tta),
                                                                   card["mean"], card["std"]))
    if layers == 0:
        print(f"note: {card['architecture']} has no batch norm: its statistics cannot be re-estimated")
        return None
    views = "" if a.bn_tta == "none" else f" (their {a.bn_tta} views, one an image)"
    print(f"batch-norm statistics of {layers} layers re-estimated on {len(ds)} images of {reader.name} "
          f"{ds.split}{views}")
    return {"dataset": reader.name, "split": ds.split, "images": len(ds), "layers": layers,
            **({"tta": a.bn_tta} if a.bn_tta != "none" else {}),
            **({"detect": a.detect, "min_face": a.min_face} if a.detect != "none" else {}),
            **({"options": {k: v for k, v in reader.options().items() if v is not None and v is not False}}
               if any(v is not None and v is not False for v in reader.options().values()) else {})}


def cmd_average(a: argparse.Namespace) -> int:
    from .engine import soup

    models = [m.strip() for m in a.models.split(",") if m.strip()]
    mix = soup.parse_weights(a.weights, len(models))
    for m in models:
        if str(a.out).strip() and Path(m).expanduser().resolve() == Path(a.out).expanduser().resolve():
            raise FerkitError(f"--out {a.out} is one of the --models: write the average elsewhere")
    out = _run_out(a, "averaged")
    if bool(a.dataset) != bool(a.data):
        raise FerkitError("--dataset and --data go together (the images that re-estimate batch-norm statistics)")
    for option, given in (("--bn-split", a.bn_split), ("--bn-tta", a.bn_tta != "none"),
                          ("--bn-images", a.bn_images is not None)):
        if given and not a.dataset:
            raise FerkitError(f"{option} needs --dataset and --data (the images that re-estimate batch-norm "
                              f"statistics)")
    net, first, cards = soup.average(models, mix)
    print("averaged " + ", ".join(f"{m} ({w:.3g})" for m, w in zip(models, mix))
          + f": {first['architecture']}, {len(net.state_dict())} tensors")
    bn = None
    if a.dataset:
        from .data import open_dataset

        bn = _recompute_bn(a, open_dataset(a.dataset, a.data, **_dataset_options(a)), net, first)
    card = soup.soup_card(first, cards, models, mix, _command(a), bn, out.name)
    path = soup.write(out, net, card)
    print(f"wrote {path} (+ model.json); measure it: ferkit evaluate --model {out} --dataset ... --data ...")
    return 0


RECALIBRATE_EXAMPLES = """examples:
  ferkit recalibrate --model default --dataset fer2013 --data ../shared/data/fer2013 \\
      --clean-from ../shared/data/ferplus --out runs/default-bn
  ferkit recalibrate --model vgg_fer-ferplus --dataset ferplus --data ../shared/data/ferplus --out runs/vgg-fp-bn
  ferkit evaluate --model runs/default-bn --dataset fer2013 --data ../shared/data/fer2013 --split PublicTest"""


def cmd_recalibrate(a: argparse.Namespace) -> int:
    from . import weights
    from .engine import soup

    if str(a.out).strip() and Path(a.model).expanduser().resolve() == Path(a.out).expanduser().resolve():
        raise FerkitError(f"--out {a.out} is --model's folder: write the recalibrated network elsewhere")
    out = _run_out(a, "recalibrated")
    net, card = weights.load(a.model)
    trained_on = (card.get("dataset") or {}).get("name")
    if a.measure and trained_on != str(a.dataset).lower():
        raise FerkitError(f"--measure: {a.model} was trained on {trained_on}, not {a.dataset}; its card's splits "
                          f"are measured on the dataset it was trained on")
    from .data import open_dataset

    reader = open_dataset(a.dataset, a.data, **_dataset_options(a))
    bn = _recompute_bn(a, reader, net, card)
    if bn is None:
        raise FerkitError(f"{a.model}: {card['architecture']} has no batch norm; nothing to recalibrate")
    new = soup.recalibrated_card(card, a.model, _command(a), bn, out.name)
    if a.measure:  # the card's validation and test splits, as a trained run's card has them
        from .api import ExpressionModel
        from .engine.evaluate import evaluate

        model = ExpressionModel(net, new)
        for key in ("val_split", "test_split"):
            split = card["dataset"].get(key)
            if split:
                res = evaluate(model, _load_split(a, reader, split, net, card),
                               detector=None if a.detect == "none" else a.detect)
                new["metrics"][split] = {k: res[k] for k in ("accuracy", "macro_f1", "n", "loss")}
                was = (card.get("metrics") or {}).get(split, {}).get("accuracy")
                print(f"{split}: accuracy {res['accuracy']:.4f}" + ("" if was is None else f" (was {was:.4f})"))
        new["notes"] = new["notes"].split("; not measured yet")[0] + "; metrics measured by --measure"
    path = soup.write(out, net, new)
    print(f"wrote {path} (+ model.json)" + ("" if a.measure else
                                            f"; measure it: ferkit evaluate --model {out} --dataset ... --data ..."))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  (imported when serving starts, after the model loads: its absence said first)

        from .serve import bind, create_app, run
    except ImportError as e:
        raise FerkitError(f"ferkit serve needs fastapi, uvicorn and python-multipart ({e}); install them (`pip "
                          f"install fastapi uvicorn python-multipart`), or ferkit with its dependencies") from None
    if not 0 < a.max_upload_mb < float("inf"):
        raise FerkitError(f"--max-upload-mb must be a finite number of megabytes above 0, got {a.max_upload_mb}")
    sock = bind(a.host, a.port)  # a taken port is reported at once, before the model loads
    try:
        app = create_app(model=a.model, detector=a.detector, backend=a.backend,
                         max_upload=int(a.max_upload_mb * 2**20),
                         max_pixels=a.max_pixels, timeout=a.timeout, workers=a.workers, max_queue=a.max_queue)
        say_dynamic_int8(app.state.recognizer.model, a.backend)
        run(app, a.host, a.port, log_level=a.log_level, sock=sock)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


def cmd_explain(a: argparse.Namespace) -> int:
    from .explain.commands import explain_cli
    from .io import check_out_folder

    check_out_folder("--out", getattr(a, "out", None))
    return explain_cli(a)


def cmd_au_analysis(a: argparse.Namespace) -> int:
    from .explain.commands import au_analysis_cli

    return au_analysis_cli(a)


# ---------------------------------------------------------------------------------------
class _Fmt(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults, keep the examples' line breaks. No "(default: None)" (an option that is off
    unless given) or False (a flag), and none where the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if action.default in (None, False) or "default" in h or action.required:
            return h
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """A paragraph line longer than the terminal is wrapped (predict's and serve's descriptions
        were one line of 600 characters); an indented line (an example command) is kept as written."""
        import textwrap

        out: list[str] = []
        for line in text.splitlines():
            if len(indent + line) > width and not line.startswith(" "):
                out += textwrap.wrap(line, width, initial_indent=indent, subsequent_indent=indent,
                                     break_on_hyphens=False, break_long_words=False)  # (--detect-every whole)
            else:
                out.append(indent + line)
        return "\n".join(out) + ("\n" if text.endswith("\n") else "")


VERB_EXAMPLES = {
    "models": "examples:\n  ferkit models\n  ferkit models --json | jq '.weights[].metrics'",
    "cache": "examples:\n  ferkit cache\n  ferkit cache --clear\n  FERKIT_CACHE=/scratch/ferkit ferkit cache",
    "data": "examples:\n  ferkit data --dataset fer2013 --data ../shared/data/fer2013 --check\n"
            "  ferkit data --dataset ferplus --data ../shared/data/ferplus --vote strict\n"
            "  ferkit data --dataset ckplus --data ../shared/data/ckplus48 --folds 10",
    "train": "examples:\n  ferkit train --model mini_xception --model-arg width=2 --dataset fer2013 \\\n"
             "      --data ../shared/data/fer2013 --clean-from ../shared/data/ferplus --out runs/mx\n"
             "  ferkit train --model mini_xception --dataset ferplus --data ../shared/data/ferplus --soft-targets "
             "--out runs/fp\n"
             "  ferkit train --model mini_xception --dataset ckplus --data ../shared/data/ckplus48 --fold 3 "
             "--out runs/ck3\n"
             "  ferkit train ... --out runs/mx --resume      # continue an interrupted run\n\n"
             "the run folder (--out):\n"
             "  config.json                    the settings (--resume reads them)\n"
             "  log.csv, log.json, curves.png  one row an epoch: losses, accuracies, learning rate; their plot\n"
             "  last.ckpt                      all a resume needs, written every epoch\n"
             "  best.safetensors, best.json    the best epoch so far, chosen on the selection split\n"
             "  model.safetensors, model.json  the final model and its card: metrics, the command, the code\n"
             "  metrics.json                   selection and test split metrics of the final model\n"
             "  confusion_<test split>.png     its confusion matrix on the test split\n"
             "`--model runs/mx` (evaluate, predict, export, serve) takes the folder.",
    "evaluate": "examples:\n  ferkit evaluate --model default --dataset fer2013 --data ../shared/data/fer2013 "
                "--split PrivateTest --json r.json\n"
                "  ferkit evaluate --model runs/mx --dataset fer2013 --data ../shared/data/fer2013 --tta flip\n"
                "  ferkit evaluate --model default --dataset jaffe --data ../shared/data/jaffe --split all "
                "--detect mtcnn --json jaffe.json",
    "predict": "examples:\n  ferkit predict examples/astronaut.jpg --out out/\n"
               "  ferkit predict photos/ --csv faces.csv --json faces.json --out annotated/\n"
               "  ferkit predict crops/ --detector none --csv crops.csv\n"
               "  ferkit predict clip.mp4 --out out/ --every 2 --detect-every 5\n"
               "  ferkit predict --webcam 0",
}


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its usage errors in one line (a bad option or value: the usage of
    ``ferkit train`` is some 25 lines, which buried the reason), exit status 2 as argparse's."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")

    def _get_option_tuples(self, option_string: str):  # type: ignore[override]
        """The options an abbreviation may mean, each once: ``--det`` is ``--detect`` or its other
        spelling ``--detector``, one option, not an ambiguous pair (but still ambiguous with
        ``--detect-every``)."""
        seen, out = set(), []
        for t in super()._get_option_tuples(option_string):
            if id(t[0]) not in seen:
                seen.add(id(t[0]))
                out.append(t)
        return out


def _add_train_args(s: argparse.ArgumentParser, crossval: bool = False) -> None:
    """`ferkit train`'s options; ``crossval``: those of `ferkit crossval` (the same, but for the
    splits, which each round sets, and the options of datasets with official splits)."""
    s.add_argument("--model", default="mini_xception", help="architecture (see `ferkit models`)")
    s.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="architecture option, e.g. width=2; each architecture's options and defaults: `ferkit models` "
                        "(width is base channels in some, e.g. lite_cnn's 16, a multiplier in others, "
                        "mini_xception's 1)")
    _add_dataset_args(s, kfold=crossval)
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (run the same command again with it): "
                        "the run's saved settings are kept, but for --device and --threads, and --epochs, "
                        "--early-stop, --time-budget, --recalibrate-bn" + ("" if crossval else ", --data, --lr")
                        + " where named (left to their defaults, the run's own stay: a finished run resumed so is "
                          "left as it is)"
                        + "; another --model or --dataset named is refused"
                        + (", as is another --epochs once a round has finished" if crossval else "")
                        + "; with no checkpoint in --out a new run starts (and says so)")
    s.add_argument("--name", help="model name in the card (default: the run folder's name)")
    # crossval: each round sets the splits (given, they are refused: cmd_crossval says why); not shown
    g = s.add_argument_group("splits")
    hide = argparse.SUPPRESS if crossval else None
    g.add_argument("--train-split", help=hide or "default: the dataset's training split")
    g.add_argument("--val-split", help=hide or "model selection split (default: FER2013 PublicTest, FER+ Valid, next "
                                               "fold)")
    g.add_argument("--test-split", help=hide or "evaluated once at the end (default: the standard test split; 'none' "
                                                "skips)")
    g.add_argument("--val-fraction", type=float, default=0.1, help=hide or "share of train held out (stratified, at "
                   "least one per class) for selection when the dataset has no val split; between 0 and 1")
    g = s.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--batch-size", type=positive_int, default=128)
    g.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    g.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD only (Nesterov)")
    g.add_argument("--schedule", choices=["cosine", "plateau", "constant"], default="cosine")
    g.add_argument("--warmup", type=float, default=2.0, help="linear warm-up epochs")
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--class-weights", choices=["none", "balanced"], default="none",
                   help="'balanced' weights the loss by inverse class frequency")
    g.add_argument("--soft-targets", action="store_true", help="ferplus: train on the annotators' vote distribution")
    g.add_argument("--early-stop", type=int, default=None, metavar="N",
                   help="stop after N epochs without a better validation accuracy")
    g.add_argument("--nondeterministic", action="store_true",
                   help="let cuDNN choose its fastest kernels, some of them non-deterministic (faster GPU training; "
                        "a rerun then differs slightly)")
    g.add_argument("--time-budget", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="train for at most about this long (crossval: each round): the warm-up epochs are timed and "
                        "--epochs lowered to what fits, with the LR schedule fitted to the new count (recorded in "
                        "config.json and the card; pass that --epochs to repeat the run, exactly so with --warmup 1 "
                        "or more: a shorter warm-up starts the schedule inside the first epoch, before the count is "
                        "fitted). --resume with the same budget keeps the fitted count and the time already spent")
    g.add_argument("--select", choices=["accuracy", "accuracy-loss"], default="accuracy",
                   help="the best epoch: the first with the highest validation accuracy, or (accuracy-loss) among "
                        "those the one with the lowest validation loss (for small validation splits that reach "
                        "100%% early, e.g. CK+ folds)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay per step (e.g. 0.999: "
                        "about the last 1,000 steps), warmed up as min(DECAY, (1+step)/(10+step)) (0.999 is reached "
                        "at step 8,990; the log gives the decay reached); the average is validated, chosen as the "
                        "best epoch, drives --schedule plateau and --early-stop, and is saved; the log keeps the "
                        "raw weights' validation accuracy too (val_acc_raw)")
    g.add_argument("--init", metavar="WEIGHTS",
                   help="fine-tune: start from ferkit weights (shipped name, .safetensors or run folder); tensors are "
                        "matched by name and shape, classifier rows by class name (new classes start fresh)")
    g.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the model's auxiliary losses (pcnn: local classifiers, reconstruction); 0: off")
    g.add_argument("--aux-epochs", type=int, default=None, metavar="N",
                   help="auxiliary losses in the first N epochs only, then classification alone (default: all)")
    g.add_argument("--teacher", metavar="MODEL",
                   help="distil: also learn this model's probabilities of each training image (a shipped name, "
                        "weights, or an ensemble A+B); computed once, kept in the run folder")
    g.add_argument("--kd-weight", type=float, default=0.5,
                   help="with --teacher: loss = (1 - w) * cross-entropy + w * T^2 * KL(teacher || student)")
    g.add_argument("--kd-temperature", type=float, default=2.0, metavar="T",
                   help="with --teacher: the temperature that softens both distributions")
    g.add_argument("--teacher-tta", choices=["flip", "tencrop"], default="flip",
                   help="with --teacher: the views of each training image the teacher's probabilities average (its "
                        "test-time augmentation; tencrop: 5x flip's one-off cost)")
    g = s.add_argument_group("augmentation (one random affine warp + photometric + erasing, per image)")
    g.add_argument("--aug", choices=["default", "none"], default="default")
    g.add_argument("--flip", type=float, help="flip probability (default 0.5)")
    g.add_argument("--shift", type=float, help="max shift, fraction of size (default 0.1)")
    g.add_argument("--rotate", type=float, help="max rotation, degrees (default 15)")
    g.add_argument("--scale", type=float, help="max zoom change (default 0.15)")
    g.add_argument("--brightness", type=float, help="default 0.3")
    g.add_argument("--contrast", type=float, help="default 0.3")
    g.add_argument("--erase", type=float, help="random erasing probability (default 0.5)")
    _add_detect_args(s, "find and align the face in each image as `ferkit predict` does (the highest-scoring one); "
                        "none: images are face crops already (FER2013, FER+, CK+48)")
    g = s.add_argument_group("run")
    g.add_argument("--seed", type=seed_int, default=0)
    g.add_argument("--device", default="auto", help="auto (cuda when there is one, else cpu), cpu, cuda or cuda:N")
    g.add_argument("--no-amp", action="store_true", help="disable bfloat16 mixed precision on CUDA")
    g.add_argument("--cpu-amp", action="store_true",
                   help="bfloat16 mixed precision on the CPU too, where the CPU computes bfloat16 natively "
                        "(Intel AMX or AVX512-BF16: amx_bf16 / avx512_bf16 in /proc/cpuinfo): a training step "
                        "2.55x faster for vgg_fer, 1.0-1.8x for the others (docs/benchmarks_train.md); slower "
                        "elsewhere (default: float32 on the CPU)")
    g.add_argument("--recalibrate-bn", action="store_true",
                   help="at the end, re-estimate batch-norm statistics on 8192 un-augmented training images and "
                        "keep them if the validation accuracy rises (the card says which; on FER2013 they rose for "
                        "every shipped network but one, on FER+ they fell: docs/notes.md)")
    g.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    g.add_argument("--limit", type=int, help="use at most N images per split (quick trials)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    g.add_argument("--command", default=None, help=argparse.SUPPRESS)


def _add_bn_args(s: argparse.ArgumentParser, required: bool) -> None:
    """The images that re-estimate batch-norm statistics (average, recalibrate)."""
    _add_dataset_args(s, required=required)
    g = s.add_argument_group("batch-norm statistics" + ("" if required else " (with --dataset/--data)"))
    g.add_argument("--bn-split", metavar="SPLIT", help="split whose images re-estimate them (default: the "
                                                       "dataset's training split; never the test split)")
    g.add_argument("--bn-images", type=positive_int, metavar="N",
                   help="images drawn at random (seed 0) from that split (default 8192)")
    g.add_argument("--bn-tta", choices=["none", "flip", "tencrop"], default="none",
                   help="the test-time views the network will be shown (`evaluate --tta`): each image gives one "
                        "of them in turn, so the statistics are those views' (default: none, the faces as they are)")
    g.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar while images load")
    _add_detect_args(s, "find and align the faces of full photos first (default: none, the images are faces)")


def build_parser() -> argparse.ArgumentParser:
    fmt = _Fmt
    p = _Parser(prog="ferkit", description="ferkit: facial expression recognition toolkit.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"ferkit {__import__('ferkit').__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    s = sub.add_parser("models", epilog=VERB_EXAMPLES["models"],
                       help="list architectures and shipped weights", formatter_class=fmt,
                       description="List the registered architectures (parameters, input, what they are) and the shipped "
                                   "weights with the metrics on their cards (k-fold rows: the mean over the "
                                   "folds, and the round the file is), then the aliases of ensembles. Every "
                                   "name works as --model in the other verbs and in ferkit.load_model(name).")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_models)

    s = sub.add_parser("cache", epilog=VERB_EXAMPLES["cache"],
                       help="where ferkit's cache is, its size; --clear empties it", formatter_class=fmt,
                       description="ferkit keeps decoded dataset splits, models exported for onnxruntime and "
                                   "FER2013's clean-twin matches in a cache ($FERKIT_CACHE, default "
                                   "~/.cache/ferkit), made again whenever needed. This lists what it holds; "
                                   "--clear removes it.")
    s.add_argument("--clear", action="store_true", help="remove the cached files (each is made again when needed)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_cache)

    s = sub.add_parser("data", epilog=VERB_EXAMPLES["data"],
                       help="check a dataset: counts per split and class, folds", formatter_class=fmt,
                       description="Read a dataset's labels (without decoding images) and print the number of "
                                   "images per split and class, the subject folds where the dataset has them, "
                                   "and every item left out (with --skip-bad; --check decodes the images too, so "
                                   "the unreadable ones are listed as well).")
    _add_dataset_args(s)
    s.add_argument("--split", help="only this split (default: all)")
    s.add_argument("--check", action="store_true",
                   help="also decode the images and compare splits' sharpness, contrast and brightness, warning "
                        "about train/test shifts (e.g. a blurred training split)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_data)

    s = sub.add_parser("train", epilog=VERB_EXAMPLES["train"],
                       help="train a model", formatter_class=fmt,
                       description="Train an architecture on a dataset. Writes config, per-epoch log (CSV/JSON), "
                                   "curves, a checkpoint every epoch, the best weights (chosen on the validation "
                                   "split) and a model card into --out.")
    _add_train_args(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", epilog=VERB_EXAMPLES["evaluate"],
                       help="evaluate a model on a dataset split", formatter_class=fmt,
                       description="Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix of "
                                   "a model on a dataset split. Prints a table; --json writes the metrics; a "
                                   "confusion-matrix PNG is written next to the JSON (or to --plot). Datasets of "
                                   "full photos (JAFFE, KDEF) need --detect: each image then goes through the same "
                                   "detection and alignment as `ferkit predict` before it is classified.")
    s.add_argument("--model", default="default", help=MODEL_HELP)
    _add_dataset_args(s)
    s.add_argument("--split", help="default: the dataset's standard test split (FER2013 PrivateTest, FER+ Test)")
    s.add_argument("--json", metavar="OUT.json", help="write metrics here (and the confusion matrix beside it, "
                   "OUT_confusion.png, unless --plot); '-' writes them to standard output and the table to "
                   "standard error")
    s.add_argument("--plot", metavar="OUT.png", help="confusion-matrix image (default: next to --json)")
    s.add_argument("--predictions", metavar="OUT.csv",
                   help="one row per image: source, label, predicted, correct (1/0), each class's probability; "
                        "`ferkit compare A.csv B.csv` compares two models on the same images (paired test)")
    s.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none", help=TTA_HELP)
    s.add_argument("--batch-size", type=positive_int, default=256)
    s.add_argument("--limit", type=positive_int, metavar="N",
                   help="evaluate N of the split's images, drawn at random (seed 0): a quick check, not the split's "
                        "number (the split is still read whole, from the cache after the first time)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (cuda when there is one) (default: cpu)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar while the split is read")
    _add_backend_arg(s)
    _add_detect_args(s, "detect the face in each image and classify it aligned, as `ferkit predict` does (the "
                        "highest-scoring face; mtcnn: 5 landmarks, haar: OpenCV's cascade). 'none': images are "
                        "already face crops and are only resized (FER2013, FER+, CK+48, RAF-DB aligned). Images "
                        "with no face found keep the whole image and are counted as no_face")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("compare", epilog=COMPARE_EXAMPLES, formatter_class=fmt,
                       help="compare two models image by image: accuracy difference, its interval, McNemar's test",
                       description="Compare two evaluations of the same split, image by image: each model's "
                                   "accuracy, B - A with a 95% paired-bootstrap interval, and McNemar's exact test "
                                   "on the images where one is right and the other wrong. Reads the CSVs of "
                                   "`ferkit evaluate ... --predictions`; images in one file only are left out "
                                   "(and counted).")
    s.add_argument("a", metavar="A.csv", help="the first model's predictions (`ferkit evaluate --predictions`)")
    s.add_argument("b", metavar="B.csv", help="the second model's, on the same split")
    s.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamplings (default: 10000)")
    s.add_argument("--seed", type=seed_int, default=0, help="the bootstrap's seed (default: 0)")
    s.add_argument("--json", metavar="OUT.json", help="write the comparison here as JSON")
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("predict", epilog=VERB_EXAMPLES["predict"],
                       help="read every face's expression in images, folders, videos or a webcam", formatter_class=fmt,
                       description="Detect, align and classify every face in images, folders (of images and "
                                   "videos), video files "
                                   "or a live webcam. Images: prints each face; --out writes an annotated copy and "
                                   "JSON. Folders: searched with their subfolders (hidden files and folders listed, not read) for image "
                                   "files by extension (.jpg .jpeg .png .bmp .tif .tiff .webp .gif .pgm .ppm), and "
                                   "for videos (read after the folder's images); a "
                                   "row per face in --csv/--json, --out mirrors the subfolders, other files and "
                                   "unreadable ones listed at the end. Videos: --out writes an annotated video, a "
                                   "per-frame CSV (time, track id, probabilities), JSON and an expression-over-time "
                                   "plot; faces keep track ids. Exit code 1 when any source (or a video's frame) could "
                                   "not be read, the others still done, or when ferkit refuses an option's value; 2 "
                                   "when the parser rejects an option (unknown, wrong type, not a choice); 130 on "
                                   "Ctrl+C over files (what was finished is written).")
    s.add_argument("sources", nargs="*", metavar="SOURCE", help="image files, folders (of images and videos) or video "
                   "files")
    s.add_argument("--webcam", type=int, metavar="N", help="read camera N live (a window with boxes, labels, FPS)")
    s.add_argument("--model", default="default", help=MODEL_HELP)
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (cuda when there is one) (default: cpu)")
    _add_backend_arg(s)
    g = s.add_argument_group("faces")
    g.add_argument("--detector", "--detect", choices=["mtcnn", "haar", "none"], default="mtcnn",
                   help="mtcnn: boxes + 5 landmarks (aligned crops); haar: OpenCV's cascade, lighter; "
                        "none: each image is already a face crop")
    g.add_argument("--min-face", type=int, default=20, metavar="PX", help="smallest face searched for, in pixels")
    g.add_argument("--thresholds", metavar="P,R,O", default="0.6,0.7,0.9",
                   help="MTCNN's face-probability thresholds of its three stages (default: %(default)s); a higher "
                        "last one (0.95) keeps fewer false faces and loses some real ones (2.1%% of FER2013's at "
                        "0.95: docs/input-handling.md)")
    g.add_argument("--max-faces", type=int, metavar="N",
                   help="keep the N most confident faces per image (in a video: the faces already followed first, "
                        "so the ones kept stay the same while in view)")
    g.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none", help=TTA_HELP)
    g = s.add_argument_group("outputs")
    g.add_argument("--out", metavar="DIR", help="annotated images / videos, per-source JSON, video CSV and plots "
                   "(<name>_ferkit.png, <name>.json; a name two inputs share gets its extension appended; never an "
                   "input folder itself, and never written over an input)")
    g.add_argument("--json", metavar="OUT.json", help="all results as JSON (an object for one image read, else a list; a source that "
                   "could not be read is an entry with its \"error\"); '-' writes it to standard output and "
                   "the rest of the output to standard error")
    g.add_argument("--csv", metavar="OUT.csv", help="all results as CSV, one row per face (and per faceless image, and per source that "
                   "could not be read, its reason in the error column); '-' writes it to standard output")
    g.add_argument("--show", action="store_true", help="show results in a window (needs a display)")
    g.add_argument("--headless", action="store_true", help="never open a window (record --webcam with --out)")
    g.add_argument("--quiet", action="store_true", help="no per-image lines or progress bars")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (per-image lines still printed)")
    g = s.add_argument_group("video and webcam")
    g.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    g.add_argument("--detect-every", type=int, default=5, metavar="N",
                   help="full face detection every N processed frames; the frames between re-locate the known "
                        "faces only (faster; new faces appear within N frames)")
    g.add_argument("--smooth", type=float, default=0.5, metavar="A",
                   help="smooth each face's probabilities over time: weight A of the past (0 = off)")
    g.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    g.add_argument("--video-format", choices=["mp4", "webm"], default="mp4",
                   help="the annotated video --out writes: mp4 (MPEG-4 Part 2: fast to write; desktop players, "
                        "not browsers) or webm (VP8: plays in browsers and notebooks; about 10x slower to write)")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("serve", epilog=SERVE_EXAMPLES,
                       help="HTTP API and web page: photos and a live webcam in the browser", formatter_class=fmt,
                       description="Serve the face pipeline over HTTP: POST /v1/analyze (multipart field 'file') "
                                   "answers the JSON of `ferkit predict IMAGE --json` (?annotated=1: the annotated "
                                   "PNG); GET / is a web page to upload a photo or turn on the webcam and see boxes, "
                                   "labels and probabilities live; GET /healthz; API docs at /docs. The model loads "
                                   "once at start. Bad requests get a 4xx answer with a JSON error. Ctrl+C stops.")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    s.add_argument("--model", default="default",
                   help=_model_help(tta=False))
    s.add_argument("--detector", "--detect", choices=["mtcnn", "haar", "none"], default="mtcnn",
                   help="face detector (none: every image is a face crop)")
    _add_backend_arg(s, gpu=False)
    g = s.add_argument_group("limits")
    g.add_argument("--max-upload-mb", type=float, default=10.0, metavar="MB",
                   help="largest image upload, in MiB (2**20 bytes; default 10)")
    g.add_argument("--max-pixels", type=int, default=50_000_000, metavar="N",
                   help="largest image, width x height (413 above)")
    g.add_argument("--timeout", type=_positive_seconds, default=30.0, metavar="S",
                   help="seconds a request may take, upload and analysis (408 when the upload is late, else 504)")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="images analysed at once (threads sharing one model; on 2 cores 2 gave about the "
                        "throughput of 1, as MTCNN already keeps both busy: see docs/benchmarks.md)")
    g.add_argument("--max-queue", type=int, default=32, metavar="N",
                   help="requests that may wait for a worker (503 beyond)")
    s.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"], default="info",
                   help="server log detail (info: one line per request)")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("average", epilog=AVERAGE_EXAMPLES, formatter_class=fmt,
                       help="average the weights of networks that share a start (a model soup)",
                       description="Write one network whose weights are the weighted mean of several networks' "
                                   "(Wortsman et al. 2022, model soups): networks of one architecture and classes "
                                   "that share a start (one fine-tuned from the other with --init, or several "
                                   "fine-tuned from one) often score like their ensemble at one network's cost; "
                                   "networks trained from scratch apart do not average. Batch-norm statistics are "
                                   "averaged too, or re-estimated on a split's images with --dataset/--data (no "
                                   "labels used). Writes a run folder (model.safetensors + model.json naming the "
                                   "members and weights); measure it with `ferkit evaluate`, choose weights on a "
                                   "validation split, never on the test split.")
    s.add_argument("--models", required=True, metavar="A,B[,...]",
                   help="two or more shipped names, .safetensors files or run folders, comma-separated")
    s.add_argument("--weights", metavar="W1,W2[,...]",
                   help="one weight per model, normalised to sum 1 (default: equal)")
    s.add_argument("--out", required=True, metavar="DIR", help="run folder to write (model.safetensors + model.json)")
    s.add_argument("--force", action="store_true", help="replace a model already in --out")
    _add_bn_args(s, required=False)
    s.set_defaults(fn=cmd_average)

    s = sub.add_parser("recalibrate", epilog=RECALIBRATE_EXAMPLES, formatter_class=fmt,
                       help="re-estimate a network's batch-norm statistics on plain training images",
                       description="Batch norm keeps running statistics of the batches it trained on: augmented "
                                   "ones (flips, shifts, rotations, erased patches), which are not what it meets "
                                   "at test time. This re-estimates them with forward passes over un-augmented "
                                   "images of a split (the training split by default; no labels used, no weight "
                                   "changes) and writes the result as a run folder whose card says so. Measure it "
                                   "on the validation split before using it: it helped every FER2013 network but one "
                                   "here and hurt the FER+ ones (docs/notes.md), and with ten-crop TTA the plain "
                                   "faces' statistics can be worse (--bn-tta tencrop takes the crops').")
    s.add_argument("--model", required=True, help="shipped name, .safetensors file or run folder")
    s.add_argument("--out", required=True, metavar="DIR", help="run folder to write (model.safetensors + model.json)")
    s.add_argument("--force", action="store_true", help="replace a model already in --out")
    s.add_argument("--measure", action="store_true",
                   help="also evaluate the result on the validation and test splits its card names (the dataset it "
                        "was trained on) and write them into the card, as a trained run's card has them")
    _add_bn_args(s, required=True)
    s.set_defaults(fn=cmd_recalibrate)

    s = sub.add_parser("export", epilog=EXPORT_EXAMPLES,
                       help="export a model to ONNX (optionally int8) for onnxruntime", formatter_class=fmt,
                       description="Write a model as one ONNX file that needs nothing but onnxruntime: input 'image' "
                                   "float32 [N, C, H, W], the face's raw pixels 0..255 (gray for the shipped model, "
                                   "aligned/resized to the card's input size, N dynamic); normalisation and softmax "
                                   "are inside the graph; outputs 'probabilities' [N, K] (columns in the card's "
                                   "class order) and 'logits'. The model card goes inside the file (metadata "
                                   "'ferkit_card') and beside it (OUT.json), with an 'onnx' section: input, outputs, "
                                   "opset, quantisation and the largest difference from PyTorch measured at export. "
                                   "--int8 quantises with onnxruntime: static from the activation ranges ferkit "
                                   "ships for a model (2.4-3.7x faster than float32, "
                                   f"{_int8_note()}), else dynamic; static calibrated on your images with "
                                   "--dataset/--data.")
    s.add_argument("--model", default="default", help="shipped name, .safetensors file or run folder")
    s.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default: onnx, the only one)")
    s.add_argument("--out", required=True, metavar="FILE.onnx",
                   help="output file, or a folder for <name>.onnx (one that does not exist yet: end it in /); "
                        "missing folders are made, and an existing file (and its .json card) is replaced")
    s.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset version (7 to 20)")
    s.add_argument("--int8", nargs="?", const="auto", choices=["auto", "static", "dynamic"], metavar="MODE",
                   help="quantise to int8, MODE auto (the default), static or dynamic (a quarter of the file; "
                        "static int8 of the default is 2.4-3.7x faster than fp32 on our 2-core CPUs, dynamic int8 "
                        "is not faster: docs/benchmarks_classifier.md)")
    _add_dataset_args(s, required=False)
    g = s.add_argument_group("static int8 calibration (with --int8 and --dataset/--data)")
    g.add_argument("--calibration-split", metavar="SPLIT",
                   help="split whose images calibrate activation ranges (default: the dataset's validation split)")
    g.add_argument("--calibration-images", type=int, default=512, metavar="N", help="images drawn from that split")
    s.set_defaults(fn=cmd_export)

    from .explain.commands import add_au_analysis_parser, add_explain_parser

    add_explain_parser(sub, fmt)
    sub.choices["explain"].set_defaults(fn=cmd_explain)
    add_au_analysis_parser(sub, fmt, _add_dataset_args)
    sub.choices["au-analysis"].set_defaults(fn=cmd_au_analysis)

    s = sub.add_parser("crossval", epilog=CROSSVAL_EXAMPLES,
                       help="k-fold subject-independent cross-validation (CK+, JAFFE, KDEF)", formatter_class=fmt,
                       description="Train and test one model per fold: round i tests on fold i, picks the best epoch "
                                   "on fold i+1 and trains on the other folds (subject-independent; --folds 10 on "
                                   "JAFFE's 10 subjects is leave-one-subject-out). `ferkit train`'s options apply, "
                                   "but for the splits, which each round sets. Writes --out/foldNN/ (one run each), "
                                   "crossval.json (per-fold accuracy, "
                                   "mean and std, pooled confusion matrix and per-class metrics) and PNGs; --resume "
                                   "continues after an interruption.")
    _add_train_args(s, crossval=True)
    s.add_argument("--only", metavar="I,J", help="run only these rounds (a smoke test, or to share the rounds among "
                                                  "machines); crossval.json covers every finished round")
    s.set_defaults(fn=cmd_crossval)

    s = sub.add_parser("crossval-eval", epilog=CROSSVAL_EVAL_EXAMPLES, formatter_class=fmt,
                       help="evaluate finished cross-validations again: test-time augmentation, seed ensembles",
                       description="Evaluate the round models of finished `ferkit crossval` folders again, without "
                                   "training: round i's model on its selection fold (i+1) and its test fold (i). "
                                   "Several folders of the same protocol (same folds) are averaged round by round "
                                   "(an ensemble, e.g. of seeds). Prints each round and the mean +- std over the "
                                   "test folds next to the selection folds' mean (choose on that, report the test "
                                   "number); --out writes crossval.json in the shape `ferkit crossval` writes.")
    s.add_argument("runs", nargs="+", metavar="CV_DIR", help="folders written by `ferkit crossval` (its --out)")
    s.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none", help=TTA_HELP)
    s.add_argument("--out", help="write crossval.json, its confusion matrix and fold plot into this folder")
    s.add_argument("--batch-size", type=positive_int, default=256)
    s.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar while the folds' images load")
    s.set_defaults(fn=cmd_crossval_eval)

    s = sub.add_parser("probe", epilog=PROBE_EXAMPLES, formatter_class=fmt,
                       help="k-fold linear probe on frozen features of trained models (CK+, JAFFE, KDEF)",
                       description="Keep trained models fixed and cross-validate a logistic regression on their "
                                   "pooled last feature maps, over the subject folds of `ferkit crossval`: round i "
                                   "fits on the training folds, chooses the L2 strength on fold i+1 and tests on "
                                   "fold i. --center subject first subtracts each person's mean feature (no labels; "
                                   "transductive: it uses all of the test person's images at once). Writes "
                                   "crossval.json (the shape `ferkit crossval` writes) and its plots into --out.")
    s.add_argument("--models", required=True, metavar="M1,M2",
                   help="models whose features are probed, side by side (shipped names, .safetensors files or "
                        "run folders; any architecture with a feature extractor: all but pcnn)")
    s.add_argument("--dataset", required=True, metavar="NAME", help="ckplus | jaffe | kdef | imagefolder")
    s.add_argument("--data", required=True, metavar="PATH", help="the dataset's folder")
    s.add_argument("--skip-bad", action="store_true",
                   help="skip (and count) unreadable images instead of stopping at the first")
    s.add_argument("--folds", type=int, default=10, metavar="K", help="number of subject-independent folds")
    s.add_argument("--fold-seed", type=seed_int, metavar="S", help="seed of the subject-to-fold assignment")
    s.add_argument("--detect", "--detector", choices=["none", "mtcnn", "haar"], default="none",
                   help="find and align the face first (full photos such as JAFFE's)")
    s.add_argument("--min-face", type=int, default=20, metavar="PX", help="with --detect: smallest face, pixels")
    s.add_argument("--center", choices=["none", "subject"], default="none",
                   help="subject: subtract each person's mean feature (transductive, no labels)")
    s.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none",
                   help="features averaged over the image and its mirror (flip) or ten views (tencrop: the four "
                        "corner and the centre crops of 90%% size, each mirrored)")
    s.add_argument("--l2", default="1e-4,1e-3,1e-2,1e-1,1", metavar="A,B",
                   help="L2 strengths tried; each round chooses on its selection fold")
    s.add_argument("--out", help="write crossval.json and its plots into this folder")
    s.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    s.set_defaults(fn=cmd_probe)
    # an option without help text gets no line of --help at all (argparse): give it its default,
    # which decides how long a training or cross-validation runs (--epochs 100, --batch-size 128...)
    for sp in p._subparsers._group_actions[0].choices.values() if p._subparsers else []:
        for action in sp._actions:
            if (action.help is None and action.option_strings and action.default is not None
                    and action.default is not False and action.default is not argparse.SUPPRESS):
                action.help = "default: %(default)s"
    return p


def seed_int(text: str) -> int:
    """argparse type: a random seed, a whole number from 0 to 2**32 - 1 (what numpy and torch take)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {SEED_MAX}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer of 1 or more."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {v}")
    return v


def _command(a: argparse.Namespace) -> str:
    """The command line that ran, as written in cards and summaries (``main``'s argv when given)."""
    return "ferkit " + shlex.join(getattr(a, "argv", None) or sys.argv[1:])


def _shown(text: object, lines: bool = False) -> str:
    from .io import shown  # (imported when first needed: the CLI starts without numpy and OpenCV)

    return shown(text, lines)


def _empty_option(parser: argparse.ArgumentParser, a: argparse.Namespace) -> str | None:
    """The first option given an empty (or blank) value, such as ``--data ""`` or ``--out ""``:
    read as the current folder, they would train into it or read it as the dataset. Options a verb
    judges itself (``predict``'s outputs, ``export --out``, ``evaluate``'s outputs) say more there."""
    own = {"predict": {"json", "csv", "out"}, "export": {"out"}, "evaluate": {"json", "plot", "predictions"},
           "compare": {"json"},
           "serve": {"host"}}  # (serve --host "": every interface, as uvicorn reads it)
    verbs = next(x for x in parser._actions if isinstance(x, argparse._SubParsersAction)).choices
    sub = verbs.get(getattr(a, "verb", None))
    for act in (sub._actions if sub is not None else []):
        v = getattr(a, act.dest, None)
        if (act.option_strings and isinstance(v, str) and not v.strip() and v != act.default
                and act.dest not in own.get(a.verb, ())):
            return max(act.option_strings, key=len) + ("" if act.required else " (or leave the option out)")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = list(argv) if argv is not None else sys.argv[1:]
    if not args:  # `ferkit` alone: the verbs, not one line of "VERB is required"
        parser.print_help(sys.stderr)
        return 2
    a, extra = parser.parse_known_args(args)
    if extra:  # an option the verb does not take: said by the verb's parser (`ferkit predict --help`);
        # one given before the verb (`ferkit --foo models`) by ferkit's
        verbs = next(x for x in parser._actions if isinstance(x, argparse._SubParsersAction)).choices
        verb = getattr(a, "verb", None)
        at = args.index(verb) if verb in args else len(args)
        before = any(x in args[:at] for x in extra)
        (parser if before else verbs.get(verb) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    a.argv = list(argv) if argv is not None else sys.argv[1:]
    empty = _empty_option(parser, a)
    if empty is not None:
        opt, _, rest = empty.partition(" ")
        print(f"ferkit: error: {opt} is empty (an unset variable in a script?): give it a value{' ' + rest if rest else ''}",
              file=sys.stderr)
        return 1
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed with its escapes,
        if getattr(stream, "errors", None) == "strict":  # not a UnicodeEncodeError that ends the run
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")
    fmt = warnings.formatwarning
    # (a file's name in a message is shown with its control characters escaped: see io.shown)
    warnings.formatwarning = lambda msg, cat, *args, **kw: f"ferkit: warning: {_shown(msg)}\n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            # as Python's own default: a ResourceWarning is for developers (e.g. a form upload cut
            # short leaves Starlette's temporary file to the garbage collector), not a user's log
            warnings.simplefilter("ignore", ResourceWarning)
            return int(a.fn(a) or 0)
    except FerkitError as e:
        print(f"ferkit: error: {_shown(e)}", file=sys.stderr)  # (one line: a name's newline escaped)
        return 1
    except BrokenPipeError:  # (an OSError: before that clause) output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # an output path that cannot be written (a folder, missing, read-only, disk full)
        where = f"{e.filename}: " if getattr(e, "filename", None) else "an output or input file: "
        print(f"ferkit: error: cannot write or read {_shown(where)}{_shown(e.strerror or e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ferkit: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = fmt


if __name__ == "__main__":
    sys.exit(main())
