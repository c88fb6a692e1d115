"""``ferkit predict``: classify images or folders of images as face crops.

Until the face detector lands, each image is one face: its central square (``--crop center``)
or the whole image (``--crop none``). Bad files are reported and skipped; the exit code is 1
when any file failed, so batch jobs can tell.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from .api import ExpressionModel, load_model
from .errors import FerkitError
from .io import is_image_file, read_image


def center_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return img[y0:y0 + s, x0:x0 + s]


def expand_sources(sources: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to classify (folders expanded, recursively, to their image files) and missing ones."""
    files, failed = [], []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            imgs = [f for f in found if is_image_file(f)]
            failed += [(str(f), "not an image file (skipped)") for f in found if not is_image_file(f)]
            if not imgs:
                failed.append((str(p), "folder holds no image files"))
            files += imgs
        elif p.exists():
            files.append(p)
        else:
            failed.append((s, "no such file or folder"))
    return files, failed


def classify_file(model: ExpressionModel, path: Path, crop: str, tta: str | None) -> tuple[dict, np.ndarray]:
    rgb = read_image(path, mode="RGB", name=str(path))
    face = center_square(rgb) if crop == "center" else rgb
    probs = model.predict_proba([face], tta=tta)[0]
    pred = model.to_prediction(probs)
    h, w = rgb.shape[:2]
    s = min(h, w)
    box = [(w - s) // 2, (h - s) // 2, s, s] if crop == "center" else [0, 0, w, h]
    return {"source": str(path), "width": w, "height": h,
            "faces": [{"box": box, **pred.to_dict()}]}, rgb


def annotate(rgb: np.ndarray, result: dict) -> Image.Image:
    img = Image.fromarray(rgb)
    d = ImageDraw.Draw(img)
    for f in result["faces"]:
        x, y, w, h = f["box"]
        lw = max(2, min(img.size) // 150)
        d.rectangle([x, y, x + w - 1, y + h - 1], outline=(255, 200, 0), width=lw)
        text = f"{f['label']} {f['score']:.2f}"
        tb = d.textbbox((x, y), text)
        d.rectangle([tb[0] - 2, tb[1] - 2, tb[2] + 2, tb[3] + 2], fill=(255, 200, 0))
        d.text((x, y), text, fill=(0, 0, 0))
    return img


def predict_cli(a: argparse.Namespace) -> int:
    model = load_model(a.model)
    files, failed = expand_sources(a.sources)
    tta = None if a.tta == "none" else a.tta
    results = []
    out = Path(a.out) if a.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(files, desc="predicting", unit="img", disable=len(files) < 10 or not sys.stderr.isatty()):
        try:
            res, rgb = classify_file(model, path, a.crop, tta)
        except FerkitError as e:
            msg = str(e)
            failed.append((str(path), msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg))
            continue
        results.append(res)
        f = res["faces"][0]
        top = sorted(f["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        print(f"{path}: {f['label']} ({f['score']:.2f})  " + "  ".join(f"{k} {v:.2f}" for k, v in top))
        if out:
            annotate(rgb, res).save(out / f"{path.stem}_ferkit.png")
    if a.json:
        Path(a.json).write_text(json.dumps(results[0] if len(results) == 1 and len(files) == 1 else results,
                                           indent=2) + "\n")
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["source", "x", "y", "w", "h", "label", "score", *model.classes])
            for r in results:
                for f in r["faces"]:
                    wr.writerow([r["source"], *f["box"], f["label"], f"{f['score']:.6f}",
                                 *(f"{f['probabilities'][c]:.6f}" for c in model.classes)])
    if failed:
        print(f"\n{len(failed)} source(s) failed:", file=sys.stderr)
        for s, why in failed:
            print(f"  {s}: {why}", file=sys.stderr)
        return 1
    return 0
