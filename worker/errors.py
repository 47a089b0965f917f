"""The exception tree of ``worker``.

:class:`WorkerError` derives from :class:`wsload.common.errors.WsloadError`, so the
CLI turns any of these into a one-line reason. The connection errors carry a
``kind`` (``refused``, ``timeout``, ``dns``, ``tls``, ``http_<status>``,
``handshake``...) that the engine counts failures by; so do connections this
side failed once open (:func:`failure_kind`: ``protocol``, ``too_big``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from wsload.common.errors import WsloadError

if TYPE_CHECKING:
    from wsload.worker.recorder import Recorder


class WorkerError(WsloadError):
    """Base of the worker's errors."""


class PayloadError(WorkerError):
    """A payload template or size cannot be used."""


class ConnectFailed(WorkerError):
    """A WebSocket connection could not be opened; ``kind`` says how it failed."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class ConnectionRefused(ConnectFailed):
    """Nothing listens at the target address (TCP RST)."""


class HandshakeRejected(ConnectFailed):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        super().__init__(f"http_{status}" if status is not None else "handshake", message)


class TLSFailed(ConnectFailed):
    """The TLS handshake failed (certificate, protocol)."""


#: Error kind of a connection this side failed, by the close code it sent
#: (RFC 6455 7.4.1): the server broke the protocol (1002; 1007 for a text
#: message that is not UTF-8), or sent a message over ``max_message_size`` (1009).
FAILURE_KINDS = {1002: "protocol", 1007: "protocol", 1009: "too_big"}


def failure_kind(code: int) -> str:
    """The error kind of a connection failed by this side with close ``code``."""
    return FAILURE_KINDS.get(code, f"failed_{code}")


def report_once(recorder: Recorder, kind: str, text: str) -> None:
    """Say on stderr the first failure of ``kind`` in a run (before it is counted).

    One line per kind, whatever the number of connections that fail the same
    way: a hostile target costs an error count, not a screen of logs.
    """
    if kind not in recorder.errors:
        print(
            f"wsload worker: {kind}: {text} (further ones are counted, not logged)",
            file=sys.stderr,
        )
