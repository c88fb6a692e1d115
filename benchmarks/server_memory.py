"""Memory of ``ferkit serve``: the server's resident memory idle and its peak while it analyses
one image or several at once, by image size and by ``annotated=1``.

    .venv/bin/python benchmarks/server_memory.py                 # --workers 2, writes docs/benchmarks.md
    .venv/bin/python benchmarks/server_memory.py --no-write --backend onnx-int8

Each row starts a fresh ``ferkit serve`` on a free loopback port (so one row's peak does not carry
into the next), reads its resident memory once the models are loaded (``VmRSS`` of
``/proc/PID/status``), sends the row's requests (``concurrent`` at once) and reads the peak
(``VmHWM``) and what stays resident afterwards. The images are made from ``examples/astronaut.jpg``
(its face scaled up): the example itself, a 12 MP photo (4000x3000) and a 49 MP one (7000x7000, just
under the 50 MP ``--max-pixels`` default). Linux only (``/proc``). The results go to the terminal
and, unless ``--no-write``, to ``docs/benchmarks.md`` between ``<!-- memory:start -->`` and
``<!-- memory:end -->``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import threading
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadtest import ROOT, Server, write_section  # noqa: E402

START, END = "<!-- memory:start -->", "<!-- memory:end -->"
EXAMPLE = ROOT / "examples" / "astronaut.jpg"


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of process ``pid``, in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024  # kB
    return out


def images(folder: Path) -> dict[str, tuple[Path, str]]:
    """The example and two large photos made from it: name -> (file, description)."""
    src = Image.open(EXAMPLE).convert("RGB")
    out = {"example": (EXAMPLE, f"the example photo, {src.width}x{src.height}")}
    for name, (w, h) in {"12mp": (4000, 3000), "49mp": (7000, 7000)}.items():
        path = folder / f"{name}.jpg"
        src.resize((w, h), Image.BILINEAR).save(path, quality=85)
        out[name] = (path, f"{w}x{h} ({w * h / 1e6:.0f} MP) JPEG")
    return out


def sequence_images(folder: Path, n: int) -> list[Path]:
    """``n`` JPEGs of the example's face at sizes that all differ (1.7 to 12 MP, a fixed draw): photos
    as a server gets them, each giving the detector's image pyramid new shapes."""
    import random

    src = Image.open(EXAMPLE).convert("RGB")
    rnd = random.Random(0)
    out = []
    for i in range(n):
        w = rnd.randint(1300, 3450)
        h = int(w * rnd.uniform(0.75, 1.0))  # landscape up to 4:3, so the face stays a face to the detector
        path = folder / f"seq{i:02d}.jpg"
        src.resize((w, h), Image.BILINEAR).save(path, quality=85)
        out.append(path)
    return out


def growth(after: dict[int, float], verdict: bool = True) -> str:
    """In words, how resident memory grew over a sequence (``after``: photo count -> MB); ``verdict``:
    whether it levelled off (not where large photos hand memory back: then it goes up and down)."""
    ks = sorted(after)
    steps = [f"{after[b] - after[a]:+.0f} MB from photo {a} to {b}" for a, b in zip(ks, ks[1:])]
    if len(ks) < 2:
        return f"{after[ks[0]]:.0f} MB after one photo." if ks else "no photos."
    rate = [(after[b] - after[a]) / (b - a) for a, b in zip(ks, ks[1:])]  # MB per photo, each step
    said = ("it had levelled off by the end" if rate[-1] < 1 else
            f"it was still growing at the end, {rate[-1]:.1f} MB per photo over the last step against "
            f"{rate[0]:.1f} over the first: plan for more than the one-photo peak on a long-running server, "
            f"or restart it now and then")
    return "; ".join(steps) + (f" ({said})." if verdict else ".")


def by_kind(after: dict[str, list[float]]) -> str:
    """In words, the resident memory after the photos whose memory was handed back and after the others."""
    said = []
    for kind, what in (("released", "of 4 MP or more (memory handed back)"), ("kept", "under 4 MP")):
        v = after.get(kind) or []
        if v:
            said.append(f"after the one photo {what}: {v[0]:.0f} MB" if len(v) == 1 else
                        f"after each of the {len(v)} photos {what}: {min(v):.0f} to {max(v):.0f} MB")
        else:
            said.append(f"no photo {what.split(' (')[0]}")
    return "Resident memory " + "; ".join(said) + "."


def run_sequence(paths: list[Path], workers: int, backend: str, marks: tuple[int, ...]) -> dict:
    """One fresh server, the photos one after another: its resident memory after each of ``marks``,
    and after every photo by whether the server handed its memory back (``released``: photos of
    ``TRIM_PIXELS`` or more; ``kept``: the others)."""
    from ferkit.serve.app import TRIM_PIXELS

    server = Server(workers, backend=backend)
    try:
        url = server.url + "/v1/analyze"
        idle = memory_mb(server.proc.pid)["VmRSS"]
        after, errors, by_kind = {}, [], {"released": [], "kept": []}
        for i, path in enumerate(paths, 1):
            try:
                r = httpx.post(url, files={"file": (path.name, path.read_bytes(), "image/jpeg")}, timeout=300)
                if r.status_code != 200 or len(r.json()["faces"]) != 1:
                    errors.append(f"{path.name}: HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{path.name}: {type(e).__name__}: {e}")
            now = memory_mb(server.proc.pid)["VmRSS"]
            with Image.open(path) as im:
                by_kind["released" if im.width * im.height >= TRIM_PIXELS else "kept"].append(now)
            if i in marks:
                after[i] = now
        peak = memory_mb(server.proc.pid)["VmHWM"]
    finally:
        server.stop()
    return {"idle": idle, "after": after, "peak": peak, "errors": errors, "by_kind": by_kind}


def run_row(image: Path, annotated: bool, concurrent: int, workers: int, backend: str) -> dict:
    server = Server(workers, backend=backend)
    try:
        url = server.url + "/v1/analyze" + ("?annotated=1" if annotated else "")
        data = image.read_bytes()
        idle = memory_mb(server.proc.pid)["VmRSS"]
        answers: list[str] = []

        def send() -> None:
            try:
                r = httpx.post(url, files={"file": (image.name, data, "image/jpeg")}, timeout=300)
                ok = r.status_code == 200 and (annotated or len(r.json()["faces"]) == 1)
                answers.append("ok" if ok else f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                answers.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=send) for _ in range(concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        m = memory_mb(server.proc.pid)
    finally:
        server.stop()
    errors = [a for a in answers if a != "ok"]
    return {"idle": idle, "peak": m["VmHWM"], "after": m["VmRSS"], "errors": errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="the server's --workers (default 2, its default)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"])
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--sequence", type=int, default=24, metavar="N",
                   help="then N photos of different sizes, one at a time, to one server (default 24; 0: skip)")
    a = p.parse_args(argv)
    if a.sequence < 0:
        p.error("--sequence must be >= 0")
    if not Path("/proc/self/status").exists():
        p.error("this benchmark reads /proc (Linux only)")
    if not 1 <= a.workers <= 16:
        p.error("--workers 1..16")
    cmd = shlex.join([".venv/bin/python", "benchmarks/server_memory.py", *(sys.argv[1:] if argv is None else argv)])
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())  # before the run (its own load would count)
    with tempfile.TemporaryDirectory() as d:
        imgs = images(Path(d))
        plan = [("example", False, 1), ("12mp", False, 1), ("12mp", True, 1), ("49mp", False, 1),
                ("49mp", True, 1), ("49mp", False, a.workers), ("49mp", True, a.workers)]
        rows = []
        for name, annotated, n in plan:
            r = run_row(imgs[name][0], annotated, n, a.workers, a.backend)
            r.update(image=imgs[name][1], annotated=annotated, concurrent=n)
            rows.append(r)
            print(f"{imgs[name][1]}{', annotated' if annotated else ''}, {n} at once: idle {r['idle']:.0f} MB, "
                  f"peak {r['peak']:.0f} MB, after {r['after']:.0f} MB" + (f"; ERRORS {r['errors']}" if r["errors"]
                                                                            else ""), flush=True)
        marks = tuple(sorted({k for k in (1, 2, 4, 8, 16, a.sequence) if 0 < k <= a.sequence}))
        seq = run_sequence(sequence_images(Path(d), a.sequence), a.workers, a.backend, marks) if a.sequence else None
        if seq:
            print(f"{a.sequence} photos of different sizes, one at a time: idle {seq['idle']:.0f} MB, resident after "
                  + ", ".join(f"{k}: {v:.0f} MB" for k, v in seq["after"].items())
                  + (f"; ERRORS {seq['errors']}" if seq["errors"] else ""), flush=True)
    lines = [START, "## HTTP API: memory (`ferkit serve`)", "", "Measured with:", "", f"    {cmd}", "",
             f"{dt.date.today().isoformat()}, {os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}, "
             f"Python {platform.python_version()}); `--workers {a.workers}`"
             + (f" `--backend {a.backend}`" if a.backend != "auto" else "") + ", the default model and detector. "
             "Each row is a fresh server: its resident memory once the models are loaded (idle), its peak while "
             "the row's requests ran (`VmHWM`) and what stayed resident after them. Images: the example photo "
             "and two JPEGs made from it by scaling (one face).", "",
             "| request | at once | idle | peak | peak above idle | resident after |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['image']}{', `annotated=1`' if r['annotated'] else ''} | {r['concurrent']} | "
                     f"{r['idle']:.0f} MB | {r['peak']:.0f} MB | {r['peak'] - r['idle']:.0f} MB | "
                     f"{r['after']:.0f} MB |" + (" errors!" if r["errors"] else ""))
    lines += ["", "An image costs memory in proportion to its pixels while it is analysed: decoded RGB, its "
                  "grayscale copy and the detector's input (searched at 2048 pixels on the long side at most), "
                  "and with `annotated=1` the drawn copy and its PNG. Up to `--workers` images are analysed at "
                  "once, so the peak to plan for is about idle + workers x the one-image peak of the largest "
                  "image allowed (`--max-pixels`), plus the uploads waiting for a worker (`--max-queue`, default 32, each up to "
                  "`--max-upload-mb`). Once an image of 4 MP or more is answered, the server hands its memory back "
                  "(`Recognizer.release_memory()`: onnxruntime's arenas shrunk, glibc's heap trimmed), so the "
                  "resident size falls back towards idle; a smaller image's buffers are kept for the next request. "
                  "The peak is not lowered by that: lower `--max-pixels` or `--workers` to bound it. "
                  f"Load average before the run: {load}."]
    if seq:
        marks = sorted(seq["after"])
        lines += ["", f"Many photos of different sizes, one at a time ({a.sequence} JPEGs of 1.3 to 11.9 MP, landscape up to 4:3, the "
                      "example's face scaled, sizes drawn with a fixed seed; one fresh server): resident memory after "
                      "the N-th photo.", "",
                  "| idle | " + " | ".join(f"after {k}" for k in marks) + " | peak |",
                  "| ---: | " + " | ".join("---:" for _ in marks) + " | ---: |",
                  f"| {seq['idle']:.0f} MB | " + " | ".join(f"{seq['after'][k]:.0f} MB" for k in marks)
                  + f" | {seq['peak']:.0f} MB |" + (" errors!" if seq["errors"] else ""), "",
                  "Each new size gives the detector's image pyramid new tensor shapes, and the runtimes and the "
                  "allocator keep buffers for them: " + growth(seq["after"], verdict=not seq["by_kind"]["released"])
                  + " " + by_kind(seq["by_kind"])]
    lines += [END]
    text = "\n".join(lines)
    print(text)
    if any(r["errors"] for r in rows) or (seq and seq["errors"]):
        print("server_memory: some requests failed (see the rows); docs not written", file=sys.stderr)
        return 1
    if not a.no_write:
        write_section(Path(a.out), text, START, END)
        print(f"wrote the memory section of {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
