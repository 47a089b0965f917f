"""The worker's sans-I/O cores: payload templates, schedule, reply matching, recorder."""

from __future__ import annotations

import json
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.spec import DEFAULT_PAYLOAD
from worker.errors import PayloadError
from worker.payload import PayloadTemplate
from worker.recorder import COUNTERS, Recorder
from worker.schedule import SendSchedule, Share, connect_at, first_send, send_period
from worker.tracker import InFlight, id_pattern

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


# -- recorder ------------------------------------------------------------------


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
