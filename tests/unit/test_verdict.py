"""The verdict of a load run and the figures it rests on, without sockets.

Figures come from a real :class:`RunAggregate` fed windows and results
through the wire format, so null handling, per-worker accounting and the
verdict are checked on the typed :class:`RunSummary` the coordinator really
builds (and on its JSON, which users read).
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

import pytest

from tests.accounting import assert_balanced
from wsload.common.fanout_wire import FanoutWindow, SubscriptionRecord
from wsload.common.protocol import Result, Samples, StepWindow, decode, encode
from wsload.common.spec import JobSpec
from wsload.coordinator import html_report
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.figures import PERCENTILE_KEYS, RunFigures, RunProgress
from wsload.coordinator.loadrun import parameters
from wsload.coordinator.outputs import csv_text, junit_text
from wsload.coordinator.report import format_summary, live_lines, progress_line
from wsload.coordinator.summary import RunEnding, RunSummary, ThresholdResult
from wsload.coordinator.verdict import (
    EXIT_COULD_NOT_RUN,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    doomed,
    evaluate_thresholds,
    judge,
    target_name,
)

START = 100.0


def window(
    seq: int,
    counters: dict[str, int],
    latency: list[int] | None = None,
    errors: dict[str, int] | None = None,
    connect: list[int] | None = None,
) -> Samples:
    lat = latency or []
    msg = Samples.window(
        "j", seq, (START + seq, START + seq + 1.0), counters, errors or {},
        (lat, lat, connect or []),
    )  # fmt: skip
    decoded = decode(encode(msg))  # as it arrives: through the wire format
    assert isinstance(decoded, Samples)
    return decoded


def result(counters: dict[str, int], **details: Any) -> Result:
    decoded = decode(encode(Result("j", True, counters, {}, details)))
    assert isinstance(decoded, Result)
    return decoded


def figures_of(agg: RunAggregate) -> RunFigures:
    return agg.figures(2.0)


def summary_of(
    agg: RunAggregate, thresholds: tuple[str, ...] = (), target: str = "h:80", **ending: Any
) -> RunSummary:
    """The run's summary as :func:`wsload.coordinator.loadrun.conclude` builds it."""
    figures = figures_of(agg)
    end = RunEnding(**ending)
    verdict = judge(thresholds, figures, end, target=target)
    return RunSummary(
        figures, end, parameters(JobSpec(ws_url=f"ws://{target}/"), 1, START), verdict
    )


def refused_run() -> RunAggregate:
    agg = RunAggregate(START)
    counters = {"connect_failures": 4, "cpu_ms": 3}
    agg.add_samples("w1", window(0, counters, errors={"refused": 4}))
    agg.add_result(
        "w1", result(counters, error_texts={"refused": "127.0.0.1:9: connection refused"})
    )
    return agg


def good_run() -> RunAggregate:
    agg = RunAggregate(START)
    counters = {"sent": 10, "expected": 10, "received": 9, "timed_out": 1, "connects": 2}
    agg.add_samples("w1", window(0, counters, [1_000] * 9, connect=[500, 600]))
    agg.add_result("w1", result(counters))
    return agg


def test_a_run_that_reached_nothing_fails_naming_the_host_and_the_error() -> None:
    summary = summary_of(refused_run(), target="127.0.0.1:9")
    verdict = summary.verdict
    assert verdict.code == EXIT_FAILED
    assert verdict.status == "failed"
    (reason,) = verdict.reasons
    assert reason == (
        "nothing tested: no connection to 127.0.0.1:9 was ever opened after 4 attempts "
        "(refused: 127.0.0.1:9: connection refused)"
    )
    assert summary.to_json()["nothing_tested"] == reason
    first = format_summary(summary).splitlines()[0]
    assert first == f"wsload: FAILED: {reason}"


def test_no_data_is_null_not_zero() -> None:
    summary = summary_of(refused_run())
    figures, doc = summary.figures, summary.to_json()
    assert figures.success_rate is None is doc["success_rate"]
    assert figures.avg_latency is None is doc["avg_latency"]
    assert figures.latency.p99 is None
    for section in ("latency_percentiles", "service_time_percentiles", "connect_time_percentiles"):
        assert set(doc[section].values()) == {None}
    text = format_summary(summary)
    assert "Success rate:            -" in text
    assert "Average latency:         -" in text
    assert "Total messages received: 0" in text  # the echo load's wording, as it was
    assert "  p99                   -               -               -" in text
    assert "0.00 ms" not in text


def test_messages_sent_and_no_reply_is_nothing_tested() -> None:
    agg = RunAggregate(START)
    counters = {"sent": 5, "expected": 5, "timed_out": 5, "connects": 1}
    agg.add_samples("w1", window(0, counters, errors={"timeout": 5}))
    agg.add_result("w1", result(counters))
    verdict = judge((), figures_of(agg), target="svc:9000")
    assert verdict.code == EXIT_FAILED
    assert verdict.reasons == (
        "nothing tested: 5 messages sent to svc:9000, no reply ever received (timeout (5 times))",
    )


def test_the_average_latency_is_in_ms_like_every_other_figure() -> None:
    text = format_summary(summary_of(good_run()))  # nine replies of 1 ms
    assert "  Average latency:         1.00 ms" in text.splitlines()
    assert summary_of(good_run()).to_json()["avg_latency"] == pytest.approx(0.001, rel=1e-3)


def test_connected_but_nothing_sent_is_nothing_tested() -> None:
    agg = RunAggregate(START)
    agg.add_samples("w1", window(0, {"connects": 1, "clients_connected": 1}))
    verdict = judge((), figures_of(agg), target="h:80")
    assert verdict.reasons == ("nothing tested: connected to h:80 but no message was sent",)


def test_a_good_run_passes_and_its_thresholds_are_judged() -> None:
    figures = figures_of(good_run())
    assert judge((), figures, target="h:80").code == EXIT_OK
    verdict = judge(("p99<10ms", "success_rate>=99.9"), figures, target="h:80")
    assert verdict.code == EXIT_FAILED
    assert verdict.reasons == ("threshold success_rate>=99.9 failed (measured 90.000%)",)
    assert [t.passed for t in verdict.thresholds] == [True, False]


@pytest.mark.parametrize(
    "expr", ["p99<1s", "avg<1s", "service_max<1s", "success_rate>=0", "error_rate<=100"]
)
def test_a_threshold_without_data_fails(expr: str) -> None:
    (t,) = evaluate_thresholds([expr], figures_of(refused_run()))
    assert t == ThresholdResult(expr, None, "no data", False)


def test_counts_are_never_no_data() -> None:
    results = evaluate_thresholds(["timeouts==0", "connect_failures>=4"], figures_of(refused_run()))
    assert [t.passed for t in results] == [True, True]


def test_exit_codes_in_order_of_precedence() -> None:
    good = figures_of(good_run())
    lost = RunEnding(lost_workers=("w2",))
    assert judge((), good, lost, target="h").code == EXIT_FAILED
    assert judge((), good, lost, target="h").status == "degraded"
    assert judge((), good, RunEnding(aborted="x"), target="h").reasons == ("aborted: x",)
    assert judge((), good, RunEnding(refused=True), target="h").code == EXIT_COULD_NOT_RUN
    empty = figures_of(refused_run())
    stopped = RunEnding(interrupted=True, interrupted_by="SIGINT")
    assert judge(("p99<1ms",), empty, stopped, target="h").code == EXIT_INTERRUPTED
    terminated = RunEnding(interrupted=True, interrupted_by="SIGTERM")
    assert judge((), empty, terminated, target="h").code == 143


def test_abort_on_fail_only_for_counts_capped_from_above() -> None:
    def so_far(refused: int) -> RunProgress:
        agg = RunAggregate(START)
        counters = {"sent": 2, "expected": 2, "timed_out": 2, "connects": 1}
        agg.add_samples("w1", window(0, counters, errors={"refused": refused} if refused else {}))
        return agg.progress(1.0)

    assert doomed(("timeouts==0",), so_far(0)) == (
        "threshold timeouts==0 failed at 1.0 s (measured 2 then)"
    )
    assert doomed(("errors<3",), so_far(2)) == ""
    assert doomed(("errors<3",), so_far(3)).startswith("threshold errors<3")
    assert doomed(("p99<1ms", "timeouts>=5"), so_far(0)) == ""


def test_an_abort_by_a_threshold_is_said_once() -> None:
    figures = figures_of(good_run())  # one message timed out
    reason = doomed(("timeouts==0",), good_run().progress(1.0))
    verdict = judge(("timeouts==0",), figures, RunEnding(aborted=reason), target="h")
    assert verdict.reasons == (f"aborted: {reason}",)
    other = RunEnding(aborted="worker w2 lost")  # not a threshold's abort: both are said
    assert len(judge(("timeouts==0",), figures, other, target="h").reasons) == 2


def test_the_abort_line_says_when_and_what_then_the_table_the_final_value() -> None:
    agg = RunAggregate(START)
    first = {"sent": 10, "expected": 10, "timed_out": 10, "connects": 1}
    agg.add_samples("w1", window(0, first))
    reason = doomed(("timeouts==0",), agg.progress(3.2))
    assert reason == "threshold timeouts==0 failed at 3.2 s (measured 10 then)"
    # The run drains after the abort: 10 more time out before the final result.
    agg.add_samples("w1", window(1, {"sent": 10, "expected": 10, "received": 0,
                                     "timed_out": 10}))  # fmt: skip
    agg.add_samples("w1", window(2, {"sent": 5, "expected": 5, "received": 5}, [1_000] * 5))
    summary = summary_of(agg, ("timeouts==0",), aborted=reason)
    assert summary.verdict.reasons == (f"aborted: {reason}",)
    (t,) = summary.verdict.thresholds
    assert (t.shown, t.passed) == ("20", False)
    text = format_summary(summary)
    assert text.splitlines()[0] == (
        "wsload: FAILED: aborted: threshold timeouts==0 failed at 3.2 s (measured 10 then)"
    )
    assert any(line.split() == ["timeouts==0", "20", "FAIL"] for line in text.splitlines())


def test_every_worker_entry_has_every_counter_and_a_status() -> None:
    summary = summary_of(refused_run())
    (worker,) = summary.figures.workers
    assert worker.status == "ok"
    (entry,) = summary.to_json()["workers"].values()
    assert entry["sent"] == entry["lost"] == entry["unsolicited"] == 0
    assert entry["status"] == "ok"
    assert_balanced(summary.to_json())


def test_a_lost_workers_messages_in_flight_count_as_lost() -> None:
    agg = good_run()
    # w2 sent 8, 3 answered and 1 lost with its connection; then it went silent.
    agg.add_samples(
        "w2",
        window(0, {"sent": 8, "expected": 8, "received": 3, "lost": 1, "connects": 1}, [900] * 3),
    )
    agg.mark_lost("w2")
    summary = summary_of(agg, lost_workers=("w2",))
    doc = summary.to_json()
    w2 = doc["workers"]["w2"]
    assert (w2["status"], w2["lost"], w2["in_flight_at_loss"]) == ("lost", 5, 4)
    assert doc["lost"] == summary.figures.counters.lost == 5
    assert_balanced(doc)
    assert (summary.verdict.code, summary.verdict.status) == (EXIT_FAILED, "degraded")


def test_error_texts_from_workers_are_bounded_and_typed() -> None:
    agg = RunAggregate(START)
    hostile: dict[str, Any] = {f"k{i}": "x" * 10_000 for i in range(500)}
    hostile["bad"] = 5
    agg.add_result("w1", result({}, error_texts=hostile))
    agg.add_result("w2", result({}, error_texts=["not", "a", "map"]))
    texts = agg.error_texts()
    assert 0 < len(texts) <= 64
    assert all(isinstance(v, str) and len(v) <= 300 for v in texts.values())
    assert "bad" not in texts


def test_generator_bound_is_said_when_sends_fall_behind() -> None:
    agg = RunAggregate(START)
    counters = {
        "sent": 1000,
        "expected": 1000,
        "received": 1000,
        "connects": 1,
        "behind_schedule": 50,
    }
    agg.add_samples("w1", window(0, counters, [1_000] * 1000))
    summary = summary_of(agg)
    assert summary.to_json()["generator_bound"] == {
        "reason": "50 of 1000 messages (5.0 %) went out behind schedule"
    }
    assert "GENERATOR-BOUND" in format_summary(summary)
    assert summary_of(good_run()).to_json()["generator_bound"] is None


def test_generator_bound_by_a_workers_cpu() -> None:
    agg = RunAggregate(START)
    for seq in range(3):  # three 1 s windows, 0.95 s of CPU each
        agg.add_samples(
            "w1", window(seq, {"sent": 1, "expected": 1, "received": 1, "cpu_ms": 950}, [10])
        )
    assert agg.figures(3.0).generator_bound == "worker w1 used 95% of a core"


def test_progress_shows_the_clients_actually_connected() -> None:
    agg = RunAggregate(START)
    agg.add_samples("w1", window(0, {"connects": 10, "clients_connected": 10}))
    agg.add_samples("w2", window(0, {"connects": 10, "clients_connected": 10}))
    assert "clients 20  " in progress_line(agg.progress(1.0), 5.0)
    agg.mark_lost("w2")
    assert "clients 10 (+10 on lost workers)" in progress_line(agg.progress(2.0), 5.0)
    lines = live_lines(agg.progress(2.0), 5.0, 20)
    assert "clients 10 (+10 on lost workers) / 20" in lines[0]
    assert lines[4] == "  workers       1 up, 1 LOST"


def test_the_live_panel_shows_the_last_full_second_and_the_whole_run() -> None:
    agg = RunAggregate(START)
    agg.add_samples(
        "w1", window(0, {"sent": 4, "expected": 4, "received": 4, "connects": 1}, [2_000] * 4)
    )
    second = {"sent": 3, "expected": 3, "received": 2, "timed_out": 1}
    agg.add_samples("w1", window(1, second, [1_000] * 2, errors={"timeout": 1}))
    lines = live_lines(agg.progress(2.0), 5.0, 1)
    assert lines[1] == (
        "  last second   sent 3/s  received 2/s   latency p50 1.00 ms  p95 1.00 ms  p99 1.00 ms"
    )
    assert lines[2].startswith("  whole run     sent 7  received 6  timed out 1   latency p50 ")
    assert lines[3] == "  errors        timeout 1"
    line = progress_line(agg.progress(2.0), 5.0)
    assert line.endswith("timed out 1  errors 1  p99 1.00 ms")
    empty = RunAggregate(START).progress(0.5)
    assert live_lines(empty, 5.0, 1)[1].endswith("latency -")
    assert "p99" not in progress_line(empty, 5.0)


def test_csv_shows_a_second_without_samples_as_dash() -> None:
    agg = RunAggregate(START)
    agg.add_samples("w1", window(0, {"sent": 1, "expected": 1, "received": 1}, [2_000]))
    agg.add_samples("w1", window(1, {"sent": 1, "expected": 1, "timed_out": 1}))
    rows = [row.split(",")[5:8] for row in csv_text(agg.time_series()).splitlines()]
    assert rows[0] == ["p50_ms", "p95_ms", "p99_ms"]
    assert rows[1] == ["2.000", "2.000", "2.000"]
    assert rows[2] == ["-", "-", "-"]


def test_target_name_never_shows_credentials() -> None:
    assert target_name("ws://user:secret@svc:9000/ws") == "svc:9000"
    assert target_name("wss://svc/ws") == "svc:443"
    assert target_name("ws://[::1]/ws") == "[::1]:80"


def test_parameters_hide_secrets() -> None:
    spec = JobSpec(
        ws_url="ws://user:secret@svc:9000/ws",
        headers=(("Authorization", "Bearer t0ken"), ("cookie", "s=1"), ("X-Trace", "abc")),
        rate=50.0,
    )
    params = parameters(spec, 2, 0.0).to_json()
    for secret in ("secret", "t0ken", "s=1"):
        assert secret not in str(params)
    assert params["target"] == "ws://***@svc:9000/ws"
    assert params["headers"] == [["Authorization", "***"], ["cookie", "***"], ["X-Trace", "abc"]]
    assert (params["clients"], params["rate"], params["interval"], params["workers"]) == (
        5, 50.0, None, 2,
    )  # fmt: skip
    assert params["started_at"] == "1970-01-01T00:00:00Z"
    assert params["wsload_version"]


def test_junit_has_a_failed_case_when_nothing_was_tested() -> None:
    summary = summary_of(refused_run(), target="127.0.0.1:9")
    verdict = summary.verdict
    root = ET.fromstring(junit_text({"load": summary}))
    (case,) = root.iter("testcase")
    assert case.get("name") == "tested something"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == verdict.reasons[0]


# -- a conversation: per-step truth in the verdict and every output -----------------------------


def conv_window(seq: int, steps: dict[str, StepWindow], connects: int = 0) -> Samples:
    """A conversation's window; run-level counters derived from its steps as the worker does."""
    counters = {"connects": connects}
    for k, run_k in (
        ("expected", "expected"),
        ("met", "received"),
        ("timed_out", "timed_out"),
        ("failed", "failed"),
        ("lost", "lost"),
        ("unanswered", "unanswered"),
    ):
        counters[run_k] = sum(s.counters.get(k, 0) for s in steps.values())
    counters["sent"] = counters["expected"]
    msg = Samples.window("j", seq, (START + seq, START + seq + 1.0), counters, {}, ([], [], []),
                         steps, {"chat": {"unsolicited": 7, "iterations": 3}})  # fmt: skip
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    return decoded


def conversation(ack: StepWindow) -> RunAggregate:
    agg = RunAggregate(START, step_names=("login ok", "ack"), scenario_names=("chat",))
    login = StepWindow({"expected": 2, "met": 2}, [3_000, 5_000], [1_000, 1_000])
    agg.add_samples("w1", conv_window(0, {"login ok": login, "ack": ack}, connects=2))
    return agg


def test_a_conversation_whose_expects_never_met_tested_nothing_naming_the_step() -> None:
    agg = RunAggregate(START, step_names=("login ok", "ack"))
    login = StepWindow({"expected": 4, "timed_out": 3, "failed": 1})
    agg.add_samples("w1", conv_window(0, {"login ok": login}, connects=4))
    verdict = summary_of(agg).verdict
    assert verdict.code == EXIT_FAILED
    assert verdict.nothing_tested == (
        "nothing tested: 4 expects began against h:80, none was met "
        "(step 'login ok' never met: 3 timed out, 1 failed)"
    )


def test_a_conversation_that_sent_nothing_and_expected_nothing_tested_nothing() -> None:
    agg = RunAggregate(START, step_names=("ack",))
    agg.add_samples("w1", conv_window(0, {}, connects=1))
    assert summary_of(agg).verdict.nothing_tested == (
        "nothing tested: connected to h:80 but no message was sent"
    )


def test_a_conversation_that_met_some_expects_tested_something() -> None:
    ack = StepWindow({"expected": 3, "met": 1, "timed_out": 2}, [40_000], [500])
    summary = summary_of(conversation(ack), ("step.ack.timed_out==0", "step.login ok.p99<1s"))
    verdict = summary.verdict
    assert verdict.nothing_tested is None
    assert [t.passed for t in verdict.thresholds] == [False, True]
    assert verdict.reasons == ("threshold step.ack.timed_out==0 failed (measured 2)",)


def test_abort_on_fail_per_step_counts() -> None:
    ack = StepWindow({"expected": 3, "met": 1, "timed_out": 2}, [40_000], [500])
    progress = conversation(ack).progress(1.0)
    assert doomed(("step.ack.timed_out==0",), progress) == (
        "threshold step.ack.timed_out==0 failed at 1.0 s (measured 2 then)"
    )
    assert doomed(("step.login ok.timeouts==0", "step.ack.p99<1ms"), progress) == ""
    assert doomed(("step.ack.failed<1", "step.gone.met==0"), progress) == ""


def test_every_output_shows_the_steps() -> None:
    ack = StepWindow({"expected": 3, "met": 1, "timed_out": 2}, [40_000], [500])
    summary = summary_of(conversation(ack), ("step.login ok.p99<1ms",))
    doc = summary.to_json()
    assert list(doc["steps"]) == ["login ok", "ack"]
    assert doc["steps"]["ack"] == {
        "expected": 3, "met": 1, "timed_out": 2, "failed": 0, "lost": 0, "unanswered": 0,
        "success_rate": pytest.approx(100 / 3),
        "latency_percentiles": {k: pytest.approx(0.04, rel=1e-3) for k in PERCENTILE_KEYS},
        "service_time_percentiles": {k: pytest.approx(0.0005, rel=1e-3) for k in PERCENTILE_KEYS},
    }  # fmt: skip
    assert doc["scenarios"] == {"chat": {"unsolicited": 7, "iterations": 3, "clients": None}}
    assert doc["workers"]["w1"]["steps"]["ack"]["timed_out"] == 2
    assert doc["time_series"][0]["steps"]["ack"] == {"expected": 3, "met": 1, "timed_out": 2}

    text = format_summary(summary)
    head = next(line for line in text.splitlines() if line.strip().startswith("step "))
    assert head.split()[:3] == ["step", "expected", "met"]
    ack_line = next(line for line in text.splitlines() if line.strip().startswith("ack "))
    assert ack_line.split() == ["ack", "3", "1", "2", "0", "0", "0", "40.00", "ms", "40.00", "ms"]
    assert "scenario chat: 3 iterations, 7 unsolicited" in text

    header, row = csv_text(summary.figures.time_series).splitlines()
    columns = header.split(",")
    assert columns[-8:] == [
        "step.login ok.expected", "step.login ok.met", "step.login ok.timed_out",
        "step.login ok.failed", "step.ack.expected", "step.ack.met", "step.ack.timed_out",
        "step.ack.failed",
    ]  # fmt: skip
    assert row.split(",")[-8:] == ["2", "2", "0", "0", "3", "1", "2", "0"]

    root = ET.fromstring(junit_text({"load": summary}))
    cases = {
        c.get("name"): c for c in root.iter("testcase") if c.get("classname") == "wsload.load.steps"
    }
    assert list(cases) == ["login ok", "ack"]
    ack_failure = cases["ack"].find("failure")
    assert ack_failure is not None
    assert ack_failure.get("message") == "2 timed out of 3 expected"
    login_failure = cases["login ok"].find("failure")  # no timeouts, but its threshold failed
    assert login_failure is not None
    assert login_failure.get("message") == (
        "threshold step.login ok.p99<1ms failed (measured 5.000 ms)"
    )

    page = html_report.page_document(summary)  # what the report page draws
    ack = next(s for s in page["steps"] if s["name"] == "ack")
    assert (ack["expected"], ack["met"], ack["timed_out"]) == (3, 1, 2)
    assert ack["distribution"]
    assert page["series"]["steps_met"]
    assert [s["name"] for s in page["scenarios"]]
    assert "Latency distribution per step" in html_report.render(summary)


def test_an_echo_run_has_no_step_sections() -> None:
    summary = summary_of(good_run())
    assert summary.to_json()["steps"] == {}
    assert "step " not in format_summary(summary)
    assert "step." not in csv_text(summary.figures.time_series)
    assert all(c.get("classname") != "wsload.load.steps"
               for c in ET.fromstring(junit_text({"load": summary})).iter("testcase"))  # fmt: skip


def test_a_step_never_met_fails_the_run_though_another_step_was_met() -> None:
    ack = StepWindow({"expected": 6, "timed_out": 6})
    summary = summary_of(conversation(ack))
    verdict = summary.verdict
    assert (verdict.code, verdict.status) == (EXIT_FAILED, "failed")
    assert verdict.reasons == ("step 'ack' never met: 6 timed out",)
    assert verdict.nothing_tested is None  # the run tested login; the step tested nothing
    doc = summary.to_json()
    assert doc["verdict"]["reasons"] == ["step 'ack' never met: 6 timed out"]
    assert doc["passed"] is False
    assert format_summary(summary).splitlines()[0] == (
        "wsload: FAILED: step 'ack' never met: 6 timed out"
    )
    root = ET.fromstring(junit_text({"load": summary}))
    (suite,) = root.iter("testsuite")
    assert suite.get("failures") == "1"
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["ack"]
    failure = failed[0].find("failure")
    assert failure is not None
    assert failure.get("message") == "step 'ack' never met: 6 timed out; 6 timed out of 6 expected"


def test_a_step_never_met_at_stop_names_how_it_ended_and_junit_agrees() -> None:
    ack = StepWindow({"expected": 2, "unanswered": 1, "lost": 1})
    summary = summary_of(conversation(ack))
    assert summary.verdict.reasons == ("step 'ack' never met: 1 lost, 1 unanswered",)
    root = ET.fromstring(junit_text({"load": summary}))
    assert next(root.iter("testsuite")).get("failures") == "1"  # no timeout, still failed


def test_every_step_never_met_is_named_once() -> None:
    agg = RunAggregate(START, step_names=("login ok", "ack", "bye"))
    login = StepWindow({"expected": 4, "timed_out": 3, "failed": 1})
    bye = StepWindow({"expected": 1, "failed": 1})
    agg.add_samples("w1", conv_window(0, {"login ok": login, "bye": bye}, connects=4))
    assert summary_of(agg).verdict.reasons == (
        "nothing tested: 5 expects began against h:80, none was met "
        "(step 'login ok' never met: 3 timed out, 1 failed)",
        "step 'bye' never met: 1 failed",
    )


def test_a_step_never_begun_is_not_judged_but_said() -> None:
    agg = RunAggregate(START, step_names=("login ok", "ack"), scenario_names=("chat",))
    login = StepWindow({"expected": 2, "met": 2}, [3_000, 5_000], [1_000, 1_000])
    agg.add_samples("w1", conv_window(0, {"login ok": login}, connects=2))
    summary = summary_of(agg)
    assert summary.verdict.code == EXIT_OK
    assert "  step 'ack' never began: no client reached it (not judged)" in (
        format_summary(summary).splitlines()
    )
    root = ET.fromstring(junit_text({"load": summary}))
    assert next(root.iter("testsuite")).get("skipped") == "1"
    (ack,) = [c for c in root.iter("testcase") if c.get("name") == "ack"]
    skipped = ack.find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "never began: no client reached it"
    # A threshold on it demands it: no data fails.
    assert summary_of(agg, ("step.ack.p99<1s",)).verdict.code == EXIT_FAILED


def test_a_conversation_without_expects_tested_nothing() -> None:
    agg = RunAggregate(START, scenario_names=("default",))
    counters = {"sent": 30, "unsolicited": 30, "connects": 3}
    msg = Samples.window("j", 0, (START, START + 1.0), counters, {}, ([], [], []), {},
                         {"default": {"unsolicited": 30, "iterations": 30}})  # fmt: skip
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    agg.add_samples("w1", decoded)
    summary = summary_of(agg)
    assert summary.verdict.code == EXIT_FAILED
    assert summary.verdict.nothing_tested == (
        "nothing tested: 30 messages sent, but the scenario has no expect step, "
        "so no answer was checked"
    )


def test_a_conversation_whose_expect_step_never_began_tested_nothing() -> None:
    agg = RunAggregate(START, step_names=("ack",), scenario_names=("default",))
    agg.add_samples("w1", conv_window(0, {}, connects=1))
    agg.add_samples("w1", window(1, {"sent": 4}))
    assert summary_of(agg).verdict.nothing_tested == (
        "nothing tested: 4 messages sent, but no expect step began, so no answer was checked"
    )


def test_a_conversations_head_says_expects_met_and_messages_received() -> None:
    # 19 login_ok replies came, but each lacked the captured field: the step failed.
    agg = RunAggregate(START, step_names=("login",), scenario_names=("default",))
    login = StepWindow({"expected": 19, "failed": 19})
    agg.add_samples("w1", conv_window(0, {"login": login}, connects=19))
    text = format_summary(summary_of(agg)).splitlines()
    assert "  Messages sent:           19" in text
    assert (
        "  Messages received:       19 (0 met an expect, 19 failed one, 0 unsolicited, 0 late)"
        in text
    )
    assert "  Expects begun:           19" in text
    assert "  Expects met:             0" in text
    assert not any("Total messages received" in line for line in text)
    assert any(line.startswith("  Throughput:              0.0 expects met/s") for line in text)


# -- fan-out: deliveries are what such a run tests ------------------------------------------

T0 = 1_700_000_000_000_000  # epoch µs


def fanout_run(delivered: bool, missing: int = 0) -> RunAggregate:
    """A publisher sent 10 publications (no expect step); one subscriber got them, or none."""
    agg = RunAggregate(START)
    pubs = FanoutWindow(pubs={"news": [(s, T0 + s * 1000) for s in range(10)]})
    got = [(0, 9 - missing)] if delivered else []
    subs = FanoutWindow(
        subs=[SubscriptionRecord.of(3, "news", T0 - 1, T0 + 10**7, got)],
        latency={"news": [2_000] * (10 - missing)} if delivered else {},
        counts={"news": {"deliveries": 10 - missing}} if delivered else {},
    )
    counters = {"sent": 10, "connects": 2}
    for seq, fanout in enumerate((pubs, subs)):
        msg = Samples.window(
            "j", seq, (START + seq, START + seq + 1.0), counters if not seq else {}, {},
            ([], [], []), fanout=fanout,
        )  # fmt: skip
        decoded = decode(encode(msg))
        assert isinstance(decoded, Samples)
        agg.add_samples("w1", decoded)
    agg.add_result("w1", result(counters))
    return agg


def test_subscribers_that_got_no_delivery_tested_nothing() -> None:
    verdict = judge((), figures_of(fanout_run(delivered=False)), target="h:80")
    assert verdict.code == EXIT_FAILED
    assert verdict.reasons == (
        "nothing tested: 10 publications made, but no subscriber received a delivery"
        " (1 subscriptions)",
    )


def test_deliveries_are_what_a_fanout_run_tests() -> None:
    summary = summary_of(fanout_run(delivered=True), ("fanout.p99<10ms", "fanout.missing==0"))
    assert summary.verdict.code == EXIT_OK, summary.verdict.reasons
    doc = summary.to_json()["fanout"]
    assert list(doc) == [
        "total", "topics", "clock", "missing_sample", "dropped_subscriptions",
        "dropped_publications",
    ]  # fmt: skip
    assert list(doc["total"])[:9] == [
        "published", "expected", "delivered", "missing", "duplicates", "out_of_order", "early",
        "extra", "delivery_rate",
    ]  # fmt: skip
    assert doc["total"]["delivered"] == doc["topics"]["news"]["delivered"] == 10
    assert doc["clock"]["source"] == "wsload"
    text = format_summary(summary)
    assert "  Fan-out: 10 published, 1 subscriptions, 10 deliveries owed, 10 delivered" in text
    assert "latency from the publishing worker's clock (one host: exact)" in text
    fanout_page = html_report.page_document(summary)["fanout"]
    assert fanout_page["total"]["delivered"] == 10
    assert fanout_page["clock"] == "latency from the publishing worker's clock (one host: exact)"
    case = ET.fromstring(junit_text({"load": summary})).find(".//testcase[@name='fanout']")
    assert case is not None
    assert case.find("failure") is None


def test_missing_deliveries_fail_the_fanout_case_and_are_listed() -> None:
    summary = summary_of(fanout_run(delivered=True, missing=2), ("fanout.missing==0",))
    assert summary.verdict.code == EXIT_FAILED
    assert summary.verdict.reasons == ("threshold fanout.missing==0 failed (measured 2)",)
    text = format_summary(summary)
    assert "missing (first 2): news#8 to client 3, news#9 to client 3" in text
    case = ET.fromstring(junit_text({"load": summary})).find(".//testcase[@name='fanout']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("2 of 10 deliveries missing; threshold")


def test_a_run_without_deliveries_has_no_fanout_anywhere() -> None:
    summary = summary_of(good_run())
    assert summary.to_json()["fanout"] == {}
    assert "Fan-out" not in format_summary(summary)
    assert ET.fromstring(junit_text({"load": summary})).find(".//testcase[@name='fanout']") is None
