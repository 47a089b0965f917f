"""The Python API as a user's own asyncio program calls it: several runs in one event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import ServerFactory
from wsload import RunSummary, WebSocketLoadTester


@pytest.mark.timeout(90)
def test_two_runs_in_one_event_loop(serve_factory: ServerFactory) -> None:
    """The second run's coordinator hears its workers (a stale ZAP handler once hid them)."""
    server = serve_factory()

    async def twice() -> tuple[dict[str, Any], RunSummary]:
        tester = WebSocketLoadTester(server.ws_url, 2, 0.1)
        first = await tester.run_test(1)
        second = await asyncio.wait_for(tester.run(1), timeout=40)
        return first, second

    first, second = asyncio.run(twice())
    assert_balanced(first)
    assert first["total_received"] > 0
    assert second.verdict.code == 0
    assert second.figures.counters.received > 0
