"""Event mode: do events triggered over HTTP reach every WebSocket subscriber?

What the original ``WebSocketEventTester.run_event_test()`` did, with the
bookkeeping a load tool owes: K clients subscribe to the event names, the
tool triggers ``event_count`` events per name through the HTTP API, and each
client's deliveries are counted -- expected, received, duplicated, out of
order -- with trigger-to-delivery latency. Missing events are listed by
client, name and sequence number.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from wsload.common.histogram import LatencyHistogram
from wsload.common.spec import JobSpec
from wsload.common.validation import display_url
from wsload.worker.checks.result import FAIL, PASS, CheckResult, run_check
from wsload.worker.client import NotConnected, WebSocketClient

MAX_LISTED_MISSING = 200


@dataclass
class Deliveries:
    """What one client received: ids seen, last seq per event, oddities."""

    seen: set[tuple[str, int]] = field(default_factory=set)
    last_seq: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    out_of_order: int = 0

    def add(self, event: str, seq: int) -> bool:
        """Record one delivery; False when it was a duplicate."""
        if (event, seq) in self.seen:
            self.duplicates += 1
            return False
        if seq < self.last_seq.get(event, 0):
            self.out_of_order += 1
        self.last_seq[event] = max(seq, self.last_seq.get(event, 0))
        self.seen.add((event, seq))
        return True


class EventTest:
    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.clients = [
            WebSocketClient.from_spec(spec, f"event-client-{i}") for i in range(spec.num_clients)
        ]
        self.deliveries = [Deliveries() for _ in self.clients]
        self.triggered_at: dict[str, float] = {}
        self.latency = LatencyHistogram()
        self.expected = spec.num_clients * len(spec.event_names) * spec.event_count
        self._received = 0
        self._stop = asyncio.Event()

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        checks = [await run_check("connect", self._connect, spec.connect_timeout + 2)]
        if checks[0].status == PASS:
            checks.append(await run_check("subscribe", self._subscribe, spec.reply_timeout + 2))
        if all(c.status == PASS for c in checks):
            async with asyncio.TaskGroup() as tg:
                readers = [tg.create_task(self._collect(i)) for i in range(len(self.clients))]
                for name in spec.event_names:
                    trigger = functools.partial(self._trigger, name)
                    checks.append(await run_check(f"trigger {name}", trigger, spec.reply_timeout))
                await self._await_deliveries()
                self._stop.set()
                await asyncio.gather(*readers)
            checks.append(self._delivery_check())
        await asyncio.gather(*(c.disconnect() for c in self.clients), return_exceptions=True)
        return self._report(checks)

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
        self.triggered_at[name] = time.time()
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
        client, seen = self.clients[index], self.deliveries[index]
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
            if not isinstance(event, str) or not isinstance(seq, int):
                continue
            if seen.add(event, seq):
                self._received += 1
                started = self.triggered_at.get(event)
                if started is not None:
                    self.latency.record(max(0, int((now - started) * 1e6)))

    async def _await_deliveries(self) -> None:
        """Until everything expected arrived, or ``event_wait`` after the last trigger."""
        deadline = time.monotonic() + self.spec.event_wait
        while self._received < self.expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def _missing(self) -> list[str]:
        out = []
        for client, seen in zip(self.clients, self.deliveries, strict=True):
            for name in self.spec.event_names:
                for seq in range(1, self.spec.event_count + 1):
                    if (name, seq) not in seen.seen:
                        out.append(f"{client.client_id}: {name} #{seq}")
        return out

    def _delivery_check(self) -> CheckResult:
        missing = self.expected - self._received
        dupes = sum(d.duplicates for d in self.deliveries)
        if missing or dupes:
            listed = ", ".join(self._missing()[:5])
            reason = f"{missing} of {self.expected} events missing ({listed}"
            reason += ", ...)" if missing > 5 else ")"
            if dupes:
                reason += f"; {dupes} duplicates"
            return CheckResult("deliveries", FAIL, reason)
        return CheckResult("deliveries", PASS, f"all {self.expected} events delivered once")

    def _report(self, checks: list[CheckResult]) -> dict[str, Any]:
        missing = self._missing() if self.triggered_at else []
        expected = self.expected
        return {
            "mode": "event",
            "total_expected": expected,
            "total_received": self._received,
            "success_rate": 100.0 * self._received / expected if expected else 0.0,
            "duplicates": sum(d.duplicates for d in self.deliveries),
            "out_of_order": sum(d.out_of_order for d in self.deliveries),
            "latency_percentiles": {k: v / 1e6 for k, v in self.latency.percentiles().items()},
            "missing_count": len(missing),
            "missing": missing[:MAX_LISTED_MISSING],
            "clients": len(self.clients),
            "checks": [c.to_dict() for c in checks],
        }


async def run_event(spec: JobSpec) -> dict[str, Any]:
    return await EventTest(spec).run()


__all__ = ["Deliveries", "EventTest", "run_event"]
