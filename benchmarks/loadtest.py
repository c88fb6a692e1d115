"""Load test of ``ferkit serve`` on loopback: latency percentiles, throughput, errors.

    .venv/bin/python benchmarks/loadtest.py                        # 1,000 requests, 8 clients, a server of its own
    .venv/bin/python benchmarks/loadtest.py --requests 300 --workers 1 2
    .venv/bin/python benchmarks/loadtest.py --url http://127.0.0.1:8000 --no-write   # a server already running

It starts ``ferkit serve`` itself (one server per ``--workers`` value, on a free loopback port, stopped
at the end) unless ``--url`` names one, which must be on this machine. It first times single requests
one after another (the service time), then sends ``--requests`` uploads of the example photo from
``--clients`` concurrent clients (threads, each with a keep-alive connection), and stops by itself
after ``--max-seconds`` at most. Every answer must be 200 with the same faces as the first: anything
else counts as an error, and the script exits 1 if there was one. The results go to the terminal and,
unless ``--no-write``, to ``docs/benchmarks.md`` between ``<!-- loadtest:start -->`` and
``<!-- loadtest:end -->`` (the rest of that file is left as it is).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- loadtest:start -->", "<!-- loadtest:end -->"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ferkit serve`` in a child process on a free loopback port."""

    def __init__(self, workers: int, timeout: float = 120.0, backend: str = "auto") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "ferkit.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", str(workers), "--backend", backend, "--log-level", "warning"]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise SystemExit(f"loadtest: the server did not start ({shlex.join(self.cmd)}):\n{out}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                self.stop()
                raise SystemExit(f"loadtest: the server did not answer within {timeout:.0f} s")
            time.sleep(0.25)
        # drain its output so that it never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def faces_of(r: httpx.Response) -> list:
    return [(f["label"], f["box"]) for f in r.json()["faces"]]


def run_load(url: str, image: bytes, name: str, requests: int, clients: int, max_seconds: float,
             expected: list) -> dict:
    counter = itertools.count()
    lock = threading.Lock()
    lat: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=max(60.0, max_seconds)) as c:
            while True:
                with lock:
                    i = next(counter)
                if i >= requests or time.monotonic() > deadline:
                    return
                t = time.perf_counter()
                try:
                    r = c.post("/v1/analyze", files={"file": (name, image, "image/jpeg")})
                    ok = r.status_code == 200 and faces_of(r) == expected
                    why = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except Exception as e:  # a connection error is an error, not a crash of the test
                    ok, why = False, f"{type(e).__name__}: {e}"
                dt_ = time.perf_counter() - t
                with lock:
                    (lat.append(dt_) if ok else errors.append(why))

    threads = [threading.Thread(target=client, name=f"client-{k}") for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000 if lat else np.zeros(1)
    done = len(lat) + len(errors)
    return {"asked": requests, "done": done, "ok": len(lat), "errors": len(errors), "error_examples": errors[:3],
            "wall_s": wall, "throughput": len(lat) / wall if wall else 0.0, "stopped_early": done < requests,
            "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def sequential(url: str, image: bytes, name: str, n: int) -> tuple[float, list]:
    """Median latency of ``n`` requests one after another, and the faces found."""
    times, faces = [], None
    with httpx.Client(base_url=url, timeout=120) as c:
        for _ in range(n):
            t = time.perf_counter()
            r = c.post("/v1/analyze", files={"file": (name, image, "image/jpeg")})
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"loadtest: the server answered {r.status_code}: {r.text[:300]}")
            faces = faces_of(r)
    return float(np.median(times) * 1000), faces or []


def section(cmd: str, rows: list[dict], info: dict) -> str:
    lines = [START, "## HTTP API: load test (`ferkit serve`)", "", "Measured with:", "", f"    {cmd}", "",
             f"{info['date']}, {info['machine']}; server and clients on the same machine (loopback), so the "
             f"clients' own CPU use is included. Image: `{info['image']}` ({info['size']}), model "
             f"`{info['model']}`, detector `{info['detector']}`. Each answer checked: HTTP 200 and the same faces "
             f"as a single request's. Load average of the machine before the run: {info['load']} (other "
             f"processes share these cores, so the numbers are conservative).", "",
             "| server | clients | requests (ok / sent) | errors | single request (1 client) | p50 | p95 | p99 "
             "| max | throughput |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cut = " (time limit)" if r["stopped_early"] else ""
        if r.get("url"):  # a server the script did not start: what its /healthz says, not flags it was given
            how = f"`{r['url']}` ({r['workers']} workers, {r.get('server_backend') or '?'} per its /healthz)"
        else:
            backend = f" --backend {r['backend']}" if r.get("backend", "auto") != "auto" else ""
            how = f"`--workers {r['workers']}{backend}`"
        lines.append(f"| {how} | {r['clients']} | {r['ok']:,} / {r['done']:,}{cut} | "
                     f"{r['errors']} | {r['single_ms']:.0f} ms | {r['p50']:.0f} ms | {r['p95']:.0f} ms | "
                     f"{r['p99']:.0f} ms | {r['max']:.0f} ms | {r['throughput']:.2f} req/s |")
    lines += ["", "Latency is per request as a client sees it (upload, waiting for a worker, decode, detect, "
                  "classify, JSON). With more clients than workers requests queue, so p50 is close to clients / "
                  "throughput; the single-request column is the latency of a lone request (no queue), which "
                  "includes the client's upload and the server's HTTP handling besides the analysis.", END]
    return "\n".join(lines)


def write_section(path: Path, text: str, start: str = START, end: str = END) -> None:
    """``text`` (which begins with ``start`` and ends with ``end``) in place of that section of
    ``path``, or at its end."""
    old = path.read_text() if path.exists() else ""
    if start in old and end in old and old.index(start) < old.index(end):
        new = old[: old.index(start)] + text + old[old.index(end) + len(end):]
    elif old:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    else:
        new = "# Benchmarks\n\n" + text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server on this machine (default: start one per --workers value)")
    p.add_argument("--requests", type=int, default=1000, help="requests per server configuration")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--max-seconds", type=float, default=240, help="stop sending after this long (per configuration)")
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="server --workers values to compare")
    p.add_argument("--backends", nargs="+", default=["auto"], choices=["auto", "torch", "onnx", "onnx-int8"],
                   help="server --backend values to compare (each with each --workers value)")
    p.add_argument("--single", type=int, default=10, help="sequential requests timed first (the service time)")
    p.add_argument("--image", default=str(ROOT / "examples" / "astronaut.jpg"))
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    a = p.parse_args(argv)
    if not (1 <= a.requests <= 100_000 and 1 <= a.clients <= 64 and 0 < a.max_seconds <= 3600):
        p.error("--requests 1..100000, --clients 1..64, --max-seconds up to 3600")
    if a.url and (urlparse(a.url).hostname or "") not in LOOPBACK:
        p.error(f"--url must be on this machine ({', '.join(sorted(LOOPBACK))}), got {a.url}")
    image = Path(a.image).read_bytes()
    name = Path(a.image).name
    cmd = ".venv/bin/python benchmarks/loadtest.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows, info, failed = [], {}, False
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    for workers, backend in ([(None, None)] if a.url else [(w, b) for b in a.backends for w in a.workers]):
        server = None if a.url else Server(workers, backend=backend)
        url = a.url or server.url
        try:
            h = httpx.get(url + "/healthz", timeout=10).json()
            print(f"server {url}: model {h['model']}, detector {h['detector']}, workers {h.get('workers')}",
                  flush=True)
            sequential(url, image, name, 2)  # warm the connections and the models
            single, expected = sequential(url, image, name, a.single)
            print(f"  1 client, {a.single} requests one by one: median {single:.0f} ms", flush=True)
            r = run_load(url, image, name, a.requests, a.clients, a.max_seconds, expected)
        finally:
            if server:
                server.stop()
        r.update(workers=h.get("workers", workers), clients=a.clients, single_ms=single,
                 backend=backend or "auto", server_backend=h.get("backend"), url=a.url)
        rows.append(r)
        info = {"date": dt.date.today().isoformat(), "load": load, "image": os.path.relpath(a.image, ROOT),
                "size": f"{len(image) / 1024:.0f} KB", "model": h["model"], "detector": h["detector"],
                "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}, "
                           f"Python {platform.python_version()})"}
        print(f"  {a.clients} clients: {r['ok']} ok / {r['done']} sent{' (time limit)' if r['stopped_early'] else ''}"
              f", {r['errors']} errors, p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, p99 {r['p99']:.0f} ms, "
              f"max {r['max']:.0f} ms, {r['throughput']:.2f} req/s over {r['wall_s']:.1f} s", flush=True)
        for e in r["error_examples"]:
            print(f"    error: {e}")
        failed |= r["errors"] > 0
    text = section(cmd, rows, info)
    if not a.no_write:
        write_section(Path(a.out), text)
        print(f"wrote the load-test section of {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
