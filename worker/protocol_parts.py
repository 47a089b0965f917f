"""The parts of a protocol conversation around its session (:mod:`.protocol_session`).

How a connection opens (:class:`Opening`, made by the engines before the
connection with :func:`opening`: its codec, options, URL, subprotocols),
where an answer goes (:func:`awaited`, :func:`stray`) and the counting
helpers. Kept apart so the session's module holds the conversation only
(:mod:`wsload.worker.protocol_session` re-exports :class:`Opening` and
:func:`opening`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wsload.common.answer import ANSWER_VAR, AnswerMatcher
from wsload.common.fields import DEFAULT_MAX_MESSAGE_SIZE
from wsload.worker.codecs import codec_class
from wsload.worker.codecs.base import Codec, CodecInputError, Failure, Frame
from wsload.worker.recorder import Recorder
from wsload.worker.session import EMPTY, Effects, Session
from wsload.worker.session_client import Client


@dataclass(frozen=True, slots=True)
class Opening:
    """How one connection of a protocol client opens: its codec, URL, subprotocols.

    Made before the connection (:func:`opening`): the options are rendered
    once per connection and the codec is made with them then, so options a
    template rendered wrong (``namespace = "{room}"`` giving ``"r1"``) are
    refused before anything connects; the engine connects to ``url``
    offering ``subprotocols``, and the session runs ``codec``.
    """

    codec: Codec
    url: str
    subprotocols: tuple[str, ...]


def opening(
    client: Client, ws_url: str, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> Opening | None:
    """The opening of ``client``'s next connection (None: its program speaks raw frames).

    Raises :class:`CodecInputError` when the rendered options are not the
    codec's (the caller counts ``bad_step_value`` and backs off).
    """
    spec = client.program.protocol
    if spec is None:
        return None
    cls = codec_class(spec.name)
    options: Any = {}
    if spec.options is not None:
        options = spec.options.render(client.values, client.rng)
        if not isinstance(options, Mapping):  # the language checks it is a table
            options = {}
    try:
        codec = cls(options, max_message_size)
        url = cls.url(ws_url, options)
    except CodecInputError:
        raise
    except (TypeError, ValueError) as exc:  # a rendered value of the wrong shape
        raise CodecInputError(f"protocol {spec.name}: {exc}") from exc
    return Opening(codec, url, cls.subprotocols(options))


#: bytes of housekeeping replies (pongs, PUBACKs, ACKs) sent while the peer does not read
#: (the engine says paused), at most: past it, error kind ``write_backlog`` (fatal)
WRITE_BACKLOG = 1024 * 1024
#: the close code of a connection whose peer stopped reading our housekeeping
BACKLOG_CLOSE = 1008


def backlog_failure(size: int) -> Failure:
    """The peer stopped reading while we owe it housekeeping: the connection is given up
    (a server that pings but never reads would otherwise cost memory without bound)."""
    return Failure(
        "write_backlog",
        f"the server does not read: {size} bytes of protocol replies queued while writes "
        f"are paused (at most {WRITE_BACKLOG})",
        True,
        BACKLOG_CLOSE,
    )


def awaited(session: Session, view: bytes) -> bool:
    """Is this answer the one the session's pending answer step waits for? (Its key's prefix.)"""
    matcher = session._matcher
    if matcher.__class__ is not AnswerMatcher or not session.pending:
        return False
    key = session.client.values.get(ANSWER_VAR)
    return key is not None and matcher.answers(view, key)


def stray(client: Client, view: bytes) -> Effects:
    """An answer no step waits for: ``late`` (its step timed out), else unsolicited.

    Never a delivery, a push or another expect's message: an answer only
    answers its own request (so the session and its readers never see it).
    """
    if client.late is None or not client.took_late(view, True):
        client.rec.unsolicited += 1
        client.scenario.unsolicited += 1
    return EMPTY


def wire_size(frame: Frame) -> int:
    """A frame's bytes on the wire."""
    if type(frame) is bytes or frame.isascii():
        return len(frame)
    return len(frame.encode())  # type: ignore[union-attr]


def count_error(rec: Recorder, kind: str, text: str) -> None:
    """Count error ``kind``; its text is kept once per kind (built by the caller: a slow path)."""
    if kind not in rec.error_texts:
        rec.error(kind, text)
    else:
        rec.error(kind)


__all__ = [
    "BACKLOG_CLOSE",
    "WRITE_BACKLOG",
    "Opening",
    "awaited",
    "backlog_failure",
    "count_error",
    "opening",
    "stray",
    "wire_size",
]
