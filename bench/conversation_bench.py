"""A conversation's worker CPU per message beside the echo path's, in the same run.

Usage: python bench/conversation_bench.py [--seconds 5] [--rounds 3] [--hold 10000]

Issue 15's budget: a login + loop(send, expect by id among unrelated
pushes, think) conversation costs at most 1.5x the echo load's CPU per
message. Both run on the picows engine in this process against the same
target: :mod:`echo_target`'s picows servers with ``--push`` (in
``--target-processes`` processes sharing a port)
that echo every data message and push one unrelated message (no id, like a
presence update) after each echo, so both loads receive two messages per
round trip and must tell the reply from the push:

* echo: 100 clients, closed loop, a 64-byte JSON payload matched by id
  (the engine's fast path), beside the conversation in closed loop: 100
  clients, each logging in (the echoed login's ``token`` is captured), then
  looping: send a message carrying the token and an id, expect the message
  with that id (the push is unsolicited);
* the same conversation with a think (exponential, 2 ms mean: an alarm per
  iteration), 500 clients, beside the echo load with 500 clients paced at
  the rate the conversation reached (open model): pacing costs the echo
  load too (fewer messages per loop turn), so that is the like-for-like
  reference for a paced conversation.

Then ``--hold`` clients (10,000) in the conversation with a 5 s think, in
this one worker: all connected, the accounting balanced, RSS per client.

CPU per message is this process's user+system CPU over the replies
(expects met) in the steady state (from 1 s after the start to the last
window before the end). The two loads run interleaved, ``--rounds`` times;
each figure is its best round. A figure, not a gate: always exits 0.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_target
from holding import hold
from machine import Figure, report
from procfs import cpu_seconds

from wsload.common.spec import build_spec
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch
from wsload.worker.schedule import Share

CLIENTS = 100
#: the conversation's clients think 2 ms per iteration: more of them keep the generator as busy
TALK_CLIENTS = 500
ROUNDS = 3
BUDGET = 1.5
ECHO_TEMPLATE = '{"type": "test", "client": "{client_id}", "seq": {seq}}'
PUSH = '{"type": "presence", "user": "someone-else", "online": true}'
LOGIN = [
    {"send": {"type": "login", "user": "{client_id}", "token": "tok-{client_id}"}},
    {"name": "login", "expect": {"type": "login"}, "capture": {"token": "token"}},
]
LOOP = [
    {"send": {"type": "msg", "id": "m{seq}", "token": "{token}", "text": "hello"}},
    {"name": "ack", "expect": {"type": "msg", "id": "m{seq}"}},
    {"think": {"exponential": 0.002}},
]


class Measured:
    def __init__(self, cpu_us: float, rate: float, busy: float, target_busy: float) -> None:
        self.cpu_us, self.rate, self.busy, self.target_busy = cpu_us, rate, busy, target_busy

    def note(self) -> str:
        return (
            f"{self.rate:,.0f} replies/s; generator {self.busy:.0%} of a core, "
            f"target {self.target_busy:.0%}"
        )


async def run(url: str, pids: list[int], seconds: float, **job: object) -> Measured:
    """One load's steady state: CPU per reply from 1 s after the start, over ``seconds``."""
    spec = build_spec(
        env={}, ws_url=url, duration=seconds + 1.5, interval=0.0, connect_timeout=30.0,
        **job,  # type: ignore[arg-type]
    )  # fmt: skip
    state: dict[str, float] = {}
    received = 0
    start = time.monotonic()
    result: list[Measured] = []

    def on_batch(batch: WindowBatch) -> None:
        nonlocal received
        received += batch.counters.get("received", 0)
        now = time.monotonic()
        if not state and now >= start + 1.0:
            times = os.times()
            state.update(wall=now, cpu=times.user + times.system, received=received)
            state["target"] = sum(cpu_seconds(p) for p in pids)
        elif state and not result and now >= start + 1.0 + seconds:
            times = os.times()
            wall = now - state["wall"]
            cpu = times.user + times.system - state["cpu"]
            n = max(1, received - int(state["received"]))
            target = sum(cpu_seconds(p) for p in pids) - state["target"]
            result.append(Measured(cpu * 1e6 / n, n / wall, cpu / wall, target / wall))

    share = Share(count=spec.num_clients, total=spec.num_clients, rate=spec.rate)
    engine = create_engine(spec, share, on_batch=on_batch)
    await engine.run()
    return result[0]


async def measure(url: str, pids: list[int], seconds: float, rounds: int) -> list[Figure]:
    rows: list[tuple[Measured, Measured, Measured, Measured]] = []
    closed_loop = LOOP[:2]  # no think: the next message as soon as the ack is in
    for _ in range(rounds):
        echo = await run(
            url, pids, seconds, engine="picows", num_clients=CLIENTS, payload=ECHO_TEMPLATE
        )
        talk = await run(
            url, pids, seconds, engine="picows", num_clients=CLIENTS, steps=LOGIN,
            loop=closed_loop,
        )  # fmt: skip
        thinking = await run(
            url, pids, seconds, engine="picows", num_clients=TALK_CLIENTS, steps=LOGIN, loop=LOOP
        )
        paced = await run(
            url, pids, seconds, engine="picows", num_clients=TALK_CLIENTS,
            payload=ECHO_TEMPLATE, rate=round(thinking.rate),
        )  # fmt: skip
        rows.append((echo, talk, thinking, paced))
    echo, talk, thinking, paced = (
        min(col, key=lambda m: m.cpu_us) for col in zip(*rows, strict=True)
    )
    return [
        Figure(
            "conversation CPU per reply, closed loop (picows, 100 clients: login, then "
            "send, expect by id among pushes)",
            f"{talk.cpu_us:.1f} µs",
            "",
            None,
            talk.note(),
        ),
        Figure(
            "echo path CPU per reply, closed loop, same target, same run (reference)",
            f"{echo.cpu_us:.1f} µs",
            "",
            None,
            echo.note(),
        ),
        Figure(
            "  conversation / echo, closed loop",
            f"{talk.cpu_us / echo.cpu_us:.2f}",
            f"<= {BUDGET:g}",
            talk.cpu_us <= BUDGET * echo.cpu_us,
        ),
        Figure(
            f"conversation CPU per reply with think (exponential, 2 ms mean; {TALK_CLIENTS} "
            "clients)",
            f"{thinking.cpu_us:.1f} µs",
            "",
            None,
            thinking.note(),
        ),
        Figure(
            "echo path CPU per reply at that rate (open model, same clients, reference)",
            f"{paced.cpu_us:.1f} µs",
            "",
            None,
            paced.note(),
        ),
        Figure(
            "  conversation with think / echo at the same rate",
            f"{thinking.cpu_us / paced.cpu_us:.2f}",
            f"<= {BUDGET:g}",
            thinking.cpu_us <= BUDGET * paced.cpu_us,
        ),
    ]


async def held(url: str, n: int) -> tuple[float, int, bool]:
    """RSS per client with ``n`` clients in the conversation (think 5 s), how many were
    connected, and whether the run's accounting balanced."""
    loop = [LOOP[0], LOOP[1], {"think": 5.0}]
    spec = build_spec(
        env={}, ws_url=url, duration=120.0, interval=0.0, num_clients=n, steps=LOGIN,
        loop=loop, ramp_up=min(20.0, n / 1000), connect_timeout=30.0,
    )  # fmt: skip
    # settle: every client through its login and an iteration or two
    per_client, connected, result = await hold(spec, settle=6.0)
    return per_client, connected, result.balanced


def figures(
    seconds: float = 5.0, rounds: int = ROUNDS, target_processes: int = 2, hold: int = 10_000
) -> list[Figure]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # held clients need fds
    procs, url = echo_target.start(target_processes, push=PUSH)
    try:
        out = uvloop.run(measure(url, [p.pid for p in procs], seconds, rounds))
        if hold:
            per, connected, balanced = uvloop.run(held(url, hold))
            out.append(
                Figure(
                    "clients one worker holds in the conversation (think 5 s): RSS per client",
                    f"{per / 1024:.1f} KB",
                    f"{hold:,} connected, balanced",
                    connected == hold and balanced,
                    f"{connected:,} of {hold:,} connected",
                )
            )
        return out
    finally:
        echo_target.stop(procs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--target-processes", type=int, default=2)
    parser.add_argument("--hold", type=int, default=10_000, help="clients held (0: skip)")
    args = parser.parse_args()
    print(report(figures(args.seconds, args.rounds, args.target_processes, args.hold)))
