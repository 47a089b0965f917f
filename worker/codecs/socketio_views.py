"""Socket.IO views: the JSON text steps match, made from a packet's own bytes.

:mod:`wsload.worker.codecs.socketio` parses the packets; this module makes
what the steps see of an event or an ack (the views documented there), and
the compact JSON the codec writes (and its packet errors: :func:`fail`,
:func:`other_namespace`). Views are spliced from the frame's bytes where
the frame already holds their parts as JSON text (the event name, the one
argument), because a load's hot path is one ack per emit: dumping again
what was just parsed would cost as much as the rest of the codec.
"""

from __future__ import annotations

import base64
from typing import Any

from wsload.worker.codecs.base import Failure, Message, Received, dumps


def fail(text: str) -> Received:
    return Received(failure=Failure("protocol_error", text[:200]))


def other_namespace(what: str, data: bytes) -> Received:
    """A packet for a namespace we did not join: counted, not fatal (a server may
    broadcast to every namespace of the connection)."""
    return Received(
        failure=Failure("protocol_error", f"{what} of another namespace: {start(data)}", False)
    )


def start(data: bytes) -> str:
    """A frame's first bytes for an error text (never a whole frame)."""
    return data[:60].decode("utf-8", "replace")


def ack_message(key: bytes, body: bytes, args: list[Any]) -> Message:
    """An ack's view, ``{"answer":ID,...}``; ``body`` is ``args``' own JSON text."""
    ident = int(key)
    if len(args) == 1:
        body = body.strip()
        return Message(
            b'{"answer":' + key + b',"data":' + body[1:-1] + b"}",
            {"answer": ident, "data": args[0]},
        )
    if not args:
        return Message(b'{"answer":' + key + b',"args":[]}', {"answer": ident, "args": []})
    view = {"answer": ident, "data": args[0], "args": args}
    return Message(dumps(view).encode(), view)


def event_message(body: bytes, args: list[Any]) -> Message:
    """An event's view, ``{"event":NAME,...}``; ``body`` is ``args``' own JSON text (or b"")."""
    name = args[0]
    if len(args) <= 2 and body[:2] == b'["':
        close = body.find(b'"', 2)
        if close > 0 and b"\\" not in body[2:close]:  # the name's text is the name
            quoted = body[1 : close + 1]
            if len(args) == 1:
                return Message(b'{"event":' + quoted + b"}", {"event": name})
            rest = body[close + 1 :].strip()  # ',A0]'
            return Message(
                b'{"event":' + quoted + b',"data":' + rest[1:-1] + b"}",
                {"event": name, "data": args[1]},
            )
    view: dict[str, Any] = {"event": name}
    if len(args) > 1:
        view["data"] = args[1]
    if len(args) > 2:
        view["args"] = args[1:]
    return Message(dumps(view).encode(), view)


def fill_binary(value: Any, attachments: list[bytes], depth: int) -> Any:
    """``value`` with each ``{"_placeholder":true,"num":N}`` as ``{"_binary":"<base64>"}``."""
    if depth > 64:
        raise RecursionError
    if value.__class__ is list:
        return [fill_binary(item, attachments, depth + 1) for item in value]
    if value.__class__ is dict:
        if value.get("_placeholder") is True and "num" in value:
            num = value["num"]
            if num.__class__ is not int or num < 0:
                raise IndexError(num)
            return {"_binary": base64.b64encode(attachments[num]).decode()}
        return {k: fill_binary(v, attachments, depth + 1) for k, v in value.items()}
    return value


__all__ = [
    "ack_message",
    "dumps",
    "event_message",
    "fail",
    "fill_binary",
    "other_namespace",
    "start",
]
