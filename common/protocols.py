"""The protocols a scenario may speak over its WebSocket, declared once for both sides.

``protocol = "socketio"`` (or a table, ``protocol = {name = "stomp", login
= "{user}"}``) at the top of a scenario file or in a ``[[scenarios]]`` table
says what each connection speaks; ``raw`` (the default) is today's frames.
Each protocol is one :class:`ProtocolDecl`: its step verbs (and the keys of
each verb's table), its options (the keys of the ``protocol`` table), the
WebSocket subprotocols it offers, which steps wait for the protocol's
answer, and its error kind. The language
(:mod:`wsload.common.protocol_steps`) checks scenarios against these
declarations before any process starts; the worker's codecs
(:mod:`wsload.worker.codecs`) import the same constants
(:data:`PROTOCOLS`, :data:`SUBPROTOCOLS`, :data:`VERBS`,
:func:`option_defaults`), so the two sides cannot disagree. Plain frozen
values and pure checks: no I/O.

Strings in verb tables and options are templates (rendered per step, or per
connection for options). A string that is exactly one placeholder
(``qos = "{q}"``) takes its value's own type at run time, so it passes any
type check here; a wrong type then is the codec's
:class:`~wsload.worker.codecs.base.CodecInputError`, counted as an error
kind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wsload.common.program import Action
from wsload.common.stepvalues import did_you_mean
from wsload.common.validation import describe

#: The type a key's value must have (besides a one-placeholder string, always allowed):
#: ``text``; ``texts`` (text, or an array of text); ``table``; ``list``; ``value`` (any
#: JSON value); ``body`` (text, or a table or array sent as JSON); ``int`` (within
#: ``low``..``high``); ``bool``; ``headers`` (a table of text, numbers or booleans); ``pair`` (two
#: integers >= 0, e.g. STOMP's heart-beat).
KeyKind = Literal[
    "text", "texts", "table", "list", "value", "body", "int", "bool", "headers", "pair"
]

#: A literal string's own rule (a template's literal text is checked; a leading placeholder's
#: value is the codec's to judge at run time): ``path`` (starts with ``/``: Socket.IO's
#: namespace); ``nonempty``; ``topic_name`` (non-empty, no ``+`` or ``#``: an MQTT publish's
#: topic).
TextRule = Literal["", "path", "nonempty", "topic_name"]

#: When a verb waits for its answer: ``never``; ``always``; ``ack`` (the step says
#: ``ack = true``: Socket.IO); ``receipt`` (``receipt = true``: STOMP); ``qos1`` (the
#: table's ``qos`` is 1: an MQTT PUBLISH waits for its PUBACK).
AnswerRule = Literal["never", "always", "ack", "receipt", "qos1"]

#: Verbs every protocol has (they do not go through the codec, or match its views).
COMMON_VERBS = ("expect", "expect_regex", "think", "close", "post")
#: Step options that say whether a verb waits (each belongs to one protocol).
ANSWER_OPTIONS: Mapping[str, AnswerRule] = {"ack": "ack", "receipt": "receipt"}


@dataclass(frozen=True)
class Key:
    """One key of a verb's table or of a protocol's options."""

    name: str
    kind: KeyKind
    required: bool = False
    #: an option's value when the table does not give it (None: absent)
    default: Any = None
    #: the literal values allowed (empty: any of its kind)
    choices: tuple[Any, ...] = ()
    #: literal values refused with their own reason (``qos 2 is not supported``)
    refused: tuple[tuple[Any, str], ...] = ()
    low: int = 0
    high: int = 2**31 - 1
    #: what a literal text must be besides text (the codec refuses it otherwise)
    rule: TextRule = ""
    #: most UTF-8 bytes of a text's literal part (0: no bound; MQTT's strings: 65535)
    max_bytes: int = 0


@dataclass(frozen=True)
class Verb:
    """One step verb of a protocol: its action, its table's keys, when it waits."""

    name: str
    action: Action
    keys: tuple[Key, ...] = ()
    answer: AnswerRule = "never"
    #: pairs of keys that exclude each other (Socket.IO's ``data`` and ``args``)
    exclusive: tuple[tuple[str, str], ...] = ()
    #: the step's value is any value, not a table of ``keys`` (Socket.IO ``send``:
    #: emits event ``message`` with it as data)
    any_value: bool = False

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys if k.required)


@dataclass(frozen=True)
class ProtocolDecl:
    """One protocol: what ``protocol = "<name>"`` makes a scenario's steps mean."""

    name: str
    #: its own verbs (``expect``, ``expect_regex``, ``think``, ``close``, ``post``: always)
    verbs: tuple[Verb, ...]
    options: tuple[Key, ...] = ()
    #: the WebSocket subprotocols offered, preferred first (empty: none)
    subprotocols: tuple[str, ...] = ()

    @property
    def fail_kind(self) -> str:
        """The error kind of an answer that is the protocol's error (``stomp_error``)."""
        return f"{self.name}_error"

    @property
    def step_names(self) -> tuple[str, ...]:
        """Every step verb a scenario of this protocol may use, as the file spells them."""
        return (*(v.name for v in self.verbs), *COMMON_VERBS)

    def verb(self, name: str) -> Verb | None:
        return next((v for v in self.verbs if v.name == name), None)


def _text(
    name: str,
    required: bool = False,
    default: Any = None,
    rule: TextRule = "",
    max_bytes: int = 0,
) -> Key:
    return Key(name, "text", required, default, rule=rule, max_bytes=max_bytes)


#: MQTT's strings (client id, user name, password, topics) are at most 65535 bytes
MQTT_STRING = 65535


#: a publish's QoS: 0 waits for nothing, 1 for the PUBACK; 2 is not supported
_QOS = Key("qos", "int", choices=(0, 1), refused=((2, "qos 2 is not supported"),), high=2)

RAW = ProtocolDecl(
    "raw",
    (
        Verb("send", Action.SEND),
        Verb("send_binary", Action.SEND_BINARY),
        Verb("expect_binary", Action.EXPECT_BINARY),
    ),
)

SOCKETIO = ProtocolDecl(
    "socketio",
    (
        Verb(
            "emit",
            Action.EMIT,
            (_text("event", True), Key("data", "value"), Key("args", "list")),
            answer="ack",
            exclusive=(("data", "args"),),
        ),
        Verb("send", Action.EMIT, any_value=True),
    ),
    options=(
        _text("namespace", default="/", rule="path"),
        Key("auth", "table"),
        _text("path", default="/socket.io/"),
    ),
)

GRAPHQL = ProtocolDecl(
    "graphql",
    (
        Verb(
            "subscribe",
            Action.SUBSCRIBE,
            (
                _text("query", True, rule="nonempty"),
                Key("variables", "table"),
                _text("operation_name"),
                _text("id"),
            ),
        ),
        Verb(
            "query",
            Action.QUERY,
            (
                _text("query", True, rule="nonempty"),
                Key("variables", "table"),
                _text("operation_name"),
            ),
            answer="always",
        ),
        Verb("unsubscribe", Action.UNSUBSCRIBE, (_text("id", True),)),
    ),
    # legacy = true: subscriptions-transport-ws (subprotocol graphql-ws) instead
    options=(Key("payload", "table"), Key("legacy", "bool")),
    subprotocols=("graphql-transport-ws",),
)

STOMP_ACKS = ("auto", "client", "client-individual")

STOMP = ProtocolDecl(
    "stomp",
    (
        Verb(
            "send",
            Action.SEND,
            (
                _text("destination", True),
                Key("body", "body"),
                Key("headers", "headers"),
                _text("content_type"),
            ),
            answer="receipt",
        ),
        Verb(
            "subscribe",
            Action.SUBSCRIBE,
            (
                _text("destination", True),
                _text("id"),
                Key("ack", "text", choices=STOMP_ACKS),
                Key("headers", "headers"),
            ),
            answer="receipt",
        ),
        Verb("unsubscribe", Action.UNSUBSCRIBE, (_text("id", True),), answer="receipt"),
    ),
    options=(
        _text("login"),
        _text("passcode"),
        _text("host", default="/"),
        Key("heart_beat", "pair", default=(10000, 10000)),
        Key("headers", "headers"),
    ),
    subprotocols=("v12.stomp", "v11.stomp", "v10.stomp"),
)

MQTT = ProtocolDecl(
    "mqtt",
    (
        Verb(
            "send",
            Action.SEND,
            (
                _text("topic", True, rule="topic_name", max_bytes=MQTT_STRING),
                Key("payload", "body"),
                _QOS,
                Key("retain", "bool"),
            ),
            answer="qos1",
        ),
        Verb(
            "subscribe",
            Action.SUBSCRIBE,
            (
                Key("topic", "texts", True, rule="nonempty", max_bytes=MQTT_STRING),
                Key("qos", "int", choices=(0, 1, 2), high=2),
            ),
            answer="always",
        ),
        Verb(
            "unsubscribe",
            Action.UNSUBSCRIBE,
            (Key("topic", "texts", True, rule="nonempty", max_bytes=MQTT_STRING),),
            answer="always",
        ),
    ),
    options=(
        _text("client_id", default="wsload-{client_id}", max_bytes=MQTT_STRING),
        _text("username", max_bytes=MQTT_STRING),
        _text("password", max_bytes=MQTT_STRING),
        Key("keepalive", "int", default=30, high=65535),
        Key("clean_session", "bool", default=True),
        # the protocol level: 4 (MQTT 3.1.1, when absent) or 5 (MQTT 5)
        Key("version", "int", choices=(4, 5)),
    ),
    subprotocols=("mqtt",),
)

#: Every protocol by name; ``raw`` first (the default).
PROTOCOLS: Mapping[str, ProtocolDecl] = {p.name: p for p in (RAW, SOCKETIO, GRAPHQL, STOMP, MQTT)}
#: The name of the default protocol (never stored: ``Program.protocol`` is None).
DEFAULT_PROTOCOL = "raw"
#: protocol -> the WebSocket subprotocols it offers, preferred first
SUBPROTOCOLS: Mapping[str, tuple[str, ...]] = {n: p.subprotocols for n, p in PROTOCOLS.items()}
#: protocol -> the actions of its own verbs (what its codec's ``encode`` takes)
VERBS: Mapping[str, frozenset[Action]] = {
    n: frozenset(v.action for v in p.verbs) for n, p in PROTOCOLS.items()
}
#: protocol -> its error kind (``socketio_error``...)
FAIL_KINDS: Mapping[str, str] = {n: p.fail_kind for n, p in PROTOCOLS.items() if n != "raw"}
#: every verb that belongs to some protocol (a step key the language knows)
ALL_VERBS: tuple[str, ...] = tuple(
    dict.fromkeys(v.name for p in PROTOCOLS.values() for v in p.verbs)
)


def option_defaults(name: str) -> dict[str, Any]:
    """The options protocol ``name`` uses when its table does not give them (templates)."""
    return {k.name: k.default for k in PROTOCOLS[name].options if k.default is not None}


_PLACEHOLDER = r"\{[A-Za-z_][A-Za-z0-9_]*(?:\([^{}()]*\))?\}"
_ONE_PLACEHOLDER = re.compile(_PLACEHOLDER + r"\Z")
_LEADING_PLACEHOLDER = re.compile(_PLACEHOLDER)
#: a placeholder or its escape (``{{name}}``, the literal ``{name}``)
_ANY_PLACEHOLDER = re.compile(r"\{\{[A-Za-z_][A-Za-z0-9_]*(?:\([^{}()]*\))?\}\}|" + _PLACEHOLDER)


def is_placeholder(value: Any) -> bool:
    """A string that is exactly one placeholder: its value's own type at run time."""
    return isinstance(value, str) and _ONE_PLACEHOLDER.match(value) is not None


_KIND_WORDS: Mapping[KeyKind, str] = {
    "text": "text",
    "texts": "text or an array of text",
    "table": "a table",
    "list": "an array",
    "value": "a value",
    "body": "text or a table",
    "int": "an integer",
    "bool": "true or false",
    "headers": "a table of text values",
    "pair": "two integers >= 0, e.g. [10000, 10000]",
}


def key_problem(key: Key, value: Any) -> str | None:
    """Why ``value`` does not fit ``key`` (its type, choices, range), or None."""
    if is_placeholder(value):
        return None
    kind = key.kind
    ok: bool
    if kind == "text":
        ok = isinstance(value, str)
    elif kind == "texts":
        ok = isinstance(value, str) or (
            isinstance(value, list | tuple)
            and len(value) > 0
            and all(isinstance(v, str) for v in value)
        )
    elif kind == "table":
        ok = isinstance(value, dict)
    elif kind == "list":
        ok = isinstance(value, list | tuple)
    elif kind == "body":
        ok = isinstance(value, str | dict | list | tuple)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "pair":
        ok = (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        )
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "headers":
        # a number or true/false is sent as its text (``persistent = true``)
        ok = isinstance(value, dict) and all(
            isinstance(v, str | int | float) for v in value.values()
        )
    else:  # value
        ok = True
    if not ok:
        return f"{key.name} must be {_KIND_WORDS[kind]}, got {describe(value)}"
    for literal, reason in key.refused:
        if value == literal and type(value) is type(literal):
            return reason
    if key.choices and value not in key.choices:
        shown = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in key.choices)
        return f"{key.name} must be one of {shown}, got {describe(value)}"
    if kind == "int" and not key.low <= value <= key.high:
        return f"{key.name} must be between {key.low} and {key.high}, got {value}"
    if kind in ("text", "texts") and (key.rule or key.max_bytes):
        for text in [value] if isinstance(value, str) else value:
            if (problem := text_problem(key, text)) is not None:
                return problem
    return None


def _literal(text: str) -> str:
    """A template's literal text: its placeholders left out, an escape as what it renders."""
    return _ANY_PLACEHOLDER.sub(
        lambda m: m.group(0)[1:-1] if m.group(0).startswith("{{") else "", text
    )


def text_problem(key: Key, text: str) -> str | None:
    """Why the literal text (or a template's literal part) breaks ``key``'s rule, or None.

    The codecs refuse these when they are built or encode (a namespace that
    is not a path crashed every worker): said here, before the run. What a
    placeholder renders is the codec's to judge at run time.
    """
    literal = _literal(text)
    if key.max_bytes and len(literal.encode()) > key.max_bytes:
        return f"{key.name} is longer than {key.max_bytes} bytes (the protocol's limit)"
    if key.rule == "path" and text and not text.startswith("/"):
        if _LEADING_PLACEHOLDER.match(text) is None:
            fixed = "/" + text
            return (
                f"{key.name} must be a path starting with /, got {text!r} (did you mean {fixed!r}?)"
            )
    elif key.rule == "nonempty" and text == "":
        return f"{key.name} must not be empty"
    elif key.rule == "topic_name":
        if text == "":
            return f"{key.name} must not be empty"
        if "+" in literal or "#" in literal:
            return (
                f"{key.name} {text!r} has a wildcard (+ or #): a publish names one topic"
                " (wildcards are for subscribe)"
            )
    return None


def table_problems(
    table: Mapping[str, Any], keys: tuple[Key, ...], what: str, noun: str = "key"
) -> list[str]:
    """Every problem of one verb table or options table against its ``keys``, at once.

    ``what`` starts each line (``emit``, ``protocol``); ``noun`` names a key
    (``key``, ``option``). Unknown keys get a did-you-mean.
    """
    names = [k.name for k in keys]
    problems = [
        f"{what}: unknown {noun} {name!r}{did_you_mean(str(name), names)}"
        for name in table
        if name not in names
    ]
    for key in keys:
        if key.name not in table:
            if key.required:
                problems.append(f"{what}: needs {key.name} = ...")
            continue
        if (p := key_problem(key, table[key.name])) is not None:
            problems.append(f"{what}: {p}")
    return problems


__all__ = [
    "ALL_VERBS",
    "ANSWER_OPTIONS",
    "COMMON_VERBS",
    "DEFAULT_PROTOCOL",
    "FAIL_KINDS",
    "GRAPHQL",
    "MQTT",
    "PROTOCOLS",
    "RAW",
    "SOCKETIO",
    "STOMP",
    "STOMP_ACKS",
    "SUBPROTOCOLS",
    "VERBS",
    "AnswerRule",
    "Key",
    "KeyKind",
    "ProtocolDecl",
    "Verb",
    "is_placeholder",
    "key_problem",
    "option_defaults",
    "table_problems",
    "text_problem",
]
