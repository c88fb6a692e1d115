"""Times the `fer` package (PyPI ``fer``, MIT) for ``benchmarks/peers.py``; runs under ``.venv-fer/bin/python``.

    .venv-fer/bin/python benchmarks/_fer_worker.py --inputs INPUTS.npz --threads 2

fer needs TensorFlow, which lives in its own virtual environment (``make bench-peers`` makes it),
so ``peers.py`` (ferkit's environment) starts this script and talks to it: one JSON request per
line on stdin, one JSON answer per line on stdout (TensorFlow's and fer's own output is sent to
stderr). It imports only fer, tensorflow, numpy and OpenCV; ferkit is not installed here.

``INPUTS.npz`` (written by ``peers.py``): ``faces`` uint8 ``[N, 48, 48]`` (the FER2013 faces,
gray), ``bench`` uint8 ``[64, 48, 48]`` (the faces the classifier is timed on) and, per scene
``i``, ``scene{i}_data`` (its JPEG frames, concatenated) and ``scene{i}_offsets``; ``scenes`` names them.

fer is called the way ``FER.detect_emotions`` calls it (fer/fer.py): faces are resized to the
model's input (64x64) with ``cv2.resize`` and scaled to [-1, 1] (``(x / 255 - 0.5) * 2``), then
``FER._classify_emotions`` runs them: by default (``use_tflite=True``) fer's int8 TFLite model,
one face per ``invoke()``; with ``use_tflite=False`` the Keras mini-Xception (``emotion_model.hdf5``)
called on the whole batch (``model(x)``). ``keras_predict`` (``model.predict``) is timed for
reference only: fer never calls it. Threads: TensorFlow intra-op and inter-op ``--threads``,
OpenCV ``--threads``, and the TFLite interpreter is created with ``num_threads=--threads`` and
handed to fer through its own class-level cache (``FER._tflite_interpreter_cache``), which
``FER()`` otherwise fills with an interpreter on TFLite's default thread count.

Requests (``{"cmd": ...}``): ``info``; ``classify_time`` (``variant``, ``batch``, ``min_seconds``):
ms per call on the first ``batch`` bench faces; ``accuracy`` (``variant``): predicted class index
per face of ``faces``; ``e2e`` (``variant``, ``scene``, ``frames``): per frame, seconds to decode
the JPEG (``cv2.imdecode``, BGR) and in ``detect_emotions``, and faces found; ``quit``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", required=True, help="the .npz written by benchmarks/peers.py")
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow / TFLite / OpenCV threads (default 2)")
    a = ap.parse_args()

    # the answers go to the real stdout; anything else printed (TensorFlow, Keras, fer) to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import warnings

    import cv2
    import numpy as np
    import tensorflow as tf

    warnings.filterwarnings("ignore")  # tf.lite.Interpreter's deprecation notice, Keras' input-structure note
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    cv2.setNumThreads(a.threads)

    import fer
    import keras
    from fer.fer import FER

    tflite_path = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
    interp = tf.lite.Interpreter(model_path=str(tflite_path), num_threads=a.threads)
    interp.allocate_tensors()
    FER._tflite_interpreter_cache = interp
    fers = {"tflite": FER(mtcnn=False), "keras": FER(mtcnn=False, use_tflite=False)}
    model = FER._model_cache
    size = tuple(fers["keras"]._FER__emotion_target_size)  # (64, 64), as detect_emotions resizes to
    labels = FER._get_labels()

    data = np.load(a.inputs, allow_pickle=False)
    scenes = {str(name): (data[f"scene{i}_data"], data[f"scene{i}_offsets"]) for i, name in enumerate(data["scenes"])}

    def prep(gray: np.ndarray) -> np.ndarray:
        """uint8 gray faces [N, h, w] -> fer's float input [N, 64, 64], as detect_emotions makes it."""
        x = np.array([cv2.resize(g, size) for g in gray], dtype="float32")
        return (x / 255.0 - 0.5) * 2.0

    bench = prep(data["bench"])

    def classify(variant: str, x: np.ndarray) -> np.ndarray:
        if variant == "keras_predict":
            return model.predict(x, verbose=0, batch_size=max(len(x), 1))
        return np.asarray(fers[variant]._classify_emotions(x))

    def frame(scene: str, i: int) -> bytes:
        buf, off = scenes[scene]
        return buf[off[i]:off[i + 1]].tobytes()

    def handle(req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "info":
            tfl = interp._interpreter  # noqa: SLF001 - only to report what fer's interpreter runs on
            return {"fer": fer.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                    "numpy": np.__version__, "opencv": cv2.__version__, "python": sys.version.split()[0],
                    "labels": [labels[i] for i in range(len(labels))], "input_size": list(size),
                    "keras_params": int(model.count_params()), "keras_input_shape": list(model.input_shape[1:]),
                    "tflite_file": tflite_path.name, "tflite_bytes": tflite_path.stat().st_size,
                    "keras_file_bytes": (tflite_path.parent / "emotion_model.hdf5").stat().st_size,
                    "threads": {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                                "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                                "tflite_num_threads": a.threads, "opencv": cv2.getNumThreads()},
                    "tflite_interpreter": type(tfl).__name__,
                    "haar": {"min_face_size": fers["tflite"]._FER__min_face_size,
                             "scale_factor": fers["tflite"]._FER__scale_factor,
                             "min_neighbors": fers["tflite"]._FER__min_neighbors,
                             "offsets": list(fers["tflite"]._FER__offsets)}}
        if cmd == "classify_time":
            x = bench[: req["batch"]]
            classify(req["variant"], x)  # warm
            n, t0 = 0, time.perf_counter()
            while True:
                classify(req["variant"], x)
                n += 1
                el = time.perf_counter() - t0
                if n >= 3 and el >= req.get("min_seconds", 0.3):
                    return {"ms_per_call": el / n * 1000, "calls": n}
        if cmd == "accuracy":
            x = prep(data["faces"])
            probs = np.concatenate([classify(req["variant"], x[i:i + 256]) for i in range(0, len(x), 256)])
            return {"pred": probs.argmax(axis=1).tolist(), "labels": [labels[i] for i in range(len(labels))]}
        if cmd == "e2e":
            f = fers[req["variant"]]
            n = len(scenes[req["scene"]][1]) - 1
            rows = []
            for i in range(min(n, req.get("frames") or n)):
                jpg = frame(req["scene"], i)
                t0 = time.perf_counter()
                bgr = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
                t1 = time.perf_counter()
                faces = f.detect_emotions(bgr)
                t2 = time.perf_counter()
                rows.append([t2 - t0, t1 - t0, len(faces)])
            return {"total": [r[0] for r in rows], "decode": [r[1] for r in rows], "faces": [r[2] for r in rows]}
        raise ValueError(f"unknown request {cmd!r}")

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            out = {"ok": True, **handle(req)}
        except Exception as e:  # noqa: BLE001 - reported to peers.py, which stops with it
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(out) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
