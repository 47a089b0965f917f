"""The event mode's options compiled into a workload of the fan-out machinery (no I/O).

``wsload test --event`` asks whether events triggered over the HTTP API
reach every WebSocket subscriber: the fan-out machinery's question (issue
16) at small scale, so :func:`event_job` turns the event options into a
load job of it (every value literal: no template of the user's text is
rendered; only ``{event}`` and ``{count}`` of ``event_body`` are filled in,
as the event mode always did):

- ``subscribers`` (``num_clients`` clients): ``[[steps]]`` sends
  ``{"type": "subscribe", "events": [NAMES]}`` (subscribed from then on);
  ``[[loop]]`` waits briefly for the server's ``{"type": "subscribed"}``
  (counted, never required: a server that sends none is fine, as before),
  then thinks to the end; ``[deliveries]`` are the events API's messages
  ``{"type": "event", "event": NAME, "seq": N, "sent_at": T}``, topic = the
  event name.
- one ``trigger N`` publisher per event name given (one client each, so a
  refused trigger does not hold back the others): it waits :func:`settle`
  seconds after connecting, for the subscriptions to be in place, then
  ``post``s the trigger (``event_method`` to ``api_url + event_path``; a
  body that is a JSON table goes as ``application/json``) with ``publish =
  {topic = NAME, seq = 1}``. One trigger is ``event_count`` events: the
  coordinator makes it whole (:func:`wsload.coordinator.event_mode.owe_whole_triggers`).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from typing import Any

from wsload.common.errors import SpecError
from wsload.common.fanout_wire import MAX_TOPIC_LEN
from wsload.common.program import Workload
from wsload.common.spec import JobSpec, Mode
from wsload.common.stepvalues import value_shape_problem
from wsload.common.template import TextTemplate
from wsload.common.workload import compile_workload

#: Seconds a trigger's publisher waits after connecting before it triggers:
#: the subscribers connect and subscribe meanwhile (the step language has no
#: barrier across clients; a subscriber later than this is reported).
SETTLE = 1.0
#: and this much more per subscriber (1,000 connect in about 0.7 s on loopback)
SETTLE_PER_CLIENT = 0.001
#: Longer than any event run: one loop iteration per client.
_ONCE = 7 * 24 * 3600.0
SUBSCRIBERS = "subscribers"
ACK_STEP = "subscribed"
_TOKEN = re.compile(r"\{\{?[A-Za-z_][A-Za-z0-9_]*(?:\([^{}()]*\))?\}\}?")


def literal(text: str) -> str:
    """``text`` as a template that renders exactly ``text`` (placeholders escaped)."""
    escaped = _TOKEN.sub(lambda m: "{" + m.group(0) + "}", text)
    if TextTemplate(escaped).render({}, _RNG) != text:  # pragma: no cover - a backstop
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


#: what literal() renders with (a literal draws nothing)
_RNG = random.Random(0)


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
    return settle(spec) + spec.reply_timeout + spec.event_wait + 1.0


def settle(spec: JobSpec) -> float:
    """Seconds the publishers wait after connecting, for the subscribers to subscribe."""
    return SETTLE + SETTLE_PER_CLIENT * spec.num_clients


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
                    {"think": settle(spec)},
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


__all__ = [
    "ACK_STEP",
    "SETTLE",
    "SETTLE_PER_CLIENT",
    "SUBSCRIBERS",
    "event_job",
    "event_workload",
    "literal",
    "run_seconds",
    "settle",
    "topics",
    "trigger_body",
    "trigger_url",
]
