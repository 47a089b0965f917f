"""A conversation recorded in the browser console, turned into a scenario file.

The console page (``wsload client``) records what the user sends and what
arrives, each with its time since the connection opened, and posts the list
here; :func:`export_scenario` returns the TOML text of a scenario that
``wsload run --scenario`` replays. Sans-I/O: a list of events in, text out,
so every rule below is tested without a browser.

How a recording becomes steps:

- Every send is a ``send`` step: a JSON send as a TOML table, text as a
  string, binary as ``send_binary`` hex.
- A reply is a message that arrives after a send (before the next one) and
  whose *shape* (its ``type``-like field, else its keys; or text, binary)
  comes after every recorded occurrence of that send's shape, as often each
  time, and never where it was not asked for (before the first send, or
  after only some occurrences of a send). Replies become ``expect`` steps on
  their stable fields: constant strings and booleans stay, and numbers
  under a key ending in ``code``, ``status`` or ``version``; timestamps,
  ids, tokens, UUIDs, other numbers (counts that other clients change) and
  anything that differed between occurrences are left out, unless the user
  sent that value (then it stays, as the same template as in the send).
- Every other received message was pushed by the server (heartbeats,
  broadcasts): it is left out, and the file says so in a comment; under load
  such messages count as ``unsolicited``. A pushed message stays, as an
  expect, when the user sent one of its values back (see captures).
- A value that first arrives in a reply and is later sent by the user (a
  token) is captured: ``capture = {token = "path"}`` on that expect and
  ``{token}`` in the later sends (and in later expects that carry it).
- A pause of more than :data:`THINK_MIN` seconds between the last reply a
  send waits for and the next send is a ``think`` step.
- The loop: the first run of sends whose shapes repeat back to back (the
  same shapes at least twice in a row) becomes ``[[loop]]``, one iteration
  of it; what comes before is ``[[steps]]``. A "repeat from here" mark sets
  where the loop starts. Values numbered per iteration (``m1``, ``m2``...)
  become ``{seq}`` (``m{seq}``), in the sends and in the replies that carry
  them back; the recorded time between iterations becomes ``interval``.
  Sends after the loop's last repetition are left out (a comment says how
  many). With no repetition and no mark, or with ``loop = "none"``,
  everything is ``[[steps]]``: a session per iteration.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wsload.common.errors import SpecError
from wsload.coordinator.recording_infer import THINK_MIN, Event, Inferred, StepOut
from wsload.coordinator.recording_steps import infer

#: Most events one recording may hold (the page stops recording there).
MAX_EVENTS = 10_000
#: Longest message (characters of text, or of hex) one event may carry.
MAX_EVENT_CHARS = 256 * 1024
#: Longest URL accepted.
MAX_URL_CHARS = 4096
LOOP_MODES = ("auto", "none")
_DIRECTIONS = ("out", "in", "mark")
_KINDS = ("text", "json", "binary")


class RecordingError(SpecError):
    """A recording the page sent that cannot be read (every problem, one line each)."""


@dataclass(frozen=True)
class Recording:
    """What the page posts to ``/export``."""

    url: str
    events: tuple[Event, ...]
    loop: str = "auto"


def parse_recording(body: Any) -> Recording:
    """Check the page's JSON body; raises :class:`RecordingError` listing every problem."""
    if not isinstance(body, Mapping):
        raise RecordingError(["the recording must be a JSON object"])
    problems: list[str] = []
    url = body.get("url", "")
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        problems.append(f"url: must be a string of at most {MAX_URL_CHARS} characters")
        url = ""
    loop = body.get("loop", "auto")
    if loop not in LOOP_MODES:
        problems.append(f"loop: must be one of {', '.join(LOOP_MODES)}, got {loop!r:.40}")
        loop = "auto"
    raw = body.get("events")
    if not isinstance(raw, list):
        problems.append("events: must be a list")
        raw = []
    elif len(raw) > MAX_EVENTS:
        problems.append(f"events: at most {MAX_EVENTS}, got {len(raw)}")
        raw = []
    events: list[Event] = []
    for number, item in enumerate(raw, 1):
        event, trouble = _event(item)
        if trouble:
            problems.append(f"events[{number}]: {trouble}")
            if len(problems) >= 20:
                break
        elif event is not None:
            events.append(event)
    if problems:
        raise RecordingError(problems)
    return Recording(url, tuple(events), loop)


def _event(item: Any) -> tuple[Event | None, str]:
    if not isinstance(item, Mapping):
        return None, "must be an object"
    t, direction = item.get("t"), item.get("dir")
    kind, data = item.get("kind", "text"), item.get("data", "")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        return None, "t: must be seconds since the connection opened"
    if direction not in _DIRECTIONS:
        return None, f"dir: must be one of {', '.join(_DIRECTIONS)}"
    if kind not in _KINDS:
        return None, f"kind: must be one of {', '.join(_KINDS)}"
    if not isinstance(data, str) or len(data) > MAX_EVENT_CHARS:
        return None, f"data: must be a string of at most {MAX_EVENT_CHARS} characters"
    if kind == "binary" and direction != "mark":
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", data):
            return None, "data: binary data must be hex"
    elif kind == "json" and direction == "out":
        try:
            json.loads(data)
        except (ValueError, RecursionError):
            return None, "data: sent as JSON but is not JSON"
    return Event(float(t), direction, kind, data), ""


def export_scenario(recording: Recording) -> str:
    """The scenario file (TOML text) that replays ``recording``.

    Raises :class:`RecordingError` when nothing was sent (there is nothing
    to replay).
    """
    result = infer(recording.events, recording.loop)
    if not result.sent:
        raise RecordingError(["nothing was sent on this connection: there is nothing to export"])
    return render(result, recording.url)


def render(result: Inferred, url: str) -> str:
    """The TOML text of inferred steps, with the notes as comments at the top."""
    lines = [
        f"# Recorded by `wsload client`: {result.sent} sent, {result.received} received.",
        "# Replay: wsload run --scenario THIS_FILE (flags override what is set here).",
    ]
    lines += [_comment(note) for note in result.notes]
    if url:
        lines.append(f"ws_url = {toml_value(url)}")
    if result.interval is not None:
        interval = toml_value(result.interval)
        lines.append(f"interval = {interval}  # seconds between loop passes, as recorded")
    for table, steps in (("steps", result.setup), ("loop", result.loop)):
        for step in steps:
            lines += _step(table, step)
    return "\n".join(lines) + "\n"


def _step(table: str, step: StepOut) -> list[str]:
    lines = [""]
    if step.comment:
        lines.append(_comment(step.comment))
    if not step.action:
        return lines
    lines.append(f"[[{table}]]")
    if step.name:
        lines.append(f"name = {toml_value(step.name)}")
    lines.append(f"{step.action} = {toml_value(step.value)}")
    if step.capture:
        pairs = ", ".join(f"{toml_key(name)} = {toml_value(path)}" for name, path in step.capture)
        lines.append(f"capture = {{{pairs}}}")
    return lines


def _comment(text: str) -> str:
    return "# " + re.sub(r"[\x00-\x1f\x7f]+", " ", text)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_key(key: str) -> str:
    """A TOML key: bare when it can be, else a quoted string."""
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)


def toml_value(value: Any) -> str:
    """A JSON-like value as a TOML (inline) value; no null (callers leave it out)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no JSON form")
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return '"' + re.sub(r'["\\\x00-\x1f\x7f]', _escape_char, value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or f"\\u{ord(char):04X}"


__all__ = [
    "LOOP_MODES",
    "MAX_EVENTS",
    "MAX_EVENT_CHARS",
    "THINK_MIN",
    "Event",
    "Recording",
    "RecordingError",
    "export_scenario",
    "parse_recording",
    "render",
    "toml_key",
    "toml_value",
]
