"""Integration mode: one client runs a scenario's conversation once, each step a check.

The steps (``send``, ``send_binary``, ``expect``, ``expect_regex``,
``expect_binary``, ``think`` or ``wait``, ``close``; ``name``, ``timeout``,
``capture``, ``fail``) are compiled by :mod:`wsload.common.steps`, the same
code the coordinator runs to refuse a malformed scenario before any worker
starts and the load runs: ``wsload test --integration`` is a dry run of a
load's conversation. ``send`` also takes a table, sent as JSON. ``expect``
with a string wants that exact text. Each step is one check in the report;
a failure says which step, what was expected and what came, and ends the
conversation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from typing import Any

from wsload.common.match import (
    MISSING,
    NOT_JSON,
    BinaryMatcher,
    RegexMatcher,
    TextMatcher,
    capture,
    parse_json,
)
from wsload.common.program import Action, Program, Step
from wsload.common.spec import JobSpec
from wsload.common.steps import (
    DEFAULT_STEPS,
    ScenarioError,
    compile_workload,
    parse_steps,
    step_label,
)
from wsload.worker.checks.result import FAIL, SKIP, CheckResult, Fail, run_check
from wsload.worker.client import WebSocketClient


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
    """Runs one client's program over one connection: ``[[steps]]``, then ``[[loop]]`` once.

    The steps are compiled by :func:`wsload.common.steps.compile_workload`,
    the code a load runs (a job with ``[[scenarios]]`` runs the first one);
    the feeder's first row gives the variables, captures feed later steps.
    An expect waits for the first message that matches it (others are
    passed over, as in a load) until its timeout; a message matching its
    ``fail`` fails it at once.
    """

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.client = WebSocketClient.from_spec(spec, "wsload-integration")
        self.rng = random.Random()
        self.values: dict[str, Any] = {"client_id": self.client.client_id, "seq": 1, "pad": ""}

    def _program(self) -> Program | str:
        spec = self.spec
        if not (spec.steps or spec.loop or spec.scenarios):
            spec = dataclasses.replace(spec, steps=DEFAULT_STEPS)
        try:
            workload = compile_workload(spec)
        except ScenarioError as exc:  # the coordinator refuses these; a raw job may not
            return "; ".join(exc.problems)
        if workload.feeder is not None:
            self.values.update(workload.feeder.row_for(workload.feeder.offset, self.rng))
        return workload.programs[0]

    async def run(self) -> list[CheckResult]:
        program = self._program()
        if isinstance(program, str):
            return [CheckResult("scenario", FAIL, program)]
        results = [await run_check("connect", self._connect, self.spec.connect_timeout + 1)]
        failed = results[0].status == FAIL
        for step in program.steps:
            name = step_label(step)
            if failed:
                results.append(CheckResult(name, SKIP, "an earlier step failed"))
                continue
            limit = step.timeout or self.spec.reply_timeout
            if step.action is Action.THINK:
                limit = max(limit, step.body.high, step.body.low * 10)
            result = await run_check(name, functools.partial(self._do, step), limit + 1)
            results.append(result)
            failed = result.status == FAIL
        if self.client.connected:
            await self.client.disconnect()
        return results

    async def _connect(self) -> str:
        await self.client.open()
        return "connected"

    async def _do(self, step: Step) -> str:
        action, body = step.action, step.body
        if action is Action.SEND:
            self.values["ts"] = time.time()
            payload = body.render(self.values, self.rng)
            await self.client.send_message(payload)
            return f"sent {len(payload)} characters"
        if action is Action.SEND_BINARY:
            await self.client.send_message(body)
            return f"sent {len(body)} bytes"
        if action is Action.THINK:
            pause = body.sample(self.rng)
            await asyncio.sleep(pause)
            return f"waited {pause:g} s"
        if action is Action.CLOSE:
            await self.client.disconnect(body, "scenario close")
            return f"closed with {body}"
        return await self._expect(step)

    async def _expect(self, step: Step) -> str:
        timeout = step.timeout or self.spec.reply_timeout
        deadline = time.monotonic() + timeout
        seen = 0
        last = ""
        while (left := deadline - time.monotonic()) > 0:
            reply = await self.client.receive_raw(timeout=left)
            if reply is None:
                break
            seen += 1
            text = isinstance(reply, str)
            data = reply.encode() if isinstance(reply, str) else reply  # as an engine gives it
            if step.fail is not None and step.fail.match(data, text, self.values, self.rng):
                raise Fail(f"a message matched the step's fail pattern: {_short(reply)}")
            found = step.body.match(data, text, self.values, self.rng)
            if found is None:
                last = _explain(step.body, reply, self.values, self.rng)
                continue
            for var, path in step.capture:
                value = capture(found, path)
                if value is MISSING:
                    raise Fail(f"capture {var}: no {path!r} in the reply {_short(reply)}")
                self.values[var] = value
            got = ", ".join(f"{v}={_short(self.values[v])}" for v, _ in step.capture)
            return "matched" + (f"; captured {got}" if got else "")
        if not seen:
            raise Fail(f"expected {_describe(step.body)}; nothing came within {timeout:g} s")
        others = "1 message" if seen == 1 else f"{seen} messages"
        raise Fail(f"{last}; nothing matched within {timeout:g} s ({others} came)")


def _describe(matcher: Any) -> str:
    if isinstance(matcher, RegexMatcher):
        return f"a message matching /{matcher.source}/"
    if isinstance(matcher, BinaryMatcher):
        return f"binary {matcher.source}"
    return f"a message containing {_short(matcher.source)}"


def _explain(matcher: Any, reply: str | bytes, values: dict[str, Any], rng: random.Random) -> str:
    """Why ``reply`` does not match, one line."""
    if isinstance(matcher, BinaryMatcher):
        return f"expected binary {matcher.source[:40]}, got {_short(reply)}"
    if isinstance(reply, bytes):
        return f"expected {_describe(matcher)}, got binary {reply[:20].hex()}"
    if isinstance(matcher, RegexMatcher):
        return f"expected a match for /{matcher.source}/, got {_short(reply)}"
    if isinstance(matcher, TextMatcher):
        return f"expected exactly {_short(matcher.expected(values, rng))}, got {_short(reply)}"
    parsed = parse_json(reply)
    if parsed is NOT_JSON:
        return f"expected JSON containing {_short(matcher.source)}, got non-JSON {_short(reply)}"
    mismatch = subset_mismatch(matcher.expected(values, rng), parsed)
    return f"{mismatch} (reply was {_short(reply)})"


async def run_integration(spec: JobSpec) -> list[CheckResult]:
    return await Conversation(spec).run()


__all__ = [
    "DEFAULT_STEPS",
    "ScenarioError",
    "Step",
    "parse_steps",
    "run_integration",
    "step_label",
    "subset_mismatch",
]
