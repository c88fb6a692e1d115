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

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from align_template import sample_args, sample_faces, with_context  # noqa: E402

from ferkit.faces import MTCNNDetector  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
HIGHER = (0.92, 0.95, 0.97, 0.99)


def main() -> None:
    a = sample_args(__doc__)
    files = sample_faces(a.data, a.n, a.seed)
    mt = MTCNNDetector(min_face_size=40, thresholds=(0.6, 0.7, 0.5))
    best = []
    for f in files:
        dets = mt.detect(with_context(f))
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
