"""How fast is the face pipeline on CPU? Writes the "Face pipeline speed" section of docs/benchmarks.md.

    python benchmarks/pipeline.py --out docs/benchmarks.md --json docs/benchmarks_pipeline.json

Frames: 640x480 JPEGs (quality 90) made from ``examples/astronaut.jpg`` (public domain, one face,
512x512): "1 face" is the photo at full size in a 640x480 window (borders mirrored; the face is
about 90 x 115 pixels), "4 faces" tiles four 320x240 windows around the face (two of them
mirrored) into one frame. Each sequence moves the window a few pixels from frame to frame (a
smooth path, at most ~1 pixel a frame), as a face in front of a webcam does, so the video fast
path (``detect_every``) sees realistic input.

Every configuration runs the real video code, :meth:`ferkit.Recognizer.stream`, over the
frames, sequentially, in this one process. Its steps are timed per frame by wrapping them:
decode (JPEG bytes -> RGB with ``ferkit.io.read_image``), detect (the detector's ``detect``, and
``refine`` on the fast path), align (``Recognizer.crops``), classify (``Recognizer.classify``);
"other" is the rest of a frame's time (tracker, results). One warm-up pass, then ``--repeat``
timed passes; the table gives the median and 90th percentile per frame in ms, and frames/s as
frames over wall time (so the slow full-detection frames of the fast path count in full). One
extra row reads the same frames from an MP4 file with :class:`ferkit.io.VideoReader`.

``--threads`` (default 2, the target machine's cores) sets the thread counts of the classifier
(onnxruntime or torch, per ``--backend``; ``auto`` as ``ferkit.load_model``), of MTCNN's
onnxruntime sessions and of OpenCV. Numbers vary with machine load (the markdown records the load
average); rerun on a quiet machine to publish. About 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import io
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import PIL
import torch
from PIL import Image

import ferkit
from ferkit import Recognizer
from ferkit.api import BACKENDS, load_model
from ferkit.faces import HaarDetector, MTCNNDetector
from ferkit.io import VideoReader, VideoWriter, read_image
from ferkit.runtime import cpu_name
from ferkit.weights import ALIASES

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"
W, H = 640, 480
TARGET_FPS = 30.0
START, END = "<!-- pipeline:start -->", "<!-- pipeline:end -->"
INTRO = """# Benchmarks

Speed measurements of ferkit, each section written by the script named in it (rerun it to
update the section; the other sections are left alone). Raw numbers sit next to this file as JSON.
"""
STAGES = ("decode", "detect", "align", "classify", "other")


# ---------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------
def path_offsets(n: int, ax: float = 8.0, ay: float = 4.0) -> list[tuple[int, int]]:
    """A smooth loop of window offsets in pixels (at most ~1 px per frame for n=60)."""
    t = 2 * np.pi * np.arange(n) / max(n, 1)
    return [(int(round(ax * np.sin(a))), int(round(ay * np.sin(2 * a)))) for a in t]


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_frames(n: int) -> dict[str, tuple[int, list[bytes]]]:
    """``{scene: (faces in it, [JPEG bytes per frame])}`` for the "1 face" and "4 faces" scenes."""
    photo = read_image(PHOTO, mode="RGB")
    assert photo.shape[:2] == (512, 512), photo.shape
    m = 16  # room to move
    big = cv2.copyMakeBorder(photo, m, m, (W - 512) // 2 + m, (W - 512) // 2 + m, cv2.BORDER_REFLECT_101)
    cx, cy = 223 + (W - 512) // 2 + m, 115 + m  # the face's centre in ``big``
    one, four = [], []
    for dx, dy in path_offsets(n):
        one.append(jpeg(big[m + dy:m + dy + H, m + dx:m + dx + W]))
        cell = big[cy - H // 4 + dy:cy + H // 4 + dy, cx - W // 4 + dx:cx + W // 4 + dx]
        row0 = np.concatenate([cell, cell[:, ::-1]], axis=1)
        four.append(jpeg(np.ascontiguousarray(np.concatenate([row0, row0[:, ::-1]], axis=0))))
    return {"1 face": (1, one), "4 faces": (4, four)}


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------
class Stopwatch:
    """Seconds spent per stage in the current frame, and calls, filled by :meth:`wrap`-ped functions."""

    def __init__(self) -> None:
        self.cur: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, stage: str, seconds: float) -> None:
        self.cur[stage] += seconds
        self.calls[stage] += 1

    def wrap(self, obj: object, attr: str, stage: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - t0)

        setattr(obj, attr, timed)

    def pop(self) -> tuple[dict[str, float], dict[str, int]]:
        cur, calls = dict(self.cur), dict(self.calls)
        self.cur.clear()
        self.calls.clear()
        return cur, calls


class JpegFrames(VideoReader):
    """A "video" of JPEG bytes for :meth:`Recognizer.stream`, decoding each frame with ``read_image``."""

    def __init__(self, frames: list[bytes], watch: Stopwatch, fps: float = 30.0) -> None:  # nothing to open
        self.name, self.fps, self.is_camera = "frames", fps, False
        self.frames, self.watch = frames, watch
        self.frame_count, self.width, self.height = len(frames), W, H
        self.errors: list[tuple[int, str]] = []
        self.frames_read = 0

    def __iter__(self):
        for i, data in enumerate(self.frames):
            t0 = time.perf_counter()
            rgb = read_image(data, mode="RGB")
            self.watch.add("decode", time.perf_counter() - t0)
            self.frames_read += 1
            yield i, i / self.fps, rgb

    def close(self) -> None:
        pass


class TimedVideo(VideoReader):
    """:class:`VideoReader` (a file) with each frame's read + colour conversion timed as decode."""

    def __init__(self, path: Path, watch: Stopwatch) -> None:
        super().__init__(path)
        self.watch = watch

    def __iter__(self):
        it = super().__iter__()
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.watch.add("decode", time.perf_counter() - t0)
            yield item


def run_pass(rec: Recognizer, reader: VideoReader, watch: Stopwatch) -> list[dict]:
    """One pass of ``rec.stream`` over ``reader``: per frame, seconds per stage, calls and faces."""
    rows = []
    t0 = time.perf_counter()
    for r in rec.stream(reader):
        t1 = time.perf_counter()
        cur, calls = watch.pop()
        stages = {s: cur.get(s, 0.0) for s in ("decode", "align", "classify")}
        stages["detect"] = cur.get("detect", 0.0) + cur.get("refine", 0.0)
        stages["other"] = (t1 - t0) - sum(stages.values())
        rows.append({"total": t1 - t0, **stages, "full_detections": calls.get("detect", 0),
                     "refines": calls.get("refine", 0), "faces": len(r.faces)})
        t0 = time.perf_counter()
    return rows


def make_recognizer(model, detector: str, min_face_size: int, every: int, threads: int,
                    tta: str | None = None) -> Recognizer:
    det = (MTCNNDetector(min_face_size=min_face_size, threads=threads) if detector == "mtcnn"
           else HaarDetector(min_face_size=min_face_size))
    return Recognizer(model, detector=det, detect_every=every, tta=tta)


def summarize(frames: list[dict]) -> dict:
    ms = {k: np.array([f[k] for f in frames]) * 1000 for k in ("total", *STAGES)}
    faces = np.array([f["faces"] for f in frames])
    out = {k: {"median": round(float(np.median(v)), 3), "p90": round(float(np.percentile(v, 90)), 3),
               "mean": round(float(v.mean()), 3)} for k, v in ms.items()}
    out["fps"] = round(float(len(frames) / (ms["total"].sum() / 1000)), 2)
    out["faces_min"], out["faces_median"], out["faces_max"] = int(faces.min()), float(np.median(faces)), int(
        faces.max())
    out["frames_with_full_detection"] = int(sum(f["full_detections"] > 0 for f in frames))
    out["frames_timed"] = len(frames)
    return out


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
def classifier_runtime(model) -> tuple[str, int]:
    """(runtime, threads) the classifier runs on: onnxruntime (``backend`` onnx / onnx-int8) or torch."""
    if hasattr(model, "session"):
        return "onnxruntime", int(getattr(model, "threads", 0) or 0)
    return "torch", torch.get_num_threads()


def machine(threads: int, rec: Recognizer | None) -> dict:
    cpu = platform.processor()
    ort_threads = None
    if rec is not None and isinstance(rec.detector, MTCNNDetector):
        ort_threads = rec.detector.net.pnet.get_session_options().intra_op_num_threads
    return {"cpu": cpu_name(), "platform_processor": cpu, "os_cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(), "python": platform.python_version(), "ferkit": ferkit.__version__,
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "threads_requested": threads,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "onnxruntime_intra_op_threads": ort_threads, "opencv_threads": cv2.getNumThreads(),
            "load_average_1min_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def cell(s: dict) -> str:
    return f"{s['median']:.1f} / {s['p90']:.1f}"


def faces_cell(s: dict, expected: int) -> str:
    lo, hi = s["faces_min"], s["faces_max"]
    found = f"{lo}" if lo == hi else f"{lo}-{hi} (median {s['faces_median']:g})"
    return f"{found} of {expected}"


def target_cell(scene: str, fps: float) -> str:
    """The 30 fps column: the issue's target is for one face; other scenes' rows say so, not met/not met."""
    if scene != "1 face":
        return "n/a (1-face target)"
    return "met" if fps >= TARGET_FPS else "not met"


def markdown(res: dict) -> str:
    m, a = res["machine"], res["args"]
    lines = [
        START,
        "## Face pipeline speed (CPU)",
        "",
        f"    {res['command']}",
        "",
        f"Measured {res['date']}: {a['frames']} frames per pass, an untimed warm-up of {a['warmup']} frames, then "
        f"{a['repeat']} timed passes per row, sequentially in one process.",
        "",
        f"- Machine: {m['cpu']} (`os.cpu_count()` = {m['os_cpu_count']}, `platform.processor()` = "
        f"{m['platform_processor']!r}), {m['platform']}; Python {m['python']}, torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}, OpenCV {m['opencv']}, Pillow {m['pillow']}, numpy {m['numpy']}.",
        f"- Threads (`--threads {a['threads']}`): classifier ({res['classifier_runtime']}) "
        f"{res['classifier_threads']}, MTCNN (onnxruntime) {m['onnxruntime_intra_op_threads']}, OpenCV "
        f"{m['opencv_threads']}, torch {m['torch_threads']} (`torch.set_num_threads`). Load average (1 min) "
        f"{res['load_average_1min_start']} at the start, {m['load_average_1min_end']} at the end: other work on "
        f"the machine slows every row.",
        f"- Model: `{res['model']}` ({'the default' if res['model'] == ALIASES['default'] else 'not the default'}; "
        f"input {res['model_input']}), `backend={a['backend']!r}`"
        + (f", test-time augmentation `{a['tta']}` (the classify column includes every view)"
           if a.get("tta", "none") != "none" else "") + ": runs "
        f"on {res['classifier_runtime']}. MTCNN `min_face_size` "
        f"{res['min_face_size_default']} (the default) unless the row says otherwise; Haar: OpenCV's frontal "
        f"cascade, `min_face_size` 20.",
        "- Frames: 640x480 JPEGs (quality 90) from `examples/astronaut.jpg`, moving a few pixels over the "
        "sequence: *1 face* (about 90 x 115 px) and *4 faces* (four tiled copies of the same face, two mirrored).",
        "- Each row runs `Recognizer.stream` (the real video code). Cells are median / p90 ms per frame; "
        "*detect* includes O-Net `refine` on fast-path frames; *other* is the tracker and results; "
        "*frames/s* is frames over wall time (decode + detect + align + classify + other).",
        f"- Target (the issue): >= {TARGET_FPS:g} frames/s end to end for one face, default model, 2 CPU cores. "
        "The `fer` package is timed beside ferkit on the same frames, in one run, by benchmarks/peers.py "
        "(\"Side by side with `fer`\" below).",
        "",
        "| frames | pipeline | faces found | frames with full detection | decode | detect | align | classify "
        "| other | end to end (ms) | frames/s | 30 fps target |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in res["rows"]:
        s = r["summary"]
        full = f"{s['frames_with_full_detection']} of {s['frames_timed']}"
        lines.append(
            f"| {r['scene']} | {r['label']} | {faces_cell(s, r['expected_faces'])} | {full} | {cell(s['decode'])} "
            f"| {cell(s['detect'])} | {cell(s['align'])} | {cell(s['classify'])} | {cell(s['other'])} "
            f"| {cell(s['total'])} | {s['fps']:.1f} | {target_cell(r['scene'], s['fps'])} |")
    lines += ["", *res["notes"], END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, start: str = START, end: str = END, intro: str = INTRO) -> None:
    """Replace a script's section of ``path`` (between the ``start`` and ``end`` markers, this
    script's by default), or add it; keep the rest. benchmarks/peers.py uses it for its own."""
    text = path.read_text() if path.exists() else intro
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def notes(rows: list[dict], default_every: int) -> list[str]:
    """Plain-words verdicts from the numbers."""
    out = []
    for r in rows:
        if r["scene"] == "1 face" and r["detector"] == "mtcnn" and r["source"] == "jpeg" and r["default_size"]:
            s, what = r["summary"], ("the stream default" if r["detect_every"] == default_every else "not the default")
            out.append(f"MTCNN with `detect_every={r['detect_every']}` ({what}), 1 face: {s['fps']:.1f} frames/s, "
                       f"30 fps target {'met' if s['fps'] >= TARGET_FPS else 'not met'}.")
    met = [f"{r['scene']}, {r['label']}" for r in rows if r["summary"]["fps"] >= TARGET_FPS]
    out.append("Rows meeting 30 frames/s: " + ("; ".join(met) if met else "none") + ".")
    return [f"- {n}" for n in out]


# ---------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table: a scene, a recognizer, its timed frames."""

    scene: str
    key: str
    label: str
    detector: str
    min_face_size: int
    detect_every: int
    source: str  #: "jpeg" (the JPEG frames) or "mp4" (the same frames as an MP4 file)
    expected_faces: int
    frames: list[bytes]
    mp4: Path
    rec: Recognizer | None = None
    watch: Stopwatch = field(default_factory=Stopwatch)
    timed: list[dict] = field(default_factory=list)

    def setup(self, model, threads: int, warmup: int, tta: str | None = None) -> None:
        """Build the recognizer, wrap its steps in the stopwatch and warm it up."""
        self.rec = make_recognizer(model, self.detector, self.min_face_size, self.detect_every, threads, tta)
        self.watch.wrap(self.rec.detector, "detect", "detect")
        if hasattr(self.rec.detector, "refine"):
            self.watch.wrap(self.rec.detector, "refine", "refine")
        self.watch.wrap(self.rec, "crops", "align")
        self.watch.wrap(self.rec, "classify", "classify")
        if warmup:
            with self.open(warmup) as rd:
                for i, _ in enumerate(self.rec.stream(rd)):
                    if i + 1 >= warmup:
                        break
        self.watch.pop()

    def open(self, n: int | None = None) -> VideoReader:
        """The first ``n`` frames (all: None) as a reader for ``Recognizer.stream``."""
        return TimedVideo(self.mp4, self.watch) if self.source == "mp4" else JpegFrames(self.frames[:n], self.watch)

    def run(self) -> None:
        with self.open() as rd:
            self.timed += run_pass(self.rec, rd, self.watch)

    def info(self) -> dict:
        out = {k: getattr(self, k) for k in ("scene", "key", "label", "detector", "min_face_size", "detect_every",
                                              "source", "expected_faces")}
        out["default_size"] = self.key in ("mtcnn", "mtcnn_fast")
        return out


def compact_json(obj) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the frames per row (default 3)")
    ap.add_argument("--frames", type=int, default=60, help="frames in each sequence (default 60)")
    ap.add_argument("--warmup", type=int, default=10, help="frames of the untimed warm-up pass per row (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime / OpenCV threads (default 2)")
    ap.add_argument("--backend", default="auto", choices=BACKENDS,
                    help="the classifier's runtime, as in ferkit.load_model (default %(default)s)")
    ap.add_argument("--tta", default="none", choices=["none", "flip", "tencrop"],
                    help="the Recognizer's test-time augmentation (default none, as ferkit predict)")
    ap.add_argument("--model", default="default",
                    help="the classifier (shipped name, alias or weights; default %(default)s): the issue's target "
                         "is for the default, another model's rows answer whether it could be the default")
    ap.add_argument("--out", default="docs/benchmarks.md",
                    help="markdown file whose pipeline section is (re)written; '-' to only print (default %(default)s)")
    ap.add_argument("--json", default="docs/benchmarks_pipeline.json",
                    help="raw numbers as JSON; '-' to skip (default %(default)s)")
    ap.add_argument("--from-json", metavar="JSON",
                    help="time nothing: re-render the section from a saved --json file (e.g. after a change to "
                         "the table's layout) and write it to --out")
    a = ap.parse_args()
    if a.from_json:
        try:
            res = json.loads(Path(a.from_json).read_text())
            section = markdown(res)
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"--from-json {a.from_json}: not a benchmarks/pipeline.py --json file ({type(e).__name__}: {e})")
        print(section)
        if a.out != "-":
            write_section(Path(a.out), section)
            print(f"wrote {a.out}")
        return
    if a.repeat < 1 or a.frames < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--repeat, --frames and --threads must be >= 1, --warmup >= 0")

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    t_start = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    model = load_model(a.model, backend=a.backend, threads=a.threads)
    runtime, runtime_threads = classifier_runtime(model)
    scenes = make_frames(a.frames)
    default_min = MTCNNDetector().net.cfg.min_face_size
    default_every = inspect.signature(Recognizer).parameters["detect_every"].default
    every = default_every if default_every > 1 else 5  # the fast path's rows
    tag = " (the stream default)" if every == default_every else ""
    configs = [  # key, label, detector, min_face_size, detect_every, source
        ("mtcnn", f"MTCNN (min_face_size {default_min}), every frame (`detect_every=1`)", "mtcnn", default_min, 1,
         "jpeg"),
        ("mtcnn_fast", f"MTCNN, `detect_every={every}`{tag}: O-Net refine between", "mtcnn", default_min, every,
         "jpeg"),
        ("mtcnn_min40", "MTCNN, `min_face_size=40`, every frame", "mtcnn", 40, 1, "jpeg"),
        ("haar", "Haar cascade, every frame", "haar", 20, 1, "jpeg"),
        ("mtcnn_fast_mp4", f"MTCNN, `detect_every={every}`, frames read from MP4 (`VideoReader`)", "mtcnn",
         default_min, every, "mp4"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for scene, (expected, frames) in scenes.items():
            mp4 = Path(tmp) / f"{scene.replace(' ', '_')}.mp4"
            if scene == "1 face":  # the MP4 row: one scene is enough to show the reader's cost
                w = VideoWriter(mp4, 30.0, (W, H))
                for f in frames:
                    w.write(read_image(f, mode="RGB"))
                w.close()
            rows += [Row(scene, *cfg, expected, frames, mp4) for cfg in configs
                     if cfg[-1] != "mp4" or scene == "1 face"]
        print(f"warming up {len(rows)} configurations", flush=True)
        for row in rows:
            row.setup(model, a.threads, a.warmup, None if a.tta == "none" else a.tta)
        # passes interleaved (every row once, then again), so a burst of other work on the machine hits all rows
        for rep in range(a.repeat):
            for row in rows:
                row.run()
            print(f"pass {rep + 1}/{a.repeat} done ({time.perf_counter() - t_start:.0f} s)", flush=True)

    results, raw = [], []
    for row in rows:
        s = summarize(row.timed)
        results.append({**row.info(), "summary": s})
        raw.append({**row.info(), "summary": s, "per_frame_ms": {
            k: [round(f[k] * 1000, 2) for f in row.timed] for k in ("total", *STAGES)},
            "per_frame": {k: [f[k] for f in row.timed] for k in ("faces", "full_detections", "refines")}})
        print(f"{row.scene:8s} {row.label:60s} faces {faces_cell(s, row.expected_faces):22s} "
              f"total {cell(s['total']):>13s} ms  {s['fps']:5.1f} frames/s")
        if s["faces_min"] != row.expected_faces or s["faces_max"] != row.expected_faces:
            print(f"  note: expected {row.expected_faces} faces per frame, found {s['faces_min']}-{s['faces_max']}")

    args = {"repeat": a.repeat, "frames": a.frames, "warmup": a.warmup, "threads": a.threads, "backend": a.backend,
            "tta": a.tta}
    command = "python benchmarks/pipeline.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    c, h, w = model.input_size
    res = {"command": command.strip(), "date": datetime.date.today().isoformat(), "args": args,
           "machine": machine(a.threads, rows[0].rec), "model": model.name,
           "model_input": f"{c}x{h}x{w} {'gray' if c == 1 else 'RGB'}", "classifier_runtime": runtime,
           "classifier_threads": runtime_threads, "min_face_size_default": default_min,
           "detect_every_stream_default": default_every,
           "load_average_1min_start": load_start, "target_fps": TARGET_FPS, "rows": results}
    res["notes"] = notes(results, default_every)
    section = markdown(res)
    print()
    print(section)
    if a.out != "-":
        write_section(Path(a.out), section)
        print(f"wrote {a.out}")
    if a.json != "-":
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(compact_json({**res, "rows": raw}) + "\n")
        print(f"wrote {a.json}")
    print(f"took {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
