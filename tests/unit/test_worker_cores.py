"""The worker's sans-I/O cores: payload templates, schedule, reply matching, recorder.

The engine's bookkeeping (:class:`wsload.worker.accounting.Accounting`: what a sent
message and a message from the server do to the counters) is driven here
directly, with a fake monotonic clock and no socket: the decisions a reply,
a push or a late send lead to.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from array import array
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wsload.worker.accounting
from wsload.common.spec import DEFAULT_PAYLOAD, build_spec
from wsload.common.spec import ENGINES as ENGINE_NAMES
from wsload.worker.accounting import RECONNECT_BASE_DELAY, Conn, Phase, backoff
from wsload.worker.engine import Engine
from wsload.worker.engines import ENGINES, create_engine
from wsload.worker.errors import PayloadError
from wsload.worker.payload import PayloadTemplate
from wsload.worker.recorder import COUNTERS, MAX_ERROR_TEXT, MAX_ERROR_TEXTS, Recorder
from wsload.worker.schedule import (
    BEHIND_SLACK,
    SendSchedule,
    Share,
    connect_at,
    first_send,
    send_period,
)
from wsload.worker.tracker import InFlight, id_pattern, unmatched

# -- payload -------------------------------------------------------------------


def test_default_payload_is_valid_unique_json() -> None:
    tmpl = PayloadTemplate(DEFAULT_PAYLOAD)
    a = json.loads(tmpl.render("client-7", 1, 1700000000.5))
    b = json.loads(tmpl.render("client-7", 2, 1700000000.5))
    assert a == {"type": "test", "client": "client-7", "seq": 1, "ts": 1700000000.5}
    assert a != b


@pytest.mark.parametrize("size", [120, 500, 4096, 100_000])
def test_json_template_padded_to_exact_size(size: int) -> None:
    tmpl = PayloadTemplate(DEFAULT_PAYLOAD, size, seed=1)
    text = tmpl.render("client-1", 123, 1.0)
    assert len(text) == size
    assert json.loads(text)["seq"] == 123


def test_explicit_pad_slot_and_plain_text_padding() -> None:
    assert len(PayloadTemplate("x{pad}y", 50).render("c", 1, 0.0)) == 50
    plain = PayloadTemplate("hello {seq}", 30).render("c", 42, 0.0)
    assert plain.startswith("hello 42")
    assert len(plain) == 30


def test_size_below_template_means_no_padding() -> None:
    assert PayloadTemplate("{seq}", 1).render("c", 12345, 0.0) == "12345"


def test_literal_braces_are_left_alone() -> None:
    assert PayloadTemplate("{unknown} {seq}").render("c", 3, 0.0) == "{unknown} 3"


def test_negative_size_rejected() -> None:
    with pytest.raises(PayloadError):
        PayloadTemplate("x", -1)


# -- schedule ------------------------------------------------------------------


def test_schedule_does_not_drift_when_late() -> None:
    sched = SendSchedule(first=10.0, period=0.5)
    assert [sched.advance() for _ in range(3)] == [10.0, 10.5, 11.0]
    assert sched.next_at == 11.5
    sched.advance()  # sent late, say at 13.0: the next one is still due at 12.0
    assert sched.next_at == 12.0


def test_ramp_slots_spread_over_global_population() -> None:
    second_worker = Share(count=5, offset=5, total=10)
    slots = [connect_at(100.0, 10.0, second_worker, i) for i in range(5)]
    assert slots == [105.0, 106.0, 107.0, 108.0, 109.0]
    assert connect_at(100.0, 0.0, second_worker, 3) == 100.0


def test_send_period_interval_rate_and_closed_loop() -> None:
    assert send_period(0.5, Share(count=10)) == 0.5
    assert send_period(0.0, Share(count=10)) == 0.0
    assert send_period(0.5, Share(count=10, rate=100.0)) == pytest.approx(0.1)


def test_first_sends_are_phased() -> None:
    share = Share(count=4)
    assert [first_send(1.0, 1.0, share, i) for i in range(4)] == [1.0, 1.25, 1.5, 1.75]


# -- reply matching ------------------------------------------------------------


def test_match_by_id_out_of_order_then_fifo() -> None:
    flight = InFlight()
    for seq in (1, 2, 3):
        flight[seq] = (float(seq), float(seq) + 0.1)  # (intended, sent)
    assert flight.take(3) == (3.0, 3.1)
    assert flight.take(3) is None  # answered once only
    assert flight.take(None) == (1.0, 1.1)  # oldest first
    assert len(flight) == 1


def test_expire_takes_only_old_messages_once() -> None:
    flight = InFlight()
    for seq in range(1, 6):
        flight[seq] = (0.0, float(seq))
    assert flight.expire(sent_before=3.5) == 3
    assert flight.expire(sent_before=3.5) == 0
    assert list(flight) == [4, 5]
    assert flight.forget() == 2
    assert not flight


def test_id_pattern_finds_field() -> None:
    pat = id_pattern("seq")
    found = pat.search(b'{"type": "test", "seq" : 42, "x": 1}')
    assert found is not None
    assert int(found.group(1)) == 42
    assert pat.search(b'{"sequence": 42}') is None
    assert pat.search(b"binary\x00junk") is None


def test_unmatched_ids_are_late_only_when_sent_on_this_connection() -> None:
    # This connection sent ids 11..20 (its client's earlier connection sent 1..10).
    assert unmatched(15, base=10, last=20) == "late"
    assert unmatched(11, base=10, last=20) == "late"
    assert unmatched(20, base=10, last=20) == "late"
    assert unmatched(21, base=10, last=20) == "unsolicited"  # not sent yet
    assert unmatched(0, base=10, last=20) == "unsolicited"
    assert unmatched(10, base=10, last=20) == "unsolicited"  # the previous connection's


# -- the engine's bookkeeping, with a fake clock --------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(wsload.worker.accounting, "_mono", fake)
    return fake


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    new = asyncio.new_event_loop()
    yield new
    new.close()


def engine_and_conn(
    loop: asyncio.AbstractEventLoop, seq: int = 0, **overrides: Any
) -> tuple[Engine, Conn]:
    spec = build_spec(env={}, ws_url="ws://127.0.0.1:9/ws", engine="picows", **overrides)
    engine = create_engine(spec, Share(count=1, total=1))
    conn = Conn(None, engine.template.renderer("client-0"), seq, loop.create_future())
    return engine, conn


def near(samples: array[int], expected: list[int]) -> bool:
    """Microsecond samples equal up to float rounding (a truncated 4999.999...)."""
    return len(samples) == len(expected) and all(
        abs(a - b) <= 1 for a, b in zip(samples, expected, strict=True)
    )


def reply(seq: int) -> bytes:
    return b'{"type": "test", "client": "client-0", "seq": %d, "ts": 0}' % seq


def test_only_a_message_with_an_id_in_flight_is_a_reply(
    clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    engine, conn = engine_and_conn(loop, interval=0.1)
    rec = engine.recorder
    for _ in range(3):
        engine.next_message(conn, clock.now)
    clock.now += 0.030
    engine.on_message(conn, b'{"type": "heartbeat", "n": 1}')  # a push: no id field
    engine.on_message(conn, reply(0))
    engine.on_message(conn, reply(99))  # never sent
    assert (rec.received, rec.unsolicited, rec.late) == (0, 3, 0)
    assert len(conn.inflight) == 3  # nothing was charged to a message in flight
    engine.on_message(conn, reply(2))
    engine.on_message(conn, reply(2))  # a duplicate
    assert (rec.received, rec.unsolicited, rec.late) == (1, 3, 1)
    assert near(rec.latency, [30_000])
    assert list(conn.inflight) == [1, 3]
    clock.now += 10.0
    rec.timed_out += conn.inflight.expire(clock.now - 5.0)
    engine.on_message(conn, reply(1))  # after its timeout
    assert (rec.received, rec.unsolicited, rec.late, rec.timed_out) == (1, 3, 2, 2)
    assert rec.sent == rec.received + rec.timed_out + rec.lost + rec.unanswered


def test_ids_of_an_earlier_connection_are_unsolicited(
    clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    engine, conn = engine_and_conn(loop, seq=10, interval=0.1)  # ids 1..10 went before
    engine.next_message(conn, clock.now)
    assert list(conn.inflight) == [11]
    engine.on_message(conn, reply(7))
    assert (engine.recorder.unsolicited, engine.recorder.late) == (1, 0)


def test_match_order_takes_any_message_as_the_oldest_reply(
    clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    engine, conn = engine_and_conn(loop, interval=0.1, match="order")
    rec = engine.recorder
    engine.next_message(conn, clock.now)
    engine.next_message(conn, clock.now)
    clock.now += 0.005
    engine.on_message(conn, b'{"type": "heartbeat", "n": 1}')
    engine.on_message(conn, reply(77))
    engine.on_message(conn, reply(1))  # nothing left in flight
    assert (rec.received, rec.unsolicited, rec.late) == (2, 0, 1)
    assert near(rec.latency, [5000, 5000])


def test_late_sends_count_behind_schedule_with_latency_from_intended(
    clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    engine, conn = engine_and_conn(loop, interval=0.1)
    rec = engine.recorder
    intended = clock.now
    engine.next_message(conn, intended + 0.0005)  # up to TIMER_SLACK early: from the send
    clock.now += BEHIND_SLACK / 2
    engine.next_message(conn, intended)  # late, within the slack
    assert rec.behind_schedule == 0
    clock.now = intended + 0.5
    engine.next_message(conn, intended)  # the generator held it 500 ms
    assert rec.behind_schedule == 1
    clock.now += 0.010
    for seq in (1, 2, 3):
        engine.on_message(conn, reply(seq))
    assert near(rec.latency, [510_000, 510_000, 510_000])  # all from the intended time
    assert near(rec.service, [510_000, 507_500, 10_000])


def test_sending_follows_the_phase_the_clock_and_the_link(
    clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    engine, _conn = engine_and_conn(loop, interval=0.1)

    class Open:
        alive = True

    engine.send_until = clock.now + 1.0
    assert engine.sending(Open())
    assert not engine.sending(type("Gone", (), {"alive": False})())
    clock.now += 1.0
    assert not engine.sending(Open())  # the sending time is over
    clock.now -= 0.5
    engine.phase = Phase.DRAINING
    assert not engine.sending(Open())


def test_reconnect_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    full = [backoff(n, cap=1.0, jitter=lambda: 1.0) for n in range(1, 8)]
    assert full == [RECONNECT_BASE_DELAY * 2**k for k in range(5)] + [1.0, 1.0]
    assert backoff(3, cap=1.0, jitter=lambda: 0.0) == RECONNECT_BASE_DELAY * 4 / 2
    assert backoff(10_000, cap=30.0, jitter=lambda: 1.0) == 30.0  # no overflow


def test_every_engine_name_is_registered_once() -> None:
    assert set(ENGINES) == set(ENGINE_NAMES)
    for name, cls in ENGINES.items():
        spec = build_spec(env={}, ws_url="ws://127.0.0.1:9/ws", engine=name)
        assert type(create_engine(spec)) is cls


def test_the_lifecycle_and_the_core_import_no_engine() -> None:
    """The dependencies point one way: core <- lifecycle <- engines <- registry."""
    lifecycle, core = Engine.__module__, Conn.__module__
    engines = ENGINES["picows"].__module__.rsplit(".", 1)[0]
    for module in (lifecycle, core):
        code = (
            f"import importlib, sys; importlib.import_module({module!r}); "
            f"print(sorted(m for m in sys.modules if m.startswith({engines!r})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip() == "[]", (module, out.stdout)


# -- recorder ------------------------------------------------------------------


def test_cpu_time_is_a_cumulative_counter_sampled_per_window() -> None:
    cpu = iter([5.0, 5.2, 5.2, 5.9, 5.95])
    rec = Recorder(cpu_clock=lambda: next(cpu))
    rec.start_window(0.0)  # CPU counts from here (5.0 s of process CPU before)
    windows = [rec.take_window(float(w)) for w in (1, 2, 3)]
    windows.append(rec.take_window(4.0, final=True))
    assert [w.counters.get("cpu_ms", 0) for w in windows] == [200, 0, 700, 50]
    assert rec.totals()["cpu_ms"] == 950 == sum(w.counters.get("cpu_ms", 0) for w in windows)


def test_error_texts_keep_the_first_text_of_each_kind_bounded() -> None:
    rec = Recorder()
    rec.error("dns", "svc: Name or service not known")
    rec.error("dns", "other: a later text")
    rec.error("refused")  # no text: counted, nothing kept
    rec.error("http_503", "x" * 1000)
    for i in range(100):
        rec.error(f"kind_{i}", "text")
    assert rec.errors["dns"] == 2
    assert rec.error_texts["dns"] == "svc: Name or service not known"
    assert "refused" not in rec.error_texts
    assert len(rec.error_texts["http_503"]) == MAX_ERROR_TEXT
    assert len(rec.error_texts) == MAX_ERROR_TEXTS
    assert len(rec.errors) == 103  # every kind is still counted


def test_windows_sum_to_totals() -> None:
    rec = Recorder()
    rec.start_window(0.0)
    windows = []
    for w in range(4):
        for _ in range(w + 1):
            rec.sent += 1
            rec.reply(1000 * (w + 1), 500)
        rec.connected(2000)
        rec.error("refused")
        windows.append(rec.take_window(float(w + 1)))
    rec.clients_connected -= 4
    windows.append(rec.take_window(5.0, final=True))
    totals = rec.totals()
    for name in COUNTERS:
        assert sum(w.counters.get(name, 0) for w in windows) == totals[name]
    assert sum(w.errors.get("refused", 0) for w in windows) == 4
    latencies = array("I")
    for w in windows:
        latencies.frombytes(w.latency)
    assert list(latencies) == [1000, 2000, 2000, 3000, 3000, 3000] + [4000] * 4
    assert [w.seq for w in windows] == [0, 1, 2, 3, 4]
    assert windows[-1].final
    assert windows[1].window_start == 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12), max_size=50))
def test_samples_are_clamped_to_uint32(values: list[int]) -> None:
    rec = Recorder()
    for v in values:
        rec.reply(v, v)
    out = array("I")
    out.frombytes(rec.take_window(1.0).latency)
    assert list(out) == [min(max(v, 0), 0xFFFFFFFF) for v in values]
