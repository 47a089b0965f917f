"""Threshold grammar and evaluation; CSV and JUnit writers. No sockets."""

from __future__ import annotations

from dataclasses import replace
from xml.etree import ElementTree as ET

import pytest

from wsload.common.thresholds import (
    METRICS,
    STEP_METRICS,
    ThresholdError,
    fanout_threshold_problems,
    parse_threshold,
    step_threshold_problems,
    threshold_step_names,
)
from wsload.coordinator.fanout_figures import DeliveryFigures, FanoutFigures
from wsload.coordinator.figures import (
    Counters,
    Percentiles,
    RunFigures,
    SecondSummary,
    StepCounters,
    StepFigures,
    frozen_map,
)
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
    fanout=FanoutFigures(
        DeliveryFigures(
            "total",
            Percentiles(0.01, 0.02, 0.03, 0.15, 0.19, 0.25),
            published=100,
            expected=10_000,
            delivered=9_998,
            missing=2,
            duplicates=1,
            avg_latency=0.012,
        )
    ),
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
        ("fanout.p99<200ms", True),
        ("fanout.max<200ms", False),
        ("fanout.avg<=12ms", True),
        ("fanout.missing==0", False),
        ("fanout.duplicates<=1", True),
        ("fanout.out_of_order==0", True),
        ("fanout.delivery_rate>=99.9", True),
        ("fanout.delivery_rate>=99.99%", False),
    ],
)
def test_evaluation(expr: str, passed: bool) -> None:
    (result,) = evaluate_thresholds([expr], FIGURES)
    assert result.passed is passed, result


def test_every_metric_has_a_figure() -> None:
    for metric in METRICS:
        assert FIGURES.metric(metric) is not None, metric


def test_fanout_metrics_without_deliveries_have_no_data() -> None:
    (result,) = evaluate_thresholds(["fanout.missing==0"], replace(FIGURES, fanout=None))
    assert result.shown == "no data"
    assert not result.passed


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("fanout.p99<200", "needs a time unit"),
        ("fanout.missing==0ms", "plain number"),
        ("fanout.delivery_rate>=101", "cannot exceed 100"),
        ("fanout.lost==0", "unknown metric"),
    ],
)
def test_bad_fanout_thresholds(expr: str, needle: str) -> None:
    with pytest.raises(ThresholdError, match=needle):
        parse_threshold(expr)


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
        # per step
        ("step.ack.p98<5ms", "unknown step metric 'p98'"),
        ("step.ack.connect_p99<5ms", "unknown step metric 'connect_p99'"),
        ("step.ack.p99<50", "p99 needs a time unit"),
        ("step.ack.success_rate>=101", "cannot exceed 100"),
        ("step.ack.met>=1ms", "met takes a plain number"),
        ("step..p99<1ms", "the step name is empty"),
        ('step."ack.p99<1ms', "quote is never closed"),
        ('step."ack"p99<1ms', "expected step.NAME.METRIC OP VALUE"),
        ("step.p99<1ms", "expected step.NAME.METRIC OP VALUE"),
        ("step.ack", "expected step.NAME.METRIC OP VALUE"),
        ("step.ack.p99<fast", "expected step.NAME.METRIC OP VALUE"),
        ("step." + "x" * 201 + ".p99<1ms", "at most 200 characters"),
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
    lines = [",".join(line.split(",")[:8]) for line in csv_text(series).splitlines()]
    assert lines[0] == ",".join(CSV_COLUMNS)  # the first columns (test_outputs.py: the rest)
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


# -- per step: step.NAME.METRIC -----------------------------------------------------------------

ACK = StepFigures(
    "ack",
    StepCounters(expected=1000, met=990, timed_out=6, failed=4),
    Percentiles(0.003, 0.01, 0.02, 0.049, 0.08, 0.1),
    Percentiles(0.001, 0.002, 0.003, 0.004, 0.005, 0.006),
    avg_latency=0.004,
)
STEP3 = StepFigures("step 3", StepCounters(), Percentiles(), Percentiles())
CONVERSATION = replace(FIGURES, steps=(ACK, STEP3))


@pytest.mark.parametrize(
    ("expr", "step", "metric", "limit"),
    [
        ("step.ack.p99<50ms", "ack", "p99", 0.05),
        ("step.ack.p99.9 <= 5ms", "ack", "p99.9", 0.005),
        ("  step.step 3.service_max<1s ", "step 3", "service_max", 1.0),
        ('step."a<b=c".success_rate>=99.9', "a<b=c", "success_rate", 99.9),
        ("step.v1.login.timeouts==0", "v1.login", "timeouts", 0.0),
        ("step.ack.p99.p99<1ms", "ack.p99", "p99", 0.001),  # the metric is the last one
        ("step.ack.met>=1", "ack", "met", 1.0),
    ],
)
def test_step_thresholds_parse(expr: str, step: str, metric: str, limit: float) -> None:
    t = parse_threshold(expr)
    assert (t.step, t.metric, t.limit) == (step, metric, pytest.approx(limit))
    assert t.expr == expr.strip()


@pytest.mark.parametrize(
    ("expr", "passed", "shown"),
    [
        ("step.ack.p99<50ms", True, "49.000 ms"),
        ("step.ack.service_p99<=3ms", False, "4.000 ms"),
        ("step.ack.avg<5ms", True, "4.000 ms"),
        ("step.ack.success_rate>=99.9", False, "99.000%"),
        ("step.ack.error_rate<=1%", True, "1.000%"),
        ("step.ack.timed_out==0", False, "6"),
        ("step.ack.timeouts<=6", True, "6"),
        ("step.ack.failed<5", True, "4"),
        ("step.ack.expected>=1000", True, "1000"),
        ("step.step 3.p99<1s", False, "no data"),  # never began: no data fails
        ("step.step 3.success_rate>=0", False, "no data"),
        ("step.step 3.met==0", True, "0"),  # counts are never no data
        ("step.gone.p99<1s", False, "no data"),
    ],
)
def test_step_thresholds_evaluate(expr: str, passed: bool, shown: str) -> None:
    (result,) = evaluate_thresholds([expr], CONVERSATION)
    assert (result.passed, result.shown) == (passed, shown)


def test_every_step_metric_has_a_figure() -> None:
    for metric in STEP_METRICS:
        assert ACK.metric(metric) is not None, metric


def test_step_names_are_checked_against_the_jobs_steps() -> None:
    exprs = ["p99<1s", "step.ack.p99<50ms", "step.login ok.success_rate>=99", "step.akc.p99<1s",
             "step.nope.met>=1", "bad"]  # fmt: skip
    assert threshold_step_names(exprs) == {"ack", "login ok", "akc", "nope"}
    problems = step_threshold_problems(exprs, ["login ok", "ack"])
    assert problems == [
        "threshold 'step.akc.p99<1s': no step named 'akc' (did you mean 'ack'? "
        "steps: 'login ok', 'ack')",
        "threshold 'step.nope.met>=1': no step named 'nope' (steps: 'login ok', 'ack')",
    ]
    assert step_threshold_problems(["step.ack.p99<1s"], []) == [
        "threshold 'step.ack.p99<1s': no step named 'ack' (this job has no expect steps)"
    ]
    assert step_threshold_problems(["p99<1s"], []) == []


def test_a_per_step_threshold_must_name_an_expect_step_of_the_job() -> None:
    """Checked with the job, before any process starts: a typo is bad input, not "no data"."""
    from wsload.common.errors import SpecError
    from wsload.common.spec import build_spec

    loop = ({"send": "hi {seq}"}, {"expect": "hi {seq}", "name": "echo"})
    assert build_spec(loop=loop, thresholds=("step.echo.p99<50ms",)).thresholds
    with pytest.raises(SpecError) as bad:
        build_spec(loop=loop, thresholds=("step.ecoh.p99<50ms",))
    assert bad.value.problems == [
        "threshold 'step.ecoh.p99<50ms': no step named 'ecoh' (did you mean 'echo'? steps: 'echo')"
    ]
    with pytest.raises(SpecError) as echo:
        build_spec(thresholds=("step.echo.p99<50ms",))
    assert "this job has no expect steps" in echo.value.problems[0]


@pytest.mark.parametrize(
    "expr",
    ["step.a<b.c.p99<50ms", 'step.a"b.p99<50ms', "step.a=b.p99 < 50ms", "step.x>y.met==0"],
)
def test_an_unquoted_name_holding_an_operator_gets_the_quoting_hint(expr: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse_threshold(expr)
    assert str(info.value).endswith(
        """(quote a step name that holds < > = or ": step."a<b".p99<50ms)"""
    )


@pytest.mark.parametrize("expr", ["step.ack.p99<50", "step.ack.p99<", "step.ack.nope<5"])
def test_other_malformed_step_thresholds_get_no_quoting_hint(expr: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse_threshold(expr)
    assert "quote a step name" not in str(info.value)
    assert parse_threshold('step."a<b".p99<50ms').step == "a<b"


def test_fanout_thresholds_need_deliveries() -> None:
    exprs = ["p99<50ms", "fanout.missing==0", "fanout.p99<200ms", "bad"]
    assert fanout_threshold_problems(exprs, has_deliveries=True) == []
    assert fanout_threshold_problems(exprs, has_deliveries=False) == [
        "threshold 'fanout.missing==0': this job has no [deliveries], so there is no fan-out"
        " to measure",
        "threshold 'fanout.p99<200ms': this job has no [deliveries], so there is no fan-out"
        " to measure",
    ]


def test_a_fanout_threshold_needs_deliveries_in_the_job() -> None:
    """Refused before the run (it could only fail with no data at the end)."""
    from wsload.common.errors import SpecError
    from wsload.common.spec import build_spec

    with pytest.raises(SpecError) as bad:
        build_spec(thresholds=("fanout.missing==0", "fanout.p99<200ms"))
    assert bad.value.problems == [
        f"threshold {t!r}: this job has no [deliveries], so there is no fan-out to measure"
        for t in ("fanout.missing==0", "fanout.p99<200ms")
    ]
