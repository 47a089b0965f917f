"""Integration mode: scripted conversations from a scenario file.

A scenario is a list of ``[[steps]]``, each one action with an optional
``timeout`` (seconds)::

    [[steps]]
    send = '{"type": "order", "id": "{seq}", "items": [1, 2]}'   # text template
    [[steps]]
    expect = {type = "order", items = [1, 2]}    # JSON subset of the reply
    [[steps]]
    expect_regex = '"id": "\\d+"'                # or a regular expression
    [[steps]]
    send_binary = "00ff10"                       # hex; expect_binary the same way
    [[steps]]
    wait = 0.5
    [[steps]]
    close = 1000

``send`` also takes a table, sent as JSON. ``expect`` with a string wants
that exact text. Each step is one check in the report; a failure says which
step, what was expected and what came, and ends the conversation.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from common.spec import JobSpec
from worker.checks.result import FAIL, SKIP, CheckResult, Fail, run_check
from worker.client import WebSocketClient
from worker.payload import PayloadTemplate

ACTIONS = ("send", "send_binary", "expect", "expect_regex", "expect_binary", "wait", "close")

#: The default conversation: a JSON round trip whose every field must survive.
DEFAULT_STEPS: tuple[dict[str, Any], ...] = (
    {
        "send": {
            "type": "integration",
            "id": "wsload-{seq}",
            "text": "héllo ✓",
            "number": 12345.5,
            "flag": True,
            "nested": {"list": [1, "two", None], "empty": {}},
        }
    },
    {
        "expect": {
            "type": "integration",
            "id": "wsload-1",
            "text": "héllo ✓",
            "number": 12345.5,
            "flag": True,
            "nested": {"list": [1, "two", None], "empty": {}},
        }
    },
    {"close": 1000},
)


class ScenarioError(Exception):
    """A scenario step is malformed (the message names the step)."""


@dataclass(frozen=True)
class Step:
    number: int
    action: str
    value: Any
    timeout: float | None

    @property
    def name(self) -> str:
        shown = self.value if isinstance(self.value, str | int | float) else json.dumps(self.value)
        text = str(shown)
        text = text if len(text) <= 28 else text[:25] + "..."
        return f"step {self.number}: {self.action} {text}"


def parse_steps(raw: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[Step]:
    """Check and normalise scenario steps; raises :class:`ScenarioError` naming the step."""
    steps = []
    for n, item in enumerate(raw, start=1):
        actions = [k for k in item if k in ACTIONS]
        unknown = [k for k in item if k not in ACTIONS and k != "timeout"]
        if unknown:
            raise ScenarioError(f"step {n}: unknown key {unknown[0]!r} (use one of {ACTIONS})")
        if len(actions) != 1:
            raise ScenarioError(f"step {n}: needs exactly one of {', '.join(ACTIONS)}")
        action = actions[0]
        value = item[action]
        timeout = item.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ScenarioError(f"step {n}: timeout must be a positive number")
        if action in ("send_binary", "expect_binary"):
            try:
                value = bytes.fromhex(value) if isinstance(value, str) else None
            except ValueError:
                value = None
            if value is None:
                raise ScenarioError(f"step {n}: {action} must be a hex string")
        elif action == "expect_regex":
            try:
                value = re.compile(value) if isinstance(value, str) else None
            except re.error as exc:
                raise ScenarioError(f"step {n}: bad regular expression ({exc})") from None
            if value is None:
                raise ScenarioError(f"step {n}: expect_regex must be a string")
        elif action == "wait":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ScenarioError(f"step {n}: wait must be a number of seconds")
        elif action == "close":
            if value is True:
                value = 1000
            if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value < 5000:
                raise ScenarioError(f"step {n}: close takes a close code (1000-4999) or true")
        elif action == "send" and not isinstance(value, str | dict | list):
            raise ScenarioError(f"step {n}: send takes a text template or a table")
        steps.append(Step(n, action, value, float(timeout) if timeout else None))
    return steps


def subset_mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where ``actual`` fails to contain ``expected`` (dicts by subset), or None."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {_kind(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            found = subset_mismatch(value, actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{path}: expected a list of {len(expected)}, got {_short(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = subset_mismatch(e, a, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(expected) is not type(actual) and not (_number(expected) and _number(actual)):
        return f"{path}: expected {_short(expected)}, got {_short(actual)}"
    if expected != actual:
        return f"{path}: expected {_short(expected)}, got {_short(actual)}"
    return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return type(v).__name__


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class Conversation:
    """Runs one scenario over one connection."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.seq = 0
        self.client = WebSocketClient.from_spec(spec, "wsload-integration")

    async def run(self) -> list[CheckResult]:
        try:
            steps = parse_steps(self.spec.steps or DEFAULT_STEPS)
        except ScenarioError as exc:
            return [CheckResult("scenario", FAIL, str(exc))]
        results = [await run_check("connect", self._connect, self.spec.connect_timeout + 1)]
        failed = results[0].status == FAIL
        for step in steps:
            if failed:
                results.append(CheckResult(step.name, SKIP, "an earlier step failed"))
                continue
            limit = step.timeout or self.spec.reply_timeout
            result = await run_check(step.name, functools.partial(self._do, step), limit + 1)
            results.append(result)
            failed = result.status == FAIL
        if self.client.connected:
            await self.client.disconnect()
        return results

    async def _connect(self) -> str:
        await self.client.open()
        return "connected"

    async def _do(self, step: Step) -> str:
        action, value = step.action, step.value
        timeout = step.timeout or self.spec.reply_timeout
        if action == "send":
            self.seq += 1
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            payload = PayloadTemplate(text).render(self.client.client_id, self.seq, time.time())
            await self.client.send_message(payload)
            return f"sent {len(payload)} characters"
        if action == "send_binary":
            await self.client.send_message(value)
            return f"sent {len(value)} bytes"
        if action == "wait":
            await asyncio.sleep(value)
            return f"waited {value:g} s"
        if action == "close":
            await self.client.disconnect(value, "scenario close")
            return f"closed with {value}"
        reply = await self.client.receive_raw(timeout=timeout)
        if reply is None:
            raise Fail(f"expected {_describe(action, value)}; nothing came within {timeout:g} s")
        return _check_reply(action, value, reply)


def _describe(action: str, value: Any) -> str:
    if action == "expect_regex":
        return f"a message matching /{value.pattern}/"
    if action == "expect_binary":
        return f"binary {value.hex()}"
    return f"a message containing {_short(value)}"


def _check_reply(action: str, value: Any, reply: str | bytes) -> str:
    if action == "expect_binary":
        if reply != value:
            raise Fail(f"expected binary {value.hex()[:40]}, got {_short(reply)}")
        return f"{len(reply)} bytes as expected"
    if isinstance(reply, bytes):
        raise Fail(f"expected {_describe(action, value)}, got binary {reply[:20].hex()}")
    if action == "expect_regex":
        if not value.search(reply):
            raise Fail(f"expected a match for /{value.pattern}/, got {_short(reply)}")
        return "matched"
    if isinstance(value, str):
        if reply != value:
            raise Fail(f"expected exactly {_short(value)}, got {_short(reply)}")
        return "exact text"
    try:
        parsed = json.loads(reply)
    except ValueError:
        raise Fail(
            f"expected JSON containing {_short(value)}, got non-JSON {_short(reply)}"
        ) from None
    mismatch = subset_mismatch(value, parsed)
    if mismatch:
        raise Fail(f"{mismatch} (reply was {_short(reply)})")
    return "JSON matched"


async def run_integration(spec: JobSpec) -> list[CheckResult]:
    return await Conversation(spec).run()


__all__ = [
    "DEFAULT_STEPS",
    "ScenarioError",
    "Step",
    "parse_steps",
    "run_integration",
    "subset_mismatch",
]
