"""The run's figures as metric families (sans-I/O), their Prometheus and OTLP forms, the dashboard.

Windows go through the wire format into a real :class:`RunAggregate`, as the
coordinator merges them; the families are compared with the aggregate's own
final figures (what ``--json`` writes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from wsload.common.histogram import LatencyHistogram
from wsload.common.protocol import Samples, StepWindow, decode, encode
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.metrics import (
    BUCKETS,
    METRICS,
    Family,
    HistogramFigure,
    MetricsSnapshot,
    exported_series,
    families,
    final_snapshot,
    live_snapshot,
)
from wsload.coordinator.metrics_http import SnapshotCollector
from wsload.coordinator.metrics_options import host_problem, otlp_endpoint

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana"


def window(
    seq: int,
    latency: list[int],
    errors: dict[str, int] | None = None,
    extra: dict[str, int] | None = None,
    steps: dict[str, StepWindow] | None = None,
) -> Samples:
    counters = {"sent": len(latency), "expected": len(latency), "received": len(latency)}
    counters.update(extra or {})
    msg = Samples.window(
        "j", seq, (100.0 + seq, 100.25 + seq), counters, errors or {},
        (latency, latency, []), steps,
    )  # fmt: skip
    decoded = decode(encode(msg))  # as it arrives: through the wire format
    assert isinstance(decoded, Samples)
    return decoded


def by_name(fams: tuple[Family, ...]) -> dict[str, Family]:
    return {f.spec.name: f for f in fams}


def value(fams: tuple[Family, ...], name: str, label: str | None = None) -> float:
    return dict(by_name(fams)[name].samples)[label]


def test_buckets_fit_websocket_latencies_and_count_as_prometheus_le_does() -> None:
    assert BUCKETS[0] == 0.0001
    assert BUCKETS[-1] == 30.0
    assert list(BUCKETS) == sorted(BUCKETS)
    hist = LatencyHistogram()
    for us in (50, 100, 101, 1_000, 2_000_000, 40_000_000):
        hist.record(us)
    h = HistogramFigure.of(hist)
    at = dict(zip(BUCKETS, h.cumulative, strict=True))
    assert at[0.0001] == 2  # 50 and 100 µs: le is "at most"
    assert at[0.00025] == 3
    assert at[0.001] == 4
    assert at[2.5] == 5
    assert at[30.0] == 5  # 40 s is above the highest bound: only in +Inf (the count)
    assert h.count == 6
    assert h.sum == pytest.approx((50 + 100 + 101 + 1_000 + 2_000_000 + 40_000_000) / 1e6)
    assert sum(h.per_bucket) == h.count
    assert len(h.per_bucket) == len(BUCKETS) + 1
    assert h.per_bucket[-1] == 1
    assert HistogramFigure.of(LatencyHistogram()) == HistogramFigure()


def test_live_then_final_families_agree_with_the_summary_and_only_grow() -> None:
    agg = RunAggregate(100.0)
    agg.add_samples("w1", window(0, [300, 1_500], {"timeout": 1}, {"timed_out": 1, "expected": 3}))
    agg.add_samples(
        "w2", window(0, [250_000], extra={"unsolicited": 4, "clients_connected": 5, "expected": 2})
    )
    live = families(live_snapshot(agg, 1.0))
    assert value(live, "wsload_messages_sent_total") == 3
    assert value(live, "wsload_messages_received_total") == 3
    assert value(live, "wsload_messages_timed_out_total") == 1
    assert value(live, "wsload_unsolicited_total") == 4
    assert value(live, "wsload_errors_total", "timeout") == 1
    assert value(live, "wsload_clients_connected") == 5
    assert value(live, "wsload_workers") == 2
    assert value(live, "wsload_run_final") == 0
    ((_, h),) = by_name(live)["wsload_latency_seconds"].histograms
    assert h.count == 3
    # The second window of w1 arrives, then w2 is lost before its result.
    agg.add_samples("w1", window(1, [700], extra={"expected": 2}))
    agg.mark_lost("w2")
    figures = agg.figures(2.0)
    final = families(final_snapshot(figures, agg))
    counters = figures.counters.to_json()
    for key in ("sent", "received", "timed_out", "lost", "unsolicited", "expected"):
        spec_name = f"wsload_{'unsolicited' if key == 'unsolicited' else 'messages_' + key}_total"
        assert value(final, spec_name) == counters[key], key
        assert value(final, spec_name) >= value(live, spec_name), key
    assert value(final, "wsload_messages_lost_total") == 1  # w2's answer in flight, lost with it
    assert dict(by_name(final)["wsload_errors_total"].samples) == {"timeout": 1.0}
    assert value(final, "wsload_workers") == 1
    assert value(final, "wsload_workers_lost") == 1
    assert value(final, "wsload_run_final") == 1
    assert value(final, "wsload_run_elapsed_seconds") == 2.0
    ((_, h),) = by_name(final)["wsload_latency_seconds"].histograms
    assert h.count == agg.latency.count == 4
    assert h.sum == pytest.approx(agg.latency.total / 1e6)
    assert figures.avg_latency == pytest.approx(h.sum / h.count)


def test_steps_and_topics_are_labelled_and_absent_until_they_exist() -> None:
    plain = by_name(families(live_snapshot(RunAggregate(100.0), 0.5)))
    assert not any(name.startswith(("wsload_step_", "wsload_fanout_")) for name in plain)
    assert plain["wsload_errors_total"].samples == ()  # a family with no kind yet
    agg = RunAggregate(100.0, step_names=("login", "ack"))
    at_start = by_name(families(live_snapshot(agg, 0.5)))  # the workload's steps, at zero
    assert dict(at_start["wsload_step_met_total"].samples) == {"login": 0.0, "ack": 0.0}
    login = StepWindow({"expected": 2, "met": 2}, [5_000, 7_000], [1_000, 2_000])
    ack = StepWindow({"expected": 3, "met": 2, "timed_out": 1}, [40_000, 60_000], [400, 600])
    agg.add_samples("w1", window(0, [], steps={"login": login, "ack": ack}))
    fams = families(final_snapshot(agg.figures(1.0), agg))
    assert dict(by_name(fams)["wsload_step_met_total"].samples) == {"login": 2.0, "ack": 2.0}
    assert value(fams, "wsload_step_timed_out_total", "ack") == 1
    assert value(fams, "wsload_step_expected_total", "ack") == 3
    hists = dict(by_name(fams)["wsload_step_latency_seconds"].histograms)
    assert hists["ack"].count == 2
    assert hists["ack"].sum == pytest.approx(0.1)


def test_every_family_is_declared_and_the_declaration_is_complete() -> None:
    """METRICS (what the dashboard test reads) names exactly what families() can produce."""
    snap = MetricsSnapshot(
        steps={"s": {"met": 1}},
        fanout={"t": {"deliveries": 1}},
        fanout_joined={"t": {"published": 1}},
        final=True,
    )
    produced = {f.spec.name for f in families(snap)}
    assert produced == set(METRICS)
    for name in ("wsload_messages_sent_total", "wsload_messages_received_total",
                 "wsload_messages_timed_out_total", "wsload_errors_total",
                 "wsload_unsolicited_total", "wsload_clients_connected", "wsload_workers",
                 "wsload_latency_seconds"):  # fmt: skip
        assert name in METRICS  # the names
    assert all(re.fullmatch(r"wsload_[a-z_]+", n) for n in produced)


def test_the_prometheus_text_is_prometheus_own_and_parses_back() -> None:
    agg = RunAggregate(100.0, step_names=("login",))
    login = StepWindow({"expected": 1, "met": 1}, [5_000], [1_000])
    agg.add_samples("w1", window(0, [300, 40_000_000], {'say "hi"\n': 2}, steps={"login": login}))
    collector = SnapshotCollector()
    collector.snapshot = final_snapshot(agg.figures(1.0), agg)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser names a counter family without its _total suffix.
    assert parsed["wsload_messages_sent"].type == "counter"
    assert parsed["wsload_messages_sent"].samples[0].value == 2
    errors = parsed["wsload_errors"].samples
    assert [(s.labels, s.value) for s in errors] == [({"kind": 'say "hi"\n'}, 2.0)]
    latency = {
        (s.name, s.labels.get("le")): s.value for s in parsed["wsload_latency_seconds"].samples
    }
    assert latency[("wsload_latency_seconds_bucket", "+Inf")] == 2
    assert latency[("wsload_latency_seconds_bucket", "30")] == 1
    assert latency[("wsload_latency_seconds_count", None)] == 2
    step = parsed["wsload_step_latency_seconds"].samples
    assert {s.labels["step"] for s in step} == {"login"}
    series = {s.name for f in parsed.values() for s in f.samples}
    assert series <= exported_series()


def test_otlp_data_holds_the_same_figures() -> None:
    pytest.importorskip("opentelemetry.sdk.metrics", reason="the optional extra wsload[otel]")
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    from wsload.coordinator.otlp import metrics_data

    agg = RunAggregate(100.0)
    agg.add_samples("w1", window(0, [300, 1_500, 2_000_000], {"http_503": 2}))
    fams = families(final_snapshot(agg.figures(1.0), agg))
    request = encode_metrics(metrics_data(fams, 1, 2))
    (scope,) = request.resource_metrics[0].scope_metrics
    metrics = {m.name: m for m in scope.metrics}
    assert set(metrics) == {METRICS[f.spec.name].otel_name for f in fams}
    sent = metrics["wsload_messages_sent"]
    assert sent.sum.is_monotonic
    assert sent.sum.data_points[0].as_int == 3 or sent.sum.data_points[0].as_double == 3
    (err,) = metrics["wsload_errors"].sum.data_points
    assert {a.key: a.value.string_value for a in err.attributes} == {"kind": "http_503"}
    (point,) = metrics["wsload_latency_seconds"].histogram.data_points
    assert point.count == 3
    assert list(point.explicit_bounds) == list(BUCKETS)
    assert sum(point.bucket_counts) == 3
    assert point.sum == pytest.approx(2.0018)


@pytest.mark.parametrize(
    ("host", "addresses", "public", "problem"),
    [
        ("127.0.0.1", ["127.0.0.1"], False, None),
        ("localhost", ["127.0.0.1", "::1"], False, None),
        ("0.0.0.0", ["0.0.0.0"], False, "--metrics-public"),
        ("0.0.0.0", ["0.0.0.0"], True, None),
        ("10.1.2.3", ["10.1.2.3"], False, "not loopback"),
        ("nowhere.invalid", [], True, "cannot resolve"),
    ],
)
def test_a_non_loopback_metrics_host_needs_an_explicit_opt_in(
    host: str, addresses: list[str], public: bool, problem: str | None
) -> None:
    found = host_problem(host, addresses, public)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
        assert "\n" not in found


@pytest.mark.parametrize(
    ("url", "endpoint", "problem"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/metrics", None),
        ("https://otel.example:4318/", "https://otel.example:4318/v1/metrics", None),
        ("http://c:4318/custom/path", "http://c:4318/custom/path", None),
        ("grpc://c:4317", None, "OTLP over HTTP"),
        ("http://:4318", None, "OTLP over HTTP"),
        ("http://c:99999", None, "out of range"),
        ("http://user:pw@c:4318", None, "credentials"),
    ],
)
def test_otlp_urls(url: str, endpoint: str | None, problem: str | None) -> None:
    got, why = otlp_endpoint(url)
    assert got == endpoint
    if problem is None:
        assert why is None
    else:
        assert why is not None
        assert problem in why


def _queries(node: object) -> list[str]:
    """Every query in a dashboard: a target's ``expr``, a variable's ``query``, at any depth."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str)]
        return found + [q for v in node.values() for q in _queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _queries(v)]
    return []


def test_the_grafana_dashboards_query_only_metrics_wsload_exports() -> None:
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert paths, f"no dashboard in {DASHBOARDS}"
    exported = exported_series()
    for path in paths:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["title"]
        assert dashboard["panels"]
        queries = _queries(dashboard)
        assert len(queries) >= len(dashboard["panels"]) // 2
        named = {m for q in queries for m in re.findall(r"\bwsload_[a-z0-9_]+", q)}
        assert named, path
        assert named <= exported, f"{path.name}: {sorted(named - exported)} not exported"
        # the core figures each have a panel
        for needed in ("wsload_messages_sent_total", "wsload_latency_seconds_bucket",
                       "wsload_errors_total", "wsload_clients_connected"):  # fmt: skip
            assert needed in named, needed
