"""Training speed on the CPU: float32 against ``ferkit train --cpu-amp`` (bfloat16 autocast).

    .venv/bin/python benchmarks/train_speed.py --out docs/benchmarks_train.md

Times the step ``ferkit train`` takes for each batch (augmentation, forward, cross-entropy plus
the model's auxiliary losses where it has them, backward, AdamW step) on random 48x48 faces, for
each registered architecture (``mini_xception`` at the shipped width 2), float32 and bfloat16
taking turns so that a slow spell of a shared machine hits both alike. Prints (and with ``--out``
writes) ms per step (median of ``--rounds``), the speed-up, and what that makes an epoch of
FER2013 Training (28,111 faces as ``--clean-from`` keeps them; evaluation not counted). A CPU
without native bfloat16 (no ``amx_bf16`` or ``avx512_bf16`` flag) emulates it, slower: the table
names the CPU and whether it has them. Speed only: whether bfloat16 trains as well is a matter
for the runs' own selection splits (docs/notes.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peers import load1  # noqa: E402

from ferkit.data.transforms import AugmentConfig, augment, normalize, to_float  # noqa: E402
from ferkit.engine.train import cpu_has_bf16  # noqa: E402
from ferkit.models import count_params, create, get_spec, list_models  # noqa: E402
from ferkit.runtime.onnx_model import cpu_name  # noqa: E402

N_TRAIN = 28111  # FER2013 Training as --clean-from keeps it (ferkit train's log)
KWARGS = {"mini_xception": {"width": 2}}  # the shipped width


def make_step(name: str, batch: int, bf16: bool, seed: int = 0):
    """One training step of ``name`` as ``ferkit train`` runs it, on a fixed random batch."""
    torch.manual_seed(seed)
    spec = get_spec(name)
    model = create(name, num_classes=7, **KWARGS.get(name, {})).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, *spec.input_size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 7, (batch,), generator=g)
    aug = AugmentConfig()

    def step() -> float:
        x = normalize(augment(to_float(images), aug, g), spec.mean, spec.std)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(x)
        logits = (pred["logits"] if isinstance(pred, dict) else pred).float()
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        if isinstance(pred, dict) and hasattr(model, "aux_loss"):
            loss = loss + sum(model.aux_loss(pred, x, y).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return model, step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(s.name for s in list_models()),
                    help="architectures, comma-separated (default: all registered)")
    ap.add_argument("--batch-size", type=int, default=128, help="ferkit train's default (128)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--out", help="write the markdown table here ('-': standard output only)")
    ap.add_argument("--json", help="write the measurements here")
    a = ap.parse_args(argv)
    if min(a.batch_size, a.steps, a.rounds, a.threads) < 1:
        ap.error("--batch-size, --steps, --rounds and --threads must be >= 1")
    names = [m.strip() for m in a.models.split(",") if m.strip()]
    known = {s.name for s in list_models()}
    if not names or set(names) - known:
        ap.error(f"--models: choose from {', '.join(sorted(known))}")
    torch.set_num_threads(a.threads)
    native = cpu_has_bf16()
    rows = []
    for name in names:
        steps = {bf16: make_step(name, a.batch_size, bf16) for bf16 in (False, True)}
        for _, step in steps.values():  # warm-up (oneDNN builds its kernels on first use)
            step()
            step()
        ms = {False: [], True: []}
        for r in range(a.rounds):
            for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
                step = steps[bf16][1]
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    step()
                ms[bf16].append((time.perf_counter() - t0) / a.steps * 1000)
        f32, b16 = statistics.median(ms[False]), statistics.median(ms[True])
        epoch = N_TRAIN // a.batch_size
        rows.append({"model": name, "kwargs": KWARGS.get(name, {}), "params": count_params(steps[False][0]),
                     "fp32_ms": round(f32, 1), "bf16_ms": round(b16, 1), "speedup": round(f32 / b16, 2),
                     "fp32_epoch_min": round(f32 * epoch / 60000, 2), "bf16_epoch_min": round(b16 * epoch / 60000, 2),
                     "rounds_fp32": [round(v, 1) for v in ms[False]], "rounds_bf16": [round(v, 1) for v in ms[True]]})
        print(f"{name:14s} fp32 {f32:7.1f} ms  bf16 {b16:7.1f} ms  {f32 / b16:4.2f}x", flush=True)
    load = load1()
    res = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_name(),
           "native_bf16": native, "threads": a.threads, "torch": torch.__version__, "batch_size": a.batch_size,
           "steps": a.steps, "rounds": a.rounds, "load_average_end": load, "rows": rows,
           "command": "python benchmarks/train_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    md = markdown(res)
    if a.out and a.out != "-":
        Path(a.out).write_text(md)
    else:
        print(md)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def markdown(res: dict) -> str:
    nat = {True: "has native bfloat16 (amx_bf16 or avx512_bf16)", False: "has NO native bfloat16 (emulated)",
           None: "native bfloat16 unknown (no /proc/cpuinfo)"}[res["native_bf16"]]
    lines = [
        "# Training speed on the CPU: float32 and `--cpu-amp`", "",
        f"    {res['command']}", "",
        f"Measured {res['date']}: {res['cpu']} ({nat}), {res['threads']} threads, torch {res['torch']}, load average "
        f"{res['load_average_end']} at the end. One `ferkit train` step (augmentation, forward, loss, backward, AdamW) "
        f"on a batch of {res['batch_size']} random 48x48 faces; ms per step, median of {res['rounds']} rounds of "
        f"{res['steps']} steps, float32 and bfloat16 taking turns. *Epoch* is FER2013 Training "
        f"({N_TRAIN:,} faces, {N_TRAIN // res['batch_size']} steps), evaluation not counted.", "",
        "| model | params | float32: ms per step | `--cpu-amp`: ms per step | speed-up | float32: min per epoch "
        "| `--cpu-amp`: min per epoch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["rows"]:
        kw = "".join(f" ({k}={v})" for k, v in r["kwargs"].items())
        lines.append(f"| {r['model']}{kw} | {r['params']:,} | {r['fp32_ms']:.1f} | {r['bf16_ms']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['fp32_epoch_min']:.2f} | {r['bf16_epoch_min']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
