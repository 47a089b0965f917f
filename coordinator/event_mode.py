"""Event mode as a job of the engine: the seed's ``WebSocketEventTester`` at small scale.

What ``wsload test --event`` asks -- do events triggered over the HTTP API
reach every WebSocket subscriber? -- is the fan-out machinery's question
(issue 16), so the event options compile into a workload of that machinery
(:func:`event_job`) and run as a load job of one local worker; the checks
the event mode always printed are judged here, on the coordinator, from the
run's fan-out figures (:func:`judge`).

The workload (every value literal: no template of the user's text is
rendered):

- ``subscribers`` (``num_clients`` clients): ``[[steps]]`` sends
  ``{"type": "subscribe", "events": [NAMES]}`` (subscribed from then on);
  its one ``[[loop]]`` iteration waits briefly for the server's
  ``{"type": "subscribed"}`` (a server that sends none is fine, as before);
  ``[deliveries]`` are the events API's messages ``{"type": "event",
  "event": NAME, "seq": N, "sent_at": T}``: topic = the event name.
- one ``trigger N`` publisher per event name (one client each, so a refused
  trigger does not hold back the others): it waits :data:`SETTLE` seconds
  after connecting, for the subscriptions to be in place, then ``post``s the
  trigger (``event_method`` to ``api_url + event_path`` with ``event_body``,
  ``{event}`` and ``{count}`` filled in) with ``publish = {topic = NAME,
  seq = 1}``.

One trigger is ``event_count`` events (seq 1..count): the step language
records one publication per request, so :func:`owe_whole_triggers` adds
seqs 2..count at the time of seq 1 before the ledger joins. A trigger the
API refused still owes its events, as the event mode always said: all of
them count missing, listed by client.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsload.common.errors import SpecError
from wsload.common.fanout_wire import MAX_TOPIC_LEN, FanoutWindow
from wsload.common.mix import assign
from wsload.common.program import Workload
from wsload.common.spec import JobSpec, Mode
from wsload.common.stepvalues import value_shape_problem
from wsload.common.template import TextTemplate
from wsload.common.validation import display_url
from wsload.common.workload import compile_workload
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.fanout import FanoutLedger
from wsload.coordinator.fanout_figures import FanoutFigures
from wsload.coordinator.loadrun import conclude
from wsload.coordinator.runner import run_session
from wsload.coordinator.session import RunOutcome, SessionOptions
from wsload.coordinator.summary import RunSummary

PASS, FAIL = "pass", "fail"
#: Seconds a trigger's publisher waits after connecting before it triggers:
#: the subscribers connect and subscribe meanwhile (the step language has no
#: barrier across clients; a subscriber later than this is reported).
SETTLE = 1.0
#: Missing events listed by client, name and seq.
MAX_LISTED_MISSING = 200
#: Longer than any event run: one loop iteration per client.
_ONCE = 7 * 24 * 3600.0
#: The stop reason of a run that has everything it waited for (not a failure).
_DONE = "event test complete"
SUBSCRIBERS = "subscribers"
ACK_STEP = "subscribed"
_TOKEN = re.compile(r"\{\{?[A-Za-z_][A-Za-z0-9_]*(?:\([^{}()]*\))?\}\}?")


def literal(text: str) -> str:
    """``text`` as a template that renders exactly ``text`` (placeholders escaped)."""
    escaped = _TOKEN.sub(lambda m: "{" + m.group(0) + "}", text)
    if TextTemplate(escaped).render({}, _NO_RNG) != text:  # pragma: no cover - a backstop
        raise SpecError([f"cannot send {text[:60]!r} literally"])
    return escaped


def _literal_value(value: Any) -> Any:
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, list):
        return [_literal_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal_value(v) for k, v in value.items()}
    return value


class _NoRandom:
    """A literal never draws: any use would be a bug of :func:`literal`."""

    def __getattr__(self, name: str) -> Any:  # pragma: no cover
        raise AssertionError("a literal template drew a random value")


_NO_RNG: Any = _NoRandom()


def topics(spec: JobSpec) -> tuple[str, ...]:
    """The event names as topics: each once, in order (cut as the wire cuts them)."""
    return tuple(dict.fromkeys(n[:MAX_TOPIC_LEN] for n in spec.event_names))


def trigger_url(spec: JobSpec) -> str:
    return spec.api_url.rstrip("/") + spec.event_path


def trigger_body(spec: JobSpec, name: str) -> str:
    return spec.event_body.replace("{event}", name).replace("{count}", str(spec.event_count))


def _body(text: str) -> Any:
    """A trigger's body: a JSON object or array as a table (sent as ``application/json``,
    as the event mode always sent it), any other text as it is."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return literal(text)
    fits = isinstance(value, dict | list) and value_shape_problem(value) is None
    if fits and not _has_null(value):
        return _literal_value(value)
    return literal(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_null(value: Any) -> bool:
    """A table cannot hold null (the step language's values are TOML's)."""
    if value is None:
        return True
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    return False


def run_seconds(spec: JobSpec) -> float:
    """The run's duration: settle, the triggers' answers, the wait for deliveries."""
    return SETTLE + spec.reply_timeout + spec.event_wait + 1.0


def event_job(spec: JobSpec) -> JobSpec:
    """The event options of ``spec`` as a load job: subscribers and one publisher per trigger."""
    names = list(spec.event_names)
    subscribers = {
        "name": SUBSCRIBERS,
        "clients": spec.num_clients,
        "interval": 0.0,  # the loop begins as the setup ends: the ack is waited for at once
        "steps": [
            {"name": "subscribe", "send": _literal_value({"type": "subscribe", "events": names})}
        ],
        "loop": [
            {
                "name": ACK_STEP,
                "expect": {"type": "subscribed"},
                "timeout": min(1.0, spec.reply_timeout),
            },
            {"think": min(3600.0, run_seconds(spec))},
        ],
        "deliveries": {
            "match": {"type": "event"},
            "topic": "event",
            "seq": "seq",
            "sent_at": "sent_at",
            "topics": [literal(t) for t in topics(spec)],
        },
    }
    publishers = []
    for i, name in enumerate(names, 1):
        post = {"url": literal(trigger_url(spec)), "method": spec.event_method.upper()}
        post["body"] = _body(trigger_body(spec, name))
        publishers.append(
            {
                "name": f"trigger {i}",
                "clients": 1,
                "interval": _ONCE,
                "steps": [
                    {"think": SETTLE},
                    {
                        "name": f"trigger {i}",
                        "post": post,
                        "timeout": spec.reply_timeout,
                        "publish": {"topic": literal(name[:MAX_TOPIC_LEN]), "seq": 1},
                    },
                ],
                "loop": [{"think": min(3600.0, run_seconds(spec))}],
            }
        )
    job = dataclasses.replace(
        spec,
        mode=Mode.LOAD,
        num_clients=spec.num_clients + len(names),
        duration=run_seconds(spec),
        ramp_up=0.0,
        rate=None,
        drain_timeout=1.0,
        reconnect=False,
        thresholds=(),
        steps=(),
        loop=(),
        stages=(),
        feeder=None,
        deliveries=None,
        scenarios=(subscribers, *publishers),
    )
    if problems := job.problems():
        raise SpecError(problems)
    return job


def event_workload(spec: JobSpec) -> Workload:
    """The programs the event mode runs (what :func:`event_job` compiles to)."""
    return compile_workload(event_job(spec))


def triggered_topics(ledger: FanoutLedger, spec: JobSpec) -> list[str]:
    """The event names whose trigger published (was answered 2xx)."""
    out = []
    for name in topics(spec):
        topic = ledger.topics.get(name)
        if topic is not None and any(s.size for s, _, _ in topic.pubs):
            out.append(name)
    return out


def owe_whole_triggers(ledger: FanoutLedger, spec: JobSpec) -> None:
    """Each trigger is ``event_count`` publications: add seqs 2..count at seq 1's time.

    A trigger that was never answered 2xx published nothing; the event mode
    owes its events all the same (at the latest subscription's start, so
    every subscriber is owed them).
    """
    count = spec.event_count
    for name in topics(spec):
        topic = ledger.topics.get(name)
        pubs = [(s, t, w) for s, t, w in topic.pubs if s.size] if topic else []
        if pubs:
            first = min(int(t.min()) for _, t, _ in pubs)
            worker = pubs[0][2]
            seqs = np.arange(2, count + 1, dtype=np.int64)
        else:
            starts = topic.starts if topic else []
            first = max(starts) if starts else 0
            worker = topic.sub_workers[0] if topic and topic.sub_workers else ""
            seqs = np.arange(1, count + 1, dtype=np.int64)
        if seqs.size:
            times = np.full(seqs.size, first, dtype=np.int64)
            ledger.add(worker, FanoutWindow(pubs={name: (seqs, times)}))


@dataclass(frozen=True)
class EventRun:
    """What the judge reads of one event run (plain values: :func:`judge` is sans-I/O)."""

    #: the fan-out figures, triggers made whole, up to MAX_LISTED_MISSING missing listed
    fanout: FanoutFigures
    #: the topics whose trigger was answered 2xx (before :func:`owe_whole_triggers`)
    triggered: frozenset[str]
    connects: int = 0
    connect_failures: int = 0
    connect_time: float = 0.0
    #: subscriptions the server acknowledged, and the slowest acknowledgement (s)
    acks: int = 0
    ack_time: float = 0.0
    errors: Mapping[str, int] = field(default_factory=dict)
    error_texts: Mapping[str, str] = field(default_factory=dict)
    worker: str = ""
    lost_workers: tuple[str, ...] = ()
    interrupted: bool = False
    interrupted_by: str = ""

    @classmethod
    def of(
        cls, summary: RunSummary, fanout: FanoutFigures, triggered: frozenset[str], worker: str
    ) -> EventRun:
        """The values of a load run's summary (``fanout``: the ledger's longer listing)."""
        figures = summary.figures
        ack = figures.step(ACK_STEP)
        return cls(
            fanout=fanout,
            triggered=triggered,
            connects=figures.counters.connects,
            connect_failures=figures.counters.connect_failures,
            connect_time=figures.connect_time.get("max") or 0.0,
            acks=ack.counters.met if ack is not None else 0,
            ack_time=(ack.latency.get("max") if ack is not None else None) or 0.0,
            errors=figures.errors,
            error_texts=figures.error_texts,
            worker=worker,
            lost_workers=summary.ending.lost_workers,
            interrupted=summary.ending.interrupted,
            interrupted_by=summary.ending.interrupted_by,
        )


def _label(spec: JobSpec) -> Callable[[int], str]:
    """Job-wide client number -> the event mode's name of that subscriber."""
    job = event_job(spec)
    programs = compile_workload(job).programs
    assignment = assign(programs, job.num_clients)

    def label(g: int) -> str:
        try:
            p, rank = assignment.locate(g)
        except IndexError:
            return f"client-{g}"
        return f"event-client-{rank}" if p == 0 else f"client-{g}"

    return label


def _check(name: str, ok: bool, reason: str, duration: float = 0.0) -> dict[str, Any]:
    return {"name": name, "status": PASS if ok else FAIL, "reason": reason, "duration": duration}


def judge(spec: JobSpec, run: EventRun) -> dict[str, Any]:
    """The event mode's results (the seed's keys and checks) from a run's fan-out figures."""
    fanout = run.fanout
    n = spec.num_clients
    names = topics(spec)
    planned = n * len(names) * spec.event_count
    total = fanout.total
    received = total.delivered + total.early + total.extra + total.untracked
    connects = run.connects
    clients = n + len(spec.event_names)
    checks = []
    if connects < clients:
        first = next(iter(run.error_texts.values()), "") or ", ".join(run.errors)
        reason = (
            f"{clients - connects} of {clients} clients ({n} subscribers, "
            f"{clients - n} triggers' publishers) could not connect: {first}"
        )
        checks.append(_check("connect", False, reason))
        return _document(spec, run, checks, planned, received, 0, [], fanout)
    failed = run.connect_failures
    note = f" ({failed} attempts failed first)" if failed else ""
    checks.append(_check("connect", True, f"{n} clients connected{note}", run.connect_time))
    by_topic = {t.name: t for t in fanout.topics}
    late = sum(
        n * spec.event_count - by_topic[t].expected for t in names if t in by_topic
    )  # publications made before a subscriber had subscribed (not owed to it)
    subscribed = f"subscribed to {', '.join(spec.event_names)} ({run.acks} of {n} acknowledged)"
    if late > 0:
        reason = f"{late} events were triggered before their client had subscribed; {subscribed}"
        checks.append(_check("subscribe", False, reason, run.ack_time))
    else:
        checks.append(_check("subscribe", True, subscribed, run.ack_time))
    url = display_url(trigger_url(spec))  # credentials in api_url are sent, never shown
    method = spec.event_method.upper()
    for i, name in enumerate(spec.event_names, 1):
        if name[:MAX_TOPIC_LEN] in run.triggered:
            checks.append(_check(f"trigger {name}", True, f"{method} {url} -> 2xx"))
        else:
            why = _trigger_failure(run, f"trigger {i}", method, url)
            checks.append(_check(f"trigger {name}", False, why))
    missing_count = total.missing
    listed = sorted(fanout.missing_sample, key=lambda m: (m.client, names.index(m.topic)
                    if m.topic in names else len(names), m.seq))  # fmt: skip
    label = _label(spec)
    missing = [f"{label(m.client)}: {m.topic} #{m.seq}" for m in listed][:MAX_LISTED_MISSING]
    expected = total.expected
    dupes = total.duplicates
    if missing_count or dupes or expected - received:
        lost = expected - received
        shown = ", ".join(missing[:5])
        reason = f"{lost} of {expected} events missing ({shown}"
        reason += ", ...)" if lost > 5 else ")"
        if dupes:
            reason += f"; {dupes} duplicates"
        checks.append(_check("deliveries", False, reason))
    else:
        checks.append(_check("deliveries", True, f"all {expected} events delivered once"))
    return _document(spec, run, checks, expected, received, missing_count, missing, fanout)


def _trigger_failure(run: EventRun, step: str, method: str, url: str) -> str:
    """Why a trigger published nothing: its post's error kind and text.

    Each kind keeps its first text (``"trigger N: ..."``): the kind this
    trigger's step gave it, else the first kind a post gives.
    """
    posts = [k for k in run.errors if k.startswith("http_") or k in ("timeout", "refused")]
    mine = [k for k in posts if run.error_texts.get(k, "").startswith(f"{step}: ")]
    for kind in mine or posts:
        text = run.error_texts.get(kind, "")
        detail = text.split(": ", 1)[1] if ": " in text else text
        if kind.startswith("http_"):
            return f"{method} {url} answered {kind.removeprefix('http_')}: {detail[:120]}"
        return f"{method} {url} failed ({kind}): {detail[:120]}"
    return f"{method} {url} was not answered 2xx"


def _document(
    spec: JobSpec,
    run: EventRun,
    checks: list[dict[str, Any]],
    expected: int,
    received: int,
    missing_count: int,
    missing: Sequence[str],
    fanout: FanoutFigures,
) -> dict[str, Any]:
    interrupted = run.interrupted
    latency = {k: float(v or 0.0) for k, v in fanout.total.latency.to_json().items()}
    return {
        "mode": "event",
        "ok": all(c["status"] != FAIL for c in checks) and not interrupted,
        "worker": run.worker,
        "total_expected": expected,
        "total_received": received,
        "success_rate": 100.0 * received / expected if expected else 0.0,
        "duplicates": fanout.total.duplicates,
        "out_of_order": fanout.total.out_of_order,
        "latency_percentiles": latency,
        "missing_count": missing_count,
        "missing": list(missing),
        "clients": spec.num_clients,
        "checks": checks,
        "lost_workers": list(run.lost_workers),
        "interrupted": interrupted,
        "interrupted_by": run.interrupted_by,
    }


class _Watch:
    """Stops the run once it has what it waits for (checked once a second).

    Once every trigger is answered (2xx, or an HTTP error): when every event
    owed has come, or ``event_wait`` seconds later. A trigger never answered
    (a timeout, a refused connection) leaves the run to its duration's end.
    Clients still not connected ``connect_timeout`` after the start: now.
    """

    def __init__(self, spec: JobSpec) -> None:
        self.names = topics(spec)
        self.triggers = len(spec.event_names)
        self.clients = spec.num_clients + self.triggers
        self.connect_limit = SETTLE + spec.connect_timeout
        self.planned = spec.num_clients * len(self.names) * spec.event_count
        self.wait = spec.event_wait
        self.triggered_at: float | None = None

    def __call__(self, agg: RunAggregate, elapsed: float) -> str | None:
        if elapsed >= self.connect_limit and agg.totals().get("connects", 0) < self.clients:
            return _DONE  # the connect check fails: nothing more to wait for
        ledger = agg.fanout
        answered = sum(n for kind, n in agg.errors().items() if kind.startswith("http_"))
        for name in self.names:
            if (t := ledger.topics.get(name)) is not None:
                answered += sum(int(s.size) for s, _, _ in t.pubs)
                answered += t.counts.get("publish_conflicts", 0)
        if answered < self.triggers:
            return None
        now = time.monotonic()
        if self.triggered_at is None:
            self.triggered_at = now
        got = sum(
            t.counts.get("deliveries", 0) - t.counts.get("duplicates", 0)
            for name in self.names
            if (t := ledger.topics.get(name)) is not None
        )
        if got >= self.planned or now - self.triggered_at >= self.wait:
            return _DONE
        return None


@dataclass
class EventOutcome:
    """What :func:`run_event` hands the CLI and the API (the shape of a check mode's outcome)."""

    document: dict[str, Any]
    aborted: str = ""
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        return self.document


async def run_event(
    spec: JobSpec,
    *,
    options: SessionOptions | None = None,
    on_log: Callable[[str], None] | None = None,
) -> EventOutcome:
    """Run the event mode as a load job of one local worker and judge it."""
    job = event_job(spec)
    opts = options or SessionOptions(expect_workers=1)
    outcome: RunOutcome = await run_session(
        job, local_workers=1, options=opts, on_log=on_log, on_progress=_Watch(spec)
    )
    aborted = "" if outcome.aborted == _DONE else outcome.aborted
    if outcome.aborted == _DONE:
        outcome.aborted = ""
    ledger = outcome.aggregate.fanout
    triggered = frozenset(triggered_topics(ledger, spec))
    owe_whole_triggers(ledger, spec)
    summary = conclude(job, outcome)
    listed = ledger.figures(MAX_LISTED_MISSING)
    worker = next(iter(outcome.workers), "")
    run = EventRun.of(summary, listed, triggered, worker)
    if aborted:
        document = {
            "mode": "event", "ok": False, "worker": worker, "checks": [],
            "lost_workers": list(outcome.lost_workers), "interrupted": outcome.interrupted,
            "interrupted_by": outcome.interrupted_by, "aborted": aborted,
        }  # fmt: skip
    else:
        document = judge(spec, run)
    return EventOutcome(document, aborted, outcome.interrupted)


__all__ = [
    "MAX_LISTED_MISSING",
    "SETTLE",
    "EventOutcome",
    "EventRun",
    "event_job",
    "event_workload",
    "judge",
    "literal",
    "owe_whole_triggers",
    "run_event",
]
