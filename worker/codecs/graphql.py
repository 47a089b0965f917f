"""GraphQL over WebSocket: the ``graphql-transport-ws`` protocol (the graphql-ws library's).

The protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md)
is JSON text messages, each an object with a ``type``:

- handshake: we send ``connection_init`` (``payload``: the scenario's
  ``protocol = {name = "graphql", payload = {...}}``), the server answers
  ``connection_ack``; steps run after it.
- ``ping``/``pong`` either way at any time: a ping is answered with a pong
  at once, a pong is swallowed. Housekeeping: never a step's message.
- an operation: ``{"id", "type": "subscribe", "payload": {query, variables,
  operationName}}``; its results come as ``next`` with the same id, it ends
  with ``complete`` (either side) or ``error`` (the server: the operation's
  errors, no ``complete`` follows).

What the steps see (the message's view, see :mod:`.base`):

- ``query = {query = "..."}`` (a query or a mutation: one result) is an
  answer step: its key is the operation's id, its result ``next`` becomes
  ``{"answer":ID,"type":"next","payload":...}`` (with an ``"error"`` member
  when the result carries GraphQL ``errors``: the step fails with
  ``graphql_error``), its ``error`` becomes ``{"answer":ID,"type":"error",
  "error":[...]}``, and the ``complete`` that follows is swallowed. A
  ``complete`` with no result before it is an error answer too, so the step
  does not wait for its timeout.
- ``subscribe = {query = "subscription ..."}`` starts a subscription (its id:
  the table's ``id``, else one made per connection) and does not wait: each
  of its ``next`` messages is a message whose view is the wire message
  itself (``{"id":"s1","type":"next","payload":{"data":...}}``), for an
  ``expect`` or ``[deliveries]`` (paths such as ``payload.data.events.seq``).
  Its ``error`` counts as ``graphql_error`` (not fatal: the connection goes
  on), its ``complete`` from the server is swallowed.
- ``unsubscribe = {id = "..."}`` sends ``complete`` for it.

The legacy subscriptions-transport-ws protocol (Apollo's before graphql-ws,
subprotocol ``graphql-ws``) is the same conversation under other names:
``legacy = true`` in the options offers that subprotocol (:meth:`GraphQLCodec.subprotocols`)
and speaks ``start``/``data``/``stop`` for ``subscribe``/``next``/``complete``;
the server's ``ka`` keep-alives are swallowed, its ``connection_error``
(a refused handshake) counts ``handshake_refused``, and the codec says
``connection_terminate`` before it closes. Views are the wire messages
there too (a subscription's result: ``{"id":"1","type":"data",...}``).

Bounds: at most :data:`MAX_OPERATIONS` operations open per connection (the
server's own limit is usually 100). A query whose step timed out stays open
until its answer comes (so the answer counts ``late``), but when the table
is full the oldest query is forgotten first; with only subscriptions open,
a new operation is refused (:class:`CodecInputError`: the step's error kind).
A server that sends a binary frame, bad JSON, a message that is not an
object or a type we do not know costs ``protocol_error`` (fatal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from wsload.common.fields import DEFAULT_MAX_MESSAGE_SIZE
from wsload.common.program import Action
from wsload.common.protocols import SUBPROTOCOLS, VERBS
from wsload.worker.codecs.base import (
    NOTHING,
    AnswerKey,
    Codec,
    CodecInputError,
    Failure,
    Frame,
    Message,
    Received,
    cut,
    dumps,
)

#: operations open at once on one connection (strawberry's and many servers' default limit)
MAX_OPERATIONS = 100

_QUERY = "query"
_SUBSCRIPTION = "subscription"
#: the legacy subscriptions-transport-ws protocol's subprotocol (``legacy = true``)
LEGACY_SUBPROTOCOL = "graphql-ws"


def _error_text(errors: Any) -> str:
    """The first error's message, for an error kind's text (bounded)."""
    first = errors[0] if isinstance(errors, list) and errors else errors
    if isinstance(first, Mapping) and isinstance(first.get("message"), str):
        text: str = first["message"]
    else:
        try:
            text = dumps(first)
        except (TypeError, ValueError, RecursionError):
            text = repr(first)[:400]
    return cut(text)


def _too_deep(data: bytes) -> Received:
    """A message nested past what the interpreter parses or dumps: dropped, counted (not
    fatal: the connection and its other operations go on)."""
    text = f"a message nested too deep to read: {data[:60]!r}"
    return Received(failure=Failure("protocol_error", text, fatal=False))


class _Operation:
    """One open operation: a query (an answer step's) or a subscription."""

    __slots__ = ("answered", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        #: a query's result came (its ``complete`` is then swallowed)
        self.answered = False


class GraphQLCodec(Codec):
    """``protocol = "graphql"``: see the module's docstring."""

    name: ClassVar[str] = "graphql"
    #: graphql-transport-ws (one declaration with the language: common/protocols.py)
    subprotocol: ClassVar[str | None] = ", ".join(SUBPROTOCOLS["graphql"])
    verbs: ClassVar[frozenset[Action]] = VERBS["graphql"]

    def __init__(
        self, options: Mapping[str, Any], max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        super().__init__(options, max_message_size)
        #: open operations by id, oldest first (dicts keep insertion order)
        self._ops: dict[str, _Operation] = {}
        self._counter = 0
        #: subscriptions-transport-ws: start/data/stop instead of subscribe/next/complete,
        #: ``ka`` keep-alives instead of ping/pong, connection_error, connection_terminate
        self.legacy = options.get("legacy") is True
        self._start, self._result, self._stop = (
            ("start", "data", "stop") if self.legacy else ("subscribe", "next", "complete")
        )

    @classmethod
    def subprotocols(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The subprotocols to offer: graphql-ws for ``legacy = true``."""
        if options.get("legacy") is True:
            return (LEGACY_SUBPROTOCOL,)
        return super().subprotocols(options)

    # -- handshake -----------------------------------------------------------

    def open(self, now: float) -> list[Frame]:
        message: dict[str, Any] = {"type": "connection_init"}
        payload = self.options.get("payload")
        if payload is not None:
            message["payload"] = payload
        return [dumps(message)]

    # -- frames in -----------------------------------------------------------

    def receive(self, now: float, data: bytes, text: bool) -> Received:
        if not text:
            return self._broken("a binary frame (graphql-transport-ws is JSON text)")
        try:
            message = json.loads(data)
        except RecursionError:  # JSON, nested past what the interpreter parses: dropped
            return _too_deep(data)
        except ValueError:  # also UnicodeDecodeError
            return self._broken(f"not JSON: {data[:60]!r}")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return self._broken(f"not a message object with a type: {data[:60]!r}")
        kind: str = message["type"]
        if self.legacy:
            if kind == "ka":
                return NOTHING
            if kind == "connection_error":
                reason = _error_text(message.get("payload"))
                return Received(failure=Failure("handshake_refused", reason, close_code=1000))
        elif kind == "ping":
            return Received(replies=[dumps({"type": "pong"})])
        elif kind == "pong":
            return NOTHING
        if not self.ready:
            if kind == "connection_ack":
                self.ready = True
                return NOTHING
            return self._broken(f"{kind!r} before connection_ack")
        try:
            if kind == self._result:
                return self._next(data, message)
            if kind == "error":
                return self._error(message)
        except (RecursionError, ValueError):  # its view cannot be dumped (too deep, NaN)
            return _too_deep(data)
        if kind == "complete":
            return self._complete(message)
        if kind == "connection_ack":
            return NOTHING  # a second one changes nothing
        return self._broken(f"unknown message type {kind[:40]!r}")

    def _next(self, data: bytes, message: dict[str, Any]) -> Received:
        op_id = message.get("id")
        op = self._ops.get(op_id) if isinstance(op_id, str) else None
        if op is None and not self._ours(op_id):
            # a subscription's event still on its way after we ended it
            return Received(messages=[Message(bytes(data), message)])
        if op is not None and op.kind == _SUBSCRIPTION:  # a subscription's event
            return Received(messages=[Message(bytes(data), message)])
        # a query's result; of a query already answered or forgotten (its step timed
        # out, _make_room dropped it): an answer no step waits for, late or unsolicited
        payload = message.get("payload")
        view: dict[str, Any] = {"answer": op_id, "type": self._result, "payload": payload}
        if isinstance(payload, Mapping) and payload.get("errors"):
            view["error"] = payload["errors"]
        got = Received(messages=[Message(dumps(view).encode(), view)])
        if op is not None:
            op.answered = True
        return got

    def _ours(self, op_id: Any) -> bool:
        """Is ``op_id`` one of the query ids this connection made (``q1``, ``q2``...)?"""
        return (
            isinstance(op_id, str)
            and op_id[:1] == "q"
            and op_id[1:].isdigit()
            and op_id[1:2] != "0"
            and int(op_id[1:]) <= self._counter
        )

    def _error(self, message: dict[str, Any]) -> Received:
        op_id = message.get("id")
        errors = message.get("payload")
        op = self._ops.pop(op_id, None) if isinstance(op_id, str) else None
        if op is not None and op.kind == _QUERY:
            view = {"answer": op_id, "type": "error", "error": errors}
            return Received(messages=[Message(dumps(view).encode(), view)])
        return Received(failure=Failure("graphql_error", _error_text(errors), fatal=False))

    def _complete(self, message: dict[str, Any]) -> Received:
        op_id = message.get("id")
        op = self._ops.pop(op_id, None) if isinstance(op_id, str) else None
        if op is None or op.kind == _SUBSCRIPTION or op.answered:
            return NOTHING
        view = {"answer": op_id, "type": "complete", "error": "completed without a result"}
        return Received(messages=[Message(dumps(view).encode(), view)])

    @staticmethod
    def _broken(text: str) -> Received:
        return Received(failure=Failure("protocol_error", cut(text)))

    # -- steps out -----------------------------------------------------------

    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        if not isinstance(value, Mapping):
            raise CodecInputError(f"{action.value}: a table is needed, got {type(value).__name__}")
        if action is Action.UNSUBSCRIBE:
            op_id = self._given_id(value)
            if op_id is None:
                raise CodecInputError("unsubscribe: 'id' is needed")
            self._ops.pop(op_id, None)
            return [dumps({"id": op_id, "type": self._stop})], None
        if action is Action.SUBSCRIBE:
            op_id = self._given_id(value)
            if op_id is not None and op_id in self._ops:
                raise CodecInputError(f"subscribe: operation id {op_id!r} is already open")
            kind = _SUBSCRIPTION
        elif action is Action.QUERY:
            op_id, kind = None, _QUERY
        else:
            raise CodecInputError(f"{action.value!r} is not a step of protocol 'graphql'")
        payload = self._payload(action, value)
        self._make_room(action)
        if op_id is None:
            op_id = self._new_id("q" if kind == _QUERY else "s")
        self._ops[op_id] = _Operation(kind)
        frame = dumps({"id": op_id, "type": self._start, "payload": payload})
        return [frame], (op_id if kind == _QUERY and answer else None)

    def goodbye(self) -> list[Frame]:
        """The legacy protocol's goodbye (connection_terminate); graphql-transport-ws has none."""
        return [dumps({"type": "connection_terminate"})] if self.legacy else []

    @staticmethod
    def _given_id(value: Mapping[str, Any]) -> str | None:
        op_id = value.get("id")
        if op_id is None:
            return None
        if isinstance(op_id, bool) or not isinstance(op_id, str | int) or op_id == "":
            raise CodecInputError(f"'id' must be a text or an integer, got {op_id!r}")
        return str(op_id)

    @staticmethod
    def _payload(action: Action, value: Mapping[str, Any]) -> dict[str, Any]:
        query = value.get("query")
        if not isinstance(query, str) or not query:
            raise CodecInputError(f"{action.value}: 'query' must be a non-empty text")
        payload: dict[str, Any] = {"query": query}
        variables = value.get("variables")
        if variables is not None:
            if not isinstance(variables, Mapping):
                raise CodecInputError(f"{action.value}: 'variables' must be a table")
            payload["variables"] = variables
        name = value.get("operation_name")
        if name is not None:
            if not isinstance(name, str):
                raise CodecInputError(f"{action.value}: 'operation_name' must be a text")
            payload["operationName"] = name
        return payload

    def _make_room(self, action: Action) -> None:
        """Keep the open operations bounded: forget the oldest query, else refuse."""
        if len(self._ops) < MAX_OPERATIONS:
            return
        for op_id, op in self._ops.items():
            if op.kind == _QUERY:
                del self._ops[op_id]
                return
        raise CodecInputError(
            f"{action.value}: {MAX_OPERATIONS} subscriptions already open on this connection"
        )

    def _new_id(self, prefix: str) -> str:
        while True:
            self._counter += 1
            op_id = f"{prefix}{self._counter}"
            if op_id not in self._ops:
                return op_id


__all__ = ["LEGACY_SUBPROTOCOL", "MAX_OPERATIONS", "GraphQLCodec"]
