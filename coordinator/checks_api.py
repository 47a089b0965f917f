"""The functional modes from Python: the original ``WebSocketEventTester`` and helpers
to run the unit and integration batteries inside a user's own pytest suite.

::

    from wsload.coordinator.checks_api import WebSocketEventTester, check_websocket

    results = await WebSocketEventTester("http://localhost:9000/api",
                                         "ws://localhost:9000/ws").run_event_test()
    results["total_expected"], results["total_received"], results["success_rate"]

    def test_my_service():          # plain pytest, no asyncio plugin needed
        check_websocket("unit", ws_url="ws://localhost:9000/ws")
        check_websocket("integration", ws_url="ws://localhost:9000/ws",
                        scenario="tests/chat.toml")

Every mode runs as a job of a coordinator with one local worker process,
exactly as ``wsload test`` does.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from wsload.common.spec import Mode, build_spec
from wsload.coordinator.errors import CoordinatorError
from wsload.coordinator.event_mode import run_event
from wsload.coordinator.runner import run_session
from wsload.coordinator.session import SessionOptions


class ChecksFailed(CoordinatorError):
    """Some checks failed; the message lists each with its reason."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        failed = [c for c in summary.get("checks", []) if c["status"] == "fail"]
        lines = [f"{summary['mode']} checks failed:"]
        lines += [f"  {c['name']}: {c['reason']}" for c in failed]
        if not failed:
            lines.append("  the worker running the checks gave no result")
        super().__init__("\n".join(lines))


async def run_checks(
    mode: str | Mode, *, scenario: str | None = None, **fields: Any
) -> dict[str, Any]:
    """Run one functional mode and return its results (``checks`` and, for events, counts)."""
    spec = build_spec(scenario=scenario, env=os.environ, **fields, mode=Mode(mode).value)
    if spec.mode is Mode.LOAD:
        raise CoordinatorError(
            "run_checks runs unit, integration or event; use WebSocketLoadTester"
        )
    options = SessionOptions(expect_workers=1)
    if spec.mode is Mode.EVENT:  # a load job of the fan-out machinery, judged here
        return (await run_event(spec, options=options, on_log=_quiet)).summary()
    outcome = await run_session(spec, local_workers=1, options=options, on_log=_quiet)
    return outcome.summary()


def _quiet(_text: str) -> None:
    """A library call prints nothing."""


async def assert_checks_pass(mode: str | Mode, **fields: Any) -> dict[str, Any]:
    """:func:`run_checks`, raising :class:`ChecksFailed` unless every check passed or skipped."""
    summary = await run_checks(mode, **fields)
    if not summary["ok"]:
        raise ChecksFailed(summary)
    return summary


def check_websocket(mode: str | Mode = Mode.UNIT, **fields: Any) -> dict[str, Any]:
    """Blocking :func:`assert_checks_pass`, for plain (non-async) test functions."""
    return asyncio.run(assert_checks_pass(mode, **fields))


class WebSocketEventTester:
    """Do events triggered through ``api_url`` reach the clients subscribed on ``ws_url``?"""

    def __init__(
        self, api_url: str | None = None, ws_url: str | None = None, **fields: Any
    ) -> None:
        self.fields = {"api_url": api_url, "ws_url": ws_url, **fields}

    async def run_event_test(self) -> dict[str, Any]:
        """``total_expected``, ``total_received``, ``success_rate`` (percent), ``duplicates``,
        ``out_of_order``, ``latency_percentiles`` (seconds), ``missing`` and ``checks``.

        The event options run as a job of the fan-out machinery
        (:mod:`wsload.coordinator.event_mode`): each trigger is ``event_count``
        publications of its event name, owed to every client subscribed when it was sent."""
        return await run_checks(Mode.EVENT, **self.fields)


__all__ = [
    "ChecksFailed",
    "WebSocketEventTester",
    "assert_checks_pass",
    "check_websocket",
    "run_checks",
]
