"""A client's program, compiled: the step language's typed value, shared by both sides.

A scenario file describes what every client of a load does::

    [feeder]                        # one CSV row per client: its columns are variables
    file = "users.csv"
    mode = "unique"                 # or "cycle", "random"

    [[steps]]                       # once per connection, in order, after it opens
    name = "login"
    send = {type = "login", user = "{user}", password = "{password}"}
    [[steps]]
    name = "login ok"
    expect = {type = "login_ok"}
    capture = {token = "token"}     # a dotted path into the reply; later: {token}
    fail = {type = "error"}         # a reply matching this fails the step

    [[loop]]                        # then these, again and again until the run ends
    send = {type = "msg", id = "m{seq}", token = "{token}", text = "hello{pad}"}
    [[loop]]
    name = "ack"
    expect = {type = "ack", id = "m{seq}"}
    timeout = 2
    [[loop]]
    think = {uniform = [0.5, 1.5]}

    [[stages]]                      # optional load profile (linear between stages)
    duration = 10
    clients = 100
    rate = 50

A scenario with only ``[[steps]]`` runs them on a fresh connection each
time (a session per iteration). ``[[scenarios]]`` tables (``name``,
``weight`` or ``clients``, their own ``steps``/``loop``/``rate``/``interval``)
mix several programs in one run.

:mod:`wsload.common.steps` parses the raw tables into the values below
(every problem at once, with its step number); the coordinator checks a
job with it before any worker starts and each worker compiles the same
tables with the same code. No I/O here: these are plain frozen values.

Templates: ``{client_id}``, ``{seq}`` (the client's loop iteration, the
same in every step of one iteration), ``{ts}`` (the intended send time,
epoch seconds), ``{pad}``, captured variables, feeder columns, ``{uuid}``,
``{random_int(a,b)}``. In a table (``send`` or ``expect``), a string that
is exactly one placeholder takes the value's own type (``id = "{seq}"`` is
the number, a captured object stays an object).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Action(enum.StrEnum):
    """What one step does."""

    SEND = "send"  #: a text template, or a table sent as JSON
    SEND_BINARY = "send_binary"  #: bytes (hex in the file)
    EXPECT = "expect"  #: wait for a message: a JSON subset (table) or exact text
    EXPECT_REGEX = "expect_regex"  #: wait for a text message the pattern finds
    EXPECT_BINARY = "expect_binary"  #: wait for exactly these bytes
    THINK = "think"  #: pause (seconds, or a distribution)
    CLOSE = "close"  #: close the connection with a code
    POST = "post"  #: an HTTP request (an HTTP publisher): :class:`HttpPost`
    # verbs of a protocol over WebSocket (``protocol = ...``): the body is a
    # table template the scenario's codec encodes (see :class:`ProtocolSpec`)
    EMIT = "emit"  #: Socket.IO: ``{event, data}`` (``ack = true``: waits for the ack)
    SUBSCRIBE = "subscribe"  #: GraphQL, STOMP, MQTT: subscribe (MQTT: waits for SUBACK)
    UNSUBSCRIBE = "unsubscribe"  #: GraphQL (complete), STOMP, MQTT: end a subscription
    QUERY = "query"  #: GraphQL query or mutation: waits for its result


#: Actions that wait for a message: each is a measured transaction.
EXPECTS = frozenset({Action.EXPECT, Action.EXPECT_REGEX, Action.EXPECT_BINARY})


class Renderer(Protocol):
    """Fills a template; implemented by :class:`wsload.common.template.Template` and kin."""

    def render(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        """The value with every placeholder filled from ``values`` (text, or a JSON value)."""


class Matcher(Protocol):
    """Decides whether a received message is the one a step waits for."""

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        """None when ``data`` does not match; otherwise the parsed message (for captures).

        ``text`` says whether it came as a text message; ``values`` are the
        client's variables, for templates inside the expectation.
        """


@dataclass(frozen=True)
class Think:
    """A pause: ``fixed`` seconds, ``uniform`` between ``low`` and ``high``, or
    ``exponential`` with mean ``low``."""

    kind: str
    low: float
    high: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.low) if self.low > 0 else 0.0
        return self.low


@dataclass(frozen=True)
class Step:
    """One compiled step.

    ``number`` counts from 1 over ``[[steps]]`` then ``[[loop]]`` of its
    program (the number every problem and default name uses); ``name`` is the
    step's metric name (``name = ...`` or ``step N``, prefixed with the
    scenario's name when a run mixes several). ``body`` is by action: a
    :class:`Renderer` for ``send`` (text or JSON), ``bytes`` for
    ``send_binary``, a :class:`Matcher` for every expect, a :class:`Think`,
    or the close code. ``timeout`` (expects only; None: the job's
    ``reply_timeout``), ``capture`` (variable -> dotted path into the
    matched JSON message) and ``fail`` (a matcher whose match fails the step)
    apply to expects.
    """

    number: int
    name: str
    action: Action
    body: Any
    timeout: float | None = None
    capture: tuple[tuple[str, str], ...] = ()
    fail: Matcher | None = None
    #: ``publish = {topic = "t1", seq = "{seq}"}`` on a ``send`` or ``post``:
    #: what it sends is publication ``seq`` (an integer) of ``topic``
    publish: Publish | None = None
    #: a protocol verb that waits for the protocol's answer (Socket.IO ``ack =
    #: true``, STOMP ``receipt = true``, MQTT QoS 1 PUBACK / SUBACK, a GraphQL
    #: query's result): sent, then measured like an ``expect`` whose match is
    #: the answer correlated by the codec (never a push)
    answer: bool = False
    #: the error kind of a failed expect or answer (an answer that is the
    #: protocol's error, e.g. ``graphql_error``; a ``fail`` match otherwise)
    fail_kind: str = "fail_matched"

    @property
    def expects(self) -> bool:
        """A measured transaction: an expect, or a verb that waits for its answer."""
        return self.answer or self.action in EXPECTS


@dataclass(frozen=True)
class Publish:
    """A step's message is a publication: rendered per send, like the message."""

    topic: Renderer
    seq: Renderer


@dataclass(frozen=True)
class HttpPost:
    """An HTTP request of a ``post`` step: ``method`` to ``url`` (a template,
    absolute or relative to the job's ``api_url``) with ``body`` (a template:
    text, or a table sent as JSON). Its status must be 2xx; the step's
    ``timeout`` (default ``reply_timeout``) bounds it."""

    url: Renderer
    body: Renderer | None = None
    method: str = "POST"


@dataclass(frozen=True)
class Deliveries:
    """Which received messages are deliveries of a publish/subscribe service.

    ``[deliveries]`` (or ``[scenarios.deliveries]``): a message that no
    pending expect takes and that ``match`` accepts (every message when
    None) is a delivery, never unsolicited. Its identity: ``topic`` and
    ``seq`` are dotted paths into it (``topic`` None: one topic, named
    ``topics[0]`` or ``"default"``); ``sent_at`` (optional) the publish time,
    epoch seconds, from which delivery latency counts. ``topics`` are the
    topics this client is subscribed to once its ``[[steps]]`` are done
    (templates; empty: every topic published in the run). ``source``:
    ``"wsload"`` when wsload's own publishers publish (each subscriber is
    owed every publication made while it was subscribed), ``"server"`` for a
    stream the service publishes on its own (missing = gaps in ``seq``;
    latency from the server's clock).
    """

    seq: str
    match: Matcher | None = None
    topic: str | None = None
    sent_at: str | None = None
    topics: tuple[Renderer, ...] = ()
    source: str = "wsload"


@dataclass(frozen=True)
class ProtocolSpec:
    """The protocol a scenario speaks over its WebSocket (``protocol = ...``).

    ``name``: ``"raw"`` (frames are the messages: the default, never stored
    as a spec), ``"socketio"``, ``"graphql"``, ``"stomp"`` or ``"mqtt"``.
    ``options``: the table's other keys (``protocol = {name = "stomp",
    login = "{user}", passcode = "{password}"}``), a template rendered once
    per connection with the client's variables (its handshake's options).
    :mod:`wsload.common.protocols` says which verbs and options each has.
    """

    name: str
    options: Renderer | None = None


@dataclass(frozen=True)
class Program:
    """What each client of one scenario runs.

    ``setup`` runs once per connection after it opens, then ``loop`` repeats
    until the run ends; with no ``loop`` the client runs ``setup`` on a fresh
    connection per iteration (connection churn). Pacing of iterations (loop
    iterations, or sessions without a loop): ``rate`` iterations per second
    over all of this scenario's clients (open model), else one every
    ``interval`` seconds per client, ``interval == 0`` meaning the next
    iteration starts as soon as the previous one ends. ``clients`` or
    ``weight`` say how many of the job's clients run this program.
    """

    name: str
    setup: tuple[Step, ...]
    loop: tuple[Step, ...]
    rate: float | None = None
    interval: float = 0.5
    clients: int | None = None
    weight: float = 1.0
    deliveries: Deliveries | None = None
    #: the protocol over the WebSocket (None: raw frames are the messages)
    protocol: ProtocolSpec | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.setup + self.loop

    @property
    def churns(self) -> bool:
        """A session per iteration: no loop, so setup runs on a fresh connection each time."""
        return not self.loop


@dataclass(frozen=True)
class Feeder:
    """Rows of a CSV file, one per client: its columns become template variables.

    ``unique``: client ``g`` (its number over the whole job) takes row ``g``,
    so rows are disjoint across workers and hosts, and a job with more
    clients than rows is refused before it starts; ``cycle``: row ``g mod
    len``; ``random``: a row drawn per client. ``offset`` is the job-wide
    index of ``rows[0]``: the coordinator hands each worker only its slice.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    mode: str = "unique"
    offset: int = 0
    total: int = 0  #: rows in the whole file (``len(rows)`` unless sliced)
    file: str = ""  #: the CSV file's name as the scenario gave it (for messages)

    def row_for(self, client: int, rng: random.Random) -> Mapping[str, str]:
        """The variables of job-wide client number ``client``."""
        if self.mode == "random":
            row = self.rows[rng.randrange(len(self.rows))]
        elif self.mode == "cycle":
            row = self.rows[(client % self.total) - self.offset]
        else:  # never a negative index: that would hand out another worker's row
            i = client - self.offset
            if not 0 <= i < len(self.rows):
                raise IndexError(f"feeder: client {client} has no row in this slice")
            row = self.rows[i]
        return dict(zip(self.columns, row, strict=True))


@dataclass(frozen=True)
class Stage:
    """One stage of a load profile: over ``duration`` seconds the clients and
    the rate move linearly from the previous stage's values (0 before the
    first) to ``clients`` and ``rate`` (None: the job's own rate model)."""

    duration: float
    clients: int
    rate: float | None = None


@dataclass(frozen=True)
class Workload:
    """Everything about what clients do, compiled from one job: the programs
    (one per scenario, at least one), the feeder, the stages."""

    programs: tuple[Program, ...]
    feeder: Feeder | None = None
    stages: tuple[Stage, ...] = ()
    #: the programs' step names, in order, each once (the metric names)
    step_names: tuple[str, ...] = field(default=())


__all__ = [
    "EXPECTS",
    "Action",
    "Deliveries",
    "Feeder",
    "HttpPost",
    "Matcher",
    "Program",
    "ProtocolSpec",
    "Publish",
    "Renderer",
    "Stage",
    "Step",
    "Think",
    "Workload",
]
