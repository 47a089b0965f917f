"""What the outputs say: the CSV's columns as the run happened, nulls where no value exists,
the parameters in the JSON, the text summary's units, counts and progress words.

Figures come from a real :class:`RunAggregate` fed windows through the wire format,
and summaries from :func:`wsload.coordinator.loadrun.conclude`, as the coordinator
builds them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

from wsload.common.protocol import Result, Samples, StepWindow, decode, encode
from wsload.common.spec import JobSpec
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.figures import PERCENTILE_KEYS
from wsload.coordinator.loadrun import conclude
from wsload.coordinator.outputs import (
    CSV_COLUMNS,
    CSV_COUNTERS,
    CSV_MORE_COLUMNS,
    csv_text,
    json_text,
    junit_text,
)
from wsload.coordinator.report import format_summary, live_lines, progress_line
from wsload.coordinator.session import RunOutcome
from wsload.coordinator.summary import RunSummary

START = 1_700_000_000.25  # a start a quarter of a second past a whole second


def _window(
    seq: int,
    counters: dict[str, int],
    latency: list[int] | None = None,
    errors: dict[str, int] | None = None,
    steps: dict[str, StepWindow] | None = None,
    span: float = 1.0,
) -> Samples:
    lat = latency or []
    msg = Samples.window(
        "j", seq, (START + seq, START + seq + span), counters, errors or {},
        (lat, lat, []), steps or {}, {},
    )  # fmt: skip
    decoded = decode(encode(msg))  # as it arrives: through the wire format
    assert isinstance(decoded, Samples)
    return decoded


def _summary(agg: RunAggregate, elapsed: float, spec: JobSpec | None = None) -> RunSummary:
    spec = spec or JobSpec(ws_url="ws://127.0.0.1:9/ws")
    return conclude(spec, RunOutcome(agg, elapsed))


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _bumpy_run() -> RunAggregate:
    """3.5 s of load: timeouts, a reconnect, errors in the 2nd and 3rd seconds, then a drain."""
    agg = RunAggregate(START)
    agg.add_samples(
        "w1",
        _window(
            0,
            {"sent": 10, "expected": 10, "received": 10, "connects": 2, "clients_connected": 2},
            [1_000] * 10,
        ),
    )
    agg.add_samples("w1", _window(1, {"sent": 10, "expected": 10, "received": 7, "timed_out": 3,
                                      "disconnects": 1, "clients_connected": -1},
                                  [2_000] * 7, {"closed_1011": 1}))  # fmt: skip
    agg.add_samples("w1", _window(2, {"sent": 10, "expected": 10, "received": 9, "late": 1,
                                      "unsolicited": 4, "connects": 1, "reconnects": 1,
                                      "clients_connected": 1, "connect_failures": 2},
                                  [1_000] * 9, {"refused": 2}))  # fmt: skip
    agg.add_samples("w1", _window(3, {"sent": 5, "expected": 5, "received": 5}, [1_000] * 5))
    # the drain: an answer still coming, the last timeout, after the 3.5 s of load
    agg.add_samples("w1", _window(4, {"received": 1, "timed_out": 1, "lost": 1, "expected": 2,
                                      "clients_connected": -2}, [3_000], span=0.3))  # fmt: skip
    return agg


def test_the_csv_has_wall_clock_rates_counters_and_errors_as_they_happened() -> None:
    summary = _summary(_bumpy_run(), elapsed=3.5)
    text = csv_text(summary.figures)
    header = text.splitlines()[0].split(",")
    assert header == [*CSV_COLUMNS, *CSV_MORE_COLUMNS, *CSV_COUNTERS,
                      "error.closed_1011", "error.refused"]  # fmt: skip
    rows = _rows(text)
    assert [r["time"] for r in rows] == ["1", "2", "3", "4", "5"]
    # the wall clock at the end of each second: the run's start plus the row's time
    stamps = [datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows]
    assert stamps == [START + t for t in (1, 2, 3, 4, 5)]
    assert rows[0]["timestamp"] == "2023-11-14T22:13:21.250Z"
    # rates per second of load: whole seconds, then half of one (10 in 0.5 s), then the drain
    assert [r["sent_per_s"] for r in rows] == ["10.0", "10.0", "10.0", "10.0", "-"]
    assert [r["received_per_s"] for r in rows] == ["10.0", "7.0", "9.0", "10.0", "-"]
    assert [r["timed_out"] for r in rows] == ["0", "3", "0", "0", "1"]
    assert [r["lost"] for r in rows] == ["0", "0", "0", "0", "1"]
    assert [r["late"] for r in rows] == ["0", "0", "1", "0", "0"]
    assert [r["unsolicited"] for r in rows] == ["0", "0", "4", "0", "0"]
    assert [r["reconnects"] for r in rows] == ["0", "0", "1", "0", "0"]
    assert [r["connects"] for r in rows] == ["2", "0", "1", "0", "0"]
    assert [r["disconnects"] for r in rows] == ["0", "1", "0", "0", "0"]
    assert [r["connect_failures"] for r in rows] == ["0", "0", "2", "0", "0"]
    assert [r["clients"] for r in rows] == ["2", "1", "2", "2", "0"]
    # errors in the second they happened, by kind, and their sum in "errors"
    assert [r["error.closed_1011"] for r in rows] == ["0", "1", "0", "0", "0"]
    assert [r["error.refused"] for r in rows] == ["0", "0", "2", "0", "0"]
    assert [r["errors"] for r in rows] == ["0", "1", "2", "0", "0"]
    # every count in the CSV adds up to the JSON's total
    doc = json.loads(json_text(summary))
    for column in ("sent", "received", "timed_out", "lost", "late", "unsolicited",
                   "reconnects", "connects", "disconnects", "connect_failures"):  # fmt: skip
        assert sum(int(r[column]) for r in rows) == doc["counters"][column], column
    assert {k: sum(int(r[f"error.{k}"]) for r in rows) for k in doc["errors"]} == doc["errors"]


def test_a_partial_last_second_has_its_rate_over_the_part_it_covers() -> None:
    agg = RunAggregate(START)
    agg.add_samples("w1", _window(0, {"sent": 8, "expected": 8, "received": 8}, [900] * 8))
    agg.add_samples("w1", _window(1, {"sent": 2, "expected": 2, "received": 2}, [900] * 2,
                                  span=0.25))  # fmt: skip
    rows = _rows(csv_text(_summary(agg, elapsed=1.25).figures))
    assert [r["sent_per_s"] for r in rows] == ["8.0", "8.0"]  # 2 in a quarter of a second


def test_a_series_without_its_run_has_no_wall_clock_and_whole_seconds() -> None:
    agg = _bumpy_run()
    rows = _rows(csv_text(agg.time_series()))
    assert {r["timestamp"] for r in rows} == {"-"}  # the start is not known
    assert rows[-1]["sent_per_s"] == "0.0"


def _silent_run() -> RunAggregate:
    """Connections open, messages sent, no reply ever: every latency figure has no value."""
    agg = RunAggregate(START, step_names=("ack",))
    counters = {"sent": 4, "expected": 4, "timed_out": 4, "connects": 2, "clients_connected": 2}
    steps = {"ack": StepWindow({"expected": 4, "timed_out": 4}, [], [])}
    agg.add_samples("w1", _window(0, counters, steps=steps))
    agg.add_result("w1", Result("j", True, counters, {}, {}))
    return agg


def _refused_run() -> RunAggregate:
    """No connection ever opened."""
    agg = RunAggregate(START)
    counters = {"connect_failures": 3}
    agg.add_samples("w1", _window(0, counters, errors={"refused": 3}))
    agg.add_result("w1", Result("j", True, counters, {"refused": 3}, {}))
    return agg


def _nulls(doc: dict[str, Any]) -> None:
    """Every latency figure of a run without replies is null, never a number."""
    for section in ("latency_percentiles", "service_time_percentiles"):
        assert doc[section] == dict.fromkeys(PERCENTILE_KEYS), section
    assert doc["avg_latency"] is None
    for row in doc["time_series"]:
        assert all(row[k] is None for k in PERCENTILE_KEYS), row
    for name, step in doc["steps"].items():
        assert step["latency_percentiles"] == dict.fromkeys(PERCENTILE_KEYS), name
        assert step["service_time_percentiles"] == dict.fromkeys(PERCENTILE_KEYS), name
    for t in doc["thresholds"]:
        if t["threshold"].split("<")[0] in ("p99", "avg", "step.ack.p99"):
            assert (t["measured"], t["shown"], t["passed"]) == (None, "no data", False)


THRESHOLDS = ("p99<1s", "avg<1s", "step.ack.p99<1s")


def test_a_run_with_no_replies_has_nulls_not_zeros_in_json_text_csv_and_junit() -> None:
    spec = JobSpec(ws_url="ws://127.0.0.1:9/ws", thresholds=THRESHOLDS)
    summary = _summary(_silent_run(), elapsed=2.0, spec=spec)
    doc = json.loads(json_text(summary))
    _nulls(doc)
    assert doc["connect_time_percentiles"]["p50"] is None  # none sent by this window
    # measured values stay numbers: none of 4 answers came (0 %), 0 replies in 2 s
    assert doc["success_rate"] == 0.0
    assert doc["steps"]["ack"]["success_rate"] == 0.0
    assert (doc["throughput"], doc["send_rate"]) == (0.0, 2.0)
    text = format_summary(summary)
    assert "  Average latency:         -" in text
    p99 = next(line for line in text.splitlines() if line.strip().startswith("p99 "))
    assert p99.split()[1:3] == ["-", "-"]  # latency and service time: no value
    ack = next(line for line in text.splitlines() if line.strip().startswith("ack "))
    assert ack.split()[-2:] == ["-", "-"]  # the step's p50 and p99
    assert "0.00 ms" not in text
    rows = _rows(csv_text(summary.figures))
    assert [(r["p50_ms"], r["p95_ms"], r["p99_ms"]) for r in rows] == [("-", "-", "-")]
    junit = junit_text({"load": summary})
    for case in ET.fromstring(junit).iter("testcase"):
        failure = case.find("failure")
        if case.get("name") in ("p99<1s", "avg<1s", "step.ack.p99<1s"):
            assert failure is not None
            assert failure.get("message") == "measured no data"
    assert "measured 0" not in junit  # nor a zero anywhere: nothing was measured


def test_a_run_with_no_connection_has_nulls_and_no_rate_over_no_time() -> None:
    spec = JobSpec(ws_url="ws://127.0.0.1:9/ws", thresholds=("rps>0",))
    summary = _summary(_refused_run(), elapsed=0.0, spec=spec)  # stopped before it began
    doc = json.loads(json_text(summary))
    _nulls(doc)
    assert doc["connect_time_percentiles"] == dict.fromkeys(PERCENTILE_KEYS)
    assert doc["success_rate"] is None  # no answer was awaited
    assert (doc["throughput"], doc["send_rate"]) == (None, None)  # over no time
    assert doc["fanout"] == {}
    (rps,) = doc["thresholds"]
    assert (rps["measured"], rps["shown"]) == (None, "no data")
    text = format_summary(summary)
    assert "  Throughput:              - replies/s over 0.0 s" in text
    assert "  Success rate:            -" in text
    rows = _rows(csv_text(summary.figures))
    assert rows[0]["sent_per_s"] == "-"  # the row is wholly after the (empty) load phase


def test_the_json_holds_the_runs_parameters() -> None:
    spec = JobSpec(
        ws_url="ws://user:secret@127.0.0.1:9/ws",
        thresholds=("p99<50ms",),
        reply_timeout=1.5,
        payload_size=256,
        subprotocols=("base64url.bearer.token-here",),
    )
    params = _summary(_silent_run(), 2.0, spec).to_json()["parameters"]
    assert params["started_at_unix"] == START
    assert params["started_at"] == "2023-11-14T22:13:20Z"
    assert params["reply_timeout"] == 1.5
    assert params["connect_timeout"] == spec.connect_timeout
    assert params["drain_timeout"] == spec.drain_timeout
    assert params["payload_size"] == 256
    assert params["thresholds"] == ["p99<50ms"]
    assert (params["reconnect"], params["compression"], params["protocol"]) == (True, False, None)
    shown = json.dumps(params)
    assert "secret" not in shown
    assert "token-here" not in shown  # a subprotocol may carry a token: never shown


def test_the_text_summary_shows_average_latency_in_the_tables_unit_reconnects_and_late() -> None:
    summary = _summary(_bumpy_run(), elapsed=3.5)
    text = format_summary(summary)
    avg = re.search(r"Average latency: +([0-9.]+) (\S+)", text)
    assert avg is not None
    p50 = next(line for line in text.splitlines() if line.strip().startswith("p50 "))
    assert avg.group(2) == p50.split()[2] == "ms"
    assert math.isclose(float(avg.group(1)), summary.figures.avg_latency * 1000, abs_tol=0.01)
    assert (
        "  Connections:             3 opened (1 reconnects), 2 failed to open, "
        "1 closed not by wsload"
    ) in text
    assert "late or duplicate replies: 1" in text


def _conversation_progress() -> RunAggregate:
    agg = RunAggregate(START, step_names=("login", "ack"), scenario_names=("default",))
    steps = {"ack": StepWindow({"expected": 5, "met": 3, "timed_out": 2}, [900] * 3, [900] * 3)}
    counters = {"sent": 6, "expected": 5, "received": 3, "timed_out": 2, "unsolicited": 9,
                "reconnects": 1, "clients_connected": 2}  # fmt: skip
    agg.add_samples("w1", _window(0, counters, [900] * 3, steps=steps))
    return agg


def test_the_progress_line_counts_expects_met_in_a_conversation() -> None:
    progress = _conversation_progress().progress(1.5)
    line = progress_line(progress, 10.0)
    assert "  sent 6  expects met 3 of 5  timed out 2  errors 0" in line
    assert "received" not in line
    assert line.endswith("reconnects 1")
    lines = live_lines(progress, 10.0, 2)
    assert "expects met 3/s" in lines[1]
    assert "expects met 3  timed out 2" in lines[2]
    assert not any("received" in x for x in lines)
    echo = _bumpy_run().progress(1.5)
    assert "  sent 35  received 32  timed out 4  errors 3" in progress_line(echo, 10.0)
