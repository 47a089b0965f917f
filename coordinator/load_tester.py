"""``WebSocketLoadTester``: the original framework's load API, now distributed.

Runs as before::

    tester = WebSocketLoadTester("ws://localhost:9000/ws", 10, 0.5)
    results = await tester.run_test(30)
    results["total_sent"], results["total_received"]
    results["success_rate"]   # percent
    results["avg_latency"]    # seconds

but the clients run in local worker processes under a coordinator, and the
result holds wsload's full summary besides the four original keys
(``latency_percentiles`` in seconds, ``timed_out``, ``errors``, ``workers``...).

Thresholds are judged exactly as ``wsload run`` judges them::

    tester = WebSocketLoadTester(url, 10, 0.5, thresholds=["p99<50ms"])
    results = await tester.run_test(30)
    results["passed"]       # False when a threshold failed or the run tested nothing
    results["thresholds"]   # each with its measured value and verdict
    results["verdict"]      # {"code": 0|1|2|130, "status": ..., "reasons": [...]}

``await tester.run(30)`` returns the same run as a typed, frozen
:class:`wsload.coordinator.summary.RunSummary` (``summary.verdict.code``,
``summary.figures.latency.p99``...).

A figure with no data is None: ``avg_latency`` and the percentiles of a run
that got no reply, ``success_rate`` of a run that sent nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from wsload.common.spec import build_spec
from wsload.coordinator.loadrun import run_load
from wsload.coordinator.summary import RunSummary


class WebSocketLoadTester:
    """Load test with ``num_clients`` clients, each sending every ``interval`` seconds."""

    def __init__(
        self,
        ws_url: str | None = None,
        num_clients: int | None = None,
        interval: float | None = None,
        *,
        workers: int | None = None,
        thresholds: Sequence[str] = (),
        abort_on_fail: bool = False,
        **spec_fields: Any,
    ) -> None:
        self.fields: dict[str, Any] = {
            "ws_url": ws_url,
            "num_clients": num_clients,
            "interval": interval,
            **spec_fields,
        }
        if thresholds:
            self.fields["thresholds"] = tuple(thresholds)
        self.workers = workers
        self.abort_on_fail = abort_on_fail
        self.last_summary: RunSummary | None = None

    async def run_test(self, duration: float | None = None) -> dict[str, Any]:
        """Run for ``duration`` seconds (default ``TEST_DURATION`` or 5) and return the summary.

        The summary (the JSON document of ``wsload run --json``) includes
        ``thresholds``, ``verdict`` and ``passed``; a run that fails them is
        returned, not raised.

        Raises :class:`wsload.common.errors.WsloadError` on invalid settings.
        """
        return (await self.run(duration)).to_json()

    async def run(self, duration: float | None = None) -> RunSummary:
        """:meth:`run_test`, returning the typed :class:`~wsload.coordinator.summary.RunSummary`."""
        spec = build_spec(env=os.environ, **self.fields, duration=duration)
        summary = await run_load(spec, local_workers=self.workers, abort_on_fail=self.abort_on_fail)
        self.last_summary = summary
        return summary


__all__ = ["WebSocketLoadTester"]
