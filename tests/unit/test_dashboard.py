"""The report page's document and the live dashboard's server, on loopback, without a run.

The figures come from a real :class:`RunAggregate` fed windows through the
wire format (as in test_verdict.py); the dashboard is the real aiohttp
server on 127.0.0.1, read with aiohttp's client.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from wsload.common.protocol import Result, Samples, decode, encode
from wsload.common.spec import JobSpec
from wsload.coordinator import aggregate as aggregate_module
from wsload.coordinator import dashboard
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.dashboard import Dashboard
from wsload.coordinator.html_report import document_json, page_document, page_html, render
from wsload.coordinator.loadrun import conclude, live_summary
from wsload.coordinator.session import RunOutcome
from wsload.coordinator.summary import RunSummary

START = 100.0
HOSTILE = "</script><script>alert(1)</script>"


def window(
    seq: int, counters: dict[str, int], latency: list[int], errors: dict[str, int]
) -> Samples:
    msg = Samples.window(
        "j", seq, (START + seq, START + seq + 1.0), counters, errors, (latency, latency, [500])
    )
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    return decoded


def aggregate(seconds: int = 2) -> RunAggregate:
    agg = RunAggregate(START)
    for s in range(seconds):
        counters = {"sent": 10, "expected": 10, "received": 9, "timed_out": 1, "connects": 1,
                    "clients_connected": 1 if s == 0 else 0}  # fmt: skip
        agg.add_samples("w1", window(s, counters, [1_000 * (s + 1)] * 9, {HOSTILE: 1}))
    return agg


def spec() -> JobSpec:
    return JobSpec(ws_url="ws://127.0.0.1:9/ws", duration=2, thresholds=("timeouts==0", "p99<1s"))


def final(agg: RunAggregate) -> RunSummary:
    counters = agg.totals()
    result = decode(encode(Result("j", True, counters, {}, {"error_texts": {HOSTILE: HOSTILE}})))
    assert isinstance(result, Result)
    agg.add_result("w1", result)
    outcome = RunOutcome(aggregate=agg, elapsed=2.0)
    return conclude(spec(), outcome)


def test_the_live_document_is_the_run_so_far_and_leaves_the_run_intact() -> None:
    agg = aggregate()
    live = page_document(live_summary(spec(), agg, 1.5), live=True)
    assert live["verdict"] == {"status": "running", "code": None, "reasons": []}
    assert [(t["threshold"], t["passed"]) for t in live["thresholds"]] == [
        ("timeouts==0", False), ("p99<1s", True),
    ]  # fmt: skip
    assert live["totals"]["sent"] == 20
    assert live["series"]["sent"] == [10, 10]
    assert live["series"]["connected"] == [1, 1]  # a gauge sent as deltas
    assert live["series"]["latency"]["p50"] == pytest.approx([1.0, 2.0], rel=0.01)  # ms
    # Building it closed nothing: the final figures still have every second's histogram.
    summary = final(agg)
    assert summary.figures.hdr_log.count("\n") > 2
    frozen = page_document(summary)
    assert frozen["verdict"]["status"] == "failed"
    assert frozen["verdict"]["reasons"] == ["threshold timeouts==0 failed (measured 2)"]
    assert frozen["series"] == live["series"]
    assert frozen["distributions"]["latency"][0][0] == 0.0


def test_a_hostile_error_text_stays_text() -> None:
    summary = final(aggregate())
    page = render(summary)
    assert HOSTILE not in page  # neither as the kind nor as its first text
    assert "<" not in document_json(page_document(summary))
    doc = json.loads(document_json(page_document(summary)))
    assert doc["errors"] == [{"kind": HOSTILE, "count": 2, "text": HOSTILE}]
    assert page_html(None).count("<script") == 4  # the library, the address, the data, the page


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_the_dashboard_serves_the_run_so_far_built_once_per_second() -> None:
    agg, builds = aggregate(), []

    def build() -> RunSummary:
        builds.append(1)
        return live_summary(spec(), agg, 1.5)

    board = Dashboard(port=0)
    url = await board.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert board.port > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "data") as r:
                assert r.status == 204  # the run has not reported yet
            async with http.get(url) as r:
                assert r.status == 200
                assert "uplot" in await r.text()
            board.update(build)
            for _ in range(5):  # five pages asking in the same second: one build
                async with http.get(url + "data") as r:
                    doc = await r.json()
                    assert doc["live"] is True
            assert len(builds) == 1
            board.update(build)
            async with http.get(url + "data") as r:
                assert (await r.json())["totals"]["sent"] == 20
            assert len(builds) == 2
            board.finish(final(agg))
            board.update(build)  # a late tick changes nothing once the run is over
            async with http.get(url + "data") as r:
                doc = await r.json()
            assert doc["live"] is False
            assert doc["verdict"]["status"] == "failed"
            assert len(builds) == 2
            await board.linger()  # the final document was fetched: no wait
    finally:
        await board.stop()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_requests_past_the_bound_are_refused_not_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = Dashboard(port=0)
    url = await board.start()
    try:
        board.update(lambda: live_summary(spec(), aggregate(), 1.5))
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "data") as r:
                assert r.status == 200
            monkeypatch.setattr(dashboard, "MAX_REQUESTS", 0)  # every slot taken
            async with http.get(url + "data") as r:
                assert r.status == 503
    finally:
        await board.stop()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_only_requests_addressed_to_loopback_are_answered() -> None:
    board = Dashboard(port=0)
    url = await board.start()
    try:
        async with aiohttp.ClientSession() as http:
            for host, status in (
                ("evil.example:80", 421),
                ("127.0.0.1.evil.example", 421),
                ("localhost:8080", 204),
                (f"127.0.0.1:{board.port}", 204),
            ):
                async with http.get(url + "data", headers={"Host": host}) as r:
                    assert r.status == status, host
    finally:
        await board.stop()


def test_a_long_runs_live_document_carries_its_newest_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agg = aggregate(seconds=3)
    monkeypatch.setattr(aggregate_module, "LIVE_SECONDS", 2)
    live = page_document(live_summary(spec(), agg, 3.0), live=True)
    assert live["series"]["t"] == [2, 3]
    assert live["series"]["connected"] == [1, 1]  # counted from where the run stood
    assert live["totals"]["sent"] == 30  # the totals are the whole run's
    assert page_document(final(agg))["series"]["t"] == [1, 2, 3]
