"""The delay proxy (tests/servers/delay_proxy.py) the broker tests put in front of their brokers.

Against a real echo server on loopback, through the real proxy process:
every echoed chunk comes at least the delay after it was sent, bytes keep
their order, a stream of chunks is delayed once (not once per chunk), and
the server's close reaches the client after its last bytes.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.servers.delay_proxy import DelayProxy

DELAY_MS = 100


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(65536):
            if data.startswith(b"bye"):
                sock.sendall(b"last")
                return  # closes: the client must see EOF after "last"
            sock.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return out


@pytest.mark.timeout(60)
def test_delays_each_chunk_once_in_order_and_closes(echo_port: int) -> None:
    with DelayProxy(echo_port, DELAY_MS) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
            # one round trip: at least the delay
            start = time.monotonic()
            sock.sendall(b"ping")
            assert _recv_exactly(sock, 4) == b"ping"
            assert time.monotonic() - start >= DELAY_MS / 1000

            # 20 messages 10 ms apart, not waiting: each is at least the delay late,
            # in order, and the whole stream is delayed once (serialized: 20 x 100 ms)
            sent: list[float] = []
            got: list[float] = []

            def reader() -> None:
                for i in range(20):
                    assert _recv_exactly(sock, 8) == b"msg%05d" % i
                    got.append(time.monotonic())

            thread = threading.Thread(target=reader)
            thread.start()
            for i in range(20):
                sent.append(time.monotonic())
                sock.sendall(b"msg%05d" % i)
                time.sleep(0.01)
            thread.join(30)
            assert len(got) == 20
            assert min(g - s for g, s in zip(got, sent, strict=True)) >= DELAY_MS / 1000
            assert got[-1] - sent[0] < 20 * DELAY_MS / 1000

            # a big payload comes back whole and in order
            blob = bytes(range(256)) * 4096
            threading.Thread(target=sock.sendall, args=(blob,), daemon=True).start()
            assert _recv_exactly(sock, len(blob)) == blob

            # the server's close reaches the client after its last bytes
            sock.sendall(b"bye")
            assert _recv_exactly(sock, 4) == b"last"
            assert sock.recv(10) == b""
        assert proxy.proc is not None
    assert proxy.proc.returncode == 0
