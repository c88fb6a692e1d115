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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/ferplus", help="FER+ folder (uses FER2013Train/*.png)")
    ap.add_argument("--n", type=int, default=1500, help="images to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the measurements here")
    a = ap.parse_args()

    files = sorted(Path(a.data, "FER2013Train").glob("*.png"))
    random.Random(a.seed).shuffle(files)
    files = files[: a.n]
    mt, haar = MTCNNDetector(min_face_size=40), HaarDetector()
    up, pad = 4, 48
    pts, rel = [], []
    for f in files:
        g = np.asarray(Image.open(f).convert("L"))
        big = cv2.copyMakeBorder(cv2.resize(g, (48 * up, 48 * up), interpolation=cv2.INTER_CUBIC),
                                 pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        rgb = np.repeat(big[:, :, None], 3, axis=2)
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
