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
import resource
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_target
from engine_runs import Measured, hold, steady_state
from machine import Figure, report

from wsload.common.spec import build_spec

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


def replies_note(m: Measured) -> str:
    return f"{m.rate:,.0f} replies/s; generator {m.busy:.0%} of a core, target {m.target_busy:.0%}"


async def run(url: str, pids: list[int], seconds: float, **job: object) -> Measured:
    """One load's steady state (:func:`engine_runs.steady_state`)."""
    spec = build_spec(
        env={}, ws_url=url, duration=seconds + 1.5, interval=0.0, connect_timeout=30.0,
        **job,  # type: ignore[arg-type]
    )  # fmt: skip
    return await steady_state(spec, pids, seconds)


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
            replies_note(talk),
        ),
        Figure(
            "echo path CPU per reply, closed loop, same target, same run (reference)",
            f"{echo.cpu_us:.1f} µs",
            "",
            None,
            replies_note(echo),
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
            replies_note(thinking),
        ),
        Figure(
            "echo path CPU per reply at that rate (open model, same clients, reference)",
            f"{paced.cpu_us:.1f} µs",
            "",
            None,
            replies_note(paced),
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
