"""Report files: written atomically, every one attempted, failures one line each; the
JSON document's keys, pinned."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from wsload.common.histogram import HIGHEST
from wsload.common.protocol import SAMPLE_COUNTERS, Result, Samples, StepWindow, decode, encode
from wsload.common.spec import JobSpec, build_spec
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.errors import CoordinatorError
from wsload.coordinator.loadrun import conclude, parameters
from wsload.coordinator.outputs import (
    CSV_COLUMNS,
    CSV_COUNTERS,
    CSV_MORE_COLUMNS,
    Output,
    check_writable,
    csv_text,
    json_text,
    write_all,
)
from wsload.coordinator.session import RunOutcome
from wsload.coordinator.summary import RunSummary


def test_written_whole_with_the_umask_mode_and_no_temporary_left(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    old = os.umask(0o027)
    try:
        assert write_all([Output(str(target), lambda: "{}\n")]) == []
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_an_existing_file_is_replaced_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    target.write_text("old and longer than the new text\n")
    target.chmod(0o600)
    assert write_all([Output(str(target), lambda: "new\n")]) == []
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_every_output_is_attempted_when_one_fails(tmp_path: Path) -> None:
    def broken() -> str:
        raise ValueError("no chart today")

    outputs = [
        Output(str(tmp_path / "gone" / "a.json"), lambda: "a"),
        Output(str(tmp_path / "b.html"), broken),
        Output(str(tmp_path / "c.csv"), lambda: "c"),
    ]
    failures = write_all(outputs)
    assert failures == [
        f"cannot write {tmp_path / 'gone' / 'a.json'}: No such file or directory",
        f"cannot write {tmp_path / 'b.html'}: rendering failed: ValueError('no chart today')",
    ]
    assert (tmp_path / "c.csv").read_text() == "c"
    assert not (tmp_path / "b.html").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_device_is_written_in_place_and_a_full_one_is_one_line(tmp_path: Path) -> None:
    failures = write_all([Output("/dev/full", lambda: "x" * 100_000)])
    assert failures == ["cannot write /dev/full: No space left on device"]
    assert write_all([Output("/dev/null", lambda: "x")]) == []


def test_dash_is_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert write_all([Output("-", lambda: '{"a": 1}\n')]) == []
    assert capsys.readouterr().out == '{"a": 1}\n'


def test_only_one_output_may_go_to_standard_output() -> None:
    with pytest.raises(CoordinatorError, match="only one output can go to standard output"):
        check_writable("-", None, "-")
    check_writable("-", None)


# -- the JSON document: its keys are pinned (tests and users read them) -------------------------

TOP_KEYS = [
    "schema_version", "time_series", "total_sent", "total_received", "success_rate",
    "avg_latency", "latency_percentiles", "service_time_percentiles",
    "connect_time_percentiles", "expected", "timed_out", "failed", "lost", "unanswered",
    "late", "unsolicited", "behind_schedule", "write_pauses", "cpu_ms", "throughput",
    "send_rate", "elapsed", "errors", "error_texts", "counters", "balanced", "generator_bound",
    "workers", "ignored_windows", "steps", "scenarios", "fanout", "bad_input", "lost_workers",
    "aborted", "interrupted", "interrupted_by", "handovers", "clients_orphaned", "engine",
    "parameters", "thresholds", "nothing_tested", "verdict", "passed",
]  # fmt: skip
WORKER_KEYS = [
    *SAMPLE_COUNTERS, "errors", "status", "consistent", "balanced", "in_flight_at_loss", "steps",
]  # fmt: skip
PARAMETER_KEYS = [
    "target", "clients", "rate", "interval", "duration", "ramp_up", "engine", "match",
    "workers", "headers", "started_at", "wsload_version", "scenario", "feeder", "stages",
    "scenarios", "started_at_unix", "connect_timeout", "reply_timeout", "drain_timeout",
    "payload_size", "reconnect", "compression", "protocol", "thresholds",
]  # fmt: skip
PERCENTILES = ["p50", "p90", "p95", "p99", "p99.9", "max"]
START = 1_700_000_000.0  # a run's start, as an HDR log reader expects one


def _window(seq: int, counters: dict[str, int], latency: list[int]) -> Samples:
    msg = Samples.window(
        "j", seq, (START + seq, START + 1.0 + seq), counters, {"refused": 1}, (latency, latency, [])
    )
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    return decoded


def _summary() -> RunSummary:
    """A run with a lost worker, a handover, an abort, thresholds: every section filled."""
    agg = RunAggregate(START)
    w1 = {"sent": 4, "expected": 4, "received": 4, "connects": 2}
    agg.add_samples("w1", _window(0, w1, [900] * 4))
    agg.add_samples(
        "w2", _window(0, {"sent": 3, "expected": 3, "received": 1, "connects": 1}, [800])
    )
    agg.add_result("w1", Result("j", True, w1, {}, {}))
    agg.mark_lost("w2")
    outcome = RunOutcome(
        agg,
        2.0,
        lost_workers=["w2"],
        aborted="worker w2 lost",
        handovers=[{"from": "w2", "to": "w1", "clients": 1, "first_client": 2}],
        bad_input={"malformed": 1},
    )
    spec = JobSpec(ws_url="ws://127.0.0.1:9/ws", thresholds=("p99<1s", "timeouts==0"))
    return conclude(spec, outcome)


def test_the_json_document_keeps_every_key_in_order() -> None:
    summary = _summary()
    doc = json.loads(json_text(summary))
    assert list(doc) == TOP_KEYS
    for section in ("latency_percentiles", "service_time_percentiles", "connect_time_percentiles"):
        assert list(doc[section]) == PERCENTILES
    assert list(doc["counters"]) == list(SAMPLE_COUNTERS)
    assert list(doc["workers"]) == ["w1", "w2"]
    for entry in doc["workers"].values():
        assert list(entry) == WORKER_KEYS
    assert list(doc["parameters"]) == PARAMETER_KEYS
    assert list(doc["verdict"]) == ["code", "status", "reasons"]
    assert [list(t) for t in doc["thresholds"]] == [
        ["threshold", "measured", "shown", "passed"]
    ] * 2
    assert doc["handovers"] == [{"from": "w2", "to": "w1", "clients": 1, "first_client": 2}]
    (row,) = doc["time_series"]
    assert list(row) == [
        "second", "sent", "expected", "received", "connects", "errors", *PERCENTILES
    ]  # fmt: skip
    assert doc["verdict"]["status"] == "degraded"
    assert doc["passed"] is False
    assert doc["lost"] == 2  # w2's messages in flight at its loss
    assert doc["steps"] == {}  # an echo run has no steps
    assert doc["scenarios"] == {}
    assert doc["fanout"] == {}  # nor deliveries
    assert doc["bad_input"] == {"malformed": 1}
    params = doc["parameters"]  # an echo run from options: no scenario, feeder or stages
    assert (params["scenario"], params["feeder"], params["stages"]) == (None, None, None)
    assert params["scenarios"] == []


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_parameters_say_the_scenario_its_feeder_stages_and_scenarios() -> None:
    path = str(EXAMPLES / "chat.toml")
    params = parameters(build_spec(scenario=path), 2, 0.0, scenario=path).to_json()
    assert params["scenario"] == path
    feeder = str(EXAMPLES / "users.csv")  # as read: relative to the scenario file
    assert params["feeder"] == {"file": feeder, "mode": "unique", "rows": 2000}
    assert params["stages"] is None
    assert params["scenarios"] == [{"name": "default", "clients": 50}]
    assert "pw-" not in json.dumps(params)  # the feeder's rows are never shown

    staged = parameters(build_spec(scenario=EXAMPLES / "stages.toml"), 1, 0.0).to_json()
    raw = tomllib.loads((EXAMPLES / "stages.toml").read_text())["stages"]
    assert staged["stages"] == {
        "count": len(raw),
        "duration": sum(s["duration"] for s in raw),
        "peak_clients": max(s["clients"] for s in raw),
    }
    assert staged["scenario"] is None  # not given: the library caller did not say

    mixed = parameters(build_spec(scenario=EXAMPLES / "mix.toml"), 1, 0.0).to_json()
    assert [s["name"] for s in mixed["scenarios"]] == ["chatters", "lurkers"]
    assert sum(s["clients"] for s in mixed["scenarios"]) == mixed["clients"]


def test_the_summary_is_frozen_and_typed() -> None:
    summary = _summary()
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.figures.counters.sent = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        summary.figures.errors["x"] = 1  # type: ignore[index]
    assert summary.figures.latency.p99 == pytest.approx(0.0009)
    assert [w.status for w in summary.figures.workers] == ["ok", "lost"]
    assert summary.verdict.code == 1


def test_a_counter_outside_the_protocol_list_is_dropped() -> None:
    agg = RunAggregate(START)
    agg.add_samples("w1", _window(0, {"sent": 1, "received": 1, "invented": 10**9}, [5]))
    doc = agg.figures(1.0).to_json()
    assert "invented" not in doc["counters"]
    assert "invented" not in doc["workers"]["w1"]
    assert "invented" not in doc["time_series"][0]


def test_csv_and_hdr_log_render_from_the_summary(tmp_path: Path) -> None:
    summary = _summary()
    rows = csv_text(summary.figures.time_series).splitlines()
    assert rows[1].startswith("1,0,7,5,2,0.900,0.900,0.900,")  # both workers' first second
    path = tmp_path / "run.hlog"
    path.write_text(summary.figures.hdr_log)
    reader = HistogramLogReader(str(path), HdrHistogram(1, HIGHEST, 3))
    totals = []
    while (hist := reader.get_next_interval_histogram()) is not None:
        totals.append(hist.get_total_count())
    assert totals == [5]  # every latency sample of the run, in its second


def _step_window(seq: int, steps: dict[str, StepWindow]) -> Samples:
    met = sum(w.counters.get("met", 0) for w in steps.values())
    expected = sum(w.counters.get("expected", 0) for w in steps.values())
    counters = {"sent": expected, "expected": expected, "received": met, "connects": 1}
    counters["timed_out"] = expected - met
    msg = Samples.window("j", seq, (START + seq, START + 1.0 + seq), counters, {},
                         ([], [], []), steps, {})  # fmt: skip
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    return decoded


def test_csv_has_every_steps_columns_in_workload_order_whatever_happened() -> None:
    """CI parses the CSV: one scenario's columns are the same in every run."""
    names = ("login", "join", "ack")
    expected_header = ",".join(
        [*CSV_COLUMNS, *CSV_MORE_COLUMNS, *CSV_COUNTERS]
        + [f"step.{n}.{k}" for n in names for k in ("expected", "met", "timed_out", "failed")]
    )
    # Run 1: only ack reported (in the second second); run 2: nothing at all per step.
    one = RunAggregate(START, step_names=names)
    one.add_samples("w1", _step_window(0, {}))
    one.add_samples("w1", _step_window(1, {"ack": StepWindow({"expected": 2, "met": 2},
                                                             [900, 900], [900, 900])}))  # fmt: skip
    two = RunAggregate(START, step_names=names)
    headers = []
    for agg in (one, two):
        text = csv_text(agg.figures(2.0))
        headers.append(text.splitlines()[0])
    assert headers == [expected_header, expected_header]
    rows = csv_text(one.figures(2.0)).splitlines()[1:]
    assert rows[0].split(",")[5:8] == ["-", "-", "-"]
    assert rows[0].endswith("," + ",".join(["0"] * 12))
    assert rows[1].split(",")[-4:] == ["2", "2", "0", "0"]
    assert rows[1].split(",")[-12:-4] == ["0"] * 8
