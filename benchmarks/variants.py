"""Time lite_plain variants on static int8 before training one: random weights (speed only), the
path benchmarks/floor.py and peers.py time (``predict_tensor`` on uint8 faces, onnxruntime, 2
threads), the variants taking turns so that a slow spell of the shared machine hits them alike.

    .venv/bin/python benchmarks/variants.py '[{}, {"head": "flat", "widths": [16, 16, 64, 128]}]'

Each JSON object is a set of ``lite_plain`` model options (``{}``: the defaults). Prints ms per
face at batch 1 and at batch 64 (median of ``--rounds``). Compare rows of one run only: the
absolute numbers move from day to day on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers import time_calls  # noqa: E402

import ferkit  # noqa: E402
from ferkit.api import ExpressionModel  # noqa: E402
from ferkit.errors import FerkitError  # noqa: E402
from ferkit.models import create  # noqa: E402
from ferkit.runtime import OnnxExpressionModel, export_onnx  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", help="a JSON list of lite_plain option objects")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    a = ap.parse_args(argv)
    try:
        variants = json.loads(a.variants)
        assert isinstance(variants, list) and all(isinstance(v, dict) for v in variants) and variants
    except (ValueError, AssertionError):
        ap.error("variants: a JSON list of objects, e.g. '[{}, {\"head\": \"flat\"}]'")
    if a.rounds < 1 or a.threads < 1:
        ap.error("--rounds and --threads must be >= 1")
    faces = torch.randint(0, 256, (64, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    base = ferkit.load_model("fast", backend="torch").card
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, kw in enumerate(variants):
            torch.manual_seed(0)
            try:
                net = create("lite_plain", num_classes=len(base["classes"]), **kw).eval()
            except FerkitError as e:
                ap.error(str(e))
            card = {**base, "name": f"v{i}", "metrics": {}, "architecture": "lite_plain", "arch_kwargs": kw}
            path = Path(tmp) / f"v{i}.onnx"
            export_onnx(ExpressionModel(net, card), path, int8="static", calibration=faces.numpy(), write_card=False)
            models[json.dumps(kw)] = OnnxExpressionModel(path, threads=a.threads)
        ms = {k: {1: [], 64: []} for k in models}
        for _ in range(a.rounds):
            for k, m in models.items():
                for n in (1, 64):
                    ms[k][n].append(time_calls(m.predict_tensor, faces[:n], 0.5))
    for k, v in ms.items():
        print(f"{k:60s} batch 1: {statistics.median(v[1]):.4f} ms  batch 64: {statistics.median(v[64]) / 64:.4f} "
              f"ms per face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
