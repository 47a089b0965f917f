"""The ``/chat`` rules without a socket: bounds on rooms, tokens, the users file."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from wsload.testserver.chat import (
    MAX_ROOM_MEMBERS,
    MAX_ROOMS_PER_MEMBER,
    ChatConfigError,
    ChatHub,
    Member,
    load_users,
)


def member() -> Member:
    return Member(lambda _text: None)


def hub() -> ChatHub:
    tokens = itertools.count(1)
    return ChatHub(new_token=lambda: f"t{next(tokens)}")


def reply(h: ChatHub, m: Member, message: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(h.handle(m, json.dumps(message)).reply)
    return data


def logged_in(h: ChatHub, user: str) -> tuple[Member, str]:
    m = member()
    token: str = reply(h, m, {"type": "login", "user": user, "password": f"pw-{user}"})["token"]
    return m, token


def test_a_room_holds_at_most_its_members() -> None:
    h = hub()
    for n in range(MAX_ROOM_MEMBERS):
        m, token = logged_in(h, f"u{n}")
        assert reply(h, m, {"type": "join", "room": "big", "token": token})["type"] == "joined"
    m, token = logged_in(h, "late")
    refused = reply(h, m, {"type": "join", "room": "big", "token": token})
    assert refused["reason"].startswith("room full")
    assert len(h.rooms["big"]) == MAX_ROOM_MEMBERS


def test_a_connection_joins_a_bounded_number_of_rooms_and_leaves_them_all() -> None:
    h = hub()
    m, token = logged_in(h, "alice")
    for n in range(MAX_ROOMS_PER_MEMBER):
        assert reply(h, m, {"type": "join", "room": f"r{n}", "token": token})["members"] == 1
    refused = reply(h, m, {"type": "join", "room": "one more", "token": token})
    assert refused["reason"].startswith("too many rooms")
    h.leave_all(m)
    assert h.rooms == {}
    assert m.rooms == set()


def test_logging_in_as_someone_else_leaves_the_rooms_and_renews_the_token() -> None:
    h = hub()
    m, token = logged_in(h, "alice")
    reply(h, m, {"type": "join", "room": "r", "token": token})
    answer = reply(h, m, {"type": "login", "user": "bob", "password": "pw-bob"})
    assert answer == {"type": "login_ok", "user": "bob", "token": "t2"}
    assert h.rooms == {}
    stale = reply(h, m, {"type": "msg", "id": 1, "room": "r", "token": token, "text": "x"})
    assert stale == {"type": "error", "reason": "bad token", "id": 1}


def test_a_message_is_broadcast_to_the_other_members_only() -> None:
    h = hub()
    (a, ta), (b, tb) = logged_in(h, "alice"), logged_in(h, "bob")
    for m, t in ((a, ta), (b, tb)):
        reply(h, m, {"type": "join", "room": "r", "token": t})
    handled = h.handle(a, json.dumps({"type": "msg", "room": "r", "token": ta, "text": "hi"}))
    assert handled.recipients == (b,)
    assert handled.accepted_msg
    assert json.loads(handled.broadcast)["from"] == "alice"
    assert json.loads(handled.reply) == {"type": "ack"}  # no id asked, none given


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("name,secret\na,b\n", "must name columns user and password"),
        ("user,password\na\n", "line 2: too few columns"),
        (b"user,password\n\xff\n", "not UTF-8"),
    ],
)
def test_a_bad_users_file_is_one_line_naming_it(
    tmp_path: Path, content: str | bytes, needle: str
) -> None:
    path = tmp_path / "users.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ChatConfigError) as err:
        load_users(path)
    assert str(err.value).startswith(f"--chat-users {path}: ")
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_the_users_file_decides_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("\ufeffroom, user ,password\nr1,alice,s3cret\n\nr2,bob,x\n")
    users = load_users(path)
    assert users == {"alice": "s3cret", "bob": "x"}
    h = ChatHub(users)
    assert h.password_ok("alice", "s3cret")
    assert not h.password_ok("alice", "pw-alice")
    assert not h.password_ok("carol", "pw-carol")
