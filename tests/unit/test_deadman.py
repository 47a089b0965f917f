"""The dead-man rule on a fake clock, and how failed handshakes are named on both sides."""

from __future__ import annotations

import zmq

from wsload.coordinator.handshakes import describe
from wsload.worker.deadman import Action, DeadMan
from wsload.worker.link import handshake_problem


def test_silence_asks_for_a_stop_once() -> None:
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    dm.arm(0.0)
    assert dm.poll(4.9) is Action.NONE
    assert dm.poll(5.1) is Action.STOP
    assert dm.poll(6.0) is Action.NONE  # once per silence
    dm.seen(7.0)
    assert dm.poll(12.1) is Action.STOP  # a new silence


def test_a_load_that_stops_in_time_is_left_alone() -> None:
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    dm.arm(0.0)
    dm.load_started(grace=3.0, now=1.0)
    assert dm.poll(5.5) is Action.STOP
    dm.load_stopped()
    assert dm.poll(100.0) is Action.NONE


def test_a_load_that_does_not_stop_ends_the_process() -> None:
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    dm.arm(0.0)
    dm.load_started(grace=3.0, now=1.0)
    assert dm.poll(5.5) is Action.STOP
    assert dm.poll(8.4) is Action.NONE
    assert dm.poll(8.5) is Action.EXIT


def test_the_coordinator_coming_back_does_not_cancel_a_stop_already_asked_for() -> None:
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    dm.arm(0.0)
    dm.load_started(grace=3.0, now=0.0)
    assert dm.poll(5.5) is Action.STOP
    dm.seen(6.0)
    assert dm.poll(8.5) is Action.EXIT


def test_a_load_started_during_a_silence_gets_its_grace_too() -> None:
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    dm.arm(0.0)
    assert dm.poll(6.0) is Action.STOP
    dm.load_started(grace=2.0, now=6.5)
    assert dm.poll(8.4) is Action.NONE
    assert dm.poll(8.6) is Action.EXIT


def test_no_load_no_exit() -> None:
    dm = DeadMan(silence_timeout=1.0, now=0.0)
    dm.arm(0.0)
    assert dm.poll(2.0) is Action.STOP
    assert all(dm.poll(t) is Action.NONE for t in (3.0, 100.0, 1e6))


def test_no_coordinator_yet_nothing_to_miss() -> None:
    """A long-lived worker waits minutes between runs: that is no silence."""
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    dm.seen(300.0)  # the heartbeat of a coordinator that said bye: not a welcome
    assert dm.poll(600.0) is Action.NONE
    dm.arm(600.0)  # welcomed
    assert dm.poll(604.0) is Action.NONE
    assert dm.poll(605.1) is Action.STOP


def test_handshake_failures_are_named() -> None:
    auth = handshake_problem(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, has_keys=True)
    assert auth is not None
    assert auth.final
    assert "refused this worker's key (not in its authorized/" in auth.text
    mismatch = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    needs = handshake_problem(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch, has_keys=False)
    assert needs is not None
    assert needs.final
    assert "--keys" in needs.text
    extra = handshake_problem(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch, has_keys=True)
    assert extra is not None
    assert "does not use CURVE keys" in extra.text
    wrong = handshake_problem(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0, has_keys=True)
    assert wrong is not None
    assert not wrong.final
    assert "coordinator.key" in wrong.text
    assert handshake_problem(zmq.EVENT_CONNECTED, 0, has_keys=True) is None


def test_the_coordinator_names_failed_handshakes() -> None:
    failed = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    mismatch = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    crypto = zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
    assert describe(failed, mismatch, has_keys=True) == (
        "no-keys",
        "a worker without CURVE keys tried to join: start it with --keys DIR",
    )
    keyed = describe(failed, mismatch, has_keys=False)
    assert keyed is not None
    assert keyed[0] == "keys"
    wrong = describe(failed, crypto, has_keys=True)
    assert wrong is not None
    assert "another coordinator.key" in wrong[1]
    # Garbage on the port is not a worker: no name to give it.
    assert describe(failed, zmq.PROTOCOL_ERROR_ZMTP_UNSPECIFIED, has_keys=True) is None
    assert describe(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, has_keys=True) is None  # ZAP logs it
