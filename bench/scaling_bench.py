"""Whole-tool figures: scaling over local workers, time to first message, stop to report.

Usage: python bench/scaling_bench.py [--seconds 5] [--workers 1,2,4]

Scaling: ``wsload run --workers N`` (100 clients per worker, 64-byte
messages) against the picows echo target (:mod:`echo_target`, two
processes), in closed loop (how many round trips the machine makes) and at
a fixed 20,000 msg/s in all (what spreading the same load over more workers
costs: efficiency is the CPU per message of one worker over that of N, the
measure that means something when every process shares a few cores). Round
trips/s come from the run's own summary; CPU per round trip is the workers'
CPU over the steady part of the run (read from /proc) over that rate. The
table also says how many cores the workers and the target kept busy.

Startup: ``wsload run`` against the reference test server; the time from
starting the command to the first message the server counts, and from the
end of the load (first message + duration) to the command's exit with its
report written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_target
from engine_bench import TEMPLATE
from machine import Figure, report
from procfs import children, cpu_seconds

WSLOAD = str(Path(sys.executable).with_name("wsload"))
CLIENTS_PER_WORKER = 100
RATE = 20_000.0


def scaling_run(
    url: str, workers: int, seconds: float, target: list[int], rate: float | None = None
) -> dict[str, float]:
    """One run (closed loop, or ``rate`` msg/s in all); round trips/s, CPU µs per round trip."""
    out = Path(tempfile.mkdtemp()) / "summary.json"
    duration = seconds + 2.5
    load = ["--rate", str(rate)] if rate else ["--interval", "0"]
    run = subprocess.Popen(
        [WSLOAD, "run", "--ws-url", url, "-c", str(CLIENTS_PER_WORKER * workers),
         "-d", str(duration), *load, "--payload", TEMPLATE, "--payload-size", "64",
         "--workers", str(workers), "--json", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    # (time, CPU of each worker, target CPU), sampled inside the load only:
    # it starts well within 1.5 s of the command and runs `duration` seconds.
    marks: list[tuple[float, dict[int, float], float]] = []
    started = time.monotonic()
    while run.poll() is None:
        time.sleep(0.25)
        elapsed = time.monotonic() - started
        if 1.5 <= elapsed <= duration:
            cpus = {p: cpu_seconds(p) for p in children(run.pid)}
            marks.append((elapsed, cpus, sum(cpu_seconds(p) for p in target)))
    summary = json.loads(out.read_text())
    (t0, w0, s0), (t1, w1, s1) = marks[0], marks[-1]
    worker_cpu = sum(w1[p] - w0[p] for p in w0.keys() & w1.keys())
    rate = summary["throughput"]
    return {
        "rate": rate,
        "cpu_us": worker_cpu / (t1 - t0) / rate * 1e6,
        "busy": worker_cpu / (t1 - t0),
        "target_busy": (s1 - s0) / (t1 - t0),
    }


def startup(workers: int) -> tuple[float, float]:
    """Seconds from ``wsload run`` to the first message, and from load end to exit."""
    server = subprocess.Popen([WSLOAD, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        words = server.stdout.readline().split()  # "... listening on ws://... api http://..."
        ws = next(w for w in words if w.startswith("ws://"))
        api = next(w for w in words if w.startswith("http://"))
        duration = 2.0
        t0 = time.monotonic()
        run = subprocess.Popen(
            [WSLOAD, "run", "--ws-url", ws, "-c", "10", "-d", str(duration), "--interval", "0.01",
             "--workers", str(workers), "--quiet"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        first = 0.0
        while not first and run.poll() is None:
            with urllib.request.urlopen(f"{api}/stats", timeout=5) as resp:
                if json.loads(resp.read())["messages_received"]:
                    first = time.monotonic() - t0
                    break
            time.sleep(0.005)
        run.wait(timeout=60)
        exited = time.monotonic() - t0
        return first, exited - first - duration
    finally:
        server.terminate()
        server.wait(timeout=10)


def figures(seconds: float = 5.0, counts: tuple[int, ...] = (1, 2, 4)) -> list[Figure]:
    procs, url = echo_target.start(2)
    pids = [p.pid for p in procs]
    try:
        closed = {n: scaling_run(url, n, seconds, pids) for n in counts}
        rated = {n: scaling_run(url, n, seconds, pids, RATE) for n in counts}
    finally:
        echo_target.stop(procs)
    out: list[Figure] = []
    cores = os.cpu_count() or 1
    base = closed[counts[0]]
    for n, r in closed.items():
        scaling = r["rate"] / (base["rate"] * n / counts[0])
        out.append(
            Figure(
                f"{n} local worker(s), closed loop: round trips/s, CPU per round trip",
                f"{r['rate']:,.0f} /s, {r['cpu_us']:.1f} µs", "", None,
                f"{scaling:.0%} of linear; workers {r['busy']:.1f} and target "
                f"{r['target_busy']:.1f} cores busy, of {cores}",
            )
        )  # fmt: skip
    base = rated[counts[0]]
    for n, r in rated.items():
        efficiency = base["cpu_us"] / r["cpu_us"]
        goal, met = ("", None) if n != 2 else (">= 90 %", efficiency >= 0.9)
        out.append(
            Figure(
                f"{n} local worker(s) at {RATE:,.0f} msg/s: CPU per message, efficiency",
                f"{r['cpu_us']:.1f} µs, {efficiency:.0%}", goal, met,
                f"{r['rate']:,.0f} msg/s; workers {r['busy']:.1f} and target "
                f"{r['target_busy']:.1f} cores busy, of {cores}",
            )
        )  # fmt: skip
    first, stop = startup(1)
    out.append(Figure("wsload run: start to first message (1 worker)", f"{first:.2f} s"))
    out.append(Figure("wsload run: end of load to exit with the report", f"{stop:.2f} s"))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    args = parser.parse_args()
    print(report(figures(args.seconds, tuple(int(n) for n in args.workers.split(",")))))
