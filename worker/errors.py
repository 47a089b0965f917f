"""The exception tree of ``worker``.

:class:`WorkerError` derives from :class:`common.errors.WsloadError`, so the
CLI turns any of these into a one-line reason. The connection errors carry a
``kind`` (``refused``, ``timeout``, ``dns``, ``tls``, ``http_<status>``,
``handshake``...) that the engine counts failures by.
"""

from common.errors import WsloadError


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
