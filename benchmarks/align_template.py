"""Measure where faces sit in FER2013 crops: the alignment template of ``ferkit.faces.align``.

The models ferkit trains see FER2013-style crops, so the face pipeline must cut faces out of
photos the same way. This runs MTCNN on FER2013 Training faces (the sharp copies in FER+'s
``FER2013Train``; no test image is used), 4x upscaled and padded so the detector sees some
context, and reports the median of the five landmarks in the 48x48 frame. It also runs the
Haar cascade on the same images and reports the landmarks relative to the Haar box, which
is how the Haar fallback places its (estimated) landmarks.

    python benchmarks/align_template.py --data ../shared/data/ferplus --n 1500 --json docs/align_template.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferkit.faces import HaarDetector, MTCNNDetector


UP, PAD = 4, 48  #: FER2013's 48x48 faces are upscaled this much and padded by this many pixels


def sample_args(doc: str) -> argparse.Namespace:
    """--data, --n, --seed and --json: a sample of FER2013 Training faces and where its measurements go."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/ferplus", help="FER+ folder (uses FER2013Train/*.png)")
    ap.add_argument("--n", type=int, default=1500, help="images to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the measurements here")
    return ap.parse_args()


def sample_faces(data: str, n: int, seed: int) -> list[Path]:
    """``n`` FER2013 Training faces (the sharp copies in FER+'s FER2013Train), drawn with ``seed``."""
    files = sorted(Path(data, "FER2013Train").glob("*.png"))
    if not files:
        raise SystemExit(f"no FER2013Train/*.png under {data}")
    random.Random(seed).shuffle(files)
    return files[:n]


def with_context(path: Path) -> np.ndarray:
    """A 48x48 face upscaled UP times and padded by PAD (edge pixels), as RGB: MTCNN sees some context."""
    g = np.asarray(Image.open(path).convert("L"))
    big = cv2.copyMakeBorder(cv2.resize(g, (48 * UP, 48 * UP), interpolation=cv2.INTER_CUBIC),
                             PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    return np.repeat(big[:, :, None], 3, axis=2)


def main() -> None:
    a = sample_args(__doc__)
    files = sample_faces(a.data, a.n, a.seed)
    mt, haar = MTCNNDetector(min_face_size=40), HaarDetector()
    up, pad = UP, PAD
    pts, rel = [], []
    for f in files:
        rgb = with_context(f)
        dets = [d for d in mt.detect(rgb) if d.score >= 0.9]
        if not dets:
            continue
        lm = dets[0].landmarks
        pts.append((lm - pad) / (48 * up))
        hs = haar.detect(rgb)
        if hs:
            x1, y1, x2, y2 = hs[0].box
            rel.append((lm - [x1, y1]) / [x2 - x1, y2 - y1])
    pts, rel = np.array(pts), np.array(rel)
    med = np.median(pts, axis=0)
    # symmetric about the vertical mid-line: average each point with its mirror image
    mirror = med[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]
    sym = (med + mirror) / 2
    hmed = np.median(rel, axis=0)
    hsym = (hmed + hmed[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]) / 2
    out = {"images": len(files), "mtcnn_found": len(pts), "haar_found": len(rel),
           "template_median": med.round(4).tolist(), "template_symmetric": sym.round(4).tolist(),
           "template_iqr": (np.percentile(pts, 75, 0) - np.percentile(pts, 25, 0)).round(4).tolist(),
           "haar_box_landmarks_symmetric": hsym.round(4).tolist()}
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
