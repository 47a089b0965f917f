"""A step's action value compiled into its body: what :func:`wsload.common.steps.compile_step` runs.

One function, :func:`action_body`, per verb of the step language: a
``send`` template, hex for the binary actions, a matcher for each expect, a
``post``, a think time, a close code, and the verbs of a protocol over
WebSocket (``emit``, ``subscribe``, ``unsubscribe``, ``query``, a
protocol's ``send``: :func:`wsload.common.protocol_steps.compile_verb`).
Apart from the step's options (name, timeout, capture, fail, publish) so
that the step grammar stays readable; no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from wsload.common.fanout_language import parse_post
from wsload.common.match import BinaryMatcher, RegexMatcher, compile_matcher
from wsload.common.program import Action, HttpPost, Step, Think
from wsload.common.protocol_steps import compile_verb
from wsload.common.protocols import DEFAULT_PROTOCOL, ProtocolDecl
from wsload.common.stepvalues import parse_hex, parse_think, value_shape_problem
from wsload.common.template import compile_send


@dataclass
class Body:
    """One step's action compiled: ``body`` None when it has problems.

    ``value`` is the step file's value normalised (bytes, a compiled
    pattern, a :class:`wsload.common.program.Think`, the close code);
    ``answer``: the step waits for its protocol's answer.
    """

    action: Action
    body: Any = None
    value: Any = None
    answer: bool = False
    problems: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


def action_body(
    key: str, action: Action, value: Any, item: dict[str, Any], decl: ProtocolDecl
) -> Body:
    """Step ``item``'s verb ``key`` (``action`` for the raw verbs) with its ``value``."""
    out = Body(action, value=value)
    shape = value_shape_problem(value)
    if shape:
        out.problems.append(f"{key} value is {shape}")
        return out
    verb = decl.verb(key)
    if decl.name != DEFAULT_PROTOCOL and verb is not None:
        compiled = compile_verb(decl, key, value, item)
        out.action = verb.action
        out.body, out.answer = compiled.body, compiled.answer
        out.problems, out.names = compiled.problems, compiled.names
        return out
    problems = out.problems
    if action is Action.SEND:
        if not isinstance(value, str | dict | list):
            problems.append("send takes a text template or a table")
        else:
            out.body = compile_send(value)
            problems += out.body.problems
            out.names |= out.body.names
    elif action in (Action.SEND_BINARY, Action.EXPECT_BINARY):
        out.value = parse_hex(value)
        if out.value is None:
            problems.append(f"{key} must be a hex string")
        else:
            out.body = out.value if action is Action.SEND_BINARY else BinaryMatcher(out.value)
    elif action is Action.EXPECT:
        out.body = compile_matcher(value)
        problems += out.body.problems
        out.names |= out.body.names
    elif action is Action.EXPECT_REGEX:
        if not isinstance(value, str):
            problems.append("expect_regex must be a string")
        else:
            try:
                out.value = re.compile(value)
                out.body = RegexMatcher(out.value)
            except (re.error, RecursionError, OverflowError) as exc:
                problems.append(f"bad regular expression ({exc})")
    elif action is Action.POST:
        out.body, post_problems, post_names = parse_post(value)
        problems += post_problems
        out.names |= post_names
    elif action is Action.THINK:
        think = parse_think(key, value)
        if isinstance(think, str):
            problems.append(think)
        else:
            out.body = out.value = think
    else:  # close
        if value is True:
            out.value = value = 1000
        if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value < 5000:
            problems.append("close takes a close code (1000-4999) or true")
        out.body = value
    return out


def step_label(step: Step) -> str:
    """A step's check name in the integration mode's report.

    ``step N: <name>``, or its action and value (cut to 28 characters) when
    it has no name of its own.
    """
    if step.name != f"step {step.number}":
        return f"step {step.number}: {step.name}"
    body = step.body
    value: Any = getattr(body, "source", body)
    if isinstance(body, Think):
        value = {
            "fixed": f"{body.low:g} s",
            "uniform": f"uniform {body.low:g}-{body.high:g} s",
        }.get(body.kind, f"{body.kind} {body.low:g} s")
    elif isinstance(body, bytes):
        value = body.hex()
    elif isinstance(body, HttpPost):
        value = f"{body.method} {getattr(body.url, 'source', '')}"
    shown = value if isinstance(value, str | int | float) else json.dumps(value)
    text = str(shown)
    text = text if len(text) <= 28 else text[:25] + "..."
    return f"step {step.number}: {step.action.value} {text}"


__all__ = ["Body", "action_body", "step_label"]
