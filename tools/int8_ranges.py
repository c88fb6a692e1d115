"""Calibrate static int8 for shipped weights and ship the activation ranges (not the images).

    .venv/bin/python tools/int8_ranges.py --model vgg_fer-fer2013 --dataset fer2013 \
        --data ../shared/data/fer2013 --split PublicTest --images 512 --report PublicTest PrivateTest

writes ``src/ferkit/weights/int8/<name>.json``: onnxruntime's calibration cache (per tensor, the
range its percentile calibrator measured on ``--images`` faces of the selection split ``--split``),
the weights' sha256, the versions and this command. ``backend="onnx-int8"`` (and ``ferkit export
--int8`` without --data) then build the static QDQ model from those ranges on the user's machine,
offline, exactly as ``ferkit export --int8 --dataset ... --calibration-split ...`` would with the
images (the same images: the first N of a fixed permutation, seed 0). Never calibrate on a test split.
``--report`` then measures the int8 model on the splits named (the test split too: reported, never
used to choose) and keeps the numbers in the file, with the processor they were measured on
(int8 kernels differ between processors); ``ferkit models`` lists them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ferkit import weights  # noqa: E402
from ferkit.errors import FerkitError  # noqa: E402
from ferkit.api import load_model  # noqa: E402
from ferkit.data import open_dataset  # noqa: E402
from ferkit.engine.evaluate import evaluate  # noqa: E402
from ferkit.runtime import cpu_name, export_onnx  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="shipped weights name (an alias is resolved)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True, help="a selection split (PublicTest, Valid, ...), never the test split")
    ap.add_argument("--images", type=int, default=512, help="calibration images (default 512, as ferkit export)")
    ap.add_argument("--report", nargs="+", default=[], metavar="SPLIT",
                    help="then evaluate the static int8 model these ranges make on these splits (as `ferkit evaluate "
                         "--backend onnx-int8`) and keep accuracy and macro-F1 in the file, with the processor: "
                         "`ferkit models` shows them (reported, never used to choose anything)")
    a = ap.parse_args()
    if a.images < 1:
        ap.error(f"--images must be at least 1, got {a.images}")
    try:
        return run(a, ap)
    except FerkitError as e:  # an unknown model, dataset or split, a missing folder: one line, no traceback
        ap.error(str(e))


def run(a: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    wpath = weights.resolve(a.model)
    if wpath.parent.resolve() != weights.SHIPPED_DIR.resolve():
        ap.error(f"{a.model}: not shipped weights")
    reader = open_dataset(a.dataset, a.data)
    split = reader.resolve_split(a.split)
    # only the selection or the training split: "all" and "trainval" of the folded datasets hold the test fold
    allowed = [s for s in (reader.val_split, reader.train_split) if s]
    if split not in allowed:
        ap.error(f"--split {a.split}: calibrate on {' or '.join(allowed)} of {reader.name}, not on a split that is "
                 f"or holds its test split ({reader.test_split})")
    model = load_model(str(wpath), backend="torch")
    c, h, w = model.input_size
    ds = reader.load(split, size=(h, w), mode="L" if c == 1 else "RGB")
    pick = np.random.default_rng(0).permutation(len(ds.images))[: a.images]
    calib = ds.images.numpy()[np.sort(pick)]
    with tempfile.TemporaryDirectory() as td:
        card = export_onnx(str(wpath), Path(td) / "m.onnx", int8="static", calibration=calib, write_card=False)
    q = card["onnx"]["quantization"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or None
    out = {"weights": wpath.name, "weights_sha256": weights.sha256(wpath),
           "calibration": {"dataset": a.dataset, "split": split, "images": int(len(calib)), "method": "percentile",
                           "pick": "the first N of numpy default_rng(0).permutation, sorted"},
           "torch": q["ranges"]["torch"], "onnxruntime": q["ranges"]["onnxruntime"],
           "command": shlex.join([".venv/bin/python", "tools/int8_ranges.py", *sys.argv[1:]]), "git_commit": commit,
           "max_abs_diff_vs_fp32_torch_random_images": q["max_abs_diff_vs_fp32_torch"],
           "cache": q["ranges"]["cache"]}
    weights.INT8_DIR.mkdir(exist_ok=True)
    dest = weights.INT8_DIR / f"{wpath.stem}.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size / 1024:.0f} KB: ranges of {len(out['cache'].get('data', out['cache']))} "
          f"tensors, from {len(calib)} images of {reader.name} {split})")
    if a.report:
        q8 = load_model(str(wpath), backend="onnx-int8")  # built from the ranges just written
        if q8.card["onnx"]["quantization"].get("mode") != "static":
            ap.error(f"{dest}: the shipped ranges did not give a static int8 model")
        metrics = {}
        for s in a.report:
            s = reader.resolve_split(s)
            r = evaluate(q8, reader.load(s, size=(h, w), mode="L" if c == 1 else "RGB"))
            metrics[s] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "n": r["n"]}
            print(f"static int8 on {reader.name} {s}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}")
        out["int8_metrics"] = {"dataset": reader.name, "splits": metrics, "cpu": cpu_name(),
                               "onnxruntime": q["ranges"]["onnxruntime"]}
        dest.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
