"""Threshold grammar and evaluation; CSV and JUnit writers. No sockets."""

from __future__ import annotations

from dataclasses import replace
from xml.etree import ElementTree as ET

import pytest

from wsload.common.thresholds import METRICS, ThresholdError, parse_threshold
from wsload.coordinator.figures import Counters, Percentiles, RunFigures, SecondSummary, frozen_map
from wsload.coordinator.outputs import CSV_COLUMNS, csv_text, junit_text
from wsload.coordinator.verdict import evaluate_thresholds

FIGURES = RunFigures(
    time_series=(),
    counters=Counters(sent=1000, expected=1000, received=999, timed_out=1, connect_failures=3),
    latency=Percentiles(0.003, 0.01, 0.02, 0.049, 0.08, 0.1),
    service_time=Percentiles(0.002, 0.0, 0.0, 0.01, 0.0, 0.0),
    connect_time=Percentiles(0.001, 0.0, 0.0, 0.15, 0.0, 0.2),
    avg_latency=0.004,
    elapsed=999 / 1500,  # 1,500 replies per second
    errors=frozen_map({"refused": 2, "http_503": 1}),
    error_texts=frozen_map(),
    generator_bound=None,
    workers=(),
    ignored_windows=0,
)


@pytest.mark.parametrize(
    ("expr", "passed"),
    [
        ("p99<50ms", True),
        ("p99 < 49ms", False),
        ("p99<=49ms", True),
        ("p95<=20000us", True),
        ("max<0.1s", False),
        ("avg<5ms", True),
        ("service_p99<10ms", False),
        ("connect_p99<200ms", True),
        ("success_rate>=99.9", True),
        ("success_rate>99.9%", False),
        ("error_rate<0.1%", False),
        ("error_rate<=0.1", True),
        ("rps>=1000", True),
        ("timeouts==0", False),
        ("errors<5", True),
        ("connect_failures==3", True),
    ],
)
def test_evaluation(expr: str, passed: bool) -> None:
    (result,) = evaluate_thresholds([expr], FIGURES)
    assert result.passed is passed, result


def test_every_metric_has_a_figure() -> None:
    for metric in METRICS:
        assert FIGURES.metric(metric) is not None, metric


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("p99", "expected METRIC OP VALUE"),
        ("p99<fast", "expected METRIC OP VALUE"),
        ("p98<5ms", "unknown metric 'p98'"),
        ("p99<50", "p99 needs a time unit: us, ms or s"),
        ("p99<50%", "p99 needs a time unit"),
        ("success_rate>=99ms", "success_rate is a percentage"),
        ("success_rate>=101", "cannot exceed 100"),
        ("rps>=10ms", "rps takes a plain number"),
        ("p99=<5ms", "expected METRIC OP VALUE"),
    ],
)
def test_bad_expressions_are_named(expr: str, needle: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse_threshold(expr)
    assert needle in str(info.value)
    assert repr(expr) in str(info.value)


def test_empty_run_has_no_success_and_no_error_rate_either() -> None:
    empty = replace(FIGURES, counters=Counters())
    for expr in ("success_rate>=99", "error_rate<1"):
        (result,) = evaluate_thresholds([expr], empty)
        assert (result.passed, result.shown) == (False, "no data")


def test_csv_rows() -> None:
    counted = ("sent", "received", "clients_connected")
    series = [
        SecondSummary(0, Counters(sent=10, expected=10, received=9, clients_connected=5), counted,
                      frozen_map({"x": 1}), Percentiles(p50=0.001, p95=0.002, p99=0.003)),
        SecondSummary(1, Counters(sent=10, expected=10, received=10, clients_connected=-2), counted,
                      frozen_map(), Percentiles()),
    ]  # fmt: skip
    lines = csv_text(series).splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert lines[1] == "1,5,10,9,1,1.000,2.000,3.000"
    assert lines[2] == "2,3,10,10,0,-,-,-"  # a second with no samples: nothing measured


def test_junit_document() -> None:
    summary = {
        "thresholds": [
            t.to_json() for t in evaluate_thresholds(["p99<50ms", "timeouts==0"], FIGURES)
        ],
        "checks": [
            {"name": "echo", "status": "pass", "reason": "", "duration": 0.01},
            {"name": "ping", "status": "fail", "reason": "no pong", "duration": 5.0},
            {"name": "proto", "status": "skip", "reason": "not asked", "duration": 0.0},
        ],
    }
    root = ET.fromstring(junit_text({"load": summary}))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "2", "1")
    failures = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failures == ["timeouts==0", "ping"]
