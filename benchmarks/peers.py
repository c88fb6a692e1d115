"""ferkit side by side with the `fer` package, on the same inputs in one run. Writes the "Side by
side with fer" section of docs/benchmarks.md and docs/benchmarks_peers.json.

    make bench-peers        # makes .venv-fer (TensorFlow + fer) once, then runs:
    .venv/bin/python benchmarks/peers.py --fer-python .venv-fer/bin/python

The peer: `fer` (PyPI ``fer==25.10.3``, MIT), the most used facial-expression package:
``fer.fer.FER(mtcnn=False)``, an OpenCV Haar cascade and a mini-Xception on 64x64 gray faces,
run by default from its int8 TensorFlow Lite file (``use_tflite=True``), else from its Keras
model. It needs TensorFlow, so it runs in its own virtual environment (``.venv-fer``) in a worker
process, ``benchmarks/_fer_worker.py``, which gets the same inputs through a temporary ``.npz``
and answers JSON; this script runs ferkit in this process and interleaves the two (a round of
ferkit, then a round of fer), so a burst of other work on the machine hits both.

Measured, each for every shipped ferkit model (``ferkit.weights.shipped()``) on the torch and
onnx backends, against fer's TFLite (its default) and Keras paths:

(a) classifier alone, on the first 64 faces of the test set (random faces without the data): ferkit
    ``model.predict_tensor(uint8 [N, 1, 48, 48])`` (uint8 -> float and normalisation included) vs
    fer's ``FER._classify_emotions`` on faces already resized to 64x64 and scaled as
    ``detect_emotions`` does (fer's preprocessing not timed); batch 1 (ms per call) and batch 64
    (faces/s); each call repeated for at least ``--min-seconds``, median of ``--rounds`` rounds.
(b) end to end on the 640x480 JPEG frames of benchmarks/pipeline.py (``examples/astronaut.jpg``,
    1 face and 4 faces, moving a few pixels a frame), JPEG decode included on both sides
    (fer: ``cv2.imdecode`` -> BGR -> ``detect_emotions``; ferkit: ``ferkit.io.read_image`` -> RGB ->
    ``Recognizer``): ferkit ``Recognizer.analyze`` on each frame as an independent image
    (``detect_every=1``) and ``Recognizer.stream`` over the sequence with the video default
    (``detect_every=5``: full MTCNN every 5th frame, O-Net refine between). One warm-up of
    ``--warmup`` frames, then ``--repeat`` passes; median and p90 ms per frame, frames/s as
    frames over the summed per-frame time.
(c) accuracy on FER2013 ``--split`` (PrivateTest, 3,589 48x48 faces) as ``ferkit evaluate`` reads
    it: ferkit on the 48x48 faces; fer on the same faces resized to its 64x64 input as
    ``detect_emotions`` resizes a face (no detection: the faces are already crops), its class
    order mapped by name onto ferkit's.

``--threads`` (default 2, the target machine's cores) for both: torch, onnxruntime (classifier
and MTCNN) and OpenCV here; TensorFlow intra- and inter-op, the TFLite interpreter and OpenCV in
the worker. Numbers vary with machine load (the load average is recorded). About 3-4 minutes on
2 cores, plus the first ``make bench-peers``'s download of TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import PIL
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import JpegFrames, Stopwatch, compact_json, cpu_name, make_frames, write_section  # noqa: E402

import ferkit  # noqa: E402
from ferkit import Recognizer, weights  # noqa: E402
from ferkit.api import load_model  # noqa: E402
from ferkit.data import open_dataset  # noqa: E402
from ferkit.engine.evaluate import align_labels  # noqa: E402
from ferkit.engine.metrics import confusion_matrix, summarize  # noqa: E402
from ferkit.faces import MTCNNDetector  # noqa: E402
from ferkit.io import read_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_fer_worker.py"
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
CLF_TARGET, E2E_TARGET = 5.0, 2.0
FER_MIN_FACE = 50  #: fer's Haar cascade looks for faces of 50 px and up (its default)
BACKENDS = ("torch", "onnx")
FER_PATHS = {"tflite": "fer, TFLite int8 (its default, `use_tflite=True`)",
             "keras": "fer, Keras model (`use_tflite=False`)"}
FER_EXTRA = {"keras_predict": "fer's Keras model via `model.predict` (reference: fer never calls it)"}


# ---------------------------------------------------------------------------------------
# the fer worker
# ---------------------------------------------------------------------------------------
class FerWorker:
    """``benchmarks/_fer_worker.py`` under fer's Python: JSON requests in, JSON answers out."""

    def __init__(self, python: str, inputs: Path, threads: int, log: Path) -> None:
        self.log = log
        self.err = open(log, "w")  # noqa: SIM115 - open for the worker's lifetime
        self.proc = subprocess.Popen([python, str(WORKER), "--inputs", str(inputs), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     bufsize=1)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.err.flush()
            tail = self.log.read_text()[-3000:]
            raise SystemExit(f"the fer worker stopped (exit {self.proc.poll()}); its stderr ends with:\n{tail}")
        out = json.loads(line)
        if not out.pop("ok"):
            raise SystemExit(f"the fer worker failed on {req}: {out['error']}")
        return out

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.err.close()


# ---------------------------------------------------------------------------------------
# ferkit side
# ---------------------------------------------------------------------------------------
def time_calls(fn, x, min_seconds: float) -> float:
    """ms per call of ``fn(x)``: one untimed call, then calls until ``min_seconds`` (at least 3)."""
    fn(x)
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        n += 1
        el = time.perf_counter() - t0
        if n >= 3 and el >= min_seconds:
            return el / n * 1000


def run_independent(rec: Recognizer, frames: list[bytes]) -> list[tuple[float, float, int]]:
    """Each frame as an independent image: decode (``read_image``), then ``rec.analyze``."""
    out = []
    for data in frames:
        t0 = time.perf_counter()
        rgb = read_image(data, mode="RGB")
        t1 = time.perf_counter()
        r = rec.analyze(rgb, keep_image=False)
        out.append((time.perf_counter() - t0, t1 - t0, len(r.faces)))
    return out


def run_stream(rec: Recognizer, frames: list[bytes]) -> list[tuple[float, float, int]]:
    """The frames as a video through ``rec.stream`` (decode inside the reader)."""
    watch, out = Stopwatch(), []
    t0 = time.perf_counter()
    for r in rec.stream(JpegFrames(frames, watch)):
        t1 = time.perf_counter()
        cur, _ = watch.pop()
        out.append((t1 - t0, cur.get("decode", 0.0), len(r.faces)))
        t0 = time.perf_counter()
    return out


def summarize_frames(rows: list[tuple[float, float, int]]) -> dict:
    total = np.array([r[0] for r in rows]) * 1000
    decode = np.array([r[1] for r in rows]) * 1000
    faces = np.array([r[2] for r in rows])
    return {"median_ms": round(float(np.median(total)), 2), "p90_ms": round(float(np.percentile(total, 90)), 2),
            "decode_median_ms": round(float(np.median(decode)), 2),
            "fps": round(float(len(total) / (total.sum() / 1000)), 2), "frames_timed": len(total),
            "faces_min": int(faces.min()), "faces_median": float(np.median(faces)), "faces_max": int(faces.max())}


def accuracy(y: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    s = summarize(confusion_matrix(y, pred, len(classes)), classes)
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"], "n": s["n"]}


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
def x(r: float, target: float = 5) -> str:
    """A ratio; one that rounds up to the ``target`` it misses keeps its second decimal (1.997 is
    "1.99x", not "2.0x" beside a "not met" for the 2x end-to-end target)."""
    if r < 1:
        return f"{r:.2f}x"
    if r < target <= round(r, 1):
        return f"{math.floor(r * 100) / 100:.2f}x"
    return f"{r:.1f}x"


def faces_cell(s: dict, expected: int) -> str:
    lo, hi = s["faces_min"], s["faces_max"]
    return (f"{lo}" if lo == hi else f"{lo}-{hi} (median {s['faces_median']:g})") + f" of {expected}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def markdown(res: dict) -> str:
    m, f, a = res["machine"], res["fer_info"], res["args"]
    th = f["threads"]
    clf, acc = res["classifier"], res.get("accuracy")
    passes = f"{res['passes']} pass{'es' if res['passes'] > 1 else ''}"
    if res["passes"] < a["repeat"]:
        passes += f" (of {a['repeat']}: stopped by `--max-seconds {a['max_seconds']:g}`)"
    lines = [
        START,
        "## Side by side with `fer` (CPU)",
        "",
        "    make bench-peers",
        f"    {res['command']}",
        "",
        f"Measured {res['date']} in one run ({res['seconds']:.0f} s), on the same inputs, ferkit and fer interleaved "
        f"round by round: `make bench-peers` runs the second line with the models of its `PEERS_MODELS` (then `benchmarks/fer_splits.py`, the next section; its first run also makes `.venv-fer`).",
        "",
        f"- Machine: {m['cpu']}, {m['os_cpu_count']} cores, {m['platform']}. Load average (1 min) "
        f"{res['load_average_1min_start']} at the start, {res['load_average_1min_end']} at the end (the machine is "
        f"shared: other work slows every row alike).",
        f"- ferkit {m['ferkit']} (`.venv`): Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"OpenCV {m['opencv']}, Pillow {m['pillow']}, numpy {m['numpy']}. fer {f['fer']} (`.venv-fer`): "
        f"TensorFlow (CPU) {f['tensorflow']}, Keras {f['keras']}, OpenCV {f['opencv']}, numpy {f['numpy']}.",
        f"- Threads, {a['threads']} for both (`--threads {a['threads']}`): ferkit torch {m['torch_threads']}, "
        f"onnxruntime {a['threads']} (classifier and MTCNN; a network under 600,000 parameters runs one face at a "
        f"time on its one-thread session, where that is faster), OpenCV {m['opencv_threads']}; fer TensorFlow intra-op "
        f"{th['tf_intra_op']} and inter-op {th['tf_inter_op']}, TFLite interpreter {th['tflite_num_threads']} "
        f"(handed to fer through its `FER._tflite_interpreter_cache`), OpenCV {th['opencv']}.",
        f"- fer: `fer.fer.FER(mtcnn=False)`, Haar cascade (min face {f['haar']['min_face_size']} px, scale "
        f"{f['haar']['scale_factor']}, {f['haar']['min_neighbors']} neighbours, {f['haar']['offsets'][0]} px "
        f"margin) + mini-Xception ({f['keras_params']:,} parameters, {f['input_size'][0]}x{f['input_size'][1]} gray), "
        f"run by default from `{f['tflite_file']}` ({f['tflite_bytes'] // 1000} KB, int8; one face per `invoke()`), "
        f"with `use_tflite=False` from the Keras `.hdf5` ({f['keras_file_bytes'] // 1000} KB; the batch in one call). "
        f"ferkit: {'the shipped models chosen with --models' if res.get('models_chosen') else 'each shipped model'} "
        f"({', '.join(f'`{n}`' for n in res['models'])}; `default` = "
        f"`{res['default_model']}`), MTCNN (min face {res['mtcnn_min_face_size']} px) + 5-point alignment.",
        "",
        "### Classifier alone",
        "",
        f"Timed on {res['bench_faces']}; ferkit `predict_tensor` from uint8 (conversion and normalisation "
        f"included), fer's `_classify_emotions` from faces already resized and scaled as `detect_emotions` does (its "
        f"preprocessing not timed). Median of {a['rounds']} rounds. Accuracy on FER2013 {a['split']} "
        f"(n = {next(iter(acc.values()))['n'] if acc else '-'}): ferkit on the 48x48 faces (as `ferkit evaluate`), "
        f"fer on the same faces resized to its {f['input_size'][0]}x{f['input_size'][1]} input, classes mapped by "
        f"name.",
        "",
        "| classifier | input | batch 1: ms per face | batch 64: faces/s | accuracy | macro-F1 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, c in clf.items():
        ac = (acc or {}).get(key)
        acc_cells = f"{ac['accuracy']:.2%} | {ac['macro_f1']:.4f}" if ac else "- | -"
        lines.append(f"| {c['label']} | {c['input']} | {c['ms_b1']:.2f} | {c['fps_b64']:,.0f} | {acc_cells} |")
    lines += [
        "",
        f"Ratios (ferkit over fer; speed = fer's ms / ferkit's ms at batch 1, ferkit's faces/s / fer's at batch 64). "
        f"Target: >= {CLF_TARGET:g}x fer's speed at both batch sizes with equal or better accuracy.",
        "",
        "| ferkit | against | batch 1 speed | batch 64 speed | accuracy | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for v in res["classifier_vs"]:
        d = f"{v['accuracy_diff_pt']:+.2f} pt" if v["accuracy_diff_pt"] is not None else "not measured"
        lines.append(f"| {clf[v['ferkit']]['label']} | {clf[v['fer']]['label']} | {x(v['speed_b1'])} | "
                     f"{x(v['speed_b64'])} | {d} | {verdict(v['met'])} |")
    lines += [
        "",
        "### End to end",
        "",
        f"640x480 JPEG frames (quality 90) from `examples/astronaut.jpg` as in benchmarks/pipeline.py, "
        f"{a['frames']} per sequence, moving a few pixels a frame: *1 face* and *4 faces*. JPEG decode included on "
        f"both sides (fer `cv2.imdecode`, ferkit `read_image`). {a['warmup']} warm-up frames, then "
        f"{passes}; cells: median / p90 ms per frame; frames/s = frames over summed time. fer and "
        f"`detect_every=1` treat each frame as an independent image; `detect_every=5` is ferkit's video default "
        f"(`Recognizer.stream`). Target: >= {E2E_TARGET:g}x fer's frames/s.",
        "",
        "| frames | pipeline | faces found | decode (ms) | end to end (ms) | frames/s | vs fer TFLite (default) "
        "| vs fer Keras | target |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in res["end_to_end"]:
        s = r["summary"]
        if r["side"] == "fer":
            rat, ok = "", ""
        else:
            rat = " | ".join(x(r["vs"][p], 2) for p in FER_PATHS)
            ok = verdict(r["met"])
        lines.append(f"| {r['scene']} | {r['label']} | {faces_cell(s, r['expected_faces'])} | "
                     f"{s['decode_median_ms']:.1f} | {s['median_ms']:.1f} / {s['p90_ms']:.1f} | {s['fps']:.1f} | "
                     f"{rat if rat else '- | -'} | {ok or '-'} |")
    lines += ["", "### Verdicts", "", *[f"- {n}" for n in res["verdicts"]], "", "### Notes", "",
              *[f"- {n}" for n in res["notes"]], END]
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    return {"cpu": cpu_name(), "os_cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "ferkit": ferkit.__version__, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "torch_threads": torch.get_num_threads(), "opencv_threads": cv2.getNumThreads()}


def load1() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer-python", default=".venv-fer/bin/python",
                    help="Python of the environment with fer + TensorFlow (default %(default)s; `make bench-peers`)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fer2013"),
                    help="FER2013 folder for accuracy and the timed faces (default ../shared/data/fer2013); "
                         "missing: accuracy is skipped")
    ap.add_argument("--split", default="PrivateTest", help="FER2013 split for accuracy (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both, see above (default 2)")
    ap.add_argument("--rounds", type=int, default=7, help="classifier timing rounds (default 7)")
    ap.add_argument("--min-seconds", type=float, default=0.3, help="time per classifier measurement (default 0.3)")
    ap.add_argument("--frames", type=int, default=60, help="frames per sequence (default 60)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed frames per end-to-end row (default 10)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per end-to-end row (default 3)")
    ap.add_argument("--models", default=None, metavar="A,B",
                    help="ferkit models to run (shipped names; default: every shipped model). The default model "
                         "is always among them")
    ap.add_argument("--max-seconds", type=float, default=540,
                    help="no further end-to-end pass once the run would pass this (at least one pass; default "
                         "%(default)s): a busy machine cannot stretch the run without end")
    ap.add_argument("--out", default="docs/benchmarks.md",
                    help="markdown file whose peers section is (re)written; '-' to only print (default %(default)s)")
    ap.add_argument("--json", default="docs/benchmarks_peers.json", help="raw numbers; '-' to skip")
    ap.add_argument("--plot", default="docs/img/peers.png",
                    help="the numbers drawn (benchmarks/plot_peers.py); '-' to skip (default %(default)s)")
    a = ap.parse_args()
    if min(a.threads, a.rounds, a.frames, a.repeat) < 1 or a.warmup < 0 or a.min_seconds <= 0:
        ap.error("--threads, --rounds, --frames, --repeat must be >= 1, --warmup >= 0, --min-seconds > 0")
    fer_python = Path(a.fer_python)
    if not fer_python.exists():
        ap.error(f"{fer_python} not found: `make bench-peers` makes fer's environment (.venv-fer)")

    t_start = time.perf_counter()
    started_utc = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M")
    load_start = load1()
    print(f"load average (1 min) at the start: {load_start}", flush=True)
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)

    # ferkit's models: every shipped one, on torch and onnx
    default_name = weights.ALIASES["default"]
    cards = {c["name"]: c for c in weights.shipped()}
    names = list(cards)
    if a.models:
        want = [weights.ALIASES.get(n, n) for n in a.models.split(",") if n]
        unknown = [n for n in want if n not in cards]
        if unknown:
            ap.error(f"--models: {', '.join(unknown)} not shipped (shipped: {', '.join(names)})")
        names = [n for n in names if n in want or n == default_name]
    models: dict[str, object] = {}
    clf: dict[str, dict] = {}
    for name in names:
        tag = f"`{name}`" + (" (default)" if name == default_name else "")
        for b in BACKENDS:
            mdl = load_model(name, backend=b, threads=a.threads) if b == "onnx" else load_model(name, backend=b)
            key = f"{name}:{b}"
            models[key] = mdl
            c, h, w = mdl.input_size
            clf[key] = {"side": "ferkit", "model": name, "backend": b, "label": f"ferkit {tag}, {b}",
                        "input": f"{h}x{w} {'gray' if c == 1 else 'RGB'}", "b1_ms": [], "b64_ms": []}
    # on static int8 too, each model for which ferkit ships activation ranges (--backend onnx-int8)
    for name in names:
        if weights.int8_ranges(weights.resolve(name)) is None:
            continue
        key = f"{name}:onnx-int8"
        models[key] = load_model(name, backend="onnx-int8", threads=a.threads)
        c, h, w = models[key].input_size
        clf[key] = {"side": "ferkit", "model": name, "backend": "onnx-int8",
                    "label": f"ferkit `{name}`{' (default)' if name == default_name else ''}, onnx-int8 (static, "
                             f"shipped ranges)",
                    "input": f"{h}x{w} {'gray' if c == 1 else 'RGB'}", "b1_ms": [], "b64_ms": []}

    # the test faces
    data = Path(a.data)
    ds, y, classes = None, None, models[f"{default_name}:onnx"].classes
    if data.exists():
        ds = open_dataset("fer2013", data).load(a.split, size=48, mode="L")
        keep, y, _ = align_labels(ds, classes)
        faces = ds.images[torch.as_tensor(keep)][:, 0].numpy()
        bench = faces[:64]
    else:
        print(f"note: {data} not found: accuracy skipped, classifier timed on random faces", flush=True)
        faces = np.zeros((0, 48, 48), np.uint8)
        bench = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    scenes = make_frames(a.frames)

    with tempfile.TemporaryDirectory() as tmp:
        arrays = {"faces": faces, "bench": bench, "scenes": np.array(list(scenes))}
        for i, (_, frames) in enumerate(scenes.values()):
            arrays[f"scene{i}_data"] = np.frombuffer(b"".join(frames), np.uint8)
            arrays[f"scene{i}_offsets"] = np.cumsum([0] + [len(fr) for fr in frames])
        np.savez(Path(tmp) / "inputs.npz", **arrays)
        print("starting fer's worker (TensorFlow)", flush=True)
        worker = FerWorker(str(fer_python), Path(tmp) / "inputs.npz", a.threads, Path(tmp) / "fer_worker.log")
        try:
            info = worker.ask(cmd="info")
            print(f"fer {info['fer']}, TensorFlow {info['tensorflow']}, threads {info['threads']}", flush=True)
            fs = info["input_size"]
            for v, label in {**FER_PATHS, **FER_EXTRA}.items():
                clf[f"fer:{v}"] = {"side": "fer", "variant": v, "label": label, "input": f"{fs[0]}x{fs[1]} gray",
                                   "b1_ms": [], "b64_ms": []}

            # (a) classifier, rounds interleaved
            xs = {key: {n: mdl.preprocess(list(bench[:n])) for n in (1, 64)} for key, mdl in models.items()}
            for rnd in range(a.rounds):
                for key, mdl in models.items():
                    for n in (1, 64):
                        clf[key][f"b{n}_ms"].append(time_calls(mdl.predict_tensor, xs[key][n], a.min_seconds))
                for v in (*FER_PATHS, *FER_EXTRA):
                    for n in (1, 64):
                        t = worker.ask(cmd="classify_time", variant=v, batch=n, min_seconds=a.min_seconds)
                        clf[f"fer:{v}"][f"b{n}_ms"].append(t["ms_per_call"])
                print(f"classifier round {rnd + 1}/{a.rounds} ({time.perf_counter() - t_start:.0f} s)", flush=True)
            for c in clf.values():
                c["ms_b1"] = statistics.median(c["b1_ms"])
                c["fps_b64"] = 64 / (statistics.median(c["b64_ms"]) / 1000)
                print(f"  {c['label']:70s} batch 1 {c['ms_b1']:7.2f} ms   batch 64 {c['fps_b64']:8,.0f} faces/s")

            # (c) accuracy
            acc = None
            if ds is not None:
                acc = {}
                for key, mdl in models.items():
                    prob = mdl.predict_tensor(torch.from_numpy(faces[:, None]) if mdl.input_size == (1, 48, 48)
                                              else mdl.preprocess(list(faces))).numpy()
                    # the model's scores for FER2013's classes only (a FER+ model's contempt is left out)
                    cols = [mdl.classes.index(c) for c in classes]
                    acc[key] = accuracy(y, prob[:, cols].argmax(1), classes)
                fer_pred = {}
                for v in FER_PATHS:
                    out = worker.ask(cmd="accuracy", variant=v)
                    missing = [lb for lb in out["labels"] if lb not in classes]
                    if missing:
                        raise SystemExit(f"fer's classes {missing} are not among ferkit's {classes}")
                    to_ours = np.array([classes.index(lb) for lb in out["labels"]])
                    fer_pred[v] = to_ours[np.array(out["pred"])]
                    acc[f"fer:{v}"] = accuracy(y, fer_pred[v], classes)
                    acc[f"fer:{v}"]["class_order"] = out["labels"]
                agree = float((fer_pred["tflite"] == fer_pred["keras"]).mean())
                for key, r in acc.items():
                    print(f"  accuracy {clf[key]['label']:60s} {r['accuracy']:.2%}  macro-F1 {r['macro_f1']:.4f}")
                print(f"  fer TFLite and Keras agree on {agree:.2%} of the faces", flush=True)

            # (b) end to end
            every_default = inspect.signature(Recognizer).parameters["detect_every"].default
            rows = []
            for scene, (expected, frames) in scenes.items():
                for key, mdl in models.items():
                    for every in (1, every_default):
                        rec = Recognizer(mdl, detector=MTCNNDetector(threads=a.threads), detect_every=every)
                        how = ("each frame on its own (`detect_every=1`)" if every == 1 else
                               f"`Recognizer.stream`, `detect_every={every}` (video default)")
                        rows.append({"side": "ferkit", "scene": scene, "expected_faces": expected, "key": key,
                                     "detect_every": every, "label": f"{clf[key]['label']}, {how}", "rec": rec,
                                     "frames": frames, "timed": []})
                        if key in (f"{default_name}:onnx", f"{default_name}:onnx-int8") and every == 1:
                            # the same smallest face as fer's Haar
                            rec = Recognizer(mdl, detector=MTCNNDetector(min_face_size=FER_MIN_FACE, threads=a.threads),
                                             detect_every=1)
                            rows.append({"side": "ferkit", "scene": scene, "expected_faces": expected, "key": key,
                                         "detect_every": 1, "min_face": FER_MIN_FACE, "rec": rec, "frames": frames,
                                         "label": f"{clf[key]['label']}, each frame on its own (`detect_every=1`), "
                                                  f"MTCNN min face {FER_MIN_FACE} px (fer's Haar minimum)",
                                         "timed": []})
                for v, label in FER_PATHS.items():
                    rows.append({"side": "fer", "scene": scene, "expected_faces": expected, "variant": v,
                                 "label": f"{label}: `detect_emotions`", "frames": frames, "timed": []})

            def run(row: dict, n: int | None = None) -> list:
                frames = row["frames"][:n] if n else row["frames"]
                if row["side"] == "fer":
                    o = worker.ask(cmd="e2e", variant=row["variant"], scene=row["scene"], frames=len(frames))
                    return list(zip(o["total"], o["decode"], o["faces"]))
                fn = run_independent if row["detect_every"] == 1 else run_stream
                return fn(row["rec"], frames)

            if a.warmup:
                for row in rows:
                    run(row, a.warmup)
            passes = 0
            for rep in range(a.repeat):
                t_pass = time.perf_counter()
                for row in rows:
                    row["timed"] += run(row)
                passes += 1
                now = time.perf_counter()
                print(f"end-to-end pass {rep + 1}/{a.repeat} ({now - t_start:.0f} s)", flush=True)
                if rep + 1 < a.repeat and now - t_start + (now - t_pass) > a.max_seconds:
                    print(f"note: stopping after {passes} pass(es): another would pass --max-seconds "
                          f"{a.max_seconds:g}", flush=True)
                    break
        finally:
            worker.close()

    # summaries, ratios, verdicts
    e2e = []
    fer_fps = {}
    for row in rows:
        s = summarize_frames(row["timed"])
        out = {k: row[k] for k in ("side", "scene", "expected_faces", "label") if k in row}
        out.update({k: row[k] for k in ("key", "detect_every", "variant", "min_face") if k in row})
        out["summary"] = s
        out["per_frame_ms"] = [round(t[0] * 1000, 2) for t in row["timed"]]
        e2e.append(out)
        if row["side"] == "fer":
            fer_fps[(row["scene"], row["variant"])] = s["fps"]
    for r in e2e:
        if r["side"] == "ferkit":
            r["vs"] = {p: r["summary"]["fps"] / fer_fps[(r["scene"], p)] for p in FER_PATHS}
            r["met"] = min(r["vs"].values()) >= E2E_TARGET
        s = r["summary"]
        print(f"{r['scene']:8s} {r['label'][:95]:95s} faces {faces_cell(s, r['expected_faces']):20s} "
              f"{s['median_ms']:6.1f} ms  {s['fps']:6.1f} frames/s")

    vs = []
    for key in models:
        for p in FER_PATHS:
            f, k = clf[f"fer:{p}"], clf[key]
            d = None if acc is None else (acc[key]["accuracy"] - acc[f"fer:{p}"]["accuracy"]) * 100
            sp1, sp64 = f["ms_b1"] / k["ms_b1"], k["fps_b64"] / f["fps_b64"]
            vs.append({"ferkit": key, "fer": f"fer:{p}", "speed_b1": sp1, "speed_b64": sp64, "accuracy_diff_pt": d,
                       "met": sp1 >= CLF_TARGET and sp64 >= CLF_TARGET and d is not None and d >= 0})

    dflt = f"{default_name}:onnx"  # what ferkit runs on a CPU by default (backend auto)
    verdicts = []
    # the default first, then each other model on onnxruntime (what ferkit runs on a CPU)
    onnx_keys = [dflt] + [k for k in models if k.endswith(":onnx-int8")] + [k for k in models
                                                                           if k.endswith(":onnx") and k != dflt]
    for key in onnx_keys:
        m, b = clf[key]["model"], clf[key]["backend"]
        who = f"ferkit {'default ' if m == default_name else ''}(`{m}`, {b})"
        for v in vs:
            if v["ferkit"] == key:
                verdicts.append(
                    f"Classifier, {who} vs {clf[v['fer']]['label']}: {x(v['speed_b1'])} at batch 1, "
                    f"{x(v['speed_b64'])} at batch 64, accuracy "
                    + (f"{v['accuracy_diff_pt']:+.2f} pt" if v["accuracy_diff_pt"] is not None else "not measured")
                    + f": >= {CLF_TARGET:g}x target {verdict(v['met'])}.")
        for r in e2e:
            if r["side"] == "ferkit" and r["key"] == key:
                verdicts.append(
                    f"End to end, {r['scene']}, {who} with `detect_every={r['detect_every']}`"
                    + (f", min face {r['min_face']} px" if "min_face" in r else "") + ": "
                    f"{r['summary']['fps']:.1f} frames/s = {x(r['vs']['tflite'], 2)} fer's default (TFLite, "
                    f"{fer_fps[(r['scene'], 'tflite')]:.1f} frames/s) and {x(r['vs']['keras'], 2)} fer Keras "
                    f"({fer_fps[(r['scene'], 'keras')]:.1f}): >= {E2E_TARGET:g}x target {verdict(r['met'])}.")
    verdicts.append("A target counts as met only when it holds against both ways fer runs (its default TFLite "
                    "model and its Keras model).")

    notes = []
    if acc is not None:
        card_acc = cards[default_name].get("metrics", {}).get(a.split, {}).get("accuracy")
        notes.append(f"Accuracy check: ferkit default {acc[dflt]['accuracy']:.2%} here (`ferkit evaluate --model "
                     f"default --dataset fer2013 --data ../shared/data/fer2013 --split {a.split}` reports "
                     + (f"{card_acc:.2%}, its card's number" if card_acc is not None else "it") + "); "
                     f"fer's Keras model {acc['fer:keras']['accuracy']:.2%} and its TFLite file "
                     f"{acc['fer:tflite']['accuracy']:.2%} (the issue quoted 65.7% for fer); the two fer paths "
                     f"agree on {agree:.2%} of the faces. fer's class order "
                     f"({', '.join(acc['fer:tflite']['class_order'])}) is ferkit's canonical order.")
    notes += [
        f"fer's classifier is the smaller network ({info['keras_params']:,} parameters at "
        f"{fs[0]}x{fs[1]}; ferkit's default {cards[default_name].get('params', 0):,} at 48x48) and by default "
        f"runs int8-quantised on TFLite (XNNPACK), one face per call with little overhead; its "
        f"`_classify_emotions` timings also leave out its resize and scaling, while ferkit's include the uint8 -> "
        f"float conversion and normalisation.",
        "Detectors differ, each at its default: fer's Haar cascade looks for faces of 50 px and up; ferkit's MTCNN "
        "for 20 px and up (finer pyramid, more work) and gives landmarks for alignment. `FER(mtcnn=True)` needs "
        "facenet-pytorch (a CUDA torch) and is not measured.",
        "fer's weights (`emotion_model.hdf5`; fer's source credits oarriaga/face_classification) come without a "
        "statement of which FER2013 rows trained and selected them; ferkit's default was trained on Training and "
        "selected on PublicTest, so PrivateTest is unseen for it. The next section (`benchmarks/fer_splits.py`) "
        "measures fer's model on each split and reads the training script of the repository fer credits "
        "(there Training trains the model; PublicTest and PrivateTest together choose its checkpoint).",
    ]
    if any(c["dataset"]["name"] != "fer2013" for c in cards.values()):
        notes.append("Models trained on another dataset (e.g. `*-ferplus`) are scored here against FER2013's own "
                     "labels, on their scores for FER2013's 7 classes; FER+ re-voted those labels (10 annotators a "
                     "face), so their accuracy here is a cross-label-set number: their own is on their card and in "
                     "docs/results.md.")

    res = {"command": ".venv/bin/python benchmarks/peers.py " + shlex.join(sys.argv[1:]),
           "date": datetime.date.today().isoformat(), "time_utc": started_utc, "seconds": time.perf_counter() - t_start,
           "args": {k: getattr(a, k) for k in ("threads", "rounds", "min_seconds", "frames", "warmup", "repeat",
                                               "max_seconds", "split")}, "passes": passes,
           "bench_faces": (f"the first 64 faces of FER2013 {a.split}" if ds is not None else
                           "64 random 48x48 faces (no FER2013 data here)"),
           "machine": machine_info(), "fer_info": info, "models": names, "models_chosen": bool(a.models),
           "default_model": default_name,
           "mtcnn_min_face_size": MTCNNDetector().net.cfg.min_face_size,
           "load_average_1min_start": load_start, "load_average_1min_end": load1(),
           "targets": {"classifier_speed": CLF_TARGET, "end_to_end_fps": E2E_TARGET},
           "classifier": clf, "accuracy": acc, "classifier_vs": vs, "end_to_end": e2e,
           "verdicts": verdicts, "notes": notes}
    res["command"] = res["command"].strip()
    section = markdown(res)
    print()
    print(section)
    if a.out != "-":
        write_section(Path(a.out), section, START, END, intro="# Benchmarks\n")
        print(f"wrote {a.out}")
    if a.json != "-":
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(compact_json(res) + "\n")
        print(f"wrote {a.json}")
    if a.plot != "-":
        import plot_peers

        plot_peers.plot(json.loads(compact_json(res)), Path(a.plot))
        print(f"wrote {a.plot}")
    print(f"load average (1 min) at the end: {res['load_average_1min_end']}; took {res['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
