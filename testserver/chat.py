"""The ``/chat`` endpoint's rules, sans-I/O: logins, tokens, rooms, messages, acks, broadcasts.

A realistic conversation target for load tests: a client logs in and gets a
token, joins a room, then sends messages it expects acknowledged by id,
among broadcasts of the other members' messages and heartbeats pushed on a
timer. Every message is a JSON text frame::

    {"type": "login", "user": U, "password": P}
        -> {"type": "login_ok", "user": U, "token": T}
        or {"type": "error", "reason": "bad credentials"}
    {"type": "join", "room": R, "token": T}
        -> {"type": "joined", "room": R, "members": N}
    {"type": "msg", "id": ID, "room": R, "token": T, "text": X}
        -> {"type": "ack", "id": ID} to the sender, and
           {"type": "broadcast", "room": R, "from": U, "text": X} to every other member of R
    a wrong or missing token  -> {"type": "error", "id": ID, "reason": "bad token"}
    any other type            -> {"type": "error", "reason": "unknown type"}

A request's ``id`` (a string or an integer), when it has one, is repeated in
its reply, so a client can match any reply by id. ``T`` is a fresh random
token bound to the connection that logged in: it is valid on that
connection only, until it logs in again or closes. The password of user U
is the one in the users file given to ``wsload serve --chat-users FILE``
(CSV with a header row and columns ``user`` and ``password``; other columns
are ignored), else ``"pw-" + U``.

This module decides what to answer and whom to tell; the asyncio shell
(:mod:`wsload.testserver.chat_connection`) moves the bytes, applies the
fault flags to replies and counts what it sent. Everything a client can make
the server keep is bounded: names, rooms per connection, members per room.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from wsload.common.errors import WsloadError

MAX_NAME: Final = 200  #: characters of a user, password or room name
MAX_ROOMS_PER_MEMBER: Final = 64
MAX_ROOM_MEMBERS: Final = 10_000
MAX_USERS_FILE: Final = 64 * 1024 * 1024  #: bytes of a ``--chat-users`` file
MAX_USERS: Final = 1_000_000  #: rows of a ``--chat-users`` file
DEFAULT_PASSWORD_PREFIX: Final = "pw-"

#: The chat counter (see :mod:`wsload.testserver.stats`) a reply is counted in once sent.
ChatReplyKind = Literal["logins", "login_failures", "joins", "acks", "bad_token", "errors"]


class ChatConfigError(WsloadError):
    """A ``--chat-users`` file the server cannot use; the message is one line naming it."""


def load_users(path: str | Path) -> dict[str, str]:
    """User -> password from a CSV file with a header row naming ``user`` and ``password``.

    Read whole but bounded (size and rows); every problem is one line naming
    the file, so ``wsload serve`` can refuse it before binding.
    """
    where = f"--chat-users {path}"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_USERS_FILE + 1)
    except OSError as exc:
        raise ChatConfigError(f"{where}: {exc.strerror or exc}") from None
    if len(raw) > MAX_USERS_FILE:
        raise ChatConfigError(f"{where}: larger than {MAX_USERS_FILE // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChatConfigError(f"{where}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ChatConfigError(f"{where}: empty (a header row user,password is needed)")
        names = [h.strip() for h in header]
        if "user" not in names or "password" not in names:
            raise ChatConfigError(
                f"{where}: the header row must name columns user and password, got {header}"
            )
        ui, pi = names.index("user"), names.index("password")
        users: dict[str, str] = {}
        for row in reader:
            if not row:
                continue
            if len(users) >= MAX_USERS:
                raise ChatConfigError(f"{where}: more than {MAX_USERS} users")
            if len(row) <= max(ui, pi):
                raise ChatConfigError(f"{where}: line {reader.line_num}: too few columns")
            users[row[ui]] = row[pi]
    except csv.Error as exc:
        raise ChatConfigError(f"{where}: line {reader.line_num}: {exc}") from None
    return users


@dataclass(eq=False)
class Member:
    """One ``/chat`` connection as the rules see it.

    ``push`` hands a broadcast to the connection (the shell queues it,
    bounded, and counts it delivered or dropped). Compared by identity.
    """

    push: Callable[[str], None]
    user: str | None = None
    token: str | None = None
    rooms: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Handled:
    """What one received frame leads to: the reply, its counter, and a broadcast.

    ``accepted_msg`` is True for a ``msg`` the server took (counted in
    ``messages``); ``broadcast`` is the text every member in ``recipients``
    gets (empty when nobody else is in the room).
    """

    reply: str
    kind: ChatReplyKind
    accepted_msg: bool = False
    broadcast: str = ""
    recipients: tuple[Member, ...] = ()


def _dump(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class ChatHub:
    """The server-wide chat state: credentials and rooms (room -> members, in join order).

    A room exists while it has members; a connection leaves every room when
    it closes (:meth:`leave_all`) or logs in as another user.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        new_token: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self._users = users
        self._new_token = new_token
        self.rooms: dict[str, dict[Member, None]] = {}

    def password_ok(self, user: str, password: str) -> bool:
        """The users file's password for ``user``, else ``"pw-" + user``."""
        if self._users is None:
            return password == DEFAULT_PASSWORD_PREFIX + user
        expected = self._users.get(user)
        return expected is not None and secrets.compare_digest(expected.encode(), password.encode())

    def leave_all(self, member: Member) -> None:
        for room in member.rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.pop(member, None)
                if not members:
                    del self.rooms[room]
        member.rooms.clear()

    def handle(self, member: Member, frame: str | bytes) -> Handled:
        """The answer to one data frame from ``member`` (state updated accordingly)."""
        if isinstance(frame, bytes):
            return _error("bad request: expected a JSON text message", None)
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            return _error("bad request: not JSON", None)
        if not isinstance(message, dict):
            return _error("bad request: not a JSON object", None)
        ident = message.get("id")
        if not isinstance(ident, str | int) or isinstance(ident, bool):
            ident = None
        kind = message.get("type")
        if kind == "msg":
            return self._msg(member, message, ident)
        if kind == "login":
            return self._login(member, message, ident)
        if kind == "join":
            return self._join(member, message, ident)
        return _error("unknown type", ident)

    def _login(self, member: Member, message: dict[str, Any], ident: str | int | None) -> Handled:
        user, password = message.get("user"), message.get("password")
        if not (_name(user) and isinstance(password, str) and len(password) <= MAX_NAME):
            return _error("bad request: login needs user and password strings", ident)
        assert isinstance(user, str)
        if not self.password_ok(user, password):
            return _error("bad credentials", ident, "login_failures")
        if member.user != user:
            self.leave_all(member)
        member.user = user
        member.token = self._new_token()
        reply = _with_id({"type": "login_ok", "user": user, "token": member.token}, ident)
        return Handled(_dump(reply), "logins")

    def _join(self, member: Member, message: dict[str, Any], ident: str | int | None) -> Handled:
        if not _token_ok(member, message):
            return _error("bad token", ident, "bad_token")
        room = message.get("room")
        if not _name(room):
            return _error("bad request: join needs a room name", ident)
        assert isinstance(room, str)
        members = self.rooms.get(room)
        if room not in member.rooms:
            if len(member.rooms) >= MAX_ROOMS_PER_MEMBER:
                return _error(f"too many rooms (at most {MAX_ROOMS_PER_MEMBER})", ident)
            if members is None:
                members = self.rooms[room] = {}
            elif len(members) >= MAX_ROOM_MEMBERS:
                return _error(f"room full (at most {MAX_ROOM_MEMBERS} members)", ident)
            members[member] = None
            member.rooms.add(room)
        assert members is not None
        reply = _with_id({"type": "joined", "room": room, "members": len(members)}, ident)
        return Handled(_dump(reply), "joins")

    def _msg(self, member: Member, message: dict[str, Any], ident: str | int | None) -> Handled:
        if not _token_ok(member, message):
            return _error("bad token", ident, "bad_token")
        room, text = message.get("room"), message.get("text")
        if not isinstance(room, str) or room not in member.rooms:
            return _error("not in room (join it first)", ident)
        if not isinstance(text, str):
            return _error("bad request: msg needs a text string", ident)
        others = tuple(m for m in self.rooms[room] if m is not member)
        broadcast = (
            _dump({"type": "broadcast", "room": room, "from": member.user, "text": text})
            if others
            else ""
        )
        ack = _dump({"type": "ack"} if ident is None else {"type": "ack", "id": ident})
        return Handled(ack, "acks", True, broadcast, others)


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


def _token_ok(member: Member, message: Mapping[str, Any]) -> bool:
    token = message.get("token")
    return member.token is not None and isinstance(token, str) and token == member.token


def _with_id(reply: dict[str, Any], ident: str | int | None) -> dict[str, Any]:
    if ident is not None:
        reply["id"] = ident
    return reply


def _error(reason: str, ident: str | int | None, kind: ChatReplyKind = "errors") -> Handled:
    reply: dict[str, Any] = {"type": "error", "reason": reason}
    return Handled(_dump(_with_id(reply, ident)), kind)


__all__ = [
    "DEFAULT_PASSWORD_PREFIX",
    "MAX_ROOMS_PER_MEMBER",
    "MAX_ROOM_MEMBERS",
    "ChatConfigError",
    "ChatHub",
    "ChatReplyKind",
    "Handled",
    "Member",
    "load_users",
]
