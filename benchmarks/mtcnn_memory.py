"""Peak memory and time of MTCNN on a photo tiled with small faces: R-Net and O-Net on every
candidate in one batch, against ``RUN_CHUNK`` candidates at a time (ferkit's way).

The photo: the example's face, ``--face`` pixels wide, tiled over a ``--side`` x ``--side`` image
(P-Net finds thousands of candidates). Each way runs in a fresh process, which reports its peak
resident memory (``ru_maxrss``, in KB on Linux: the MB figures are Linux's) and the detection's time,
then its resident memory (``VmRSS``) after the detection and after ``release_memory()`` (onnxruntime's
arenas shrunk, glibc's heap trimmed: what :meth:`ferkit.Recognizer.release_memory` does), with how
long that took.

    python benchmarks/mtcnn_memory.py --side 2048 --face 60
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"

CHILD = """
import json, resource, sys, time
import numpy as np
from PIL import Image
import ferkit.faces.mtcnn as M
from ferkit.faces.detect import create_detector
if sys.argv[2] != "chunked":
    M.RUN_CHUNK = 10 ** 12
img = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
from ferkit.runtime.memory import trim_heap
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024
det = create_detector("mtcnn")
t = time.perf_counter()
faces = det.detect(img)
seconds = round(time.perf_counter() - t, 1)
peak, after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, rss()
t = time.perf_counter()
det.release_memory()
trim_heap()
print(json.dumps({"faces": len(faces), "seconds": seconds, "peak_mb": peak, "after_mb": after,
                  "released_mb": rss(), "release_s": round(time.perf_counter() - t, 2)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=2048, help="the photo's side in pixels")
    ap.add_argument("--face", type=int, default=60, help="each tiled face's width in pixels")
    a = ap.parse_args()
    from PIL import Image

    face = Image.open(EXAMPLE).convert("RGB").crop((160, 40, 290, 190))
    face = face.resize((a.face, round(a.face * 150 / 130)))
    img = Image.new("RGB", (a.side, a.side))
    for y in range(0, a.side, face.height):
        for x in range(0, a.side, face.width):
            img.paste(face, (x, y))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiled.jpg"
        img.save(path, quality=80)
        for way in ("one batch", "chunked"):
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), way], capture_output=True, text=True,
                                 check=True).stdout
            rows[way] = json.loads(out.strip().splitlines()[-1])
    print(f"{a.side}x{a.side} photo of {a.face} px faces:")
    for way, r in rows.items():
        print(f"  {way:9}  {r['faces']} faces, {r['seconds']} s, peak {r['peak_mb']:,} MB, resident after "
              f"{r['after_mb']:,} MB, after release_memory() {r['released_mb']:,} MB ({r['release_s']} s)")


if __name__ == "__main__":
    main()
