"""Event mode: do events triggered over HTTP reach every WebSocket subscriber?

What the original ``WebSocketEventTester.run_event_test()`` did, with the
bookkeeping a load tool owes: K clients subscribe to the event names, the
tool triggers ``event_count`` events per name through the HTTP API, and each
client's deliveries are counted -- expected, received, duplicated, out of
order -- with trigger-to-delivery latency. Missing events are listed by
client, name and sequence number.

The bookkeeping is the fan-out machinery's (issue 16) at small scale, so
there is one implementation of delivery truth: :class:`EventLedger` records
each client as a :class:`wsload.worker.fanout.Subscription` (per event name
a range set of the seqs it got) and each trigger as ``event_count``
publications (seq 1..count) of the topic NAME, and the coordinator's
:class:`wsload.coordinator.fanout.FanoutLedger` joins them: a client is owed
the publications made while it was subscribed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from wsload.common.fanout_wire import MAX_TOPIC_LEN, decode_fanout
from wsload.common.histogram import LatencyHistogram
from wsload.common.rangeset import MAX_SEQ
from wsload.common.spec import JobSpec
from wsload.common.validation import display_url
from wsload.coordinator.fanout import FanoutLedger
from wsload.worker.checks.result import FAIL, PASS, CheckResult, run_check
from wsload.worker.client import NotConnected, WebSocketClient
from wsload.worker.fanout import Fanout, Subscription

MAX_LISTED_MISSING = 200
#: the worker id the event mode's windows carry into the ledger (one process: one clock)
_WORKER = "event"


def _topic(name: str) -> str:
    """An event name as a topic (cut as the wire cuts it)."""
    return name[:MAX_TOPIC_LEN]


@dataclass(frozen=True)
class EventFigures:
    """The joined figures of one event test."""

    expected: int
    received: int
    duplicates: int
    out_of_order: int
    missing_count: int
    #: "CLIENT: NAME #SEQ", by client, name and seq (at most MAX_LISTED_MISSING)
    missing: tuple[str, ...]
    #: trigger-to-delivery latency, seconds
    latency_percentiles: dict[str, float]


class EventLedger:
    """One event test's deliveries, sans-I/O (times are epoch seconds handed in).

    ``names``: the event names (topics), ``count``: events per trigger.
    A client is subscribed from :meth:`subscribed` until :meth:`close`; a
    trigger (:meth:`trigger`) publishes seq 1..count of its name at the time
    it was sent (the reference server delivers before it answers, so the
    answer's time would come after the deliveries).
    """

    def __init__(self, labels: Sequence[str], names: Sequence[str], count: int) -> None:
        self.labels = tuple(labels)
        self.names = tuple(names)
        self.count = count
        #: what a run that triggers every name owes (the figure before any trigger)
        self.planned = len(self.labels) * len(self.names) * count
        self.fanout = Fanout()
        self.subs = [Subscription(i, tuple(map(_topic, self.names))) for i in range(len(labels))]
        self.sent_at: dict[str, float] = {}
        self.figures: EventFigures | None = None

    def subscribed(self, now: float) -> None:
        for sub in self.subs:
            sub.subscribed_at = now

    def trigger(self, name: str, now: float) -> None:
        topic = _topic(name)
        self.sent_at[topic] = now
        for seq in range(1, self.count + 1):
            self.fanout.publish(topic, seq, now)

    def deliver(self, client: int, name: str, seq: int, now: float) -> None:
        """Event ``seq`` of ``name`` received by client ``client`` at ``now``."""
        if not name or not 0 <= seq <= MAX_SEQ:
            return  # not an event the ledger can hold (nor one a trigger made)
        topic = _topic(name)
        self.fanout.deliver(self.subs[client], topic, seq, self.sent_at.get(topic), now)

    @property
    def received(self) -> int:
        """Distinct events received so far (any name, any seq)."""
        return sum(t.deliveries - t.duplicates for t in self.fanout.topics.values())

    def close(self, now: float) -> EventFigures:
        """End every subscription and join (once: later calls return the same figures)."""
        if self.figures is not None:
            return self.figures
        for sub in self.subs:
            self.fanout.end(sub, now)
        ledger = FanoutLedger()
        latency = LatencyHistogram()
        windows: dict[tuple[int, str], tuple[int, int]] = {}
        while (window := self.fanout.take()) is not None:
            decoded = decode_fanout(window.encode())  # as a worker's window reaches the ledger
            ledger.add(_WORKER, decoded)
            for record in decoded.subs:
                windows[record.client, record.topic] = (
                    record.subscribed_at_us,
                    record.ended_at_us,
                )
            for values in decoded.latency.values():
                latency.record_many(np.maximum(values, 0))
        total = ledger.figures().total
        expected = total.expected if self.sent_at else self.planned
        self.figures = EventFigures(
            expected=expected,
            received=total.delivered + total.early + total.extra + total.untracked,
            duplicates=total.duplicates,
            out_of_order=total.out_of_order,
            missing_count=total.missing if self.sent_at else 0,
            missing=tuple(self._missing(windows)),
            latency_percentiles={k: v / 1e6 for k, v in latency.percentiles().items()},
        )
        return self.figures

    def _missing(self, windows: dict[tuple[int, str], tuple[int, int]]) -> list[str]:
        """The first missing deliveries, by client, name and seq, by the ledger's rule
        (owed: the publications made in ``[subscribed_at, ended_at)``, in µs)."""
        out: list[str] = []
        for i, label in enumerate(self.labels):
            for name in self.names:
                topic = _topic(name)
                sent, window = self.sent_at.get(topic), windows.get((i, topic))
                published = self.fanout.published.get(topic)
                if sent is None or window is None or published is None:
                    continue
                if not window[0] <= int(sent * 1e6) < window[1]:
                    continue
                got = self.subs[i].topics[topic]
                for first, last in published.ranges():
                    for seq in range(first, last + 1):
                        if seq not in got:
                            out.append(f"{label}: {name} #{seq}")
                            if len(out) >= MAX_LISTED_MISSING:
                                return out
        return out


class EventTest:
    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.clients = [
            WebSocketClient.from_spec(spec, f"event-client-{i}") for i in range(spec.num_clients)
        ]
        self.ledger = EventLedger(
            [c.client_id for c in self.clients], spec.event_names, spec.event_count
        )
        self._stop = asyncio.Event()

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        checks = [await run_check("connect", self._connect, spec.connect_timeout + 2)]
        if checks[0].status == PASS:
            checks.append(await run_check("subscribe", self._subscribe, spec.reply_timeout + 2))
        if all(c.status == PASS for c in checks):
            self.ledger.subscribed(time.time())
            async with asyncio.TaskGroup() as tg:
                readers = [tg.create_task(self._collect(i)) for i in range(len(self.clients))]
                for name in spec.event_names:
                    trigger = functools.partial(self._trigger, name)
                    checks.append(await run_check(f"trigger {name}", trigger, spec.reply_timeout))
                await self._await_deliveries()
                self._stop.set()
                await asyncio.gather(*readers)
            checks.append(self._delivery_check(self.ledger.close(time.time())))
        await asyncio.gather(*(c.disconnect() for c in self.clients), return_exceptions=True)
        return self._report(checks, self.ledger.close(time.time()))

    async def _connect(self) -> str:
        opened = await asyncio.gather(*(c.connect() for c in self.clients))
        failed = [c for c, ok in zip(self.clients, opened, strict=True) if not ok]
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {len(self.clients)} clients could not connect: "
                f"{failed[0].last_error}"
            )
        return f"{len(self.clients)} clients connected"

    async def _subscribe(self) -> str:
        names = list(self.spec.event_names)
        request = {"type": "subscribe", "events": names}
        await asyncio.gather(*(c.send_message(request) for c in self.clients))
        # Wait for each acknowledgement briefly; a server that sends none is fine.
        acks = await asyncio.gather(
            *(c.receive_message(timeout=min(1.0, self.spec.reply_timeout)) for c in self.clients)
        )
        got = sum(1 for a in acks if isinstance(a, dict) and a.get("type") == "subscribed")
        return f"subscribed to {', '.join(names)} ({got} of {len(self.clients)} acknowledged)"

    async def _trigger(self, name: str) -> str:
        spec = self.spec
        body = spec.event_body.replace("{event}", name).replace("{count}", str(spec.event_count))
        url = spec.api_url.rstrip("/") + spec.event_path
        self.ledger.trigger(name, time.time())
        timeout = aiohttp.ClientTimeout(total=spec.reply_timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                spec.event_method.upper(),
                url,
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            ) as resp,
        ):
            text = await resp.text()
        shown = display_url(url)  # credentials in api_url are sent, never shown
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"{spec.event_method} {shown} answered {resp.status}: {text[:120]}")
        return f"{spec.event_method.upper()} {shown} -> {resp.status}"

    async def _collect(self, index: int) -> None:
        client = self.clients[index]
        while not self._stop.is_set():
            try:
                raw = await client.receive_raw(timeout=0.1)
            except NotConnected:
                return
            if raw is None:
                continue
            now = time.time()
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(msg, dict) or msg.get("type") != "event":
                continue
            event, seq = msg.get("event"), msg.get("seq")
            if isinstance(event, str) and isinstance(seq, int):
                self.ledger.deliver(index, event, int(seq), now)

    async def _await_deliveries(self) -> None:
        """Until everything expected arrived, or ``event_wait`` after the last trigger."""
        deadline = time.monotonic() + self.spec.event_wait
        ledger = self.ledger
        while ledger.received < ledger.planned and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    @staticmethod
    def _delivery_check(figures: EventFigures) -> CheckResult:
        missing = figures.expected - figures.received
        dupes = figures.duplicates
        if missing or dupes:
            listed = ", ".join(figures.missing[:5])
            reason = f"{missing} of {figures.expected} events missing ({listed}"
            reason += ", ...)" if missing > 5 else ")"
            if dupes:
                reason += f"; {dupes} duplicates"
            return CheckResult("deliveries", FAIL, reason)
        return CheckResult("deliveries", PASS, f"all {figures.expected} events delivered once")

    def _report(self, checks: list[CheckResult], figures: EventFigures) -> dict[str, Any]:
        expected = figures.expected
        return {
            "mode": "event",
            "total_expected": expected,
            "total_received": figures.received,
            "success_rate": 100.0 * figures.received / expected if expected else 0.0,
            "duplicates": figures.duplicates,
            "out_of_order": figures.out_of_order,
            "latency_percentiles": figures.latency_percentiles,
            "missing_count": figures.missing_count,
            "missing": list(figures.missing),
            "clients": len(self.clients),
            "checks": [c.to_dict() for c in checks],
        }


async def run_event(spec: JobSpec) -> dict[str, Any]:
    return await EventTest(spec).run()


__all__ = ["EventFigures", "EventLedger", "EventTest", "run_event"]
