"""One GPU session's training, start to finish, inside a fixed wall-clock budget (run there).

    python3 tools/gpu/run.py --pack .gpu/pack --out "$OUT" [--deadline 400 --budget 335] [--ckplus]

1. unpacks the data (``pack.py`` made it here) into ``/tmp/ferkit-data``;
2. trains vgg_fer on FER2013 and on FER+ (soft targets), AdamW, seeds 0 and 1, all four at once on
   the one GPU, each with ``--time-budget`` so that its cosine schedule ends in time;
3. with ``--ckplus``: when the FER+ runs are done, cross-validates CK+ (10 subject-independent
   folds) fine-tuned from the FER+ run with the better Valid accuracy (the first session did,
   from that session's runs: AdamW and SGD);
4. copies back, as it goes (a timeout loses nothing finished): each run's weights as float16 (the
   file-size limit of the way back) and one ``logs.tgz`` with every run's cards, logs and curves.

Every run is a plain ``ferkit train`` / ``ferkit crossval`` command, logged with its card, so each
number can be repeated on any CUDA machine. Test splits are not here: they are measured after
the weights come back. ``FERKIT_GPU_SCALE`` (e.g. 0.02) shrinks every budget, to rehearse on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
T0 = time.time()
SCALE = float(os.environ.get("FERKIT_GPU_SCALE", "1"))


LOGFILE: list[Path] = []


def log(msg: str) -> None:
    line = f"[{time.time() - T0:6.1f}s] {msg}"
    print(line, flush=True)
    for f in LOGFILE:
        with open(f, "a") as fh:
            fh.write(line + "\n")


def ferkit(args: list[str], logfile: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1",
           "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    cmd = [sys.executable, "-c", "import sys; from ferkit.cli import main; sys.exit(main())", *args]
    log("start: ferkit " + " ".join(args))
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "w") as fh:  # the child writes to its own copy of the handle
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def half_copy(src: Path, dst: Path) -> bool:
    """``src`` (safetensors) as float16 at ``dst``; False when there is nothing to copy."""
    if not src.exists():
        return False
    from safetensors.torch import load_file, save_file

    state = load_file(str(src))
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, str(dst),
              metadata={"source": src.name, "dtype": "float16"})
    return True


def collect(runs: Path, out: Path, names: list[str]) -> None:
    """Weights (float16) of each finished or stopped run, and every small file, into ``out``."""
    for name in names:
        d = runs / name
        if not d.is_dir():
            continue
        if (d / "crossval.json").exists() or (d / "fold00").is_dir():
            src = d / "fold00" / ("model.safetensors" if (d / "fold00" / "model.safetensors").exists()
                                  else "best.safetensors")
        else:
            src = d / ("model.safetensors" if (d / "model.safetensors").exists() else "best.safetensors")
        try:
            if half_copy(src, out / f"{name}.safetensors"):
                log(f"collected {name} ({src.name})")
        except Exception as e:  # a half-written file at a kill: the next collect takes it
            log(f"could not collect {name}: {e}")
    tmp = out / "logs.tgz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(runs.rglob("*")):
            if p.is_file() and p.suffix in (".json", ".csv", ".png", ".log", ".txt"):
                tar.add(p, arcname=str(p.relative_to(runs)))
    os.replace(tmp, out / "logs.tgz")


def val_acc(run: Path) -> float:
    try:
        return max(h["val_acc"] for h in json.loads((run / "log.json").read_text()))
    except (OSError, ValueError, KeyError):
        return -1.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pack", default=".gpu/pack")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default="runs/gpu")
    ap.add_argument("--data", default="/tmp/ferkit-data")
    ap.add_argument("--deadline", type=float, default=525.0, help="seconds: stop everything and collect by then")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=360.0, help="seconds of training for each run")
    ap.add_argument("--ckplus", action="store_true", help="then cross-validate CK+ from the better FER+ run")
    a = ap.parse_args(argv)
    out, runs, data = Path(a.out), ROOT / a.runs, Path(a.data)
    out.mkdir(parents=True, exist_ok=True)
    (runs / "logs").mkdir(parents=True, exist_ok=True)
    LOGFILE.append(runs / "logs" / "driver.log")
    deadline = a.deadline * SCALE if SCALE < 1 else a.deadline
    if not (data / "fer2013").is_dir():
        if not (Path(a.pack) / "manifest.json").is_file():
            ap.error(f"--pack {a.pack}: no pack there (make it with tools/gpu/pack.py and carry it), "
                     f"and no unpacked data in --data {a.data}")
        if subprocess.run([sys.executable, str(ROOT / "tools/gpu/unpack.py"), a.pack, str(data)]).returncode:
            ap.error(f"--pack {a.pack}: could not be unpacked (unpack.py's message above)")
    log("data ready")
    try:
        import torch

        log(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, "
            f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
    except Exception as e:
        log(f"torch: {e}")

    def sec(s: float) -> str:
        return f"{max(1.0, s * SCALE):g}"

    common = ["--model", "vgg_fer", "--epochs", "300", "--test-split", "none", "--device", a.device,
              "--nondeterministic", "--threads", "2", "--no-progress"]
    adamw = ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--warmup", "3"]
    fer = ["--dataset", "fer2013", "--data", str(data / "fer2013"), "--time-budget", sec(a.budget)]
    ferp = ["--dataset", "ferplus", "--data", str(data / "ferplus"), "--soft-targets", "--time-budget", sec(a.budget)]
    jobs = {
        "vgg_fer-fer2013-r2": fer + adamw, "vgg_fer-fer2013-r2s1": fer + adamw + ["--seed", "1"],
        "vgg_fer-ferplus-r2": ferp + adamw, "vgg_fer-ferplus-r2s1": ferp + adamw + ["--seed", "1"],
    }
    if SCALE < 1:  # rehearsal on a CPU: a few hundred faces
        common += ["--limit", "256"]
    procs = {n: ferkit(["train", *common, *args, "--out", str(runs / n)], runs / "logs" / f"{n}.log")
             for n, args in jobs.items()}
    names = list(jobs) + ["cv-ckplus-vgg_fer"]
    ck_started = False
    while procs and time.time() - T0 < deadline:
        time.sleep(2)
        for n, p in list(procs.items()):
            if p.poll() is not None:
                log(f"{n} ended with exit code {p.returncode}")
                del procs[n]
                collect(runs, out, names)
        if a.ckplus and not ck_started and not any(n.startswith("vgg_fer-ferplus") for n in procs):
            ck_started = True
            best = max((n for n in jobs if "ferplus" in n), key=lambda n: val_acc(runs / n))
            log(f"CK+ from {best} (Valid {val_acc(runs / best):.4f})")
            ck = ["crossval", "--model", "vgg_fer", "--dataset", "ckplus", "--data", str(data / "ckplus48"),
                  "--folds", "10", "--init", str(runs / best), "--epochs", "40", "--lr", "1e-3", "--warmup", "1",
                  "--select", "accuracy-loss", "--time-budget", sec(13), "--device", a.device, "--nondeterministic",
                  "--threads", "2", "--no-progress", "--out", str(runs / "cv-ckplus-vgg_fer")]
            if SCALE < 1:
                ck += ["--only", "0,1"]
            procs["cv-ckplus-vgg_fer"] = ferkit(ck, runs / "logs" / "cv-ckplus-vgg_fer.log")
    for n, p in procs.items():
        log(f"deadline: stopping {n}")
        p.kill()
    collect(runs, out, names)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
