"""The job spec's fields, each declared once: how a user sets it and what values it takes.

:class:`wsload.common.spec.JobSpec` declares each field's name, type and default
(a plain dataclass, so the type checker sees them); :data:`FIELDS` says the
rest, in the same order: its flag and short alias, environment variable,
``--help`` text, range or choices. From these two come the click options of
``wsload run``, ``wsload coordinator`` and ``wsload test``
(:func:`wsload.common.params.job_options`), the environment layer, the type check of a
TOML file, a flag or the wire (:func:`coerce`) and the range check
(:func:`value_problems`): a new field is one line in each, and nothing else.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from wsload.common.validation import describe, int_problems, number_problems


class Mode(StrEnum):
    """What a job does: make load, or run one of the functional check batteries."""

    LOAD = "load"
    UNIT = "unit"
    INTEGRATION = "integration"
    EVENT = "event"


#: Upper bounds that catch typos (an extra zero or three), not real limits of
#: the tool: a single run beyond them is almost certainly a mistake.
MAX_CLIENTS = 10_000_000
MAX_DURATION = 7 * 24 * 3600.0
MAX_PAYLOAD_SIZE = 16 * 1024 * 1024
#: Largest message a client accepts by default (``max_message_size``): a peer
#: that sends more (in one frame or as fragments) costs a close 1009 and the
#: error kind ``too_big``, never the worker's memory.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
MAX_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
MAX_TIMEOUT = 3600.0
#: How replies are matched to messages (``match``): by the id field, or in
#: order (only for servers that never push).
MATCH_CHOICES = ("id", "order")
#: Client engines (``--engine``), the default first; ``auto`` is picows, or
#: websockets when the job needs compression (see ``JobSpec.client_engine``).
ENGINES = ("picows", "websockets")
ENGINE_CHOICES = ("auto", *ENGINES)

#: The value types of the spec's fields, named after their annotation in JobSpec.
Kind = Literal[
    "int",
    "float",
    "float?",
    "str",
    "bool",
    "strs",
    "headers",
    "steps",
    "table?",
    "mode",
    "protocol",
]
KINDS: Mapping[str, Kind] = {
    "int": "int",
    "float": "float",
    "float | None": "float?",
    "str": "str",
    "bool": "bool",
    "tuple[str, ...]": "strs",
    "tuple[tuple[str, str], ...]": "headers",
    "tuple[dict[str, Any], ...]": "steps",
    "dict[str, Any] | None": "table?",
    "Mode": "mode",
    "str | dict[str, Any] | None": "protocol",
}
#: Commands that offer a field's flag: ``run`` (also ``wsload coordinator``) and ``test``.
RUN = frozenset({"run"})
BOTH = frozenset({"run", "test"})


@dataclass(frozen=True)
class Field:
    """How one spec field is set and checked; its type and default are JobSpec's.

    ``help`` is the flag's ``--help`` text: ``{env}`` in it becomes
    ``[env VAR; default D]`` and ``{default}`` the default, both read from the
    declarations, so the text cannot drift from them. A field without
    ``flag`` is set by a scenario file (or the Python API) only.
    """

    name: str
    help: str = ""
    flag: str | None = None
    alias: str | None = None
    env: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    #: Range of a number: at least ``low`` (above it when ``open_low``), at most ``high``.
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    commands: frozenset[str] = RUN
    #: ``wsload test``'s text, where it says more than ``help`` for the checks.
    test_help: str | None = None
    #: A repeatable flag whose values may also be comma-separated.
    commas: bool = False


def _seconds(name: str, flag: str | None, help: str, **kw: Any) -> Field:
    """A duration in seconds: finite, zero or more (above zero with ``open_low``), bounded."""
    kw.setdefault("high", MAX_TIMEOUT)
    return Field(name, help, flag, low=0.0, **kw)


FIELDS: tuple[Field, ...] = (
    Field("ws_url", "Target WebSocket URL {env}; user:password@ in it is sent as Basic auth "
          "and never printed.", "--ws-url", env="WS_URL", commands=BOTH,
          test_help="WebSocket URL {env}."),
    Field("api_url", "Target HTTP API URL {env}.", "--api-url", env="API_URL", commands=BOTH,
          test_help="HTTP API URL for event tests {env}."),
    Field("num_clients", "Concurrent clients {env}.", "--num-clients", "-c", env="NUM_CLIENTS",
          low=1, high=MAX_CLIENTS, commands=BOTH,
          test_help="Clients for load and event tests {env}."),
    _seconds("duration", "--duration", "Seconds of load {env}.", alias="-d", env="TEST_DURATION",
             open_low=True, high=MAX_DURATION, commands=BOTH, test_help="Load test seconds {env}."),
    _seconds("interval", "--interval", "Seconds between messages of one client; 0 = closed "
             "loop {env}.", env="MESSAGE_INTERVAL", high=MAX_DURATION, commands=BOTH,
             test_help="Load test message interval {env}."),
    _seconds("rate", "--rate", "Total messages per second over all clients (open model; "
             "overrides --interval).", open_low=True, high=1e9),
    _seconds("ramp_up", "--ramp-up", "Seconds over which clients connect (default {default}: "
             "all at once).", high=MAX_DURATION),
    Field("payload", "Message template; placeholders {client_id} {seq} {ts} {pad}.", "--payload"),
    Field("payload_size", "Pad each message to this many characters.", "--payload-size", low=0,
          high=MAX_PAYLOAD_SIZE),
    Field("headers", "Handshake header (repeatable).", "--header", metavar="'NAME: VALUE'"),
    Field("subprotocols", "Subprotocol to offer (repeatable).", "--subprotocol", commands=BOTH,
          test_help="Subprotocol to offer and check."),
    _seconds("connect_timeout", "--connect-timeout", "Seconds to open a connection (default "
             "{default}).", open_low=True, commands=BOTH),
    _seconds("reply_timeout", "--reply-timeout", "Seconds before a reply counts as timed out "
             "(default {default}).", open_low=True, commands=BOTH,
             test_help="Seconds to wait for each reply (default {default})."),
    _seconds("drain_timeout", "--drain-timeout", "Seconds to wait for in-flight replies at stop "
             "(default {default})."),
    Field("id_field", "JSON field matching replies to messages (default {default}).",
          "--id-field"),
    Field("match", "How replies are matched: id (default; a message without the id field, or "
          "with an id never sent, is unsolicited) or order (any message answers the oldest in "
          "flight: unsafe with servers that push).", "--match", choices=MATCH_CHOICES),
    Field("max_message_size", "Largest message a client accepts (default 4 MiB); a bigger one "
          "closes the connection with 1009, error kind too_big.", "--max-message-size",
          metavar="BYTES", low=1024, high=MAX_MAX_MESSAGE_SIZE),
    Field("reconnect", "Do not reconnect after the server closes.", "--no-reconnect"),
    _seconds("reconnect_max_delay", None, "Longest wait between reconnection attempts."),
    Field("compression", "Offer permessage-deflate (websockets engine)."),
    Field("ca_file", "CA bundle for wss:// targets.", "--ca-file"),
    Field("tls_insecure", "Skip TLS verification (self-signed test servers only).",
          "--tls-insecure"),
    Field("source_addresses", "Local address(es) to connect from, round-robin over clients "
          "(repeatable or comma-separated): each adds ~28,000 ephemeral ports towards one "
          "target.", "--source-address", metavar="IP[,IP...]", commas=True),
    Field("engine", "Client engine: picows (fast, the default) or websockets (also does "
          "compression); auto = picows unless the job needs compression.", "--engine",
          choices=ENGINE_CHOICES),
    Field("thresholds", "Pass/fail rule, repeatable: p99<50ms, success_rate>=99.9, "
          "error_rate<0.1%, connect_p99<200ms, rps>=1000, timeouts==0; per step of a "
          "conversation step.NAME.METRIC: step.ack.p99<50ms, step.login.success_rate>=99.9, "
          "step.ack.timed_out==0 (a name may hold spaces; quote one holding < > = \"); with "
          "[deliveries] fanout.p99<200ms, fanout.missing==0, fanout.delivery_rate>=99.9. A "
          "failed one makes the exit code 1.", "--threshold", metavar="EXPR", commands=BOTH,
          test_help="Pass/fail rule for --load, repeatable (as for wsload run: p99<50ms, "
          "success_rate>=99.9...); a scenario's thresholds count too."),
    Field("mode", "What the job does (wsload test chooses it)."),
    Field("steps", "Steps run once per connection ([[steps]] of a scenario file); the "
          "integration scenario of wsload test."),
    Field("loop", "Steps repeated after [[steps]] until the run ends ([[loop]])."),
    Field("scenarios", "A mix of programs, each with name, weight or clients, steps, loop, "
          "rate, interval ([[scenarios]])."),
    Field("feeder", "A CSV file whose rows become the clients' variables ([feeder] file, "
          "mode); build_spec reads it."),
    Field("stages", "A load profile of clients and rate, linear between stages ([[stages]])."),
    Field("deliveries", "Which received messages are deliveries of a publish/subscribe "
          "service ([deliveries]: match, topic, seq, sent_at, topics, source)."),
    Field("protocol", "The protocol spoken over the WebSocket: raw (the default), socketio, "
          "graphql, stomp, mqtt, or a table {name, options...} (common/protocols.py)."),
    Field("event_names", "Event name to subscribe and trigger (repeatable).", "--event-name",
          commands=frozenset({"test"})),
    Field("event_count", "Events triggered per name (default {default}).", "--event-count",
          low=1, high=10_000, commands=frozenset({"test"})),
    Field("event_method", "HTTP method that triggers an event (GET, POST, PUT or PATCH)."),
    Field("event_path", "Path under api_url that triggers an event."),
    Field("event_body", "Body template of a trigger; {event} and {count} filled in."),
    _seconds("event_wait", "--event-wait", "Seconds to wait for deliveries after triggering "
             "(default {default}).", commands=frozenset({"test"})),
)  # fmt: skip
BY_NAME: Mapping[str, Field] = {f.name: f for f in FIELDS}
#: The original framework's environment variables and the field each sets.
ENV_VARS: Mapping[str, str] = {f.env: f.name for f in FIELDS if f.env}


def value_problems(name: str, value: Any) -> list[str]:
    """What is wrong with a typed value for field ``name`` (its range or choices), one line each."""
    field = BY_NAME[name]
    if field.choices and value not in field.choices:
        return [f"{name}: expected one of {', '.join(field.choices)}, got {value!r}"]
    if field.low is None or value is None:
        return []
    high = field.high if field.high is not None else float("inf")
    if isinstance(value, int):
        return int_problems(name, value, int(field.low), int(high))
    # the range of every float field starts at zero: inclusive, or exclusive with open_low
    return number_problems(name, value, high, allow_zero=not field.open_low)


def coerce(kind: Kind, value: Any) -> Any:
    """Check one value of a field of ``kind``, converting only lossless representations."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {describe(value)}")
        return value
    if kind in ("float", "float?"):
        if kind == "float?" and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {describe(value)}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {describe(value)}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {describe(value)}")
        return value
    if kind == "strs":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {describe(value)}")
        return tuple(value)
    if kind == "headers":
        return coerce_headers(value)
    if kind == "steps":
        ok = isinstance(value, list | tuple) and all(
            isinstance(step, dict) and all(isinstance(k, str) for k in step) for step in value
        )
        if not ok:
            raise ValueError(f"expected a list of tables ([[...]]), got {describe(value)}")
        return tuple(dict(step) for step in value)
    if kind == "table?":
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"expected a table, got {describe(value)}")
        return dict(value)
    if kind == "protocol":  # a name, or a table; common.protocols checks the rest
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"expected a protocol's name or a table, got {describe(value)}")
        return dict(value)
    try:  # mode
        return Mode(value)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise ValueError(f"expected one of {choices}, got {describe(value)}") from None


def coerce_headers(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        value = list(value.items())
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a table of name = value, got {describe(value)}")
    pairs: list[tuple[str, str]] = []
    for item in value:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise ValueError(f"expected name/value string pairs, got {describe(item)}")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def parse_text(kind: Kind, raw: str) -> Any:
    """Parse a value of ``kind`` from text (environment variable), keeping the error readable."""
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {_short(raw)}") from None
    if kind in ("float", "float?"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {_short(raw)}") from None
    return raw


def _short(raw: str) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "BY_NAME",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ENGINES",
    "ENGINE_CHOICES",
    "ENV_VARS",
    "FIELDS",
    "KINDS",
    "MATCH_CHOICES",
    "MAX_CLIENTS",
    "MAX_DURATION",
    "MAX_MAX_MESSAGE_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MAX_TIMEOUT",
    "Field",
    "Kind",
    "Mode",
    "coerce",
    "coerce_headers",
    "parse_text",
    "value_problems",
]
