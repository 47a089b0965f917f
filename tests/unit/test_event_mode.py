"""The event mode's workload and judge, without sockets: what it compiles to, how it counts."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from wsload.common.fanout_wire import FanoutWindow, SubscriptionRecord
from wsload.common.mix import assign
from wsload.common.program import Action, HttpPost, Program, Workload
from wsload.common.spec import JobSpec, Mode, build_spec
from wsload.coordinator.event_job import SETTLE, event_job, event_workload, literal, settle
from wsload.coordinator.event_mode import (
    MAX_LISTED_MISSING,
    EventRun,
    judge,
    owe_whole_triggers,
    triggered_topics,
)
from wsload.coordinator.fanout import FanoutLedger

RNG = random.Random(0)
S = 1_000_000  # µs per second


def spec_of(**fields: Any) -> JobSpec:
    fields.setdefault("api_url", "http://127.0.0.1:9000/api")
    return build_spec(mode="event", **fields)


def render(template: Any) -> Any:
    return template.render({"client_id": "client-0", "seq": 1, "ts": 0.0, "pad": ""}, RNG)


def subscribers_of(spec: JobSpec) -> list[int]:
    """The job-wide client numbers of the subscribers, by rank (event-client-0, -1, ...)."""
    job = event_job(spec)
    assignment = assign(compile_programs(job), job.num_clients)
    found = {}
    for g in range(job.num_clients):
        p, rank = assignment.locate(g)
        if p == 0:
            found[rank] = g
    return [found[r] for r in range(spec.num_clients)]


def compile_programs(job: JobSpec) -> tuple[Program, ...]:
    from wsload.common.workload import compile_workload

    return compile_workload(job).programs


def test_the_event_options_compile_into_subscribers_and_one_publisher_per_trigger() -> None:
    spec = spec_of(num_clients=3, event_names=("alpha", "beta"), event_count=4)
    job = event_job(spec)
    assert job.mode is Mode.LOAD
    assert (job.num_clients, job.reconnect, job.thresholds) == (5, False, ())
    workload: Workload = event_workload(spec)
    subscribers, *publishers = workload.programs
    assert (subscribers.clients, [p.clients for p in publishers]) == (3, [1, 1])
    assert json.loads(render(subscribers.setup[0].body)) == {
        "type": "subscribe",
        "events": ["alpha", "beta"],
    }
    d = subscribers.deliveries
    assert d is not None
    assert (d.topic, d.seq, d.sent_at, d.source) == ("event", "seq", "sent_at", "wsload")
    assert [render(t) for t in d.topics] == ["alpha", "beta"]
    for name, publisher in zip(("alpha", "beta"), publishers, strict=True):
        think, post = publisher.setup
        assert (think.action, think.body.low) == (Action.THINK, settle(spec))
        assert settle(spec) == pytest.approx(SETTLE + 0.003)
        assert post.action is Action.POST
        body: HttpPost = post.body
        assert render(body.url) == "http://127.0.0.1:9000/api/events"
        assert body.method == "POST"
        assert render(body.body) == {"event": name, "data": {"source": "wsload"}, "count": 4}
        assert post.publish is not None
        assert (render(post.publish.topic), render(post.publish.seq)) == (name, 1)


def test_names_and_bodies_are_sent_literally_never_rendered_as_templates() -> None:
    """The event mode filled in {event} and {count} only: other braces are the user's text."""
    spec = spec_of(
        event_names=("a{seq}", "b{{uuid}}"),
        event_body='{"e": "{event}", "id": "{uuid}", "n": {count}}',
        event_count=2,
    )
    subscribers, first, second = event_workload(spec).programs
    assert json.loads(render(subscribers.setup[0].body))["events"] == ["a{seq}", "b{{uuid}}"]
    assert subscribers.deliveries is not None
    assert [render(t) for t in subscribers.deliveries.topics] == ["a{seq}", "b{{uuid}}"]
    assert render(first.setup[1].body.body) == {"e": "a{seq}", "id": "{uuid}", "n": 2}
    assert render(second.setup[1].body.body) == {"e": "b{{uuid}}", "id": "{uuid}", "n": 2}
    assert first.setup[1].publish is not None
    assert render(first.setup[1].publish.topic) == "a{seq}"
    assert (
        literal("x {ts} {{pad}} {random_int(1,2)} {") == "x {{ts}} {{{pad}}} {{random_int(1,2)}} {"
    )


def test_a_body_that_is_not_a_json_table_is_sent_as_text() -> None:
    spec = spec_of(event_body="event={event}&n={count}", event_method="put")
    post = event_workload(spec).programs[1].setup[1]
    assert render(post.body.body) == "event=test-event&n=5"
    assert post.body.method == "PUT"
    nulls = spec_of(event_body='{"event": "{event}", "data": null}')
    assert render(event_workload(nulls).programs[1].setup[1].body.body) == (
        '{"event": "test-event", "data": null}'
    )


# -- the judge: what the fan-out ledger's figures say, in the event mode's words -----------


def ledger_of(
    spec: JobSpec,
    published: dict[str, float],
    received: dict[tuple[int, str], list[tuple[int, int]]],
    *,
    starts: dict[int, float] | None = None,
    counts: dict[str, dict[str, int]] | None = None,
) -> tuple[FanoutLedger, EventRun]:
    """A ledger as one worker's windows fill it: each trigger's one publication (seq 1),
    each subscriber's records (subscribed at ``starts`` or 10 s, ended at 20 s)."""
    ledger = FanoutLedger()
    pubs = {
        name: (np.array([1], np.int64), np.array([int(at * S)], np.int64))
        for name, at in published.items()
    }
    subs = []
    for rank, g in enumerate(subscribers_of(spec)):
        start = int((starts or {}).get(rank, 10.0) * S)
        for name in dict.fromkeys(spec.event_names):
            got = received.get((rank, name), [])
            subs.append(SubscriptionRecord.of(g, name, start, 20 * S, got))
    ledger.add("w", FanoutWindow(pubs=pubs, subs=subs, counts=counts or {}))
    triggered = frozenset(triggered_topics(ledger, spec))
    owe_whole_triggers(ledger, spec)
    clients = spec.num_clients + len(spec.event_names)
    run = EventRun(
        ledger.figures(MAX_LISTED_MISSING), triggered, connects=clients, acks=spec.num_clients
    )
    return ledger, run


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["checks"]}


def test_every_event_delivered_once_passes() -> None:
    spec = spec_of(num_clients=2, event_names=("x", "y"), event_count=3)
    got = {(r, n): [(1, 3)] for r in range(2) for n in ("x", "y")}
    _, run = ledger_of(spec, {"x": 11.0, "y": 11.5}, got)
    document = judge(spec, run)
    assert document["ok"]
    assert (document["total_expected"], document["total_received"]) == (12, 12)
    assert document["success_rate"] == 100.0
    assert (document["missing_count"], document["missing"]) == (0, [])
    assert list(by_name(document)) == [
        "connect",
        "subscribe",
        "trigger x",
        "trigger y",
        "deliveries",
    ]
    assert by_name(document)["deliveries"]["reason"] == "all 12 events delivered once"
    assert by_name(document)["subscribe"]["reason"] == "subscribed to x, y (2 of 2 acknowledged)"


def test_duplicates_and_disorder_are_the_workers_counts() -> None:
    """Seqs 1, 3, 2, 3: three received, one duplicate, one out of order, none missing."""
    spec = spec_of(num_clients=1, event_names=("e",), event_count=3)
    counts = {"e": {"deliveries": 4, "duplicates": 1, "out_of_order": 1}}
    _, run = ledger_of(spec, {"e": 11.0}, {(0, "e"): [(1, 3)]}, counts=counts)
    document = judge(spec, run)
    assert (document["total_expected"], document["total_received"]) == (3, 3)
    assert (document["duplicates"], document["out_of_order"]) == (1, 1)
    assert (document["missing_count"], document["missing"]) == (0, [])
    assert not document["ok"]
    assert by_name(document)["deliveries"]["reason"].endswith("; 1 duplicates")


def test_missing_events_are_listed_by_client_name_and_seq() -> None:
    spec = spec_of(num_clients=2, event_names=("x", "y"), event_count=3)
    got = {(0, "x"): [(1, 1), (3, 3)], (0, "y"): [(1, 3)], (1, "y"): [(2, 2)]}
    _, run = ledger_of(spec, {"x": 11.0, "y": 11.0}, got)
    document = judge(spec, run)
    assert (document["total_expected"], document["total_received"]) == (12, 6)
    assert document["missing_count"] == 6
    assert document["missing"] == [
        "event-client-0: x #2",
        "event-client-1: x #1",
        "event-client-1: x #2",
        "event-client-1: x #3",
        "event-client-1: y #1",
        "event-client-1: y #3",
    ]
    reason = by_name(document)["deliveries"]["reason"]
    assert reason.startswith("6 of 12 events missing (event-client-0: x #2, ")
    assert reason.endswith(", ...)")


def test_a_late_subscriber_is_not_charged_and_the_subscribe_check_says_so() -> None:
    """The ledger's rule: a client is owed the triggers made while it was subscribed."""
    spec = spec_of(num_clients=2, event_names=("x",), event_count=2)
    _, run = ledger_of(spec, {"x": 11.0}, {(0, "x"): [(1, 1)]}, starts={1: 12.0})
    document = judge(spec, run)
    assert (document["total_expected"], document["total_received"]) == (2, 1)
    assert document["missing"] == ["event-client-0: x #2"]
    subscribe = by_name(document)["subscribe"]
    assert subscribe["status"] == "fail"
    assert subscribe["reason"].startswith("2 events were triggered while their client was not")


def test_a_refused_trigger_still_owes_its_events() -> None:
    spec = spec_of(num_clients=2, event_names=("x", "y"), event_count=2)
    got = {(r, "y"): [(1, 2)] for r in range(2)}
    _, run = ledger_of(spec, {"y": 11.0}, got)
    run = EventRun(
        run.fanout,
        run.triggered,
        connects=run.connects,
        acks=2,
        errors={"http_404": 1},
        error_texts={"http_404": "trigger 1: 404: Not Found"},
    )
    document = judge(spec, run)
    assert (document["total_expected"], document["total_received"]) == (8, 4)
    assert document["missing"] == [
        "event-client-0: x #1",
        "event-client-0: x #2",
        "event-client-1: x #1",
        "event-client-1: x #2",
    ]
    trigger = by_name(document)["trigger x"]
    assert trigger["status"] == "fail"
    assert trigger["reason"] == (
        "POST http://127.0.0.1:9000/api/events answered 404: 404: Not Found"
    )
    assert by_name(document)["trigger y"]["status"] == "pass"


def test_clients_that_never_connected_end_the_checks_as_before() -> None:
    spec = spec_of(num_clients=2, event_names=("x",), event_count=5)
    _, run = ledger_of(spec, {}, {})
    run = EventRun(
        run.fanout,
        run.triggered,
        connects=1,
        errors={"refused": 2},
        error_texts={"refused": "ws://127.0.0.1:9/ws: connection refused"},
    )
    document = judge(spec, run)
    assert [c["name"] for c in document["checks"]] == ["connect"]
    assert document["checks"][0]["reason"] == (
        "2 of 3 clients (2 subscribers, 1 triggers' publishers) could not connect: "
        "ws://127.0.0.1:9/ws: connection refused"
    )
    assert (document["total_expected"], document["missing_count"], document["missing"]) == (
        10,
        0,
        [],
    )
    assert not document["ok"]


def test_an_event_name_given_twice_is_triggered_twice_and_owed_once() -> None:
    spec = spec_of(num_clients=1, event_names=("x", "x"), event_count=2)
    counts = {"x": {"deliveries": 4, "duplicates": 2, "publish_conflicts": 1}}
    _, run = ledger_of(spec, {"x": 11.0}, {(0, "x"): [(1, 2)]}, counts=counts)
    document = judge(spec, run)
    assert (document["total_expected"], document["total_received"]) == (2, 2)
    assert document["duplicates"] == 2
    assert [c["name"] for c in document["checks"]].count("trigger x") == 2
