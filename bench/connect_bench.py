"""Connection storms: how fast the engine opens connections, beside a bare picows client.

Usage: python bench/connect_bench.py [--case 10000x1 ...] [--engine-only]

Each case opens N connections at once (no ramp-up), spread over W processes
and the given source addresses (round-robin by client index, as
``--source-address`` does), against the picows echo target
(:mod:`echo_target`, enough SO_REUSEPORT processes that none nears the
20,000-descriptor limit). In the same run, the same way, once with the
worker's engine and once with a bare picows client:

* each of the W processes (``--child``) is started, imports everything,
  reads its own RSS, says ``ready``; all are told ``go`` at once;
* the engine side is the worker's :class:`~wsload.worker.engine.Engine` (picows,
  full bookkeeping, windows taken every 250 ms as a worker does), its
  clients idle once open; the bare side is ``asyncio.gather`` of N
  ``ws_connect`` calls with the same picows options (2 KiB read buffer, no
  aiofastnet) and, from a source address, the same ``IP_BIND_ADDRESS_NO_PORT``
  socket;
* **opening rate** = connections open / (last one open - ``go``), over all
  processes (wall clock); **RSS per connection** = each process's RSS once
  its connections are open minus its RSS at ``ready``, summed, over the
  connections open (the process's own base, interpreter and libraries, is
  not in it);
* all processes keep their connections until every one has reported, so
  "open" means open at the same time.

A figure, not a gate: the script always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_target
from machine import Figure, report
from procfs import cpu_seconds, rss_bytes

#: (connections, processes, source addresses) of each case
CASES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "10000x1": (10_000, 1, ()),
    "30000x2": (30_000, 2, ("127.0.0.1", "127.0.0.2")),
    "50000x3": (50_000, 3, ("127.0.0.1", "127.0.0.2", "127.0.0.3")),
}
QUICK_CASES = {"2000x1": (2_000, 1, ()), "4000x2": (4_000, 2, ("127.0.0.1", "127.0.0.2"))}
#: connections per target process at most (the descriptor limit is 20,000)
PER_TARGET = 12_000
OPEN_TIMEOUT = 60.0  # seconds a process may take to open its share
GOAL_RATIO = 0.8
READ_BUFFER = 2048  # the engine's own picows read buffer (worker.engines.picows)
IP_BIND_ADDRESS_NO_PORT = 24
WINDOW = 0.25  # the engine's window (worker.engine.WINDOW_SECONDS)


@dataclass(frozen=True)
class Storm:
    """One side of one case: what all its processes reported together."""

    opened: int
    failed: int
    seconds: float
    rss_per_conn: float
    errors: dict[str, int]
    longest_window: float  # the engine's longest window (progress, time series) while opening
    cpu: float  # CPU seconds of the opening processes, from go to their report
    sys: float  # the kernel's part of it
    gc: float  # CPU seconds of it in Python's cyclic garbage collector
    target_cpu: float  # CPU seconds of the target over the same span

    def busy(self) -> str:
        """CPU per connection and how busy each side was while opening (in cores)."""
        if self.seconds <= 0 or not self.opened:
            return ""
        per = 1e6 / self.opened
        return (
            f"{self.cpu * per:.0f} µs CPU per connection ({self.sys / self.cpu:.0%} of it in "
            f"the kernel, {self.gc / self.cpu:.0%} in the GC), target "
            f"{self.target_cpu * per:.0f} µs; openers {self.cpu / self.seconds:.2f} cores, "
            f"target {self.target_cpu / self.seconds:.2f}"
        )

    @property
    def rate(self) -> float:
        return self.opened / self.seconds if self.seconds > 0 else 0.0


# -- one process of a storm (--child) ---------------------------------------


_cpu_at_go = 0.0
_extra: dict[str, float] = {}  # more for the report (the engine's longest window)
_gc_seconds = [0.0, 0.0]  # total, and when the current collection started


def _gc_clock(phase: str, _info: dict[str, int]) -> None:
    if phase == "start":
        _gc_seconds[1] = time.process_time()
    else:
        took = time.process_time() - _gc_seconds[1]
        _gc_seconds[0] += took
        _extra["longest_gc"] = max(_extra.get("longest_gc", 0.0), took)


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _sys() -> float:
    return os.times().system


def _go() -> float:
    """Say ready (with the base RSS), block until told to go; the wall-clock start."""
    global _cpu_at_go
    print(json.dumps({"ready": rss_bytes()}), flush=True)
    assert sys.stdin.readline().strip() == "go"
    _cpu_at_go = _cpu()
    _extra["sys_at_go"] = _sys()
    gc.callbacks.append(_gc_clock)
    return time.time()


def _report(start: float, end: float, opened: int, failed: int, errors: dict[str, int]) -> None:
    print(
        json.dumps(
            {"start": start, "end": end, "opened": opened, "failed": failed, "rss": rss_bytes(),
             "errors": errors, "cpu": _cpu() - _cpu_at_go, "sys": _sys() - _extra["sys_at_go"],
             "gc": _gc_seconds[0], **_extra}
        ),
        flush=True,
    )  # fmt: skip
    sys.stdin.readline()  # hold every connection until the driver says stop


async def engine_child(url: str, count: int, offset: int, total: int, sources: list[str]) -> None:
    from wsload.common.spec import build_spec
    from wsload.worker.engines import create_engine
    from wsload.worker.gcpolicy import tune_collector
    from wsload.worker.recorder import WindowBatch
    from wsload.worker.schedule import Share

    spec = build_spec(
        env={}, ws_url=url, num_clients=total, duration=3600.0, interval=3600.0,
        connect_timeout=OPEN_TIMEOUT, source_addresses=tuple(sources), reconnect=False,
    )  # fmt: skip
    share = Share(count=count, offset=offset, total=total)
    tune_collector()  # as a worker process does at start (worker.cli)
    windows: list[float] = []  # how long each window the engine emitted while opening lasted

    def on_batch(batch: WindowBatch) -> None:
        if rec.connects + rec.connect_failures < count or batch.counters.get("connects"):
            windows.append(batch.window_end - batch.window_start)

    engine = create_engine(spec, share, on_batch=on_batch)
    rec = engine.recorder
    loop = asyncio.get_running_loop()
    start = await loop.run_in_executor(None, _go)
    task = asyncio.create_task(engine.run())
    deadline = time.monotonic() + OPEN_TIMEOUT + 5
    end = start
    seen = -1
    while rec.connects + rec.connect_failures < count and time.monotonic() < deadline:
        if rec.connects != seen:
            seen, end = rec.connects, time.time()
        await asyncio.sleep(0.005)
    if rec.connects != seen:
        end = time.time()
    _extra["longest_window"] = max(windows, default=0.0)
    await loop.run_in_executor(
        None, _report, start, end, rec.connects, rec.connect_failures, dict(rec.errors)
    )
    engine.stop()
    await task


async def bare_child(url: str, count: int, offset: int, sources: list[str]) -> None:
    from picows import WSListener, ws_connect

    def bound(source: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        return sock

    opened = failed = 0
    end = 0.0
    errors: dict[str, int] = {}
    transports: list[Any] = []

    async def one(i: int) -> None:
        nonlocal opened, failed, end
        source = sources[(offset + i) % len(sources)] if sources else ""
        try:
            transport, _ = await ws_connect(
                WSListener, url, read_buffer_init_size=READ_BUFFER, use_aiofastnet=False,
                max_redirects=0, websocket_handshake_timeout=OPEN_TIMEOUT,
                socket_factory=(lambda _u: bound(source)) if source else None,
            )  # fmt: skip
        except Exception as exc:
            failed += 1
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        transports.append(transport)
        opened += 1
        end = time.time()

    loop = asyncio.get_running_loop()
    start = await loop.run_in_executor(None, _go)
    async with asyncio.timeout(OPEN_TIMEOUT + 5):
        await asyncio.gather(*(one(i) for i in range(count)))
    await loop.run_in_executor(None, _report, start, end or start, opened, failed, errors)
    for transport in transports:
        transport.disconnect(graceful=False)


# -- the driver --------------------------------------------------------------


def storm(
    side: str,
    url: str,
    total: int,
    workers: int,
    sources: tuple[str, ...],
    target: list[int],
    hang_up: Callable[[], None] = lambda: None,
) -> Storm:
    """Run one side of one case in ``workers`` processes; they open their shares at once.

    ``hang_up`` (stopping the target) runs once every process has reported,
    before they are told to stop.
    """
    procs = []
    offset = 0
    for w in range(workers):
        count = total // workers + (1 if w < total % workers else 0)
        child = [side, url, str(count), str(offset), str(total), ",".join(sources)]
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--child", *child],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        offset += count
    try:
        bases = [json.loads(_line(p))["ready"] for p in procs]
        target_cpu = sum(cpu_seconds(pid) for pid in target)
        for p in procs:
            _say(p, "go")
        results = [json.loads(_line(p)) for p in procs]
        target_cpu = sum(cpu_seconds(pid) for pid in target) - target_cpu
        hang_up()
        for p in procs:
            _say(p, "stop")
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    opened = sum(r["opened"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    grown = sum(r["rss"] - base for r, base in zip(results, bases, strict=True))
    return Storm(
        opened=opened,
        failed=sum(r["failed"] for r in results),
        seconds=max(r["end"] for r in results) - min(r["start"] for r in results),
        rss_per_conn=grown / max(1, opened),
        errors=errors,
        longest_window=max(r.get("longest_window", 0.0) for r in results),
        cpu=sum(r["cpu"] for r in results),
        sys=sum(r["sys"] for r in results),
        gc=sum(r["gc"] for r in results),
        target_cpu=target_cpu,
    )


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"storm process {proc.pid} exited ({proc.wait()})")
    return line


def _say(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(word + "\n")
    proc.stdin.flush()


def _kill(procs: list[subprocess.Popen[str]]) -> None:
    """Hang up on every connection at once: the kernel closes a killed process's sockets.

    (SIGTERM would wait: the server's ``wait_closed`` waits for its connections.)
    """
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(timeout=30)


def storm_against_fresh_target(
    side: str, total: int, workers: int, sources: tuple[str, ...], targets: int
) -> Storm:
    """One side's storm against its own echo target, which hangs up first when it is over.

    Whoever closes first keeps each connection in TIME_WAIT for a minute.
    When the clients closed first, the next storm's connects from the same
    source addresses paid for the tens of thousands of local ports still
    held: the kernel time per connection doubled, varied from run to run, and
    towards the same port they searched the port range for seconds and
    failed (a 50,000 storm right after another). The target hangs up first,
    so the TIME_WAIT is on its side, and each storm has a port of its own.
    """
    procs, url = echo_target.start(targets)
    try:
        pids = [p.pid for p in procs]
        return storm(side, url, total, workers, sources, pids, lambda: _kill(procs))
    finally:
        echo_target.stop(procs)


def case_figures(name: str, total: int, workers: int, sources: tuple[str, ...]) -> list[Figure]:
    targets = max(2, -(-total // PER_TARGET))
    bare = storm_against_fresh_target("bare", total, workers, sources, targets)
    engine = storm_against_fresh_target("engine", total, workers, sources, targets)
    where = f"{workers} worker{'s' if workers > 1 else ''}" + (
        f", {len(sources)} source addresses" if sources else ""
    )
    ratio = engine.rate / bare.rate if bare.rate else 0.0
    all_open = engine.opened == total

    def note(s: Storm) -> str:
        text = f"{s.opened:,} of {total:,} open in {s.seconds:.2f} s; {s.busy()}"
        return text + (f"; failed {s.failed:,} {s.errors}" if s.failed else "")

    return [
        Figure(
            f"connect storm {total:,} at once ({where}): engine opening rate",
            f"{engine.rate:,.0f}/s",
            f">= {GOAL_RATIO:g}x bare, all open",
            ratio >= GOAL_RATIO and all_open,
            f"{ratio:.2f}x the bare client; {note(engine)}; target {targets} processes",
        ),
        Figure("  bare picows client, same run", f"{bare.rate:,.0f}/s", "", None, note(bare)),
        Figure(
            "  engine's longest window while opening (progress lines, time series)",
            f"{engine.longest_window:.2f} s",
            "< 1 s",
            engine.longest_window < 1.0,
            f"windows of {WINDOW:g} s; one long window put a whole storm into one second",
        ),
        Figure(
            "  engine RSS per open connection (above the process's base)",
            f"{engine.rss_per_conn / 1024:.1f} KB",
            "",
            None,
            f"bare client: {bare.rss_per_conn / 1024:.1f} KB",
        ),
    ]


def figures(quick: bool = False, names: list[str] | None = None) -> list[Figure]:
    """Every case (or ``names``), each against its own fresh echo target."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    cases = QUICK_CASES if quick else CASES
    out: list[Figure] = []
    for name, (total, workers, sources) in cases.items():
        if names and name not in names:
            continue
        print(f"  storm {name}...", file=sys.stderr, flush=True)
        out += case_figures(name, total, workers, sources)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, url, count, offset, total, sources = sys.argv[2:8]
        src = [s for s in sources.split(",") if s]
        import uvloop

        if side == "engine":
            uvloop.run(engine_child(url, int(count), int(offset), int(total), src))
        else:
            uvloop.run(bare_child(url, int(count), int(offset), src))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=[*CASES, *QUICK_CASES])
    parser.add_argument("--quick", action="store_true", help="2,000 and 4,000 connections")
    args = parser.parse_args()
    print(report(figures(args.quick, args.case)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
