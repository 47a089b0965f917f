"""MQTT over WebSocket against a real Mosquitto (tests/servers/mosquitto.py).

First the codec alone, driven over a real WebSocket (the websockets
library) against the broker's WebSocket listener, its figures compared
with the broker's own ``$SYS`` counters; then ``wsload run`` with two
workers: per-step counts equal to the broker's, PUBACK latency through the
delay proxy (tests/servers/delay_proxy.py) at least the delay it injects,
keep-alive pings (a 1 s keep-alive) nowhere in the counts, deliveries to
wsload subscribers exact, a server that does not speak MQTT an error kind,
and the shipped example.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from tests.servers.delay_proxy import DelayProxy
from tests.servers.mosquitto import Mosquitto, delta, start_mosquitto, sys_counters
from wsload.common.program import Action
from wsload.worker.codecs.base import Message
from wsload.worker.codecs.mqtt import MqttCodec

DELAY_MS = 50


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with start_mosquitto() as running:
        yield running


class Conn:
    """One codec over one real WebSocket: what a worker's session does, minus the steps."""

    def __init__(self, ws: Any, codec: MqttCodec) -> None:
        self.ws, self.codec = ws, codec
        self.messages: list[Message] = []
        self.answered: dict[int | str, float] = {}
        self.pings = 0

    @classmethod
    async def open(cls, url: str, **options: Any) -> Conn:
        ws = await websockets.connect(url, subprotocols=[websockets.Subprotocol("mqtt")])
        assert ws.subprotocol == "mqtt"
        conn = cls(ws, MqttCodec(options))
        for frame in conn.codec.open(time.monotonic()):
            await ws.send(frame)
        await conn.until(lambda: conn.codec.ready)
        return conn

    async def send(self, action: Action, value: Any, answer: bool) -> int | str | None:
        frames, key = self.codec.encode(action, value, answer)
        for frame in frames:
            await self.ws.send(frame)
        return key

    async def until(self, done: Any, timeout: float = 10) -> None:
        """Receive (and answer the codec's housekeeping, on its timer too) until ``done()``."""
        deadline = time.monotonic() + timeout
        while not done():
            now = time.monotonic()
            assert now < deadline, "timed out"
            if self.codec.deadline <= now:
                for frame in self.codec.on_timer(now):
                    await self.ws.send(frame)
                    self.pings += 1
                assert self.codec.failure is None
            wait = min(deadline, self.codec.deadline) - now
            try:
                data = await asyncio.wait_for(self.ws.recv(), max(wait, 0.001))
            except TimeoutError:
                continue
            got = self.codec.receive(time.monotonic(), data, isinstance(data, str))
            assert got.failure is None, got.failure
            for frame in got.replies:
                await self.ws.send(frame)
            for m in got.messages:
                parsed = m.parsed
                if "answer" in parsed:
                    self.answered[parsed["answer"]] = time.monotonic()
                else:
                    self.messages.append(m)

    async def close(self) -> None:
        for frame in self.codec.goodbye():
            await self.ws.send(frame)
        await self.ws.close()


@pytest.mark.timeout(90)
def test_codec_against_mosquitto_equals_its_counters(broker: Mosquitto) -> None:
    """One publisher (10 QoS 1, 5 QoS 0), a QoS 0 and a QoS 1 subscriber, 1 s keep-alives."""
    conns: list[Conn] = []
    with sys_counters(broker) as counters:
        before = counters.snapshot()

        async def scenario() -> None:
            for qos in (0, 1):
                sub = await Conn.open(broker.ws_url, keepalive=1)
                key = await sub.send(Action.SUBSCRIBE, {"topic": "t/#", "qos": qos}, True)
                await sub.until(lambda: key in sub.answered)  # noqa: B023
                conns.append(sub)
            pub = await Conn.open(broker.ws_url, client_id="pub", keepalive=1)
            conns.append(pub)
            keys = []
            for i in range(15):
                qos = 1 if i < 10 else 0
                value = {"topic": "t/x", "payload": {"seq": i}, "qos": qos}
                keys.append(await pub.send(Action.SEND, value, qos == 1))
            assert keys[:10] == list(range(1, 11))
            assert keys[10:] == [None] * 5
            # all served at once (one left alone past 1.5 keep-alives is dropped): past
            # two keep-alives each pinged twice, its PINGRESPs swallowed
            await asyncio.gather(
                *(c.until(lambda c=c: c.pings >= 2 and c.codec.ping_sent is None) for c in conns),
                pub.until(lambda: all(k in pub.answered for k in keys[:10])),
            )
            for sub, qos in zip(conns, (0, 1), strict=False):
                await sub.until(lambda sub=sub: len(sub.messages) == 15)
                views = [m.parsed for m in sub.messages]
                assert [v["payload"]["seq"] for v in views] == list(range(15))
                assert [v["qos"] for v in views] == [qos] * 10 + [0] * 5
                assert {v["topic"] for v in views} == {"t/x"}
            for c in conns:
                await c.close()

        asyncio.run(scenario())
        got = delta(before, counters.snapshot())
    assert got["publish/messages/received"] == 15
    # Mosquitto 2.0 does not count the QoS 1 PUBLISHes it writes to a WebSocket client
    # (it does to a plain one): the QoS 1 subscriber's 10 show as its PUBACKs below
    assert got["publish/messages/sent"] in (15 + 5, 15 + 15)
    assert got["publish/messages/dropped"] == 0
    pings = sum(c.pings for c in conns)
    # CONNECT x3, SUBSCRIBE x2, 15 PUBLISH, 10 PUBACKs of QoS 1 deliveries, the
    # pings, DISCONNECT x3: every packet the codec sent, and nothing else
    assert got["messages/received"] == 3 + 2 + 15 + 10 + pings + 3


@pytest.mark.timeout(60)
def test_puback_through_the_delay_proxy_takes_at_least_the_delay(broker: Mosquitto) -> None:
    with DelayProxy(broker.ws_port, DELAY_MS) as proxy:

        async def scenario() -> list[float]:
            conn = await Conn.open(f"ws://127.0.0.1:{proxy.port}/mqtt")
            latencies = []
            for i in range(5):
                sent = time.monotonic()
                key = await conn.send(
                    Action.SEND, {"topic": "d", "payload": str(i), "qos": 1}, True
                )
                assert key is not None
                await conn.until(lambda: key in conn.answered)  # noqa: B023
                latencies.append(conn.answered[key] - sent)
            await conn.close()
            return latencies

        latencies = asyncio.run(scenario())
    assert min(latencies) >= DELAY_MS / 1000, latencies
