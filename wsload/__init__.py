"""wsload: a distributed WebSocket load generator and test framework.

The one import root of the distribution. The repository keeps its folders at
the top (``coordinator/``, ``worker/``, ``common/``, ``testserver/``); they
install as ``wsload.coordinator``, ``wsload.worker``, ``wsload.common`` and
``wsload.testserver``, so nothing squats a generic top-level name and a
``worker.py`` in the current directory can never stand in for wsload's own.

This module is the public surface. Names load lazily, so ``import wsload``
(which every ``python -m wsload.worker`` does first) pulls in neither the
coordinator nor the engine::

    from wsload import WebSocketClient, WebSocketLoadTester, WebSocketEventTester
    from wsload import check_websocket, run_load, RunSummary
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wsload.common import __version__

if TYPE_CHECKING:
    from wsload.coordinator.checks_api import WebSocketEventTester, check_websocket
    from wsload.coordinator.load_tester import WebSocketLoadTester
    from wsload.coordinator.loadrun import run_load
    from wsload.coordinator.summary import RunSummary
    from wsload.worker.client import WebSocketClient

_PUBLIC = {
    "WebSocketClient": "wsload.worker.client",
    "WebSocketLoadTester": "wsload.coordinator.load_tester",
    "WebSocketEventTester": "wsload.coordinator.checks_api",
    "check_websocket": "wsload.coordinator.checks_api",
    "run_load": "wsload.coordinator.loadrun",
    "RunSummary": "wsload.coordinator.summary",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'wsload' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "RunSummary",
    "WebSocketClient",
    "WebSocketEventTester",
    "WebSocketLoadTester",
    "__version__",
    "check_websocket",
    "run_load",
]
