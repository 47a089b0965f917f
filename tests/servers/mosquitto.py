"""A private Mosquitto for the MQTT tests: its WebSocket listener and its own counters.

:func:`start_mosquitto` runs Debian's ``mosquitto`` (``make brokers``
installs it) with a generated configuration in a temporary directory: a
WebSocket listener (``protocol websockets``) for wsload and a plain MQTT
listener for reading the broker's ``$SYS`` counters, both on 127.0.0.1 on
free ports, anonymous, no persistence, ``sys_interval 1``. Readiness is a
real MQTT connection to the plain listener, never a sleep; the process is
always stopped. Without the binary (or without WebSocket support) the test
is skipped saying why.

**The counters.** Mosquitto publishes ``$SYS/broker/...`` every
``sys_interval`` (a value only when it changed). :class:`SysCounters`
keeps one paho-mqtt connection subscribed to a few of them for the whole
test. Two facts make its figures exact:

- ``publish/messages/sent`` counts every PUBLISH the broker sent, the
  ``$SYS`` ones to this reader included, so the reader subtracts what it
  had received itself when each value came (``sent - mine``); its keep-alive
  is an hour, so it sends nothing after subscribing;
- the retained copy of ``publish/messages/sent`` delivered on subscribing
  was counted before the reader was there: only live updates of it count
  (the other counters' retained copies are their current values: Mosquitto
  publishes a value when it changes).

:meth:`SysCounters.snapshot` waits until two successive updates agree (the
broker is quiet), so the caller takes one before the load and one after and
compares the differences with wsload's figures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

STARTUP_TIMEOUT = 15.0
SYS_INTERVAL = 1  # seconds between $SYS updates
#: the $SYS counters read (cumulative since the broker started)
COUNTERS = (
    "publish/messages/received",  # PUBLISH packets from clients
    "publish/messages/sent",  # PUBLISH packets to clients (the reader's subtracted)
    "publish/messages/dropped",
    "messages/received",  # every packet from clients: CONNECT, PINGREQ, PUBACK...
)


def mosquitto_binary() -> str | None:
    """The mosquitto executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mosquitto:
    """A running private broker: ``ws_url`` for wsload, ``mqtt_port`` for paho."""

    proc: subprocess.Popen[bytes]
    ws_port: int
    mqtt_port: int
    log: IO[bytes] = field(repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/mqtt"

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _config(ws_port: int, mqtt_port: int, anonymous: bool) -> str:
    lines = [
        f"allow_anonymous {'true' if anonymous else 'false'}",
        "persistence false",
        f"sys_interval {SYS_INTERVAL}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "max_queued_messages 100000",  # the tests' subscribers fall behind no queue
        f"listener {ws_port} 127.0.0.1",
        "protocol websockets",
        f"listener {mqtt_port} 127.0.0.1",
        "protocol mqtt",
    ]
    if os.geteuid() == 0:
        lines.insert(0, "user root")  # else it drops to user mosquitto
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def start_mosquitto(anonymous: bool = True) -> Iterator[Mosquitto]:
    """Start a private broker (skips the test if it cannot); stopped on exit, always.

    ``anonymous`` false: a CONNECT without credentials is refused (CONNACK 5).
    Mosquitto 2.0 grants every well-formed subscription, even one its ACL
    denies (it filters at delivery), so no configuration here makes a SUBACK
    0x80: the codec's unit tests cover that answer.
    """
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (make brokers installs Debian's)")
    with tempfile.TemporaryDirectory(prefix="wsload-mosquitto-") as tmp:
        for attempt in range(3):  # a free port can be taken between probe and bind
            ws_port, mqtt_port = _free_port(), _free_port()
            conf = Path(tmp) / "mosquitto.conf"
            conf.write_text(_config(ws_port, mqtt_port, anonymous))
            log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                [binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            broker = Mosquitto(proc, ws_port, mqtt_port, log)
            try:
                problem = _wait_ready(broker)
                if problem is None:
                    yield broker
                    return
                if "websockets" in problem.lower() and "unable" not in problem.lower():
                    pytest.skip(f"mosquitto has no WebSocket support: {problem}")
                if attempt == 2:
                    raise RuntimeError(f"mosquitto did not start: {problem}")
            finally:
                broker.stop()
                log.close()


def _wait_ready(broker: Mosquitto) -> str | None:
    """None once both listeners accept a connection; else why not (it exited, or silence)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if broker.proc.poll() is not None:
            return f"exit code {broker.proc.returncode}: {broker.log_text().strip()[-500:]}"
        if all(_accepts(p) for p in (broker.ws_port, broker.mqtt_port)):
            return None
        time.sleep(0.05)
    return f"no listener after {STARTUP_TIMEOUT:g} s: {broker.log_text().strip()[-500:]}"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class SysCounters:
    """The broker's own ``$SYS`` counters, read live (see the module's docstring)."""

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self._mine = 0  # PUBLISH packets this reader received
        self._values: dict[str, int] = {}
        self._updates = 0
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sys-reader")
        client.on_message = self._on_message
        client.connect("127.0.0.1", broker.mqtt_port, keepalive=3600)
        client.subscribe([(f"$SYS/broker/{name}", 0) for name in COUNTERS])
        client.loop_start()
        self._client = client

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            mine, self._mine = self._mine, self._mine + 1
            name = message.topic.removeprefix("$SYS/broker/")
            value = int(message.payload)
            if name == "publish/messages/sent":
                if message.retain:  # published before this reader was there to count
                    return
                value -= mine
            self._values[name] = value
            self._updates += 1

    def _read(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return self._updates, dict(self._values)

    def snapshot(self, timeout: float = 30.0, idle: bool = False) -> dict[str, int]:
        """The counters once the broker is quiet: equal over two successive updates.

        ``idle``: the caller knows nothing but this reader ever spoke to the broker
        (a test's fresh broker, before its load): there is nothing left to settle, so
        the first update that has every counter is the truth (``publish/messages/sent``,
        the one counter whose retained copy is skipped, comes last of each batch Mosquitto
        writes, after ``messages/received``). Mosquitto writes ``$SYS``
        every other ``sys_interval`` in practice (every 2 s here), so this spares a
        test 2 to 4 s; a wrong figure would only make the load's differences wrong.
        """
        start = time.monotonic()
        deadline = start + timeout
        last: dict[str, int] | None = None
        seen = -1
        while time.monotonic() < deadline:
            updates, values = self._read()
            if idle and all(name in values for name in COUNTERS):
                return values
            # the reader's own receipts change publish/messages/sent every interval,
            # so a fresh update arrives every sys_interval even when all is quiet;
            # one that arrives a whole interval after the call was made after it
            if updates != seen and all(name in values for name in COUNTERS):
                if values == last and time.monotonic() - start > SYS_INTERVAL * 1.5:
                    return values
                last, seen = values, updates
            time.sleep(0.1)
        raise AssertionError(f"mosquitto's $SYS counters did not settle: last {last}")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@contextlib.contextmanager
def sys_counters(broker: Mosquitto) -> Iterator[SysCounters]:
    """A :class:`SysCounters` for the block, disconnected after it."""
    reader = SysCounters(broker)
    try:
        yield reader
    finally:
        reader.close()


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What happened between two snapshots."""
    return {name: after[name] - before[name] for name in COUNTERS}


__all__ = [
    "COUNTERS",
    "Mosquitto",
    "SysCounters",
    "delta",
    "mosquitto_binary",
    "start_mosquitto",
    "sys_counters",
]
