"""How much of a per-face time budget is left for the network: ferkit's classifier path with a
network that does next to nothing, against the budget that "5x the speed of fer" sets.

    .venv/bin/python benchmarks/floor.py                # prints the section
    .venv/bin/python benchmarks/floor.py --write        # and writes it into docs/benchmarks.md

The "floor" model is a single linear layer (48x48 gray -> 7 classes, 16,135 parameters, 0.03
MFLOPs), exported to ONNX by ``ferkit.runtime.export_onnx`` like any ferkit model (normalisation
and softmax inside) and run by :class:`ferkit.runtime.OnnxExpressionModel` through
``predict_tensor`` on uint8 faces, exactly as benchmarks/peers.py times ferkit's classifiers: its
time is what ferkit's path costs before any network. The default model is timed the same way in
the same run, and so is every shipped ``lite_cnn`` and ``lite_plain`` model (ferkit's fast students,
sized for this budget), with its accuracy on FER2013 PrivateTest from its card; a ``lite_plain`` with
shipped int8 ranges also on static int8, with the accuracy of its committed ``ferkit evaluate
--backend onnx-int8`` JSON (docs/results/fer2013-<name>-int8-PrivateTest.json). fer's numbers are read from
docs/benchmarks_peers.json (benchmarks/peers.py's last run on this machine), so this script needs
no TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers import time_calls  # noqa: E402
from pipeline import write_section  # noqa: E402

import ferkit  # noqa: E402
from ferkit.api import ExpressionModel  # noqa: E402
from ferkit import weights  # noqa: E402
from ferkit.runtime import OnnxExpressionModel, export_onnx  # noqa: E402

START, END = "<!-- floor:start -->", "<!-- floor:end -->"
SPEEDUP = 5  # the classifier target: >= 5x fer's speed


def floor_model() -> ExpressionModel:
    """The default's card (classes, input size, normalisation) on a single linear layer."""
    card = {**ferkit.load_model("default", backend="torch").card, "name": "linear-floor", "architecture": "linear"}
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, len(card["classes"]))).eval()
    return ExpressionModel(net, card)


def left(batch: int, budget: float, floor: float, default: float) -> str:
    """The verdict for one batch size, in words (ms per face)."""
    if floor >= budget:
        return (f"At batch {batch} ferkit's path alone ({floor:.3f} ms) already exceeds the budget "
                f"({budget:.3f} ms): no network fits.")
    return (f"At batch {batch} the path takes {100 * floor / budget:.0f}% of the budget and leaves "
            f"{1000 * (budget - floor):.0f} us per face for the network: the default takes {default:.3f} ms, "
            f"{default / (budget - floor):.1f}x that.")


def mflops(model: ExpressionModel) -> float:
    """FLOPs of one face (2 per multiply-add) of a shipped model's architecture, in millions."""
    from ferkit.models import create

    card = model.card
    net = create(card["architecture"], num_classes=len(card["classes"]), **card.get("arch_kwargs", {})).eval()
    return net_mflops(net, card["input_size"])


def student(width: int) -> ExpressionModel:
    """lite_cnn at ``width`` with random weights and the shipped student's card: its speed, not its accuracy."""
    from ferkit.models import create

    card = {**ferkit.load_model("fast", backend="torch").card, "name": f"lite_cnn-w{width}", "metrics": {},
            "arch_kwargs": {"width": width}}
    torch.manual_seed(0)
    return ExpressionModel(create("lite_cnn", num_classes=len(card["classes"]), width=width).eval(), card)


def dense(width: int) -> ExpressionModel:
    """lite_plain (plain 3x3 convolutions, ``(2, 3, 6, 12) * width`` channels) at ``width`` with random
    weights: dense convolutions are what onnxruntime's int8 kernels speed up (VNNI), where lite_cnn's
    depthwise ones are not. Speed only."""
    from ferkit.models import create

    card = {**ferkit.load_model("fast", backend="torch").card, "name": f"lite_plain-w{width}", "metrics": {},
            "architecture": "lite_plain", "arch_kwargs": {"width": width}}
    torch.manual_seed(0)
    return ExpressionModel(create("lite_plain", num_classes=len(card["classes"]), width=width).eval(), card)


def net_mflops(net: nn.Module, input_size) -> float:
    """FLOPs of one face (2 per multiply-add) of a network, in millions."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        net(torch.zeros(1, *input_size))
    return fc.get_total_flops() / 1e6


def int8_accuracy(name: str) -> float | None:
    """PrivateTest accuracy of shipped ``name`` on static int8, from its committed ``ferkit evaluate
    --backend onnx-int8`` JSON (docs/results/fer2013-<name>-int8-PrivateTest.json); None without one."""
    f = ROOT / "docs" / "results" / f"fer2013-{name}-int8-PrivateTest.json"
    return json.loads(f.read_text())["accuracy"] if f.exists() else None


def meets(med: dict, b1: float, b64: float, acc: float, fer: dict) -> bool:
    """Inside both budgets and at least as accurate as fer: the classifier target."""
    return med[1] <= b1 and med[64] / 64 <= b64 and acc >= fer["accuracy"]


def fits(name: str, model: ExpressionModel, med: dict, b1: float, b64: float, fer: dict,
         acc: float | None = None, label: str | None = None) -> str:
    """One line: a model against the budget at both batch sizes and against fer's accuracy (``acc``:
    its PrivateTest accuracy, by default the card's)."""
    acc = model.card["metrics"]["PrivateTest"]["accuracy"] if acc is None else acc
    r1, r64 = fer["ms_b1"] / med[1], 1000 / fer["fps_b64"] / (med[64] / 64)
    ok = meets(med, b1, b64, acc, fer)
    return (f"- {label or '`' + name + '`'}: {r1:.1f}x fer's speed at batch 1 ({med[1]:.3f} ms; budget {b1:.3f}), {r64:.1f}x at batch 64 "
            f"({med[64] / 64:.3f} ms per face; budget {b64:.3f}); PrivateTest {100 * acc:.2f}% against fer's "
            f"{100 * fer['accuracy']:.2f}% ({100 * (acc - fer['accuracy']):+.2f} pt): the 5x target at equal or better "
            f"accuracy is {'**met**' if ok else '**not met**'}.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads (benchmarks/peers.py: 2)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds; the median is reported")
    ap.add_argument("--min-seconds", type=float, default=0.5, help="per timed call series")
    ap.add_argument("--widths", default="24,32",
                    help="also time lite_cnn at these widths (random weights: speed only; the shipped one is 16), "
                         "width 16 quantised to static int8 and lite_plain at widths 10 and 12 on static int8 (the "
                         "shipped one is 8); '' for none")
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    ap.add_argument("--peers", default="docs/benchmarks_peers.json",
                    help="benchmarks/peers.py's JSON whose fer figures set the budget (default %(default)s)")
    a = ap.parse_args()
    peers_path = Path(a.peers) if Path(a.peers).is_absolute() else ROOT / a.peers
    peers = json.loads(peers_path.read_text())
    fer = {**peers["classifier"]["fer:tflite"], "accuracy": peers["accuracy"]["fer:tflite"]["accuracy"]}
    faces = torch.randint(0, 256, (64, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(floor_model(), Path(tmp) / "floor.onnx")
        models = {"floor": OnnxExpressionModel(Path(tmp) / "floor.onnx", threads=a.threads),
                  "default": ferkit.load_model("default", backend="onnx", threads=a.threads)}
        lite_cards = [c for c in weights.shipped() if c["architecture"] in ("lite_cnn", "lite_plain")
                      and "PrivateTest" in c.get("metrics", {})]
        lite = [c["name"] for c in lite_cards]
        teachers = {c["name"]: c.get("training", {}).get("config", {}).get("teacher") or "none" for c in lite_cards}
        # the dense students on static int8 too, where ferkit ships their activation ranges
        lite_int8 = [n for n in lite if weights.int8_ranges(weights.resolve(n)) is not None
                     and next(c for c in lite_cards if c["name"] == n)["architecture"] == "lite_plain"]
        # the CPU-trained mini_xception (the default until 2026-12-04), when it is not the default
        small = [n for n in ("mini_xception-fer2013",) if n != models["default"].name
                 and (weights.SHIPPED_DIR / f"{n}.safetensors").exists()]
        for name in small + lite:
            models[name] = ferkit.load_model(name, backend="onnx", threads=a.threads)
        for name in lite_int8:
            models[f"{name}:int8"] = ferkit.load_model(name, backend="onnx-int8", threads=a.threads)
        try:
            widths = [int(w) for w in a.widths.split(",") if w.strip()]
        except ValueError:
            ap.error(f"--widths wants integers separated by commas, got {a.widths!r}")
        grown = {}  # label -> MFLOPs: students that are not trained, timed for their size alone
        for w, int8 in [(w, False) for w in widths] + ([(16, "static")] if widths else []):
            label = f"lite_cnn width {w}" + (", static int8" if int8 else "") + " (random weights)"
            path = Path(tmp) / f"lite-w{w}{'-int8' if int8 else ''}.onnx"
            net = student(w)
            export_onnx(net, path, int8=int8, calibration=faces.numpy() if int8 else None, write_card=False)
            models[label] = OnnxExpressionModel(path, threads=a.threads)
            grown[label] = mflops(net)
        if widths:  # dense convolutions on int8, the other way to buy FLOPs: wider lite_plain
            for w in (10, 12):
                net = dense(w)
                label = f"lite_plain width {w} ({'-'.join(str(k * w) for k in (2, 3, 6, 12))}), static int8 (random weights)"
                path = Path(tmp) / f"{net.name}-int8.onnx"
                export_onnx(net, path, int8="static", calibration=faces.numpy(), write_card=False)
                models[label] = OnnxExpressionModel(path, threads=a.threads)
                grown[label] = mflops(net)
        load0 = os.getloadavg()[0]
        ms = {k: {n: [] for n in (1, 64)} for k in models}
        for _ in range(a.rounds):
            for k, m in models.items():
                for n in (1, 64):
                    ms[k][n].append(time_calls(m.predict_tensor, faces[:n], a.min_seconds))
    med = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in ms.items()}
    b1 = fer["ms_b1"] / SPEEDUP  # ms per face at batch 1
    b64 = 1000 / (fer["fps_b64"] * SPEEDUP)  # ms per face at batch 64
    fl1, fl64 = med["floor"][1], med["floor"][64] / 64
    d1, d64 = med["default"][1], med["default"][64] / 64
    # the target's verdict, from the same checks as each network's line below
    winners = [n for n in lite if meets(med[n], b1, b64, models[n].card["metrics"]["PrivateTest"]["accuracy"], fer)]
    winners += [f"{n} (static int8)" for n in lite_int8 if int8_accuracy(n) is not None
                and meets(med[f"{n}:int8"], b1, b64, int8_accuracy(n), fer)]
    lines = [
        START,
        "## The classifier budget: what \"5x fer's speed\" leaves for a network",
        "",
        "    .venv/bin/python benchmarks/floor.py --write",
        "",
        f"Measured {datetime.date.today()}, onnxruntime {a.threads} threads, median of {a.rounds} rounds, load "
        f"average {load0:.1f} at the start (the machine is shared). fer's figures come from another run, "
        f"benchmarks/peers.py's of {peers['date']}{' ' + peers['time_utc'] + ' UTC' if peers.get('time_utc') else ''} "
        f"(`{peers_path.relative_to(ROOT) if peers_path.is_relative_to(ROOT) else peers_path}`, load average "
        f"{peers.get('load_average_1min_start', '?')} to {peers.get('load_average_1min_end', '?')}): the machine's "
        f"speed moves between runs, so the ratios to fer here are a second estimate; the side-by-side table times "
        f"both in one run. ferkit's path, as timed there: `predict_tensor` on uint8 faces (conversion, "
        "normalisation, one onnxruntime call, probabilities out).",
        "",
        "| | batch 1: ms per face | batch 64: ms per face (faces/s) |",
        "| --- | ---: | ---: |",
        f"| fer, TFLite int8 (its default) | {fer['ms_b1']:.3f} | {1000 / fer['fps_b64']:.3f} "
        f"({fer['fps_b64']:,.0f}) |",
        f"| budget for 5x fer | {b1:.3f} | {b64:.3f} ({fer['fps_b64'] * SPEEDUP:,.0f}) |",
        f"| ferkit's path with a one-layer network (the floor) | {fl1:.3f} | {fl64:.4f} ({1000 / fl64:,.0f}) |",
        f"| left for the network inside the budget | {b1 - fl1:.3f} | {b64 - fl64:.3f} |",
        f"| ferkit default (`{models['default'].name}`, {mflops(models['default']):,.0f} MFLOPs) | {d1:.3f} | "
        f"{d64:.3f} ({1000 / d64:,.0f}) |",
        *[f"| ferkit `{n}` ({mflops(models[n]):.1f} MFLOPs) | {med[n][1]:.3f} | {med[n][64] / 64:.3f} "
          f"({64000 / med[n][64]:,.0f}) |" for n in small + lite],
        *[f"| ferkit `{n}`, static int8 (`--backend onnx-int8`) | {med[n + ':int8'][1]:.3f} | "
          f"{med[n + ':int8'][64] / 64:.3f} ({64000 / med[n + ':int8'][64]:,.0f}) |" for n in lite_int8],
        "",
        f"{left(1, b1, fl1, d1)} {left(64, b64, fl64, d64)} The target asks for a network that small and as "
        f"accurate as fer's ({100 * fer['accuracy']:.2f}% on PrivateTest); "
        + (f"{', '.join(f'`{n}`' for n in winners)} {'is' if len(winners) == 1 else 'are'} one: **met**."
           if winners else "none of ferkit's networks is one, so it stays **not met** (the lines below)."),
        *(["", "ferkit's fast students, networks sized for this budget (`src/ferkit/models/lite_cnn.py`), "
               "distilled from the model their card names:", ""] +
          [fits(n, models[n], med[n], b1, b64, fer) + f" Teacher: `{teachers[n]}`." for n in lite] +
          [fits(n, models[n], med[f"{n}:int8"], b1, b64, fer, int8_accuracy(n),
                f"`{n}` on static int8 (`--backend onnx-int8`)") + f" Accuracy: `ferkit evaluate --model {n} --backend onnx-int8 --dataset fer2013 "
           f"--data ../shared/data/fer2013 --split PrivateTest`."
           for n in lite_int8 if int8_accuracy(n) is not None]
          if lite else []),
        *(["", "Growing lite_cnn instead, or quantising it, or wider dense students on int8 (random weights: speed "
                "only, so no accuracy):", ""] +
          [f"- {n} ({f:.1f} MFLOPs): {med[n][1]:.3f} ms at batch 1, {med[n][64] / 64:.3f} ms per face at batch 64: "
           + ("inside both budgets" if med[n][1] <= b1 and med[n][64] / 64 <= b64 else
              "over the budget at " + " and ".join(f"batch {k}" for k, v, b in ((1, med[n][1], b1),
                                                                                (64, med[n][64] / 64, b64)) if v > b))
           + "." for n, f in grown.items()] if grown else []),
        END,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        write_section(ROOT / "docs" / "benchmarks.md", text, START, END, intro="# Benchmarks\n")
        print("wrote docs/benchmarks.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
