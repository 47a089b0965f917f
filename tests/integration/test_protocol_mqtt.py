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
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory
from tests.servers.delay_proxy import DelayProxy
from tests.servers.mosquitto import Mosquitto, delta, start_mosquitto, sys_counters
from wsload.common.program import Action
from wsload.worker.codecs.base import Message
from wsload.worker.codecs.mqtt import MqttCodec

DELAY_MS = 50
REPO = Path(__file__).resolve().parents[2]


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
        before = counters.snapshot(idle=True)

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
            def done() -> bool:
                return (
                    all(c.pings >= 2 and c.codec.ping_sent is None for c in conns)
                    and all(k in pub.answered for k in keys[:10])
                    and all(len(sub.messages) == 15 for sub in conns[:2])
                )

            await asyncio.gather(*(c.until(done) for c in conns))
            for sub, qos in zip(conns, (0, 1), strict=False):
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


# -- wsload run against the broker ---------------------------------------------------

CLIENTS = 7  # 6 subscribers and the publisher

SCENARIO = f"""
protocol = {{name = "mqtt", keepalive = 1}}
num_clients = {CLIENTS}
duration = 5
ramp_up = 0.5
reply_timeout = 5

[[scenarios]]
name = "subscribers"
weight = 1

[[scenarios.steps]]
name = "subscribed"
subscribe = {{topic = "news/#", qos = 0}}

[[scenarios.loop]]
think = 3600

[scenarios.deliveries]
topic = "topic"
seq = "payload.seq"
sent_at = "payload.sent_at"
topics = ["news/a"]

[[scenarios]]
name = "publisher"
clients = 1
rate = 20

[[scenarios.steps]]
think = 2               # every subscriber's SUBACK is in before the first publication

[[scenarios.loop]]
name = "publish"
send = {{topic = "news/a", qos = 1, payload = {{seq = "{{seq}}", sent_at = "{{ts}}"}}}}
publish = {{topic = "news/a", seq = "{{seq}}"}}
[[scenarios.loop]]
send = {{topic = "elsewhere", payload = "fire and forget"}}
"""


def run(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSLOAD, "run", "--quiet", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )  # fmt: skip


@pytest.mark.timeout(150)
def test_two_workers_per_step_counts_equal_mosquittos(broker: Mosquitto, tmp_path: Path) -> None:
    """Through the delay proxy, 1 s keep-alives: counts equal $SYS, pings counted nowhere."""
    scenario, out = tmp_path / "mqtt.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    with sys_counters(broker) as counters, DelayProxy(broker.ws_port, DELAY_MS) as proxy:
        before = counters.snapshot(idle=True)
        url = f"ws://127.0.0.1:{proxy.port}/mqtt"
        proc = run("--scenario", str(scenario), "--ws-url", url, "-w", "2", "--json", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = delta(before, counters.snapshot())
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    steps, c = doc["steps"], doc["counters"]
    assert list(steps) == ["subscribed", "publish"]
    assert [w["steps"]["subscribed"]["met"] > 0 for w in doc["workers"].values()] == [True] * 2
    assert steps["subscribed"]["expected"] == steps["subscribed"]["met"] == CLIENTS - 1
    assert steps["publish"]["expected"] == steps["publish"]["met"] > 20
    # every PUBLISH (QoS 1 and 0) the broker received is one wsload sent, and back
    qos0 = doc["total_sent"] - steps["subscribed"]["met"] - steps["publish"]["met"]
    assert qos0 >= steps["publish"]["met"] - 1
    assert got["publish/messages/received"] == steps["publish"]["met"] + qos0
    assert doc["total_received"] == steps["subscribed"]["met"] + steps["publish"]["met"]
    # every delivery the broker wrote is one a subscriber got (QoS 0 subscriptions:
    # Mosquitto 2.0 counts those it writes to WebSocket clients), none missing
    fanout = doc["fanout"]["total"]
    assert fanout["deliveries"] == fanout["delivered"] == got["publish/messages/sent"]
    assert fanout["delivered"] == fanout["expected"] == steps["publish"]["met"] * (CLIENTS - 1)
    assert fanout["missing"] == fanout["duplicates"] == 0
    assert got["publish/messages/dropped"] == 0
    # the PUBACK's and SUBACK's latency include the delay the proxy injects
    assert steps["publish"]["latency_percentiles"]["p50"] >= DELAY_MS / 1000
    assert steps["subscribed"]["latency_percentiles"]["p50"] >= DELAY_MS / 1000
    # keep-alives: the broker received PINGREQs (every packet but CONNECT, SUBSCRIBE,
    # PUBLISH and DISCONNECT is one), none of them a message, unsolicited or error,
    # and no connection was dropped for want of them
    pings = got["messages/received"] - 2 * c["connects"] - doc["total_sent"]
    assert pings >= 2 * CLIENTS, (got, c)
    assert c["connects"] == CLIENTS
    assert c["reconnects"] == c["disconnects"] == c["connect_failures"] == 0
    assert doc["unsolicited"] == 0
    assert not doc["errors"], doc["errors"]


@pytest.mark.timeout(90)
def test_a_server_that_does_not_speak_mqtt_is_an_error_kind(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """``wsload serve``'s /ws echoes our CONNECT back: a protocol error, never a hang."""
    server = serve_factory()
    scenario, out = tmp_path / "mqtt.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    started = time.monotonic()
    proc = run(
        "--scenario", str(scenario), "--ws-url", server.ws_url, "-w", "1", "-d", "2",
        "-c", "2", "--ramp-up", "0", "--connect-timeout", "1", "--json", str(out),
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert proc.returncode != 0
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert doc["errors"], "a server that never answered CONNECT must cost an error kind"
    assert set(doc["errors"]) <= {"protocol_error", "handshake_timeout"}, doc["errors"]
    assert doc["steps"]["subscribed"]["met"] == 0


@pytest.mark.timeout(90)
def test_a_refused_connect_is_mqtt_refused(tmp_path: Path) -> None:
    scenario, out = tmp_path / "mqtt.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    with start_mosquitto(anonymous=False) as broker:
        proc = run(
            "--scenario", str(scenario), "--ws-url", broker.ws_url, "-w", "1", "-d", "2",
            "-c", "2", "--ramp-up", "0", "--json", str(out),
        )  # fmt: skip
    assert proc.returncode != 0
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert set(doc["errors"]) == {"mqtt_refused"}, doc["errors"]
    assert "not authorized" in str(doc["error_texts"])
    assert doc["steps"]["subscribed"]["met"] == 0


@pytest.mark.timeout(120)
def test_the_shipped_example_runs_against_the_broker(broker: Mosquitto, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with sys_counters(broker) as counters:
        before = counters.snapshot(idle=True)
        proc = run(
            "--scenario", str(REPO / "examples" / "mqtt.toml"), "--ws-url", broker.ws_url,
            "-w", "2", "-d", "5", "-c", "5", "--ramp-up", "0.5", "--json", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = delta(before, counters.snapshot())
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    steps = doc["steps"]
    assert list(steps) == ["subscribed", "publish"]
    assert steps["subscribed"]["met"] == 4
    assert steps["publish"]["expected"] == steps["publish"]["met"] > 0
    assert got["publish/messages/received"] == steps["publish"]["met"]
    fanout = doc["fanout"]["total"]
    assert fanout["delivered"] == fanout["expected"] == got["publish/messages/sent"]
    assert fanout["missing"] == 0
    assert not doc["errors"], doc["errors"]


@pytest.mark.timeout(90)
def test_pingresp_later_than_the_keepalive_is_keepalive_timeout(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The proxy holds the broker's bytes 1.5 s, a 1 s keep-alive: each PINGRESP is late."""
    scenario, out = tmp_path / "mqtt.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    with DelayProxy(broker.ws_port, 1500) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/mqtt"
        proc = run(
            "--scenario", str(scenario), "--ws-url", url, "-w", "1", "-d", "4",
            "-c", "2", "--ramp-up", "0", "--connect-timeout", "3", "--json", str(out),
        )  # fmt: skip
    assert proc.returncode != 0
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert set(doc["errors"]) == {"keepalive_timeout"}, doc["errors"]
    assert "no PINGRESP within the keep-alive (1 s)" in str(doc["error_texts"])


@pytest.mark.timeout(120)
def test_mqtt5_two_workers_equal_mosquittos_counters(broker: Mosquitto, tmp_path: Path) -> None:
    """``version = 5``: the same load as MQTT 5 (properties, reason codes), the same truth."""
    scenario, out = tmp_path / "mqtt5.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO.replace("keepalive = 1}", "keepalive = 1, version = 5}"))
    with sys_counters(broker) as counters:
        before = counters.snapshot(idle=True)
        proc = run(
            "--scenario", str(scenario), "--ws-url", broker.ws_url, "-w", "2", "-d", "4",
            "--json", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = delta(before, counters.snapshot())
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    steps = doc["steps"]
    assert steps["subscribed"]["met"] == CLIENTS - 1
    assert steps["publish"]["expected"] == steps["publish"]["met"] > 0
    qos0 = doc["total_sent"] - steps["subscribed"]["met"] - steps["publish"]["met"]
    assert got["publish/messages/received"] == steps["publish"]["met"] + qos0
    fanout = doc["fanout"]["total"]
    assert fanout["deliveries"] == fanout["delivered"] == got["publish/messages/sent"]
    assert fanout["delivered"] == fanout["expected"]
    assert fanout["missing"] == 0
    assert doc["counters"]["reconnects"] == doc["unsolicited"] == 0
    assert not doc["errors"], doc["errors"]
