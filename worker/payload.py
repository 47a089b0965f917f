"""Message payloads from a template, compiled once and rendered per message.

A template is text with placeholders in braces; everything else is literal,
so a JSON template needs no escaping of its own braces::

    {"type": "test", "client": "{client_id}", "seq": {seq}, "ts": {ts}}

Placeholders: ``{client_id}``, ``{seq}`` (per-connection sequence number, the
default correlation id), ``{ts}`` (send time, seconds), ``{pad}`` (random
ASCII filling the message up to ``size`` characters). With a ``size`` and no
``{pad}``, a JSON object template gets a ``"pad"`` field and other text gets
the padding at the end. Compiling splits the template once; rendering is a
join of precomputed parts, so the hot path does no parsing or JSON encoding.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable

from wsload.worker.errors import PayloadError

PLACEHOLDERS = ("client_id", "seq", "ts", "pad")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_POOL_SIZE = 1 << 16
_POOL = "".join(random.Random(0x5EED).choices(string.ascii_letters + string.digits, k=_POOL_SIZE))


class PayloadTemplate:
    """A compiled template. ``render`` is called once per message sent."""

    __slots__ = ("_codes", "_literals", "_pad_index", "_rng", "size", "source", "uses_ts")

    def __init__(self, template: str, size: int = 0, *, seed: int | None = None) -> None:
        if size < 0:
            raise PayloadError(f"payload size must be zero or more, got {size}")
        self.source = template
        self.size = size
        if size and "{pad}" not in template:
            template = _with_pad_slot(template)
        pieces = _PLACEHOLDER.split(template)
        # re.split with one group alternates literal, field, literal, ...
        self._literals: tuple[str, ...] = tuple(pieces[0::2])
        self._codes: tuple[int, ...] = tuple(PLACEHOLDERS.index(name) for name in pieces[1::2])
        pad_code = PLACEHOLDERS.index("pad")
        # Position in the rendered parts list of the first {pad}; later ones stay empty.
        self._pad_index = 2 * self._codes.index(pad_code) + 1 if pad_code in self._codes else -1
        self._rng = random.Random(seed)
        #: whether messages carry their send time (else the clock is not read)
        self.uses_ts = PLACEHOLDERS.index("ts") in self._codes

    def render(self, client_id: str, seq: int, ts: float) -> str:
        """The payload of message ``seq`` of ``client_id`` sent at ``ts``."""
        values = (client_id, str(seq), f"{ts:.6f}" if self.uses_ts else "", "")
        lits = self._literals
        parts = [lits[0]]
        for i, code in enumerate(self._codes):
            parts.append(values[code])
            parts.append(lits[i + 1])
        if self._pad_index >= 0:
            bare = sum(map(len, parts))
            parts[self._pad_index] = self._padding(self.size - bare)
        return "".join(parts)

    def renderer(self, client_id: str) -> Callable[[int, float], str]:
        """``render`` for one client, specialised: the engine's per-message path.

        What does not change between messages (the literals and the client id)
        is joined in advance into a ``str.format`` pattern whose fields are
        the sequence number, the time stamp and the padding; a message is one
        ``format`` call. Templates with a repeated placeholder use :meth:`render`.
        """
        codes = self._codes
        if len(set(codes)) < len(codes):
            return lambda seq, ts: self.render(client_id, seq, ts)
        field = {1: "{0}", 2: "{1}", 3: "{2}"}  # seq, ts, pad (by placeholder code)
        lits = self._literals
        pattern = _escape(lits[0])
        for i, code in enumerate(codes):
            pattern += (_escape(client_id) if code == 0 else field[code]) + _escape(lits[i + 1])
        fixed = sum(map(len, lits)) + (len(client_id) if 0 in codes else 0)
        fill = pattern.format
        size = self.size if self._pad_index >= 0 else 0
        padding = self._padding
        uses_seq, uses_ts = 1 in codes, self.uses_ts

        def render(seq: int, ts: float) -> str:
            s = str(seq) if uses_seq else ""
            t = f"{ts:.6f}" if uses_ts else ""
            return fill(s, t, padding(size - fixed - len(s) - len(t)) if size else "")

        return render

    def _padding(self, n: int) -> str:
        if n <= 0:
            return ""
        if n > _POOL_SIZE:
            return (_POOL * (n // _POOL_SIZE + 1))[:n]
        start = int(self._rng.random() * (_POOL_SIZE - n + 1))  # randrange costs 5x more
        return _POOL[start : start + n]


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _with_pad_slot(template: str) -> str:
    """Where the padding goes when the template has no ``{pad}`` of its own."""
    stripped = template.rstrip()
    if stripped.endswith("}") and _is_json_object(template):
        body = stripped[:-1].rstrip()
        sep = "" if body.endswith("{") else ", "
        return f'{body}{sep}"pad": "{{pad}}"}}' + template[len(stripped) :]
    return template + "{pad}"


def _is_json_object(template: str) -> bool:
    sample = _PLACEHOLDER.sub(lambda m: "0" if m.group(1) in ("seq", "ts") else "x", template)
    try:
        return isinstance(json.loads(sample), dict)
    except ValueError:
        return False


__all__ = ["PLACEHOLDERS", "PayloadTemplate"]
