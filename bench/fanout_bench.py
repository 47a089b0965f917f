"""Fan-out: the workers' CPU per received delivery beside a bare picows client's, same run.

Usage: python bench/fanout_bench.py [--subscribers 10000] [--rate 2] [--seconds 10] [--rounds 3]

Issue 16's budget: receiving a delivery (recognising it, recording its
topic, seq and latency) costs a worker at most 1.5x what a bare picows
client pays to receive and count a message. Both sides run against the
same broker, a fresh reference server (``wsload serve``, its ``/pubsub``
endpoint) for each, with the same subscribers (``--subscribers``, split
over ``--workers`` processes: 2) on one topic, and one publisher
publishing ``--rate`` publications a second (each one a delivery to every
subscriber):

* wsload: ``wsload run --workers 2`` with :data:`SCENARIO` (the shape of
  ``examples/fanout.toml``: subscribers subscribe, expect ``subscribed``,
  then only receive deliveries; one publisher at the rate, which, like the
  bare one, awaits no answer: a broker slower than the rate would
  otherwise hold the publisher back on one side only);
* bare: ``--workers`` processes of this script (``--bare``), each opening
  its share of picows connections that subscribe and then only count the
  messages they receive; the first also publishes at the rate on a picows
  connection of its own.

Measured the same way for both: once the server counts every subscriber,
the publisher is told to start (a delivery on the ``go`` topic it waits
for: publications during the connection storm slowed the broker's
handshakes into timeouts and reconnects, and a broker that falls behind
never catches up), and 1 s later, over ``--seconds``: the client
processes' CPU (user + system, from /proc: the workers for wsload, not its
coordinator) over the deliveries the server handed to sockets in that span. The server's share
of a core is printed beside (a Python broker: at 10,000 subscribers it is
what saturates first, which is why the rate is low); deliveries it lost to
slow subscribers (``dropped_slow``) would say a side could not keep up.
``--rounds`` rounds of both sides; the figures are the median round's and
every round's ratio is printed (a neighbour's burst during one side moves
one round either way on a shared machine). A figure, not a gate: always
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Figure, report
from procfs import CLK_TCK, children, cpu_seconds

BUDGET = 1.5
TOPIC = "bench"
#: the publishers wait for a delivery on this topic, posted once every
#: subscriber is counted: a fan-out during the connection storm slows the
#: broker's handshakes into timeouts and reconnects, and a saturated broker
#: falls further behind every second
GO = "go"
WORKERS = 2
#: Longest wait for every subscriber to be counted by the server.
SUBSCRIBE_WAIT = 180.0
SETTLE = 1.0
URL_LINE = re.compile(r"listening on (ws://\S+/ws) api (http://\S+/api)")
WSLOAD = str(Path(sys.executable).with_name("wsload"))
READ_BUFFER = 2048  # the engine's own picows read buffer
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only

#: The wsload side: examples/fanout.toml's shape, on the bench topic.
SCENARIO = """\
[[scenarios]]
name = "subscribers"
weight = 1

[[scenarios.steps]]
send = {{type = "subscribe", topic = "{topic}"}}
[[scenarios.steps]]
name = "subscribed"
expect = {{type = "subscribed", topic = "{topic}"}}
[[scenarios.loop]]
think = 3600

[scenarios.deliveries]
match = {{type = "delivery"}}
topic = "topic"
seq = "seq"
sent_at = "sent_at"
topics = ["{topic}"]

[[scenarios]]
name = "publisher"
clients = 1
rate = {rate}

[[scenarios.steps]]
send = {{type = "subscribe", topic = "{go}"}}
[[scenarios.steps]]
expect = {{type = "subscribed", topic = "{go}"}}
[[scenarios.steps]]
name = "go"
expect = {{type = "delivery", topic = "{go}"}}
timeout = {wait}
[[scenarios.loop]]
send = {{type = "publish", topic = "{topic}", seq = "{{seq}}", sent_at = "{{ts}}", data = "x"}}
publish = {{topic = "{topic}", seq = "{{seq}}"}}
"""


@dataclass(frozen=True)
class Side:
    """One side's steady state: CPU µs per delivery, deliveries/s, busy shares, losses."""

    cpu_us: float
    sys_us: float
    rate: float
    busy: float
    server_busy: float
    dropped_slow: int
    detail: str = ""

    def note(self) -> str:
        lost = f"; {self.dropped_slow:,} lost to slow subscribers" if self.dropped_slow else ""
        return (
            f"{self.sys_us:.1f} µs in the kernel; "
            f"{self.rate:,.0f} deliveries/s; clients {self.busy:.0%} of a core, "
            f"server {self.server_busy:.0%}{lost}{self.detail}"
        )


# -- the broker ----------------------------------------------------------------


class Server:
    """A fresh ``wsload serve --port 0`` for one side."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [WSLOAD, "serve", "--port", "0", "--chat-heartbeat", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        found = URL_LINE.search(self.proc.stdout.readline())
        if not found:
            self.stop()
            raise RuntimeError("wsload serve printed no URL line")
        self.url = found.group(1).removesuffix("/ws") + "/pubsub"
        self.api = found.group(2)

    def topic(self) -> dict[str, int]:
        """The bench topic's counters; a busy server (a connection storm) may take a while."""
        for attempt in range(5):
            try:
                with _NO_PROXY.open(f"{self.api}/stats", timeout=30) as resp:
                    stats: dict[str, Any] = json.loads(resp.read())
                break
            except OSError:  # URLError and timeouts alike
                if attempt == 4:
                    raise
        counters: dict[str, int] = stats["pubsub"]["topics"].get(TOPIC, {})
        return counters

    def go(self) -> None:
        """Start the publishers (they wait for a delivery on :data:`GO`)."""
        body = json.dumps({"topic": GO, "seq": 1, "sent_at": time.time()}).encode()
        request = urllib.request.Request(
            f"{self.api}/publish", body, {"Content-Type": "application/json"}
        )
        with _NO_PROXY.open(request, timeout=30) as resp:
            resp.read()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def system_seconds(pid: int) -> float:
    """Kernel CPU seconds of process ``pid`` so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return int(fields[12]) / CLK_TCK


def steady(server: Server, subscribers: int, pids: Any, seconds: float) -> Side:
    """Wait for every subscriber, then measure ``pids()``'s CPU per delivery over ``seconds``."""
    deadline = time.monotonic() + SUBSCRIBE_WAIT
    while server.topic().get("subscribers", 0) < subscribers:
        if time.monotonic() > deadline:
            got = server.topic().get("subscribers", 0)
            raise RuntimeError(f"only {got:,} of {subscribers:,} subscribers after the wait")
        time.sleep(0.5)
    server.go()
    time.sleep(SETTLE)
    procs = list(pids())
    cpu0 = sum(cpu_seconds(p) for p in procs)
    sys0 = sum(system_seconds(p) for p in procs)
    srv0 = cpu_seconds(server.proc.pid)
    before, wall0 = server.topic(), time.monotonic()
    time.sleep(seconds)
    after, wall = server.topic(), time.monotonic() - wall0
    cpu = sum(cpu_seconds(p) for p in procs) - cpu0
    kernel = sum(system_seconds(p) for p in procs) - sys0
    srv = cpu_seconds(server.proc.pid) - srv0
    deliveries = after["deliveries"] - before["deliveries"]
    return Side(
        cpu * 1e6 / max(1, deliveries),
        kernel * 1e6 / max(1, deliveries),
        deliveries / wall,
        cpu / wall,
        srv / wall,
        after.get("dropped_slow", 0) - before.get("dropped_slow", 0),
    )


# -- the bare side -------------------------------------------------------------


async def bare_child(url: str, count: int, rate: float) -> None:
    """``count`` picows subscribers that count what they receive; publish at ``rate`` if > 0."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    received = 0
    subscribe = json.dumps({"type": "subscribe", "topic": TOPIC}).encode()

    class Counter(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            transport.send(WSMsgType.TEXT, subscribe)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            nonlocal received
            received += 1

    transports: list[Any] = []

    async def one() -> None:
        transport, _ = await ws_connect(
            Counter, url, read_buffer_init_size=READ_BUFFER, use_aiofastnet=False,
            max_redirects=0, websocket_handshake_timeout=60,
        )  # fmt: skip
        transports.append(transport)

    batch = 200  # connect in batches: the server's accept queue is finite
    for start in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    if rate > 0:
        go = asyncio.get_running_loop().create_future()

        class Publisher(WSListener):
            def on_ws_connected(self, transport: WSTransport) -> None:
                transport.send(WSMsgType.TEXT, json.dumps({"type": "subscribe", "topic": GO}))

            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if b'"delivery"' in frame.get_payload_as_bytes() and not go.done():
                    go.set_result(None)

        publisher, _ = await ws_connect(Publisher, url, use_aiofastnet=False)
        await go  # every subscriber is counted
        loop = asyncio.get_running_loop()
        began, seq = loop.time(), 0
        while True:
            seq += 1
            await asyncio.sleep(max(0.0, began + seq / rate - loop.time()))
            body = {"type": "publish", "topic": TOPIC, "seq": seq, "sent_at": time.time()}
            publisher.send(WSMsgType.TEXT, json.dumps({**body, "data": "x"}).encode())
    await asyncio.Event().wait()  # until killed


def bare_side(subscribers: int, rate: float, seconds: float, workers: int) -> Side:
    server = Server()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for w in range(workers):
            count = subscribers // workers + (1 if w < subscribers % workers else 0)
            publish = rate if w == 0 else 0.0
            cmd = [sys.executable, __file__, "--bare", server.url, str(count), str(publish)]
            procs.append(subprocess.Popen(cmd))
        return steady(server, subscribers, lambda: [p.pid for p in procs], seconds)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)
        server.stop()


# -- the wsload side -----------------------------------------------------------


def wsload_side(subscribers: int, rate: float, seconds: float, workers: int) -> Side:
    server = Server()
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "fanout.toml"
        scenario.write_text(
            SCENARIO.format(topic=TOPIC, rate=rate, go=GO, wait=SUBSCRIBE_WAIT + 60)
        )
        out = Path(tmp) / "summary.json"
        cmd = [
            WSLOAD, "run", "--scenario", str(scenario), "--ws-url", server.url,
            "--api-url", server.api, "-c", str(subscribers + 1), "--workers", str(workers),
            "-d", str(SUBSCRIBE_WAIT + seconds + 30), "--ramp-up", str(max(1, subscribers // 1000)),
            "--reply-timeout", "30", "--connect-timeout", "60", "--json", str(out),
        ]  # fmt: skip
        run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            side = steady(server, subscribers, lambda: children(run.pid), seconds)
        except RuntimeError:
            if run.poll() is not None:
                assert run.stderr is not None
                raise RuntimeError(run.stderr.read().strip().splitlines()[-1]) from None
            raise
        finally:
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
            server.stop()
        detail = ""
        if out.is_file():
            fanout = json.loads(out.read_text()).get("fanout")
            if fanout and "total" in fanout:
                t = fanout["total"]
                detail = (
                    f"; run: {t.get('delivered', 0):,} delivered, {t.get('missing', 0):,} missing"
                )
            else:
                detail = "; the run reported no fan-out section (deliveries as unsolicited)"
        return dataclasses.replace(side, detail=detail)


def figures(
    subscribers: int = 10_000,
    rate: float = 2.0,
    seconds: float = 10.0,
    workers: int = WORKERS,
    rounds: int = 3,
) -> list[Figure]:
    """``rounds`` rounds (bare side, then wsload side), each round's ratio printed;
    the figures are the median round's: on a shared machine one round can be
    off either way (a neighbour's burst during one side only)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited: server, clients
    what = f"1 publisher at {rate:g}/s -> {subscribers:,} subscribers, {workers} processes"
    pairs: list[tuple[Side, Side]] = []
    failures: list[str] = []
    bare = None
    for _ in range(max(1, rounds)):
        bare = bare_side(subscribers, rate, seconds, workers)
        try:
            pairs.append((bare, wsload_side(subscribers, rate, seconds, workers)))
        except (RuntimeError, OSError) as exc:
            failures.append(str(exc))
    if not pairs:
        assert bare is not None
        return [
            Figure(
                f"bare picows client CPU per received message ({what})", f"{bare.cpu_us:.1f} µs"
            ),
            Figure("wsload worker CPU per received delivery", "-", "", False, "; ".join(failures)),
        ]
    pairs.sort(key=lambda pair: pair[1].cpu_us / pair[0].cpu_us)
    bare, ws = pairs[(len(pairs) - 1) // 2]  # the median round (the lower one of two)
    each = " / ".join(f"{w.cpu_us / b.cpu_us:.2f}" for b, w in pairs)
    failed = f"; {len(failures)} round(s) failed: {failures[0]}" if failures else ""
    return [
        Figure(
            f"bare picows client CPU per received message ({what}, reference)",
            f"{bare.cpu_us:.1f} µs",
            "",
            None,
            bare.note(),
        ),
        Figure(
            f"wsload worker CPU per received delivery ({what}, same server)",
            f"{ws.cpu_us:.1f} µs",
            "",
            None,
            ws.note(),
        ),
        Figure(
            "  wsload / bare, per delivery (the median round)",
            f"{ws.cpu_us / bare.cpu_us:.2f}",
            f"<= {BUDGET:g}",
            ws.cpu_us <= BUDGET * bare.cpu_us,
            f"rounds, lowest first: {each}{failed}",
        ),
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        import uvloop

        url, count, rate = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        uvloop.run(bare_child(url, count, rate))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2.0, help="publications per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per side")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both sides (median)")
    args = parser.parse_args()
    print(report(figures(args.subscribers, args.rate, args.seconds, args.workers, args.rounds)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
