"""Per-face classifier speed: PyTorch vs onnxruntime (fp32) vs onnxruntime int8, on this machine.

    .venv/bin/python benchmarks/classifier.py                          # prints a markdown table
    .venv/bin/python benchmarks/classifier.py --out docs/benchmarks_classifier.md

Times ``model.predict_tensor(uint8 faces [N, 1, 48, 48])``, the call the Recognizer makes for each
image's faces, so the uint8 -> float conversion and normalisation are included. Batch 1: median
latency per call; batch 64: faces per second (median of the rounds). The backends take turns,
round after round, so that load from other processes spreads over all of them; the load average
is printed with the table. int8: dynamic quantisation, and the static model ``backend="onnx-int8"``
gives where ferkit ships activation ranges for the weights (tools/int8_ranges.py);
``--static FILE.onnx`` adds a statically quantised export of your own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import cpu_name  # noqa: E402

import ferkit  # noqa: E402
from ferkit.runtime import OnnxExpressionModel, cached_onnx, default_threads  # noqa: E402


def _time(fn, x, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return (time.perf_counter() - t) / reps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--rounds", type=int, default=7, help="rounds; each backend is timed once per round")
    ap.add_argument("--reps1", type=int, default=100, help="batch-1 calls per round (torch: a third)")
    ap.add_argument("--reps64", type=int, default=6, help="batch-64 calls per round (torch: a third)")
    ap.add_argument("--static", metavar="FILE.onnx", help="also time a statically quantised export")
    ap.add_argument("--evals", nargs="*", default=[], metavar="BACKEND=R.json",
                    help="add an accuracy table from `ferkit evaluate ... --backend B --json R.json` results")
    ap.add_argument("--out", metavar="FILE.md", help="write the table here too")
    ap.add_argument("--also-ran", nargs="*", default=[], metavar="CMD",
                    help="commands that made the files --evals reads (e.g. the export of an evaluated .onnx), "
                         "listed first under Commands")
    a = ap.parse_args()

    torch_threads = torch.get_num_threads()
    models: dict[str, tuple] = {
        f"torch ({torch_threads} threads, its default)": (ferkit.load_model(a.model, backend="torch"), torch_threads),
        "torch (1 thread)": (ferkit.load_model(a.model, backend="torch"), 1),
    }
    fp32, int8 = cached_onnx(a.model), cached_onnx(a.model, int8="dynamic")
    shipped8 = cached_onnx(a.model, int8=True)  # static from the shipped ranges, where ferkit has them
    def label(kind: str, th: int) -> str:
        return f"{kind} ({th} thread{'s' if th > 1 else ''}{', the default' if th == default_threads() else ''})"

    for th in (1, 2):
        models[label("onnx fp32", th)] = (OnnxExpressionModel(fp32, threads=th), None)
    for th in (1, 2):
        models[label("onnx int8 dynamic", th)] = (OnnxExpressionModel(int8, threads=th), None)
    if shipped8 != int8:
        for th in (1, 2):
            models[label("onnx int8 static, shipped ranges (`--backend onnx-int8`)", th)] = (
                OnnxExpressionModel(shipped8, threads=th), None)
    if a.static:
        models[label("onnx int8 static", default_threads())] = (OnnxExpressionModel(a.static), None)

    g = np.random.default_rng(0)
    x1 = torch.from_numpy(g.integers(0, 256, (1, 1, 48, 48), dtype=np.uint8))
    x64 = torch.from_numpy(g.integers(0, 256, (64, 1, 48, 48), dtype=np.uint8))
    lat: dict[str, list[float]] = {k: [] for k in models}
    thr: dict[str, list[float]] = {k: [] for k in models}
    load0 = os.getloadavg()
    for _ in range(a.rounds):
        for name, (m, th) in models.items():
            if th is not None:
                torch.set_num_threads(th)
            slow = 3 if m.net is not None else 1
            m.predict_tensor(x1)
            m.predict_tensor(x64)
            lat[name].append(_time(m.predict_tensor, x1, max(1, a.reps1 // slow)) * 1000)
            thr[name].append(64 / _time(m.predict_tensor, x64, max(1, a.reps64 // slow)))
    torch.set_num_threads(torch_threads)
    load1 = os.getloadavg()

    base_model = next(iter(models.values()))[0]
    base = statistics.median(lat[next(iter(models))])
    base64 = statistics.median(thr[next(iter(models))])
    lines = [
        f"Classifier `{a.model}` (= `{base_model.name}`, {base_model.card['architecture']}, "
        f"{'x'.join(map(str, base_model.input_size[1:]))} {'gray' if base_model.input_size[0] == 1 else 'RGB'}), "
        "`predict_tensor` on uint8 faces; "
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}; median of {a.rounds} rounds; load average "
        f"{load0[0]:.1f} before, {load1[0]:.1f} after (other processes shared the cores).",
        "",
        f"| backend | batch 1: ms per face | batch 64: faces/s | batch 1: speed-up vs {next(iter(models))} "
        f"| batch 64: speed-up vs {next(iter(models))} |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in models:
        ms, fps = statistics.median(lat[name]), statistics.median(thr[name])
        lines.append(f"| {name} | {ms:.2f} | {fps:,.0f} | {base / ms:.1f}x | {fps / base64:.1f}x |")
    if a.evals:
        import json

        rs = {}
        for item in a.evals:
            name, _, path = item.partition("=")
            rs[name] = json.loads(Path(path).read_text())
        ref = next(iter(rs.values()))
        lines += ["", f"Accuracy on {ref['dataset']} {ref['split']} (n = {ref['n']}), `ferkit evaluate` as above:", "",
                  "| backend | accuracy | macro-F1 | NLL | accuracy change |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, r in rs.items():
            lines.append(f"| {name} | {r['accuracy']:.2%} | {r['macro_f1']:.4f} | {r['loss']:.4f} | "
                         f"{(r['accuracy'] - ref['accuracy']) * 100:+.2f} pt |")
        lines += ["", "Commands:", ""] + [f"    {c}" for c in a.also_ran] + [f"    {r.get('command', '')}"
                                                                            for r in rs.values()]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        import shlex

        Path(a.out).write_text(f"# Classifier speed\n\n    {shlex.join(['python', *sys.argv])}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
