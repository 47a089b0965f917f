"""A conversation job's clients on an engine: who runs what, when each connects.

A load job whose spec has ``[[steps]]``, ``[[loop]]`` or ``[[scenarios]]``
compiles to programs (:func:`wsload.common.workload.compile_workload`); then
every client of this worker runs its program as a
:class:`wsload.worker.session.Session` per connection, instead of the echo
path's schedule. This module is the part of that shared by both engines:

- which program job-wide client ``g`` runs (:func:`wsload.common.mix.assign`,
  the same on every worker), its variables (feeder row, ``client_id``), and
  its pacing: a scenario's ``rate`` (iterations per second over all of its
  clients, each client taking one every ``clients / rate`` seconds, phased
  by its rank so they do not fire together), else its ``interval``;
- when it is connected: from its ramp-up slot to the end, or, with
  ``[[stages]]``, during each of :meth:`wsload.common.stages.Profile.windows`
  (the stage ramps it down: its pending expect is ``unanswered``, the
  connection closed by us). When the stages give a rate, it is the job's
  iteration rate shared by every connected client
  (:meth:`wsload.common.stages.Profile.next_start`), whatever their scenario;
- reconnecting: after the server closes or a setup step fails, with the usual
  backoff; a churn session (a program with no loop) or a ``close`` step
  reconnects at the next iteration's intended start.

A scenario with ``protocol = ...`` runs each connection as a
:class:`wsload.worker.protocol_session.ProtocolSession` instead (its codec
between the session and the frames), connected to the codec's URL with its
subprotocols offered (:func:`wsload.worker.protocol_session.opening`); a raw
program never builds one.

How a session's frames reach the wire is the engine's
(:meth:`wsload.worker.engine.Engine.run_session`): picows from its frame
callback with one timer per client, websockets from a coroutine per client.

The echo load with ``[[stages]]`` runs here too, as a compiled echo program
(:func:`echo_program`: send the payload template, expect the reply carrying
its id), so stages ramp the echo load's connections and rate the same way.
Without stages the echo load keeps its own fast path.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wsload.common.feeder import feeder_covers
from wsload.common.mix import Assignment, assign
from wsload.common.program import Action, Feeder, Program, Step, Workload
from wsload.common.spec import JobSpec
from wsload.common.stages import Profile
from wsload.worker.accounting import Conn, Phase
from wsload.worker.codecs.base import CodecInputError
from wsload.worker.dial import Redial
from wsload.worker.httppost import HttpPoster
from wsload.worker.pacing import Pacing, period_for
from wsload.worker.payload import PayloadTemplate
from wsload.worker.protocol_session import opening, session_for
from wsload.worker.schedule import Share
from wsload.worker.session import Client, Conversation
from wsload.worker.session_client import reader_for
from wsload.worker.tracker import id_pattern

if TYPE_CHECKING:
    from wsload.worker.engine import Engine

_mono = time.monotonic


def compile_job(spec: JobSpec) -> Workload | None:
    """The job's programs, or None for the echo load's fast path.

    A spec the coordinator accepted compiles (it checked the same way); the
    echo load with ``[[stages]]`` becomes :func:`echo_program`.
    """
    if not (spec.steps or spec.loop or spec.scenarios or spec.stages):
        return None  # the echo load: its own fast path
    from wsload.common.workload import compile_workload  # the step language, loaded on demand

    workload = compile_workload(spec)
    if workload.programs:
        return workload
    if workload.stages:
        return Workload((echo_program(spec),), stages=workload.stages, step_names=("reply",))
    return None


class _EchoSend:
    """The echo load's payload template as a session's send (a Renderer)."""

    def __init__(self, template: PayloadTemplate) -> None:
        self.template = template

    def render(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        return self.template.render(values["client_id"], values["seq"], values["ts"])


class _EchoReply:
    """The reply carrying this iteration's id (``"seq": N``), found without parsing JSON."""

    def __init__(self, id_field: str) -> None:
        self.find = id_pattern(id_field).search

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        found = self.find(data)
        if found is None or int(found.group(1)) != values["seq"]:
            return None
        return found


def echo_program(spec: JobSpec) -> Program:
    """The echo load as a program: loop (send the payload, expect the reply with its id)."""
    loop = (
        Step(1, "send", Action.SEND, _EchoSend(PayloadTemplate(spec.payload, spec.payload_size))),
        Step(2, "reply", Action.EXPECT, _EchoReply(spec.id_field)),
    )
    return Program("echo", (), loop, rate=spec.rate, interval=spec.interval)


class Talk:
    """The conversation side of one engine: the clients of ``share`` and their connections."""

    def __init__(self, engine: Engine, workload: Workload, share: Share) -> None:
        self.engine = engine
        self.workload = workload
        spec = engine.spec
        self.spec = spec
        total = max(share.job_total, spec.num_clients)
        self.assignment: Assignment = assign(workload.programs, total)
        self.profile = Profile(workload.stages) if workload.stages else None
        self.pad = " " * spec.payload_size
        self.epoch = time.time() - time.monotonic()
        self.clients: dict[int, Client] = {}
        #: each client's connecting (a reconnect is counted over its stage windows)
        self._redials: dict[int, Redial] = {}
        #: the feeders this worker holds: its own slice, then handed-on shares' slices
        self.feeders: list[Feeder] = [workload.feeder] if workload.feeder is not None else []
        #: each program's delivery reader (None: it subscribes to nothing), shared by its clients
        self.readers = [reader_for(p) for p in workload.programs]
        #: some client is owed wsload's publications (a server's own stream owes nothing)
        self.subscribes = any(r is not None and r.spec.source != "server" for r in self.readers)
        #: the ``post`` steps' HTTP client (its session opened on first use)
        self.poster = HttpPoster()

    def add_rows(self, spec: JobSpec) -> None:
        """Take the feeder rows of a handed-on share's job (its ``unique`` slice)."""
        workload = compile_job(spec)
        if workload is not None and workload.feeder is not None:
            self.feeders.append(workload.feeder)

    # -- one client ------------------------------------------------------------

    def client(self, g: int) -> Client | None:
        """Job-wide client ``g`` (made once: its ``seq`` and captures carry over connections).

        None (an error of kind ``feeder``) when this worker holds no feeder row for it.
        """
        found = self.clients.get(g)
        if found is not None:
            return found
        p, rank = self.assignment.locate(g)
        program = self.workload.programs[p]
        rng = random.Random(g)
        row: Mapping[str, str] | None = None
        if self.feeders:
            feeder = next((f for f in self.feeders if feeder_covers(f, g)), None)
            if feeder is None:  # never from a coordinator that slices feeders right
                self.engine.recorder.error("feeder", f"client {g}: no feeder row for it here")
                return None
            row = feeder.row_for(g, rng)
        engine = self.engine
        client = Client(
            g,
            program,
            rec=engine.recorder,
            steprec=engine.recorder.steps,
            pacing=Pacing(0.0),  # set per connection (or once, for churn) by _pacing
            client_id=f"{engine.client_prefix}{g}",
            row=row,
            pad=self.pad,
            epoch=self.epoch,
            timeout=self.spec.reply_timeout,
            seed=0,
            api_url=self.spec.api_url,
            reader=self.readers[p],
        )
        client.pacing = self._pacing(client, p, rank, None)
        self.clients[g] = client
        return client

    def _pacing(self, client: Client, p: int, rank: int, first: float | None) -> Pacing:
        profile = self.profile
        start = self.engine.started
        if profile is not None and profile.sets_rate:

            def follow(prev: float, first: bool) -> float:
                t = prev - start
                if first and (profile.rate_at(t) or 0.0) > 0:
                    return prev  # the rate runs: the first iteration at once
                return start + profile.next_start(t, 1.0, profile.connected_at(t))

            return Pacing(0.0, first=first, follow=follow)
        count = self.assignment.count(p)
        period = period_for(client.program, count)
        phase = period * rank / count if 0 < period < math.inf and count else 0.0
        return Pacing(period, first=first, phase=phase)

    def windows(self, g: int, at: float) -> list[tuple[float, float]]:
        """When client ``g`` is connected (monotonic times): its stage windows, or from ``at``."""
        start = self.engine.started
        until = self.engine.send_until
        if self.profile is None:
            return [(at, until)]
        end = until - start
        return [(start + lo, start + hi) for lo, hi in self.profile.windows(g, end) if hi > lo]

    async def run_client(self, g: int, at: float) -> None:
        """Connect client ``g`` during its windows and run its sessions; reconnect as told."""
        for lo, hi in self.windows(g, at):
            await self._window(g, lo, hi)
            if self.engine.phase is not Phase.RUNNING:
                return

    async def _window(self, g: int, begin: float, end: float) -> None:
        engine = self.engine
        client = self.client(g)
        if client is None:
            return
        churn = client.program.churns
        await engine.nap(begin - _mono())
        sources = self.spec.source_addresses
        source = sources[g % len(sources)] if sources else ""
        redial = self._redials.setdefault(g, Redial())
        redial.failures = 0
        due: float | None = None
        while engine.phase is Phase.RUNNING and _mono() < end:
            if churn:  # a session per iteration: connect when it is due
                due = client.next_start(_mono())
                if due >= end:
                    return
                await engine.nap(due - _mono())
                if engine.phase is not Phase.RUNNING:
                    return
            else:
                p, rank = self.assignment.locate(g)
                client.pacing = self._pacing(client, p, rank, None)
            try:
                opened = opening(client, self.spec.ws_url, self.spec.max_message_size)
            except CodecInputError as exc:  # options a template rendered wrong: no connection
                engine.recorder.error("bad_step_value", str(exc))
                if not self.spec.reconnect:
                    return
                await engine.back_off(redial)
                continue
            dialed = await engine.dial(source, redial, opened)
            if dialed is True:  # failed, backed off: again
                continue
            if dialed is False:
                return
            link, connected = dialed
            until = min(engine.send_until, end)
            session = session_for(client, until, opened, self.spec.connect_timeout)
            ended_by_us = await self._converse(g, link, session, connected, due, end)
            if engine.phase is not Phase.RUNNING:
                return
            if session.backoff or not ended_by_us:  # a failed setup, or the server closed
                if not self.spec.reconnect:
                    return
                await engine.back_off(redial)
            else:  # the program closed it (churn, a close step): on with the next iteration
                redial.failures = 0

    async def _converse(
        self,
        g: int,
        link: Any,
        session: Conversation,
        connected: float,
        due: float | None,
        end: float,
    ) -> bool:
        """Run one session on ``link`` until the connection is gone; True if it was our close."""
        engine = self.engine
        conn = Conn(link, _no_render, 0, asyncio.get_running_loop().create_future())
        conn.session = session
        key = g
        engine.conns[key] = conn
        stopper: asyncio.TimerHandle | None = None
        try:
            if engine.phase is not Phase.RUNNING:
                conn.closed_by_us = True
                await link.close()
            else:
                if end < math.inf and end < engine.send_until:  # a stage ramps it down
                    stopper = asyncio.get_running_loop().call_later(
                        max(0.0, end - _mono()), self._ramp_down, conn
                    )
                await engine.run_session(link, conn, session, due)
        finally:
            if stopper is not None:
                stopper.cancel()
            session.on_closed(_mono())  # a pending expect is lost (nothing if stopped)
            engine.conns.pop(key, None)
            engine.recorder.clients_connected -= 1
        return conn.closed_by_us

    def _ramp_down(self, conn: Conn) -> None:
        """A stage ends this client's window: what it awaits is unanswered; close it."""
        session = conn.session
        if session is not None and not session.over:
            session.stop(_mono())
        conn.closed_by_us = True
        self.engine.close_soon(conn)


def _no_render(seq: int, ts: float) -> str:  # pragma: no cover - a conversation renders itself
    raise AssertionError("a conversation's connection renders nothing")


__all__ = ["Talk", "compile_job", "echo_program"]
