"""Matching a protocol's answer to the step that asked for it.

A protocol step that waits for its answer (a Socket.IO ack, a STOMP
RECEIPT, an MQTT PUBACK, a GraphQL query's result) is run as a send then an
expect. The send's codec returns the request's correlation key, which the
client keeps in its variables under :data:`ANSWER_VAR` (a name no template
can spell, so a scenario never sees or overwrites it); the expect's matcher
is an :class:`AnswerMatcher`: a message answers when its view begins with
``{"answer":KEY`` followed by ``,`` or ``}`` (the codecs put the key first,
see :mod:`wsload.worker.codecs.base`). That is a test of the view's first
bytes, no parse: a push (which never has an ``answer`` member) or another
request's answer is rejected at once.

:class:`AnswerError` is the same step's ``fail`` matcher: the answer to the
pending key that carries an ``"error"`` member (a GraphQL ``error``, a STOMP
ERROR naming the receipt, a refused MQTT subscription). It returns the
error's value, which the step's failure text shows. The step's own ``fail``
pattern, if any, is tested on its answer only.

Because the key lives in the client's variables, a late answer (its step
timed out) is recognised with the variables copied at the timeout, like any
late reply (:meth:`wsload.worker.session_client.Client.took_late`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from wsload.common.match import NOT_JSON, parse_json
from wsload.common.program import Matcher

#: the client variable that holds the pending answer's key (never a template name)
ANSWER_VAR = "#answer"
#: what :class:`AnswerError` returns for an answer that matched the step's ``fail``
FAIL_PATTERN: Any = object()

_FOLLOW = (ord(","), ord("}"))


def answer_prefix(key: Any) -> bytes:
    """The bytes an answer's view for ``key`` begins with: ``{"answer":`` and the key's JSON."""
    if key.__class__ is int:  # the common key (an ack id, a packet id): no JSON encoder
        return b'{"answer":%d' % key
    return b'{"answer":' + json.dumps(key, separators=(",", ":"), ensure_ascii=False).encode()


class AnswerMatcher:
    """The message that answers the pending request (a :class:`wsload.common.program.Matcher`).

    ``parse``: return the parsed view (a step with captures needs it);
    otherwise the match returns ``True`` without parsing anything.
    """

    __slots__ = ("_key", "_prefix", "parse")

    def __init__(self, parse: bool = False) -> None:
        self.parse = parse
        self._key: Any = None
        self._prefix = b""

    def prefix(self, key: Any) -> bytes:
        """The prefix for ``key``: computed once per key (one per request)."""
        if key is not self._key:
            self._key = key
            self._prefix = answer_prefix(key)
        return self._prefix

    def answers(self, data: bytes, key: Any) -> bool:
        """Does ``data`` (a view) answer ``key``? Its first bytes only, no parse."""
        prefix = self.prefix(key)
        n = len(prefix)
        return len(data) > n and data[n] in _FOLLOW and data.startswith(prefix)

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        key = values.get(ANSWER_VAR)
        if key is None:
            return None
        prefix = self.prefix(key)
        n = len(prefix)
        if len(data) <= n or data[n] not in _FOLLOW or not data.startswith(prefix):
            return None
        if not self.parse:
            return True
        parsed = parse_json(data)
        return None if parsed is NOT_JSON else parsed


class AnswerError(AnswerMatcher):
    """The pending request's answer that fails its step: returns why.

    The protocol's error (an ``"error"`` member: its value is returned), or,
    when the step has its own ``fail`` pattern, an answer that matches it
    (:data:`FAIL_PATTERN` is returned). A push never fails an answer step.
    """

    __slots__ = ("fail",)

    def __init__(self, fail: Matcher | None = None) -> None:
        super().__init__(parse=True)
        self.fail = fail

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        fail = self.fail
        if fail is None and b'"error"' not in data:
            return None
        parsed = super().match(data, text, values, rng)
        if parsed is None:
            return None
        if parsed.__class__ is dict and "error" in parsed:
            error = parsed["error"]
            return error if error is not None else "null"
        if fail is not None and fail.match(data, text, values, rng) is not None:
            return FAIL_PATTERN
        return None


__all__ = ["ANSWER_VAR", "FAIL_PATTERN", "AnswerError", "AnswerMatcher", "answer_prefix"]
