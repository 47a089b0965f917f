"""Soak: many connections for a long time; is memory flat, do descriptors leak?

Usage: python bench/soak.py [--clients 1000] [--minutes 10] [--rate 2000] [--every 30]

Starts the reference server and ``wsload run --workers 1`` against it, then
samples the worker's (and the coordinator's) resident memory and open file
descriptors from /proc every ``--every`` seconds. At the end it prints the
growth after warm-up (first sample at or after one minute, to the last) and
the run's own accounting checked against the server's counters. Not a test:
it takes minutes, and its figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe
from procfs import children, fd_count, rss_bytes

WSLOAD = str(Path(sys.executable).with_name("wsload"))
PORT = 9391
WARM_UP = 60.0
GOAL_GROWTH = 0.05


def server_stats() -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/stats", timeout=5) as resp:
        data: dict[str, int] = json.loads(resp.read())
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="messages/s in total")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    args = parser.parse_args()
    duration = args.minutes * 60
    print(f"soak: {args.clients} connections, {args.rate:g} msg/s, {args.minutes:g} min")
    print(f"machine: {describe()}")
    server = subprocess.Popen(
        [WSLOAD, "serve", "--port", str(PORT)], stdout=subprocess.PIPE, text=True
    )
    out = Path(tempfile.mkdtemp()) / "soak.json"
    run: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        assert "listening on" in server.stdout.readline()
        run = subprocess.Popen(
            [WSLOAD, "run", "--ws-url", f"ws://127.0.0.1:{PORT}/ws",
             "-c", str(args.clients), "-d", str(duration), "--rate", str(args.rate),
             "--ramp-up", "10", "--workers", "1", "--json", str(out), "--quiet"],
            stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        samples: list[tuple[float, int, int, int]] = []
        print(f"{'t (s)':>7} {'worker RSS (MB)':>16} {'worker fds':>11} {'coord RSS (MB)':>15}")
        started = time.monotonic()
        while True:
            try:
                run.wait(timeout=args.every)
                break
            except subprocess.TimeoutExpired:
                pass
            workers = children(run.pid)
            if not workers:
                continue
            t = time.monotonic() - started
            row = (
                t,
                rss_bytes(workers[0]) // 1024,
                fd_count(workers[0]),
                rss_bytes(run.pid) // 1024,
            )
            samples.append(row)
            print(f"{t:7.0f} {row[1] / 1024:16.1f} {row[2]:11d} {row[3] / 1024:15.1f}", flush=True)
        summary = json.loads(out.read_text())
        stats = server_stats()
    finally:
        for proc in (run, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    warm = [s for s in samples if s[0] >= WARM_UP] or samples
    growth = (warm[-1][1] - warm[0][1]) / warm[0][1] if warm else 0.0
    agree = (
        summary["total_sent"] == stats["messages_received"]
        and summary["total_received"] == stats["messages_sent"]
    )
    verdict = "met" if growth < GOAL_GROWTH else "MISSED"
    print(
        f"worker RSS after warm-up: {warm[0][1] / 1024:.1f} MB -> {warm[-1][1] / 1024:.1f} MB "
        f"({growth:+.1%}; goal under {GOAL_GROWTH:.0%}: {verdict})"
    )
    print(f"worker fds: {min(s[2] for s in samples)}..{max(s[2] for s in samples)}")
    print(
        f"run: sent {summary['total_sent']}, received {summary['total_received']}, "
        f"timed out {summary['timed_out']}, lost {summary['lost']}, errors {summary['errors']}, "
        f"balanced {summary['balanced']}, agrees with the server: {agree}"
    )
    return 0 if growth < GOAL_GROWTH and summary["balanced"] and agree else 1


if __name__ == "__main__":
    sys.exit(main())
