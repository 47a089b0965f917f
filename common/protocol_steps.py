"""The protocol verbs of the step language: ``protocol = ...`` and the steps it allows, checked.

A scenario that speaks a protocol over its WebSocket names it, at the top
of the file or per ``[[scenarios]]`` table (a scenario's own wins)::

    protocol = "socketio"                    # or a table: the name and its options
    # protocol = {name = "stomp", login = "{user}", passcode = "{password}"}

    [[loop]]
    emit = {event = "chat", data = {text = "hi {seq}"}}
    ack = true                               # wait for the ack: measured like an expect
    [[loop]]
    expect = {event = "news"}                # matched against the message's view

:func:`parse_protocol` reads the ``protocol`` value (its options are a
template rendered per connection, the protocol's defaults filled in);
:func:`compile_verb` turns one step of a protocol verb (``emit``,
``subscribe``, ``unsubscribe``, ``query``, or a protocol's ``send``) into
its body (a :class:`wsload.common.template.ValueTemplate` of the table the
codec encodes) and whether it waits for the protocol's answer
(:class:`wsload.common.protocols.Verb`'s rule: ``ack = true``, ``receipt =
true``, MQTT ``qos = 1``, always, never). What each protocol has is
declared in :mod:`wsload.common.protocols`; this module only says what is
wrong, one line per problem, every problem at once, with a did-you-mean.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from wsload.common.match import path_problem
from wsload.common.program import ProtocolSpec
from wsload.common.protocols import (
    ANSWER_OPTIONS,
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    ProtocolDecl,
    Verb,
    option_defaults,
    table_problems,
)
from wsload.common.stepvalues import did_you_mean, value_shape_problem
from wsload.common.template import NAME, RESERVED, ValueTemplate
from wsload.common.validation import describe

#: Step keys of the protocols' own verbs beyond the raw actions.
PROTOCOL_VERBS = ("emit", "subscribe", "unsubscribe", "query")
#: Step options that make a verb wait (``ack`` for Socket.IO, ``receipt`` for STOMP).
ANSWER_KEYS = tuple(ANSWER_OPTIONS)


@dataclass
class ProtocolChoice:
    """A program's protocol as parsed: ``decl`` None when the name is unknown (said once)."""

    decl: ProtocolDecl | None
    spec: ProtocolSpec | None = None
    problems: list[str] = field(default_factory=list)
    #: variables the options' templates use (checked against the feeder's columns)
    names: set[str] = field(default_factory=set)


RAW_CHOICE = ProtocolChoice(PROTOCOLS[DEFAULT_PROTOCOL])


def parse_protocol(raw: Any) -> ProtocolChoice:
    """``protocol = "name"`` or ``{name = "...", <options>}`` (None: raw), checked."""
    if raw is None:
        return RAW_CHOICE
    given: dict[str, Any] = {}
    if isinstance(raw, dict):
        given = {k: v for k, v in raw.items() if k != "name"}
        if "name" not in raw:
            # a key no protocol has is said with its did-you-mean ('nmae' -> 'name')
            keys = {"name", *(k.name for p in PROTOCOLS.values() for k in p.options)}
            return ProtocolChoice(
                None,
                problems=[
                    *(
                        f"protocol: unknown option {k!r}{did_you_mean(str(k), sorted(keys))}"
                        for k in raw
                        if k not in keys
                    ),
                    'protocol: needs name = "..." (e.g. "socketio")',
                ],
            )
        raw = raw["name"]
    if not isinstance(raw, str):
        return ProtocolChoice(
            None, problems=[f"protocol: the name must be text, got {describe(raw)}"]
        )
    decl = PROTOCOLS.get(raw)
    if decl is None:
        known = ", ".join(PROTOCOLS)
        hint = did_you_mean(raw, PROTOCOLS).removeprefix(" (").removesuffix(")")
        return ProtocolChoice(
            None, problems=[f"protocol: unknown protocol {raw!r} ({hint + '; ' if hint else ''}"
                            f"known: {known})"]
        )  # fmt: skip
    if (shape := value_shape_problem(given)) is not None:
        return ProtocolChoice(None, problems=[f"protocol: options value is {shape}"])
    problems = table_problems(given, decl.options, "protocol", "option")
    if decl.name == DEFAULT_PROTOCOL:
        return ProtocolChoice(decl, None, problems)
    options = ValueTemplate({**option_defaults(decl.name), **given})
    problems += [f"protocol: {p}" for p in options.problems]
    return ProtocolChoice(decl, ProtocolSpec(decl.name, options), problems, options.names)


def not_a_step(decl: ProtocolDecl, key: str) -> str:
    """The line for a step verb the protocol lacks, naming its steps and who has the verb."""
    owners = [p.name for p in PROTOCOLS.values() if p.verb(key) is not None]
    where = ""
    if owners and decl.name == DEFAULT_PROTOCOL:
        spelled = " or ".join(f'protocol = "{o}"' for o in owners)
        where = f"; it needs {spelled}"
    return (
        f'{key!r} is not a step of protocol "{decl.name}" '
        f"(its steps: {', '.join(decl.step_names)}){where}"
    )


@dataclass
class CompiledVerb:
    """One protocol verb step: its body, whether it waits, problems, variables used."""

    body: ValueTemplate | None
    answer: bool
    problems: list[str]
    names: set[str]


def compile_verb(decl: ProtocolDecl, key: str, value: Any, item: dict[str, Any]) -> CompiledVerb:
    """Step ``item`` whose verb ``key`` (with ``value``, shape checked) belongs to ``decl``."""
    verb = decl.verb(key)
    assert verb is not None  # the caller checked: not_a_step() otherwise
    problems: list[str] = []
    if verb.any_value:  # Socket.IO send: any value, emitted as event "message"
        body = ValueTemplate({"event": "message", "data": value})
    elif not isinstance(value, dict):
        keys = ", ".join(k.name for k in verb.keys)
        problems.append(f"{key} takes a table {{{keys}}}, got {describe(value)}")
        return CompiledVerb(None, False, problems + answer_option_problems(decl, key, item), set())
    else:
        problems += table_problems(value, verb.keys, key)
        for a, b in verb.exclusive:
            if a in value and b in value:
                problems.append(f"{key}: give {a} or {b}, not both")
        body = ValueTemplate(value)
    problems += [f"{key}: {p}" for p in body.problems]
    problems += answer_option_problems(decl, key, item)
    return CompiledVerb(body, waits(verb, value, item), problems, set(body.names))


def waits(verb: Verb, value: Any, item: dict[str, Any]) -> bool:
    """Whether this step of ``verb`` waits for the protocol's answer.

    MQTT's ``qos`` given as a template is rendered at run time: such a step
    does not wait (write ``qos = 1`` to measure the PUBACK).
    """
    rule = verb.answer
    if rule == "always":
        return True
    if rule in ("ack", "receipt"):
        return item.get(rule) is True
    if rule == "qos1":
        qos = value.get("qos") if isinstance(value, dict) else None
        return qos == 1 and not isinstance(qos, bool)
    return False


def answer_option_problems(decl: ProtocolDecl, key: str, item: dict[str, Any]) -> list[str]:
    """``ack`` on Socket.IO's ``emit`` only, ``receipt`` on STOMP's verbs only: booleans."""
    problems: list[str] = []
    verb = decl.verb(key)
    for option in ANSWER_KEYS:
        if option not in item:
            continue
        if verb is None or verb.answer != ANSWER_OPTIONS[option]:
            owner = next(
                (p for p in PROTOCOLS.values() for v in p.verbs if v.answer == option), None
            )
            verbs = [v.name for v in owner.verbs if v.answer == option] if owner else []
            spelled = ", ".join(verbs[:-1]) + " and " + verbs[-1] if len(verbs) > 1 else verbs[0]
            problems.append(
                f"{option} applies to {spelled} steps of protocol "
                f'"{owner.name if owner else "?"}" only, not to {key}'
                + (f' of protocol "{decl.name}"' if owner is not None and owner != decl else "")
            )
        elif not isinstance(item[option], bool):
            problems.append(f"{option} must be true or false, got {describe(item[option])}")
    return problems


def answer_captures(
    raw: Any, feeder_columns: Collection[str] | None
) -> tuple[list[tuple[str, str]], list[str]]:
    """``capture = {var = "path"}`` on a step that waits: dotted paths into the answer's view."""
    if not isinstance(raw, dict) or not raw:
        return [], ['capture takes a table of variable = "dotted.path"']
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for var, path in raw.items():
        if not NAME.match(var):
            problems.append(f"capture: {var!r} is not a variable name (letters, digits, _)")
        elif var in RESERVED:
            problems.append(f"capture: {var!r} would hide the built-in variable {{{var}}}")
        elif feeder_columns and var in feeder_columns:
            problems.append(f"capture: {var!r} would hide the feeder column {{{var}}}")
        elif (p := path_problem(path)) is not None:
            problems.append(f"capture {var}: {p}")
        else:
            pairs.append((var, path))
    return pairs, problems


def only_on_expects(option: str, key: str, decl: ProtocolDecl | None) -> str:
    """The line for ``fail`` or ``capture`` on a step that waits for nothing."""
    if decl is None or decl.name == DEFAULT_PROTOCOL:
        return f"{option} applies to expects only, not to {key}"
    waiting = {
        "ack": "emit with ack = true",
        "receipt": "a step with receipt = true",
        "qos1": "send with qos = 1",
    }
    ways = dict.fromkeys(waiting.get(v.answer, v.name) for v in decl.verbs if v.answer != "never")
    return (
        f"{option} applies to expects and to steps that wait for the answer "
        f"({', '.join(ways)}), not to {key}"
    )


def steps_word(decl: ProtocolDecl | None) -> str:
    """The verbs a step of ``decl`` may have, for "needs exactly one of ..."."""
    if decl is None:
        return ", ".join(dict.fromkeys(v for p in PROTOCOLS.values() for v in p.step_names))
    return ", ".join(decl.step_names)


__all__ = [
    "ANSWER_KEYS",
    "PROTOCOL_VERBS",
    "RAW_CHOICE",
    "CompiledVerb",
    "ProtocolChoice",
    "answer_captures",
    "answer_option_problems",
    "compile_verb",
    "not_a_step",
    "only_on_expects",
    "parse_protocol",
    "steps_word",
    "waits",
]
