"""A private RabbitMQ node for the STOMP tests: Web-STOMP on loopback, its management API.

The STOMP tests need a real broker we did not write, and its own counts of
what it got (``/api/overview``'s ``message_stats``: messages published,
receipts confirmed, deliveries) to compare wsload's figures with. Debian's
``rabbitmq-server`` is installed by ``make brokers``; nothing of the
system's node is used: each :class:`RabbitMQ` has its own node name
(``wsload-test-<port>@localhost``), ports, data, logs, config and cookie
in a temporary directory, and its own ``epmd`` on a private port, so tests
on one machine (and the system's own node) never meet.

Startup takes about 5 s on an idle 2-core box (Erlang boots RabbitMQ and
the management plugin), so a test module starts ONE node (a module-scoped
fixture) and its tests use separate destinations. Stopping is a SIGKILL of
the node's process group (a graceful ``rabbitmqctl stop`` takes 6 to 8 s and
the node's data is thrown away anyway) and of our epmd, in ``finally``.

Statistics lag: the node collects them every ``collect_statistics_interval``
(500 ms here, 5 s by default) and the API's totals are samples (every
second here, 5 s by default), so :meth:`RabbitMQ.settled` polls until a
read has stayed the same for :data:`STABLE_FOR` seconds.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

#: Debian's real start script (/usr/sbin/rabbitmq-server is a wrapper that su's to rabbitmq)
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
PLUGINS = Path("/usr/lib/rabbitmq/lib")
USER = "wsload"
PASSWORD = "wsload-test-pass"
#: how often the node collects statistics (ms): the management API lags by about this
STATS_INTERVAL_MS = 500
#: seconds a total must stay the same to be believed (the API samples every second)
STABLE_FOR = 2.5


def missing() -> str | None:
    """Why a node cannot start here (None: it can)."""
    if not SERVER.exists():
        return "rabbitmq-server is not installed (make brokers installs Debian's)"
    if not list(PLUGINS.glob("*/plugins/rabbitmq_web_stomp-*")):
        return "RabbitMQ's rabbitmq_web_stomp plugin is not installed"
    if shutil.which("epmd") is None:
        return "epmd (Erlang) is not installed"
    return None


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports free now (a race with other tests: start() retries)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


class RabbitMQ:
    """``with RabbitMQ() as mq: mq.ws_url ...``: a private node, always stopped.

    ``ws_url`` is Web-STOMP's endpoint, ``user``/``password`` the node's only
    user (an administrator), :meth:`api` reads the management API.
    """

    def __init__(self, startup_timeout: float = 90.0, server: Path = SERVER) -> None:
        self.startup_timeout = startup_timeout
        #: the start script (a test of the failure path passes another)
        self.server = server
        self.user = USER
        self.password = PASSWORD
        self.web_stomp_port = 0
        self.api_port = 0
        #: seconds the last start took (the fixture reports it)
        self.startup_seconds = 0.0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._node: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.web_stomp_port}/ws"

    # -- start and stop ---------------------------------------------------------------------

    def __enter__(self) -> RabbitMQ:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the node; retried once on new ports (a port taken between pick and bind)."""
        began = time.monotonic()
        problem = ""
        for _ in range(2):
            try:
                self._start_once(began + self.startup_timeout)
            except RuntimeError as exc:
                problem = str(exc)
                self.stop()
                if time.monotonic() >= began + self.startup_timeout:
                    break
                continue
            except BaseException:  # interrupted: leave nothing running
                self.stop()
                raise
            self.startup_seconds = time.monotonic() - began
            return
        raise RuntimeError(problem)

    def _start_once(self, deadline: float) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="wsload-rabbitmq-")
        root = Path(self._dir.name)
        node_port, dist_port, stomp_port, web_port, api_port, epmd_port = _free_ports(6)
        self.web_stomp_port, self.api_port = web_port, api_port
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node_port}\n"
            f"stomp.listeners.tcp.1 = 127.0.0.1:{stomp_port}\n"
            f"web_stomp.tcp.ip = 127.0.0.1\nweb_stomp.tcp.port = {web_port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {api_port}\n"
            f"collect_statistics_interval = {STATS_INTERVAL_MS}\n"
            # the API's totals are samples every 5 s by default: every second here
            "management.sample_retention_policies.global.minute = 1\n"
            "management.sample_retention_policies.basic.minute = 1\n"
            "management.sample_retention_policies.detailed.10 = 1\n"
            f"default_user = {USER}\ndefault_pass = {PASSWORD}\n"
            "loopback_users = none\n"
            # a loaded test box must not raise the alarms that block publishers
            "disk_free_limit.absolute = 1MB\nvm_memory_high_watermark.absolute = 4GB\n"
            "log.console = false\nlog.file.level = warning\n"
        )
        (root / "enabled_plugins").write_text("[rabbitmq_web_stomp,rabbitmq_management].\n")
        (root / "rabbitmq-env.conf").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(root),  # the Erlang cookie
            RABBITMQ_NODENAME=f"wsload-test-{node_port}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(node_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_MNESIA_BASE=str(root / "mnesia"),
            RABBITMQ_LOG_BASE=str(root / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(root / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(root / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(root / "rabbitmq-env.conf"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_PORT=str(epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        # our own epmd, in the foreground: we know its pid and stop it (the
        # node would otherwise start a daemon nobody owns)
        self._epmd = subprocess.Popen(
            ["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while not _accepts(epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"epmd did not start on port {epmd_port}")
            time.sleep(0.05)
        out = open(root / "startup.log", "wb")  # noqa: SIM115 (closed below, the node keeps it)
        try:
            self._node = subprocess.Popen(
                [str(self.server)],
                env=env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills all of it
            )
        finally:
            out.close()
        while not self._ready():
            if self._node.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self._log_tail(root)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"RabbitMQ not ready within {self.startup_timeout:g} s: {self._log_tail(root)}"
                )
            time.sleep(0.1)

    def _ready(self) -> bool:
        """The management API answers and lists the Web-STOMP listener, which accepts."""
        try:
            overview = self.api("/api/overview", timeout=1.0)
        except (OSError, ValueError):
            return False
        listeners = {item.get("protocol") for item in overview.get("listeners", [])}
        return "http/web-stomp" in listeners and _accepts(self.web_stomp_port)

    @staticmethod
    def _log_tail(root: Path) -> str:
        texts = []
        for path in [root / "startup.log", *sorted((root / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace")[-600:])
        return " | ".join(t.strip().replace("\n", " ") for t in texts if t.strip()) or "no log"

    def stop(self) -> None:
        """Kill the node's process group and our epmd; remove the directory. Idempotent."""
        for proc in (self._node, self._epmd):
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._node = self._epmd = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None

    # -- the management API -----------------------------------------------------------------

    def api(self, path: str, timeout: float = 5.0) -> Any:
        """GET one management API path (``/api/overview``), as JSON."""
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", headers={"Authorization": f"Basic {auth}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def message_stats(self) -> dict[str, int]:
        """The node's totals since it started (``publish``, ``confirm``, ``deliver_get``...)."""
        stats = self.api("/api/overview").get("message_stats") or {}
        return {k: v for k, v in stats.items() if isinstance(v, int)}

    def exchange_stats(self, name: str = "amq.topic") -> dict[str, int]:
        """One exchange's totals (``publish_in``, ``publish_out``) in the default vhost."""
        stats = self.api(f"/api/exchanges/%2F/{name}").get("message_stats") or {}
        return {k: v for k, v in stats.items() if isinstance(v, int)}

    def settled(
        self,
        read: Callable[[], dict[str, int]],
        until: Callable[[dict[str, int]], bool] = lambda _: True,
        timeout: float = 30.0,
        stable_for: float = STABLE_FOR,
    ) -> dict[str, int]:
        """``read()`` once it has not changed for ``stable_for`` s and ``until`` holds.

        The API's totals move once per sample (every second here, see the
        config), a collection interval after the fact; a figure read just
        after the load may still grow, so it is believed only when it has
        stayed the same over more than two samples.
        """
        deadline = time.monotonic() + timeout
        last = read()
        since = time.monotonic()
        while True:
            time.sleep(0.25)
            now = read()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= stable_for and until(now):
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"RabbitMQ's statistics did not settle: {now}")


__all__ = ["PASSWORD", "USER", "RabbitMQ", "missing"]
