"""Integration mode: scripted conversations from a scenario file.

The steps (``send``, ``send_binary``, ``expect``, ``expect_regex``,
``expect_binary``, ``wait``, ``close``, each with an optional ``timeout``)
are parsed by :mod:`wsload.common.steps`, the same code the coordinator runs to
refuse a malformed scenario before any worker starts. ``send`` also takes a
table, sent as JSON. ``expect`` with a string wants that exact text. Each
step is one check in the report; a failure says which step, what was
expected and what came, and ends the conversation.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

from wsload.common.spec import JobSpec
from wsload.common.steps import DEFAULT_STEPS, ScenarioError, Step, parse_steps
from wsload.worker.checks.result import FAIL, SKIP, CheckResult, Fail, run_check
from wsload.worker.client import WebSocketClient
from wsload.worker.payload import PayloadTemplate


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
        except ScenarioError as exc:  # the coordinator refuses these; a raw job may not
            return [CheckResult("scenario", FAIL, "; ".join(exc.problems))]
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
