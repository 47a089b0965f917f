"""The job spec: everything one run needs, in one frozen value.

A spec is built in layers, each overriding the one before:

1. the defaults of the original framework (``ws://localhost:9000/ws``, 5
   clients, 5 s, one message every 0.5 s);
2. a scenario file (TOML, top-level keys named like the fields below);
3. the original framework's environment variables (``WS_URL``, ``API_URL``,
   ``NUM_CLIENTS``, ``TEST_DURATION``, ``MESSAGE_INTERVAL``);
4. command-line flags.

Validation collects *every* problem, one line each, so a user fixes a bad
invocation in one go; :func:`build_spec` raises :class:`SpecError` with them.
The same :meth:`JobSpec.to_dict` / :func:`spec_from_dict` pair carries the spec
to workers over the wire, so a worker validates exactly what a user would.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from wsload.common.errors import SpecError
from wsload.common.fields import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ENGINE_CHOICES,
    ENGINES,
    ENV_VARS,
    FIELDS,
    KINDS,
    MATCH_CHOICES,
    MAX_PAYLOAD_SIZE,
    Kind,
    Mode,
    coerce,
    parse_text,
    value_problems,
)
from wsload.common.protocol import MAX_MESSAGE_BYTES
from wsload.common.scenario import read_toml
from wsload.common.steps import workload_problems
from wsload.common.thresholds import threshold_problems
from wsload.common.validation import (
    address_problems,
    ca_file_problems,
    is_utf8,
    split_credentials,
    url_problems,
)
from wsload.common.workload_inputs import NOT_READ, fields_from_stages, read_feeder

DEFAULT_WS_URL = "ws://localhost:9000/ws"
DEFAULT_API_URL = "http://localhost:9000/api"
DEFAULT_PAYLOAD = '{"type": "test", "client": "{client_id}", "seq": {seq}, "ts": {ts}}'
DEFAULT_EVENT_BODY = '{"event": "{event}", "data": {"source": "wsload"}, "count": {count}}'

#: Most items in one list field (headers, subprotocols, event names, source
#: addresses); thresholds and steps have their own bounds
#: (:data:`wsload.common.thresholds.MAX_THRESHOLDS`, :data:`wsload.common.steps.MAX_STEPS`).
MAX_LIST_ITEMS = 1000
#: Largest spec as it travels to a worker (msgpack): the wire's message limit
#: (:data:`wsload.common.protocol.MAX_MESSAGE_BYTES`, 16 MiB) less room for the envelope.
MAX_SPEC_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
_LIST_FIELDS = ("headers", "subprotocols", "event_names", "source_addresses")

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True)
class JobSpec:
    """Everything a run needs. Build it with :func:`build_spec`, which validates.

    Send model: with ``rate`` unset each client sends one message every
    ``interval`` seconds (the original framework's model), and ``interval == 0``
    means closed loop (next message as soon as the reply arrives). With
    ``rate`` set, ``rate`` messages per second in total are spread over the
    clients (open model) and ``interval`` is ignored.

    Replies are matched to messages by the integer field ``id_field`` of a
    JSON reply (the default payload carries ``"seq"``); a message without it,
    or with an id never sent, is *unsolicited* (a push), never a reply.
    ``match = "order"`` instead takes any message as the answer to the oldest
    one in flight: only for servers that never push. ``max_message_size``
    bounds what a client accepts (frames and reassembled fragments). TLS:
    ``ca_file`` adds a CA bundle; ``tls_insecure`` skips verification, for
    self-signed test servers only.

    Conversations: ``steps`` (once per connection), ``loop`` (then again and
    again), ``scenarios`` (a mix of such programs), ``feeder`` (a CSV file's
    rows as the clients' variables: :func:`build_spec` reads it, relative to
    the scenario file, into ``{file, mode, columns, rows, offset, total}``)
    and ``stages`` (a load profile; they set ``duration`` and ``num_clients``
    when those are not given, and must agree with them when they are),
    ``deliveries`` (which received messages are deliveries of a
    publish/subscribe service, for the steps without ``scenarios``),
    ``protocol`` (what the steps speak over the WebSocket, for every
    scenario that does not name its own: :mod:`wsload.common.protocols`), all
    checked here by :func:`wsload.common.workload.workload_problems`, the
    compiler the worker runs. A job with none of steps, loop and scenarios is
    the echo load. ``steps`` is also the integration scenario; the ``event_*``
    fields say how event mode
    triggers events (``event_method`` ``api_url + event_path`` with the body
    template, ``{event}`` and ``{count}`` filled in) and how long it waits.

    Each field is declared here (name, type, default) and in
    :data:`wsload.common.fields.FIELDS` (flag, alias, environment variable, help,
    range or choices), in the same order: the CLI options, the environment
    layer, the type check and the range check all come from these two.
    """

    ws_url: str = DEFAULT_WS_URL
    api_url: str = DEFAULT_API_URL
    num_clients: int = 5
    duration: float = 5.0
    interval: float = 0.5
    rate: float | None = None
    ramp_up: float = 0.0
    payload: str = DEFAULT_PAYLOAD
    payload_size: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    reply_timeout: float = 5.0
    drain_timeout: float = 2.0
    id_field: str = "seq"
    match: str = "id"
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    reconnect: bool = True
    reconnect_max_delay: float = 5.0
    compression: bool = False
    ca_file: str = ""
    tls_insecure: bool = False
    source_addresses: tuple[str, ...] = ()
    engine: str = "auto"
    thresholds: tuple[str, ...] = ()
    mode: Mode = Mode.LOAD
    steps: tuple[dict[str, Any], ...] = ()
    loop: tuple[dict[str, Any], ...] = ()
    scenarios: tuple[dict[str, Any], ...] = ()
    feeder: dict[str, Any] | None = None
    stages: tuple[dict[str, Any], ...] = ()
    deliveries: dict[str, Any] | None = None
    protocol: str | dict[str, Any] | None = None
    event_names: tuple[str, ...] = ("test-event",)
    event_count: int = 5
    event_method: str = "POST"
    event_path: str = "/events"
    event_body: str = DEFAULT_EVENT_BODY
    event_wait: float = 2.0

    @property
    def client_engine(self) -> str:
        """The engine that runs this job: ``engine``, with ``auto`` resolved."""
        if self.engine != "auto":
            return self.engine
        return "websockets" if self.compression else ENGINES[0]

    def problems(self) -> list[str]:
        """Every reason this spec cannot run, one line each; empty when valid."""
        out: list[str] = []
        out += url_problems("ws_url", self.ws_url, ("ws", "wss"))
        out += url_problems("api_url", self.api_url, ("http", "https"))
        for field in FIELDS:  # ranges and choices, as declared
            out += value_problems(field.name, getattr(self, field.name))
        if not any(p.startswith(("ramp_up", "duration")) for p in out) and (
            self.mode is Mode.LOAD and self.ramp_up > self.duration
        ):
            out.append(
                f"ramp_up ({self.ramp_up:g} s) must not exceed duration ({self.duration:g} s)"
            )
        if not self.id_field or '"' in self.id_field or "\\" in self.id_field:
            out.append(f"id_field: {self.id_field!r} is not a usable JSON field name")
        if self.payload_size > self.max_message_size:
            out.append(
                f"payload_size ({self.payload_size}) exceeds max_message_size "
                f"({self.max_message_size}): replies would be refused; raise --max-message-size"
            )
        out += ca_file_problems("ca_file", self.ca_file)
        for key, value in self.headers:
            if not _TOKEN.match(key):
                out.append(f"headers: {key!r} is not a valid HTTP header name")
            if any(ch in value for ch in "\r\n\0"):
                out.append(f"headers: value of {key!r} contains a line break or NUL")
        out += address_problems("source_addresses", self.source_addresses)
        if self.engine == "picows" and self.compression:
            out.append("engine: picows does not do compression; use --engine websockets or auto")
        for proto in self.subprotocols:
            if not _TOKEN.match(proto):
                out.append(f"subprotocols: {proto!r} is not a valid subprotocol token")
        out += threshold_problems(self.thresholds)
        out += workload_problems(self)
        for name in _LIST_FIELDS:
            count = len(getattr(self, name))
            if count > MAX_LIST_ITEMS:
                out.append(f"{name}: {count:,} items, at most {MAX_LIST_ITEMS:,}")
        if not self.event_names or any(not n.strip() for n in self.event_names):
            out.append("event_names: expected one or more non-empty names")
        if self.event_method.upper() not in ("GET", "POST", "PUT", "PATCH"):
            out.append(f"event_method: {self.event_method!r} is not GET, POST, PUT or PATCH")
        if not self.event_path.startswith("/"):
            out.append(f"event_path: {self.event_path!r} must start with /")
        out += self._text_problems()
        if not out:  # every value is bounded now, so packing it is too
            out += self._size_problems()
        return out

    def _text_problems(self) -> list[str]:
        """Text that is not UTF-8 (bytes a shell passed through as surrogates) cannot travel."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            texts = [value] if isinstance(value, str) else []
            if isinstance(value, tuple):
                texts = [t for item in value for t in (item if isinstance(item, tuple) else [item])]
            if any(isinstance(t, str) and not is_utf8(t) for t in texts):
                out.append(f"{f.name}: contains bytes that are not UTF-8 text")
        return out

    def _size_problems(self) -> list[str]:
        try:
            size = len(msgpack.packb(self.to_dict(), use_bin_type=True))
        except (ValueError, OverflowError, TypeError) as exc:  # a backstop: checked above
            return [f"the job cannot be encoded for the workers ({exc})"]
        if size > MAX_SPEC_BYTES:
            return [
                f"the job is {size:,} bytes as sent to workers, over the wire's limit of "
                f"{MAX_SPEC_BYTES:,}: shorten the payload, steps or other long values"
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (msgpack and JSON safe); inverse of :func:`spec_from_dict`."""
        out = dataclasses.asdict(self)
        out["headers"] = [list(pair) for pair in self.headers]
        out["subprotocols"] = list(self.subprotocols)
        out["source_addresses"] = list(self.source_addresses)
        out["thresholds"] = list(self.thresholds)
        out["steps"] = [dict(step) for step in self.steps]
        out["loop"] = [dict(step) for step in self.loop]
        out["scenarios"] = [dict(item) for item in self.scenarios]
        out["stages"] = [dict(stage) for stage in self.stages]
        out["event_names"] = list(self.event_names)
        out["mode"] = self.mode.value
        return out


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(JobSpec))
#: Each field's value type, read from its annotation in :class:`JobSpec`.
FIELD_KINDS: Mapping[str, Kind] = {f.name: KINDS[str(f.type)] for f in dataclasses.fields(JobSpec)}
if tuple(f.name for f in FIELDS) != FIELD_NAMES:  # pragma: no cover - caught by any import
    raise AssertionError("common.fields.FIELDS must list JobSpec's fields, in order")


def build_spec(
    *,
    scenario: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> JobSpec:
    """Layer defaults < scenario file < environment < flags, validate, return.

    ``flags`` whose value is ``None`` are treated as not given, so a CLI can
    pass every option straight through. Raises :class:`SpecError` listing
    every problem found in any layer, in one go: a value of the wrong type
    does not hide the range problems of the other fields.
    """
    problems: list[str] = []
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if scenario is not None:
        try:
            layers.append((f"{scenario}: ", read_toml(scenario)))
        except SpecError as exc:
            problems += exc.problems
    if env is not None:
        env_values, env_problems = _env_layer(env)
        layers.append(("", env_values))
        problems += env_problems
    layers.append(("", {k: v for k, v in flags.items() if v is not None}))
    values: dict[str, Any] = {}
    untyped: set[str] = set()
    feeder_base = Path()
    for n, (prefix, layer) in enumerate(layers):
        typed, type_problems = _typed(layer)
        problems += [prefix + p for p in type_problems]
        values.update(typed)
        untyped |= {k for k in layer if k in FIELD_NAMES and k not in typed}
        if "feeder" in typed and scenario is not None:
            feeder_base = Path(scenario).parent if n == 0 else Path()
    problems_reading = read_feeder(values, feeder_base)
    problems += problems_reading
    fields_from_stages(values)
    spec, credential_problems = _credentials_to_header(JobSpec(**values))
    missing = untyped - values.keys()  # at their defaults: a line about them would mislead
    problems += credential_problems
    read = not problems_reading
    problems += [
        p
        for p in spec.problems()
        if not any(re.search(rf"\b{m}\b", p) for m in missing) and (read or p != NOT_READ)
    ]
    if problems:
        raise SpecError(problems)
    return spec


def _credentials_to_header(spec: JobSpec) -> tuple[JobSpec, list[str]]:
    """Move ``user:password@`` of ``ws_url`` into a Basic ``Authorization`` header.

    Done once here, so both engines send the same header and no output ever
    holds the password (the URL no longer has it; headers print redacted).
    """
    bare, authorization = split_credentials(spec.ws_url)
    if authorization is None:
        return spec, []
    if any(name.lower() == "authorization" for name, _ in spec.headers):
        return spec, [
            "ws_url: has credentials (user:password@) and an Authorization header is given "
            "too: keep one of them"
        ]
    headers = (*spec.headers, ("Authorization", authorization))
    return dataclasses.replace(spec, ws_url=bare, headers=headers), []


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The fields set by the original framework's environment variables."""
    out, problems = _env_layer(env)
    if problems:
        raise SpecError(problems)
    return out


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    problems: list[str] = []
    for var, name in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        try:
            out[name] = parse_text(FIELD_KINDS[name], raw.strip())
        except ValueError as exc:
            problems.append(f"{var}: {exc}")
    return out, problems


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a TOML scenario file into spec fields; unknown keys and wrong types are errors.

    The read is bounded (:data:`wsload.common.scenario.MAX_SCENARIO_BYTES`) and so is
    nesting; every problem names the file.
    """
    data = read_toml(path)
    _, problems = _typed(data)  # type and name check only; build_spec validates values
    if problems:
        raise SpecError([f"{path}: {p}" for p in problems])
    return data


def spec_from_dict(data: Mapping[str, Any]) -> JobSpec:
    """Type-check a mapping of field values (from a file, the wire or flags).

    Checks names and types, not ranges: call :meth:`JobSpec.problems` for those.
    """
    kwargs, problems = _typed(data)
    if problems:
        raise SpecError(problems)
    return JobSpec(**kwargs)


def _typed(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fields of ``data`` whose name and type are right, and a line for each other one."""
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in FIELD_NAMES:
            problems.append(_unknown_field(str(key)))
            continue
        try:
            kwargs[key] = coerce(FIELD_KINDS[key], value)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    return kwargs, problems


def _unknown_field(key: str) -> str:
    close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field {key!r}{hint}"


__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_PAYLOAD",
    "DEFAULT_WS_URL",
    "ENGINES",
    "ENGINE_CHOICES",
    "ENV_VARS",
    "FIELD_KINDS",
    "FIELD_NAMES",
    "MATCH_CHOICES",
    "MAX_LIST_ITEMS",
    "MAX_PAYLOAD_SIZE",
    "MAX_SPEC_BYTES",
    "JobSpec",
    "Mode",
    "build_spec",
    "env_overrides",
    "load_scenario",
    "spec_from_dict",
]
