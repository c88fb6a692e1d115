"""What MTCNN's last threshold (O-Net, ferkit's default 0.9) costs: real faces lost, false faces kept.

Real faces: FER2013 Training faces (the sharp copies in FER+'s ``FER2013Train``; no test image),
4x upscaled and padded as ``benchmarks/align_template.py`` does, searched with the last threshold
lowered to 0.5 so that every face O-Net scores from 0.5 up is seen; each image's best score is kept.
The share of the faces found at 0.9 that score below each higher threshold is what raising the
threshold to it would lose. False faces: the example photo saved as JPEG at a few qualities, each
detection past the first (the astronaut's is the only face in it) and its score.

    python benchmarks/face_threshold.py --data ../shared/data/ferplus --n 1500 --json docs/face_threshold.json
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ferkit.faces import MTCNNDetector

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
HIGHER = (0.92, 0.95, 0.97, 0.99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/ferplus", help="FER+ folder (uses FER2013Train/*.png)")
    ap.add_argument("--n", type=int, default=1500, help="images to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the measurements here")
    a = ap.parse_args()

    files = sorted(Path(a.data, "FER2013Train").glob("*.png"))
    if not files:
        raise SystemExit(f"no FER2013Train/*.png under {a.data}")
    random.Random(a.seed).shuffle(files)
    files = files[: a.n]
    mt = MTCNNDetector(min_face_size=40, thresholds=(0.6, 0.7, 0.5))
    up, pad = 4, 48
    best = []
    for f in files:
        g = np.asarray(Image.open(f).convert("L"))
        big = cv2.copyMakeBorder(cv2.resize(g, (48 * up, 48 * up), interpolation=cv2.INTER_CUBIC),
                                 pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        dets = mt.detect(np.repeat(big[:, :, None], 3, axis=2))
        if dets:
            best.append(max(d.score for d in dets))
    s = np.array(best)
    found = s[s >= 0.9]
    real = {"images": len(files), "found_at_0.9": int(len(found)),
            "lost_if_raised_to": {f"{t:g}": {"faces": int((found < t).sum()),
                                             "share": round(float((found < t).mean()), 4) if len(found) else None}
                                  for t in HIGHER}}
    rgb = Image.open(EXAMPLE).convert("RGB")
    false = {}
    for q in (None, 95, 90, 80, 70):
        if q is None:
            img = np.asarray(rgb)
        else:
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=q)
            img = np.asarray(Image.open(buf).convert("RGB"))
        dets = sorted(MTCNNDetector().detect(img), key=lambda d: -d.score)
        false["as is" if q is None else f"JPEG q{q}"] = [{"box": d.xywh, "score": round(float(d.score), 4)}
                                                        for d in dets[1:]]
    out = {"real_faces": real, "false_faces_in_example": false}
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
