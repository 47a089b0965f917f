"""Worker engine figures: CPU per round trip, round trips per second, RSS per idle connection.

Usage: python bench/engine_bench.py [--url ws://...] [--seconds 5] [--idle 10000]

Without ``--url`` it starts the reference test server (``wsload serve``) on
loopback. Each CPU figure is measured beside its reference in the same run:
the engine (full bookkeeping: correlation, intended-time latency, windows)
and a bare websockets + uvloop echo loop with no bookkeeping, same server,
same clients. The server's own CPU use is printed too, so it is clear which
side saturated. A figure, not a gate: the script always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import uvloop
import websockets
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, table

from common.spec import build_spec
from worker.engine import Engine
from worker.recorder import WindowBatch

CLIENTS = 100
PAYLOAD_SIZE = 64
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server() -> tuple[subprocess.Popen[str], str]:
    wsload = Path(sys.executable).with_name("wsload")
    proc = subprocess.Popen(
        [str(wsload), "serve", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"(ws://\S+)", line)
    if not found:
        proc.kill()
        raise SystemExit(f"test server did not start: {line!r}")
    return proc, found.group(1)


async def engine_closed_loop(url: str, seconds: float) -> tuple[float, float]:
    """CPU µs per round trip and round trips/s of the engine, steady state only."""
    spec = build_spec(
        env={},
        ws_url=url,
        num_clients=CLIENTS,
        duration=seconds + 1.0,
        interval=0.0,
        payload_size=PAYLOAD_SIZE,
    )
    marks: list[tuple[float, float, int]] = []
    received = 0

    def on_batch(batch: WindowBatch) -> None:
        nonlocal received
        received += batch.counters.get("received", 0)
        marks.append((time.monotonic(), time.process_time(), received))

    await Engine(spec, on_batch=on_batch).run()
    steady = [m for m in marks if m[0] >= marks[0][0] + 1.0][:-1]  # skip warm-up and drain
    (t0, c0, r0), (t1, c1, r1) = steady[0], steady[-1]
    return (c1 - c0) / (r1 - r0) * 1e6, (r1 - r0) / (t1 - t0)


async def bare_closed_loop(url: str, seconds: float) -> tuple[float, float]:
    """The reference: websockets + uvloop, send/recv, no bookkeeping at all."""
    payload = '{"type": "test", "seq": 1, "pad": "' + "x" * (PAYLOAD_SIZE - 31) + '"}'
    conns = [await connect(url, compression=None, ping_interval=None) for _ in range(CLIENTS)]
    count = 0
    stop_at = 0.0

    async def loop(ws: websockets.asyncio.client.ClientConnection) -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await ws.send(payload)
            await ws.recv()
            count += 1

    stop_at = time.monotonic() + 1.0
    await asyncio.gather(*(loop(ws) for ws in conns))  # warm-up
    count = 0
    t0, c0 = time.monotonic(), time.process_time()
    stop_at = t0 + seconds
    await asyncio.gather(*(loop(ws) for ws in conns))
    t1, c1 = time.monotonic(), time.process_time()
    for ws in conns:
        await ws.close()
    return (c1 - c0) / count * 1e6, count / (t1 - t0)


async def idle_rss(url: str, n: int) -> float:
    """RSS growth per open idle connection held by the engine, in bytes."""
    spec = build_spec(
        env={},
        ws_url=url,
        num_clients=n,
        duration=60.0,
        interval=3600.0,
        ramp_up=min(20.0, n / 1000),
        connect_timeout=30.0,
    )
    before = rss_bytes()
    engine = Engine(spec)
    task = asyncio.create_task(engine.run())
    deadline = time.monotonic() + 90
    while engine.recorder.clients_connected < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    connected = engine.recorder.clients_connected
    after = rss_bytes()
    engine.stop()
    await task
    if connected < n:
        print(f"  note: only {connected} of {n} connections opened", file=sys.stderr)
    return (after - before) / max(1, connected)


async def main(args: argparse.Namespace) -> None:
    server, url = (None, args.url) if args.url else start_server()
    try:
        rows: list[tuple[str, str, str]] = []
        s0 = proc_cpu(server.pid) if server else 0.0
        w0 = time.monotonic()
        cpu, rate = await engine_closed_loop(url, args.seconds)
        server_share = (proc_cpu(server.pid) - s0) / (time.monotonic() - w0) if server else 0
        bare_cpu, bare_rate = await bare_closed_loop(url, args.seconds)
        rows.append(
            (
                "engine CPU per round trip (closed loop, 100 clients, 64 B)",
                f"{cpu:.1f} µs",
                "<= 12 µs",
            )
        )
        rows.append(
            ("bare websockets+uvloop loop, same conditions", f"{bare_cpu:.1f} µs", "reference")
        )
        rows.append(("engine / bare CPU ratio", f"{cpu / bare_cpu:.2f}", "< 1"))
        rows.append(("engine round trips per second", f"{rate:,.0f}", ""))
        rows.append(("bare loop round trips per second", f"{bare_rate:,.0f}", ""))
        if server:
            rows.append(
                (
                    "test server CPU during the engine run",
                    f"{server_share:.0%} of a core",
                    "< 90% (else the target saturated)",
                )
            )
        if args.idle:
            per_conn = await idle_rss(url, args.idle)
            rows.append(
                (
                    f"RSS per idle connection ({args.idle:,} connections)",
                    f"{per_conn / 1024:.1f} KB",
                    "<= 20 KB",
                )
            )
        print(f"machine: {describe()}")
        print(table(rows))
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="target WebSocket echo URL (default: start wsload serve)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per loop")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections (0: skip)")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # --idle needs many fds
    uvloop.run(main(parser.parse_args()))
