"""Parts of a run that tested nothing while the rest did, and how "nothing tested" reads.

A new user's trial of issue 17 ran a file whose second ``[[scenarios]]`` entry
(STOMP against a Socket.IO server) never connected: the run PASSED on the
first entry's figures. And a subscriber whose ``topics`` were misspelt tested
nothing without a word. The figures come from a real :class:`RunAggregate`
fed windows through the wire format, as in ``test_verdict.py``.
"""

from __future__ import annotations

import itertools

import pytest

from wsload.common.fanout_wire import FanoutWindow, SubscriptionRecord
from wsload.common.protocol import Samples, StepWindow, decode, encode
from wsload.common.spec import JobSpec
from wsload.coordinator import html_report
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.loadrun import parameters
from wsload.coordinator.report import format_summary
from wsload.coordinator.summary import RunEnding, RunSummary
from wsload.coordinator.verdict import EXIT_FAILED, EXIT_OK, judge

START = 100.0
T0 = 1_700_000_000_000_000  # epoch µs


def add(agg: RunAggregate, seq: int, counters: dict[str, int], **parts: object) -> None:
    msg = Samples.window(
        "j", seq, (START + seq, START + seq + 1.0), counters, parts.pop("errors", {}),  # type: ignore[arg-type]
        ([], [], []), **parts,  # type: ignore[arg-type]
    )  # fmt: skip
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    agg.add_samples("w1", decoded)


def summary(agg: RunAggregate, **ending: object) -> RunSummary:
    figures = agg.figures(2.0)
    end = RunEnding(**ending)  # type: ignore[arg-type]
    verdict = judge((), figures, end, target="h:80")
    return RunSummary(figures, end, parameters(JobSpec(ws_url="ws://h:80/"), 1, START), verdict)


def mixed(stompy_iterations: int, errors: dict[str, int] | None = None) -> RunAggregate:
    """Scenario sio met its 12 acks; stompy's 2 clients ran ``stompy_iterations``."""
    agg = RunAggregate(
        START, ("chat",), ("sio", "stompy"), scenario_clients={"sio": 2, "stompy": 2}
    )
    counters = {"sent": 12, "expected": 12, "received": 12, "connects": 2}
    add(
        agg, 0, counters, errors=errors or {},
        steps={"chat": StepWindow({"expected": 12, "met": 12}, [900] * 12, [800] * 12)},
        scenarios={"sio": {"iterations": 12}, "stompy": {"iterations": stompy_iterations}},
    )  # fmt: skip
    return agg


def test_a_scenario_whose_clients_never_ran_fails_the_run_named() -> None:
    """The trial's mixed.toml: stomp against a Socket.IO server never connected (http_404)."""
    done = summary(mixed(0, {"http_404": 14}))
    assert done.verdict.code == EXIT_FAILED
    assert done.verdict.status == "failed"
    assert done.verdict.reasons == (
        "nothing tested in scenario 'stompy': its 2 clients never began an iteration (never "
        "connected, the protocol's handshake never completed, or the run ended before its "
        "first); the run's errors: http_404 (14 times)",
    )
    # the JSON and JUnit's "tested something" carry it
    assert done.verdict.nothing_tested == done.verdict.reasons[0]
    assert done.to_json()["nothing_tested"] == done.verdict.reasons[0]


def test_a_scenario_that_ran_or_has_no_clients_is_not_judged_so() -> None:
    assert summary(mixed(1)).verdict.code == EXIT_OK
    agg = RunAggregate(START, ("chat",), ("sio", "idle"), scenario_clients={"sio": 2, "idle": 0})
    add(
        agg, 0, {"sent": 2, "expected": 2, "received": 2, "connects": 2},
        steps={"chat": StepWindow({"expected": 2, "met": 2}, [900] * 2, [800] * 2)},
        scenarios={"sio": {"iterations": 2}},
    )  # fmt: skip
    assert summary(agg).verdict.code == EXIT_OK


def test_when_no_scenario_ran_the_run_level_reason_says_it_once() -> None:
    agg = RunAggregate(START, ("chat",), ("a", "b"), scenario_clients={"a": 1, "b": 1})
    add(agg, 0, {"connect_failures": 3}, errors={"refused": 3})
    assert summary(agg).verdict.reasons == (
        "nothing tested: no connection to h:80 was ever opened after 3 attempts"
        " (refused (3 times))",
    )


# -- publish/subscribe ----------------------------------------------------------------------


def fanout(
    published: dict[str, int], subscribed: dict[int, list[str]], delivered: bool = True
) -> RunAggregate:
    """Publications per topic; subscribers by client to topics; each got what was
    published to its topics (or nothing)."""
    agg = RunAggregate(START)
    pubs = FanoutWindow(
        pubs={t: [(s, T0 + s * 1000) for s in range(n)] for t, n in published.items()}
    )
    records: list[SubscriptionRecord] = []
    counts: dict[str, dict[str, int]] = {}
    for client, topics in subscribed.items():
        for topic in topics:
            n = published.get(topic, 0) if delivered else 0
            got = [(0, n - 1)] if n else []
            records.append(SubscriptionRecord.of(client, topic, T0 - 1, T0 + 10**7, got))
            if n:
                counts.setdefault(topic, {"deliveries": 0})["deliveries"] += n
    subs = FanoutWindow(subs=records, counts=counts)
    add(agg, 0, {"sent": sum(published.values()), "connects": 1 + len(subscribed)}, fanout=pubs)
    add(agg, 1, {}, fanout=subs)
    return agg


def reasons(agg: RunAggregate) -> tuple[str, ...]:
    return summary(agg).verdict.reasons


def test_each_no_delivery_reason_reads_right_for_what_was_published() -> None:
    """ "nothing published, but no subscriber received a delivery" read wrong."""
    assert reasons(fanout({"news": 10}, {3: ["news"]}, delivered=False)) == (
        "nothing tested: 10 publications made, but no subscriber received a delivery"
        " (1 subscriptions)",
    )
    assert reasons(fanout({}, {3: ["news"], 4: ["news"]})) == (
        "nothing tested: nothing was published and none of the 2 subscriptions received a delivery",
    )
    assert reasons(fanout({"news": 10}, {})) == (
        "nothing tested: 10 publications made, but no subscription was made to receive them",
    )
    # every subscriber's topic misspelt: the reason names the topic nothing was published to
    assert reasons(fanout({"news/flash": 10}, {3: ["news/flsh"]})) == (
        "nothing tested: 10 publications made, but no subscriber received a delivery"
        " (1 subscriptions; never published: news/flsh)",
    )


def test_a_subscriber_whose_topics_were_never_published_tested_nothing() -> None:
    """Client 4's only topic is misspelt: it fails the run although client 3 got every one."""
    agg = fanout({"news/flash": 10}, {3: ["news/flash"], 4: ["news/flsh"]})
    done = summary(agg)
    assert done.verdict.code == EXIT_FAILED
    assert done.verdict.reasons == (
        "nothing tested for 1 subscriber: none of their topics was ever published (never "
        "published: news/flsh; published: news/flash)",
    )
    note = (
        "never published, nothing delivered: news/flsh (1 subscriptions); this run published"
        " to news/flash (a misspelt topic? these subscriptions tested nothing)"
    )
    assert f"  {note}" in format_summary(done).splitlines()
    page = html_report.page_document(done)["fanout"]
    assert note in page["clock"]


def test_a_subscriber_with_one_published_topic_tested_something_and_the_other_is_noted() -> None:
    agg = fanout({"news/flash": 10}, {3: ["news/flash", "news/flsh"]})
    done = summary(agg)
    assert done.verdict.code == EXIT_OK, done.verdict.reasons
    assert any(
        line.startswith("  never published, nothing delivered: news/flsh")
        for line in format_summary(done).splitlines()
    )


@pytest.mark.parametrize(
    ("published", "delivered"), list(itertools.product([{}, {"news": 4}], [False, True]))
)
def test_every_fanout_combination_reads_without_a_contradiction(
    published: dict[str, int], delivered: bool
) -> None:
    """No reason says "nothing published, but" or "made, but" with nothing made."""
    for line in reasons(fanout(published, {3: ["news"]}, delivered)):
        assert "nothing published, but" not in line
        if not published:
            assert "publications made" not in line
        assert "received a delivery" not in line or not (published and delivered)
