"""The side-by-side run with fer as a picture: docs/img/peers.png from docs/benchmarks_peers.json.

    .venv/bin/python benchmarks/plot_peers.py      # docs/benchmarks_peers.json -> docs/img/peers.png
    .venv/bin/python benchmarks/plot_peers.py --json other.json --out other.png

(benchmarks/peers.py draws it too, after each run, beside its JSON.) Nothing is measured here: the
picture is the JSON's numbers, drawn.

Left: each classifier's FER2013 accuracy against its speed per face at batch 1, as a multiple of
fer's default (its int8 TFLite network); the target's corner (>= 5x, at fer's accuracy or better)
is shaded. Right: end-to-end frames/s on the 640x480 frames, one face and four, each frame on its
own (``detect_every=1``) and with the video default (``detect_every=5``), against fer's frames/s
and twice that (the target).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JSON = ROOT / "docs" / "benchmarks_peers.json"
PNG = ROOT / "docs" / "img" / "peers.png"
BACKENDS = ("onnx", "onnx-int8")  # the end-to-end rows drawn (torch's are in the JSON and tables)
MARKERS = {"torch": "s", "onnx": "o", "onnx-int8": "D"}


def _default(res: dict, model: str) -> str:
    return " (default)" if model == res.get("default_model") else ""


def classifier_points(res: dict) -> list[dict]:
    """One point per classifier measured: ``label``, ``backend``, ``speed`` (fer TFLite's ms per face
    at batch 1 over this one's: fer's TFLite is 1.0) and ``accuracy`` (percent, on the run's split)."""
    ref = res["classifier"]["fer:tflite"]["ms_b1"]
    out = []
    for key, c in res["classifier"].items():
        if key == "fer:keras_predict" or key not in res["accuracy"]:
            continue  # (Keras through model.predict: the same network as fer:keras, a slower call)
        side, _, backend = key.partition(":")
        name = f"fer, {backend}" if side == "fer" else f"{side}{_default(res, side)}, {backend}"
        out.append({"key": key, "label": name, "fer": side == "fer", "backend": backend,
                    "speed": ref / c["ms_b1"], "accuracy": 100 * res["accuracy"][key]["accuracy"]})
    return out


def e2e_rows(res: dict) -> dict[str, list[dict]]:
    """Per scene (``1 face``, ``4 faces``): fer's TFLite frames/s (``fer``) and ferkit's rows on
    :data:`BACKENDS` (``label``, ``fps``, ``ratio`` to fer's TFLite, ``every``, ``min_face``)."""
    out: dict[str, list[dict]] = {}
    fer = {r["scene"]: r["summary"]["fps"] for r in res["end_to_end"]
           if r["side"] == "fer" and r.get("variant") == "tflite"}
    for r in res["end_to_end"]:
        if r["side"] != "ferkit" or r["key"].partition(":")[2] not in BACKENDS:
            continue
        model, _, backend = r["key"].partition(":")
        how = "every frame" if r["detect_every"] == 1 else f"video default (every {r['detect_every']})"
        if r.get("min_face"):
            how += f", --min-face {r['min_face']}"
        fps = r["summary"]["fps"]
        out.setdefault(r["scene"], []).append({"label": f"{model}{_default(res, model)} {backend}: {how}", "model": model,
                                               "backend": backend, "every": r["detect_every"],
                                               "min_face": r.get("min_face"), "fps": fps,
                                               "ratio": fps / fer[r["scene"]], "fer": fer[r["scene"]]})
    for rows in out.values():
        rows.sort(key=lambda r: (r["model"], r["backend"], r["every"], r["min_face"] or 0))
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clf_target, e2e_target = res["targets"]["classifier_speed"], res["targets"]["end_to_end_fps"]
    pts = classifier_points(res)
    scenes = e2e_rows(res)
    n = max(len(v) for v in scenes.values())
    fig = plt.figure(figsize=(15, 1.5 + 0.23 * n * len(scenes)))
    grid = fig.add_gridspec(len(scenes), 2, width_ratios=[1, 1.25])
    ax = fig.add_subplot(grid[:, 0])
    fer_acc = next(p["accuracy"] for p in pts if p["key"] == "fer:tflite")
    xs = [p["speed"] for p in pts]
    lo, hi = min(xs + [1.0]) / 2, max(xs + [clf_target]) * 3
    ax.fill_between([clf_target, hi], fer_acc, 100, color="#55a868", alpha=0.12,
                    label=f"target: >= {clf_target:g}x fer's speed at its accuracy or better")
    for p in pts:
        ax.scatter(p["speed"], p["accuracy"], marker=MARKERS.get(p["backend"], "^"),
                   color="#c44e52" if p["fer"] else "#4c72b0", zorder=3, s=40)
    for name in dict.fromkeys(p["label"].split(",")[0] for p in pts if not p["fer"]):  # one label a model,
        mine = [p for p in pts if p["label"].split(",")[0] == name]  # at its fastest point
        p = max(mine, key=lambda q: q["speed"])
        ax.annotate(name, (p["speed"], p["accuracy"]), fontsize=7, xytext=(6, 3), textcoords="offset points")
    for p in pts:
        if p["fer"]:
            ax.annotate(p["label"], (p["speed"], p["accuracy"]), fontsize=7, xytext=(5, 4), textcoords="offset points")
    for backend, m in MARKERS.items():
        ax.scatter([], [], marker=m, color="#4c72b0", label=f"ferkit, {backend}")
    accs = [p["accuracy"] for p in pts]
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(min(accs) - 1.5, max(accs) + 1.5)
    ax.axvline(clf_target, color="#55a868", ls="--", lw=1)
    ax.axhline(fer_acc, color="#c44e52", ls=":", lw=1, label=f"fer's accuracy ({fer_acc:.2f}%)")
    ax.set_xlabel("speed per face at batch 1, x fer's default (TFLite int8); log scale")
    ax.set_ylabel(f"FER2013 {res['args']['split']} accuracy, %")
    ax.set_title("Classifiers: accuracy against speed per face", fontsize=9, loc="left")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower left")
    for i, (scene, rows) in enumerate(sorted(scenes.items())):
        ax = fig.add_subplot(grid[i, 1])
        y = list(range(len(rows)))[::-1]
        colors = ["#55a868" if r["ratio"] >= e2e_target else "#dd8452" for r in rows]
        ax.barh(y, [r["fps"] for r in rows], color=colors, height=0.7)
        for yi, r in zip(y, rows):
            ax.text(r["fps"], yi, f" {r['fps']:.1f} ({r['ratio']:.2f}x)", va="center", fontsize=7)
        fer = rows[0]["fer"]
        ax.axvline(fer, color="#c44e52", ls=":", lw=1.2, label=f"fer (TFLite): {fer:.1f} frames/s")
        ax.axvline(e2e_target * fer, color="#c44e52", ls="--", lw=1.2, label=f"target: {e2e_target:g}x fer")
        ax.set_yticks(y, [r["label"] for r in rows], fontsize=7)
        ax.set_xlim(0, max(r["fps"] for r in rows) * 1.5)  # room for the legend at the right
        ax.set_title(f"End to end, 640x480 frames, {scene} (green: >= {e2e_target:g}x fer; orange: below)",
                     fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="lower right")
        if i == len(scenes) - 1:
            ax.set_xlabel("frames/s")
    m = res["machine"]
    fig.suptitle(f"ferkit and fer, one run on {res['date']} ({m['cpu']}, {res['args']['threads']} threads; "
                 f"`{res['command']}`)", fontsize=8, x=0.01, ha="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(JSON.relative_to(ROOT)), help="benchmarks/peers.py's JSON (default %(default)s)")
    ap.add_argument("--out", default=str(PNG.relative_to(ROOT)), help="the PNG to write (default %(default)s)")
    a = ap.parse_args()
    try:
        res = json.loads(Path(a.json).read_text())
    except (OSError, ValueError) as e:
        print(f"plot_peers: cannot read {a.json}: {e}", file=sys.stderr)
        return 2
    plot(res, Path(a.out))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
