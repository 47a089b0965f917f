"""From a read recording to steps: the loop, the sends, the expects, the pauses.

The rules are listed in :mod:`wsload.coordinator.recording`; the reading of
the recording (replies, pushes, captures) is :mod:`.recording_infer`, the
value-level rules (volatile, counted, as a template) :mod:`.recording_values`.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from wsload.coordinator.recording_infer import (
    MAX_PERIOD,
    THINK_MIN,
    Conversation,
    Event,
    Inferred,
    Msg,
    StepOut,
    read_messages,
)
from wsload.coordinator.recording_values import (
    ABSENT,
    DROP,
    TYPE_KEYS,
    Path,
    at,
    escape,
    json_key,
    leaves,
    numbered,
    rebuild,
    same,
    tableable,
    volatile,
    volatile_text,
)

#: Keys whose numbers are kept in an expect: a status, not a count that load changes.
_CODE_KEY = re.compile(r"(?i)(code|status|version)$")
#: Furthest into the recording the automatic loop may start (sends).
MAX_LOOP_START = 1000
_VARYING = re.compile(r"([0-9A-Fa-f]*[A-Fa-f][0-9A-Fa-f]*[0-9][0-9A-Fa-f]{6,}|\d+)")


def infer(events: Sequence[Event], loop: str = "auto") -> Inferred:
    """The steps that replay ``events`` (``loop``: ``auto`` or ``none``)."""
    msgs, mark = read_messages(events)
    conv = Conversation(msgs)
    start, period, reps = choose_loop([s.shape for s in conv.sends], loop, mark)
    result = Inferred(sent=len(conv.sends), received=len(msgs) - len(conv.sends))
    build = _Builder(conv)
    for m in conv.before:  # a pushed message the user answered (a challenge, a welcome token)
        if m.index in conv.captures:
            result.setup += build.expect([(0, m)], [], {})
    for position in range(start):
        result.setup += build.slot([position], think=position > 0)
    for j in range(period):
        occurrences = [start + r * period + j for r in range(reps)]
        result.loop += build.slot(occurrences, think=j > 0)
    if reps >= 2:
        firsts = [start + r * period for r in range(reps + 1)]
        times = [conv.sends[p].t for p in firsts if p < len(conv.sends)]
        gap = statistics.median(b - a for a, b in pairwise(times))
        result.interval = round(max(gap, 0.0), 2)
        result.notes.append(
            f"the loop was recorded {reps} times back to back: its first pass is written; "
            "values counting up per pass became {seq}"
        )
    tail = len(conv.sends) - (start + reps * period) if period else 0
    if tail:
        result.notes.append(f"left out: {tail} send(s) after the loop's last full repetition")
    pushed = conv.pushed()
    if pushed:
        shapes: dict[str, list[Msg]] = {}
        for m in pushed:
            shapes.setdefault(m.shape, []).append(m)
        listed = "; ".join(f"{len(ms)} x {_short(ms[0].raw)}" for ms in shapes.values())
        result.notes.append(
            f"left out: {len(pushed)} message(s) the server pushed unasked ({listed}); "
            "under load such messages count as unsolicited"
        )
    result.notes += build.notes
    return result


def choose_loop(shapes: Sequence[str], mode: str, mark: int | None) -> tuple[int, int, int]:
    """``(start, period, repetitions)`` of the loop among the sends; period 0: no loop.

    From the mark when there is one (one pass when nothing repeats after it),
    else the first run of sends that repeats back to back.
    """
    n = len(shapes)
    if mode == "none" or n == 0:
        return n, 0, 0
    if mark is not None:
        found = _fold(shapes, mark)
        return (mark, *found) if found else (mark, n - mark, 1)
    for start in range(min(n, MAX_LOOP_START)):
        found = _fold(shapes, start)
        if found:
            return (start, *found)
    return n, 0, 0


def _fold(shapes: Sequence[str], start: int) -> tuple[int, int] | None:
    """The shortest period repeated at least twice from ``start``, and how many times."""
    n = len(shapes)

    def repeats(p: int, k: int) -> bool:
        return start + (k + 1) * p <= n and all(
            shapes[start + j] == shapes[start + k * p + j] for j in range(p)
        )

    for p in range(1, min(MAX_PERIOD, (n - start) // 2) + 1):
        if repeats(p, 1):
            k = 2
            while repeats(p, k):
                k += 1
            return p, k
    return None


def _short(text: str, limit: int = 80) -> str:
    flat = re.sub(r"\s+", " ", text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _Builder:
    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        self.used: set[str] = set()
        self.notes: list[str] = []

    def slot(self, occurrences: list[int], think: bool) -> list[StepOut]:
        """One send (recorded at these positions, one per loop pass) and its replies."""
        conv = self.conv
        sends = [conv.sends[p] for p in occurrences]
        steps: list[StepOut] = []
        if think:
            gaps = []
            for p in occurrences:
                replies = conv.kept(conv.windows[p - 1])
                anchor = max([conv.sends[p - 1].t] + [m.t for m in replies])
                gaps.append(conv.sends[p].t - anchor)
            gap = statistics.median(gaps)
            if gap > THINK_MIN:
                steps.append(StepOut("think", round(gap, 2)))
        send, templates = self.send(sends)
        steps.append(send)
        windows = [conv.kept(conv.windows[p]) for p in occurrences]
        for group in self._pair(windows, sends[0]):
            steps += self.expect(group, sends, templates)
        return steps

    def send(self, sends: list[Msg]) -> tuple[StepOut, dict[Path, Any]]:
        first = sends[0]
        if first.kind == "binary":
            return StepOut("send_binary", first.value), {}
        vars_at = [self.conv.vars_at[s.index] for s in sends]
        if first.kind == "text":
            text = _send_leaf([s.raw for s in sends], vars_at)
            return StepOut("send", text), {(): text}
        templates: dict[Path, Any] = {}

        def leaf(path: Path, value: Any) -> Any:
            values = [at(s.value, path) for s in sends]
            if any(v is ABSENT for v in values):
                values, used = [value], vars_at[:1]
            else:
                used = vars_at
            templates[path] = _send_leaf(values, used)
            return templates[path]

        value = rebuild(first.value, leaf)
        if isinstance(first.value, dict | list) and tableable(first.value):
            return StepOut("send", value), templates
        literal = all(
            t == (escape(v) if isinstance(v, str) else v)
            for (path, t), (_, v) in zip(templates.items(), leaves(first.value), strict=True)
        )
        # as typed when nothing in it varies; else rebuilt around its placeholders
        text = escape(first.raw) if literal else _json_text(first.value, templates, ())
        templates[()] = text
        return StepOut("send", text), templates

    def expect(
        self, group: list[tuple[int, Msg]], sends: list[Msg], templates: dict[Path, Any]
    ) -> list[StepOut]:
        """The expect step of one reply (recorded once per loop pass), or a comment.

        ``sends`` are the passes' sends it answers, ``templates`` the send
        step's template of each of its values (by path).
        """
        msgs = [m for _, m in group]
        paired = [sends[i] for i, _ in group] if sends else []
        first = msgs[0]
        captures = self.conv.captures.get(first.index, [])
        capture = tuple((name, ".".join(str(p) for p in path)) for path, _, name in captures)
        vars_at = [self.conv.vars_at[m.index] for m in msgs]
        step: StepOut | None = None
        if first.kind == "binary":
            if same([m.value for m in msgs]) or all(
                s.kind == "binary" and s.value == m.value
                for s, m in zip(paired, msgs, strict=False)
            ):
                step = StepOut("expect_binary", first.value)
        elif first.kind == "json" and isinstance(first.value, dict | list):
            skip = {path for path, _, _ in captures}

            def leaf(path: Path, value: Any) -> Any:
                values = [at(m.value, path) for m in msgs]
                if path in skip or any(v is ABSENT for v in values):
                    return DROP
                return _expect_leaf(path, values, vars_at, paired, templates)

            body = rebuild(first.value, leaf)
            if body is not DROP and tableable(body):
                step = StepOut("expect", body)
        if step is None and first.kind != "binary":
            step = _expect_text([m.raw for m in msgs], vars_at, paired, templates)
        if step is None:
            return [StepOut("", None, comment=f"not expected (it varies): {_short(first.raw)}")]
        name = self._name(first.shape)
        return [StepOut(step.action, step.value, name, capture)]

    def _name(self, shape: str) -> str:
        base = shape.split("=", 1)[1] if "=" in shape else "reply"
        base = "binary reply" if shape == "binary" else base
        base = re.sub(r"[^\w\- ]", "_", base)[:40] or "reply"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base} {n}"
        self.used.add(name)
        return name

    def _pair(self, windows: list[list[Msg]], send: Msg) -> list[list[tuple[int, Msg]]]:
        """Each reply of the first pass with its counterparts in the other passes.

        Expects wait one after the other, so replies whose order varied
        between passes would fail a replay: then only the main reply (the
        one carrying a value of the send back, else the first) is expected.
        """
        first = windows[0]
        chosen = first
        orders = [[m.shape for m in w] for w in windows]
        if len(first) > 1 and any(o != orders[0] for o in orders[1:]):
            main = next((m for m in first if _carries(m, send)), first[0])
            chosen = [main]
            self.notes.append(
                f"replies to {_short(send.raw, 40)} came in varying order: "
                f"only {_short(main.raw, 40)} is expected"
            )
        groups = []
        for m in chosen:
            nth = [x.shape for x in first[: first.index(m)]].count(m.shape)
            group = [(0, m)]
            for i, window in enumerate(windows[1:], 1):
                alike = [x for x in window if x.shape == m.shape]
                if nth < len(alike):
                    group.append((i, alike[nth]))
            groups.append(group)
        return groups


def _var(values: Sequence[Any], vars_at: Sequence[dict[str, Any]]) -> str | None:
    """The captured variable holding each of ``values`` when it was sent or arrived."""
    for name, value in vars_at[0].items():
        if all(
            name in v and type(v[name]) is type(x) and v[name] == x
            for v, x in zip(vars_at, values, strict=False)
        ) and type(value) is type(values[0]):
            return name
    return None


def _send_leaf(values: Sequence[Any], vars_at: Sequence[dict[str, Any]]) -> Any:
    """A sent scalar as a template: a captured variable, ``{seq}``, or itself."""
    name = _var(values, vars_at)
    if name is not None:
        return "{" + name + "}"
    counted = numbered(values)
    if counted is not None:
        return counted
    first = values[0]
    if not isinstance(first, str):
        return first
    for name, value in vars_at[0].items():
        if isinstance(value, str) and len(value) >= 8 and value in first:
            return ("{" + name + "}").join(escape(p) for p in first.split(value))
    return escape(first)


def _expect_leaf(
    path: Path,
    values: list[Any],
    vars_at: list[dict[str, Any]],
    sends: list[Msg],
    templates: dict[Path, Any],
) -> Any:
    """A reply's scalar as an expected value, or DROP when it is not stable."""
    if not tableable(values[0]):
        return DROP  # TOML has no null, nor integers past 64 bits
    name = _var(values, vars_at)
    if name is not None:
        return "{" + name + "}"
    if sends and sends[0].kind == "json" and len(sends) == len(values):
        paths = [path] + [p for p, _ in leaves(sends[0].value) if p != path]
        for q in paths:
            sent = [at(s.value, q) for s in sends]
            if all(type(a) is type(b) and a == b for a, b in zip(sent, values, strict=True)):
                return templates.get(q, DROP)  # the user's value back: as the send wrote it
    if not same(values):
        return DROP
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    if volatile(key, values[0]) or (_counted(values[0]) and not _CODE_KEY.search(key)):
        return DROP
    return escape(values[0]) if isinstance(values[0], str) else values[0]


def _counted(value: Any) -> bool:
    """A number the server made up: a count, a size, a score, which other clients change."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _expect_text(
    texts: list[str], vars_at: list[dict[str, Any]], sends: list[Msg], templates: dict[Path, Any]
) -> StepOut | None:
    name = _var(texts, vars_at)
    if name is not None:
        return StepOut("expect", "{" + name + "}")
    if (
        len(sends) == len(texts)
        and all(s.raw == t for s, t in zip(sends, texts, strict=True))
        and isinstance(templates.get(()), str)
    ):
        return StepOut("expect", templates[()])
    if same(texts) and not volatile_text(texts[0]):
        return StepOut("expect", escape(texts[0]))
    parts = _VARYING.split(texts[0])
    pattern = (
        "^"
        + "".join(
            ("[0-9A-Fa-f]+" if not p.isdigit() else r"\d+") if i % 2 else re.escape(p)
            for i, p in enumerate(parts)
        )
        + r"\Z"
    )
    if all(re.search(pattern, t) for t in texts):
        return StepOut("expect_regex", pattern)
    prefix = texts[0]
    for text in texts[1:]:
        while not text.startswith(prefix):
            prefix = prefix[:-1]
    if len(prefix) >= 3:
        return StepOut("expect_regex", "^" + re.escape(prefix))
    return None


def _carries(reply: Msg, send: Msg) -> bool:
    """Whether a reply holds one of the send's own values back (an id)."""
    if reply.kind != "json" or send.kind != "json":
        return reply.raw == send.raw
    sent = {
        json_key(v)
        for p, v in leaves(send.value)
        if p and p[-1] not in TYPE_KEYS and isinstance(v, str | int) and not isinstance(v, bool)
    }
    return any(json_key(v) in sent for _, v in leaves(reply.value))


def _json_text(value: Any, templates: dict[Path, Any], path: Path) -> str:
    """A JSON send TOML cannot hold (a null, a huge integer), as a text template."""
    if isinstance(value, dict):
        items = (
            f"{escape(json.dumps(k, ensure_ascii=False))}:{_json_text(v, templates, (*path, k))}"
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return (
            "[" + ",".join(_json_text(v, templates, (*path, i)) for i, v in enumerate(value)) + "]"
        )
    template = templates.get(path, value)
    if isinstance(template, str) and not isinstance(value, str):
        return template  # a placeholder standing for a number: unquoted
    if isinstance(template, str):
        return json.dumps(template, ensure_ascii=False)
    return escape(json.dumps(template))
