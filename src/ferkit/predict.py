"""``ferkit predict``: classify the expression in images or folders of images.

Until the MTCNN face pipeline lands, each image gives one face: the largest face OpenCV's Haar
cascade finds (``--crop face``, the default; the central square when it finds none), the
central square (``--crop center``) or the whole image (``--crop none``, for face crops). Bad
files are reported and skipped; the exit code is 1 when any file failed, so batch jobs can tell.
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


def center_box(h: int, w: int) -> list[int]:
    """``[x, y, w, h]`` of the central square of an ``h x w`` image."""
    s = min(h, w)
    return [(w - s) // 2, (h - s) // 2, s, s]


def center_square(img: np.ndarray) -> np.ndarray:
    x, y, w, h = center_box(*img.shape[:2])
    return img[y:y + h, x:x + w]


_HAAR = None


def haar_largest_face(gray: np.ndarray) -> list[int] | None:
    """``[x, y, w, h]`` of the largest frontal face OpenCV's Haar cascade finds, or None."""
    global _HAAR
    import cv2

    if _HAAR is None:
        _HAAR = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
        if _HAAR.empty():
            raise FerkitError("OpenCV's Haar face cascade is missing (opencv-python-headless<5 ships it)")
    side = min(gray.shape[:2])
    faces = _HAAR.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(20, side // 20),) * 2)
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces.tolist(), key=lambda f: f[2] * f[3])
    return [int(x), int(y), int(w), int(h)]


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
    h, w = rgb.shape[:2]
    how = crop
    if crop == "none":
        box = [0, 0, w, h]
    else:
        box = haar_largest_face(read_image(rgb, mode="L")) if crop == "face" else None
        if box is None:
            box, how = center_box(h, w), "center"
    x, y, bw, bh = box
    pred = model.to_prediction(model.predict_proba([rgb[y:y + bh, x:x + bw]], tta=tta)[0])
    return {"source": str(path), "width": w, "height": h,
            "faces": [{"box": box, "crop": how, **pred.to_dict()}]}, rgb


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
        where = "face at ({}, {}) {}x{}".format(*f["box"]) if f["crop"] == "face" else f"{f['crop']} crop"
        print(f"{path}: {f['label']} ({f['score']:.2f}) [{where}]  " + "  ".join(f"{k} {v:.2f}" for k, v in top))
        if out:
            annotate(rgb, res).save(out / f"{path.stem}_ferkit.png")
    if a.json:
        Path(a.json).write_text(json.dumps(results[0] if len(results) == 1 and len(files) == 1 else results,
                                           indent=2) + "\n")
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["source", "x", "y", "w", "h", "crop", "label", "score", *model.classes])
            for r in results:
                for f in r["faces"]:
                    wr.writerow([r["source"], *f["box"], f["crop"], f["label"], f"{f['score']:.6f}",
                                 *(f"{f['probabilities'][c]:.6f}" for c in model.classes)])
    if failed:
        print(f"\n{len(failed)} source(s) failed:", file=sys.stderr)
        for s, why in failed:
            print(f"  {s}: {why}", file=sys.stderr)
        return 1
    return 0
