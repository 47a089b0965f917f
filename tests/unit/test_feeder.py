"""Feeders: the CSV read is bounded and every mistake is one line naming the file;
unique rows are disjoint across workers; the wire form is checked on the way in."""

from __future__ import annotations

import csv
import io
import itertools
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common import feeder as feeder_module
from wsload.common.errors import SpecError
from wsload.common.feeder import (
    MAX_SHARED_ROWS,
    feeder_covers,
    feeder_from_dict,
    feeder_problems,
    feeder_table_problems,
    feeder_to_dict,
    load_feeder,
    slice_feeder,
)
from wsload.common.program import Feeder


def write(tmp_path: Path, text: str | bytes, name: str = "users.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def problems_of(path: Path | str, mode: str = "unique") -> list[str]:
    with pytest.raises(SpecError) as info:
        load_feeder(path, mode)
    return info.value.problems


def test_rows_become_variables_by_job_wide_client_number(tmp_path: Path) -> None:
    path = write(tmp_path, 'user,password\nann,a1\nbob,b2\r\n\ncid,"c,3"\n')
    feeder = load_feeder(path, "unique")
    assert feeder.columns == ("user", "password")
    assert feeder.rows == (("ann", "a1"), ("bob", "b2"), ("cid", "c,3"))
    assert (feeder.total, feeder.offset, feeder.file) == (3, 0, str(path))
    rng = random.Random(1)
    assert feeder.row_for(2, rng) == {"user": "cid", "password": "c,3"}
    cycle = load_feeder(path, "cycle")
    assert cycle.row_for(4, rng) == {"user": "bob", "password": "b2"}
    drawn = {load_feeder(path, "random").row_for(0, rng)["user"] for _ in range(50)}
    assert drawn == {"ann", "bob", "cid"}


def test_header_spaces_and_a_byte_order_mark_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffuser , token\nann, t\n".encode())
    feeder = load_feeder(path)
    assert feeder.columns == ("user", "token")
    assert feeder.rows == (("ann", " t"),)  # values are kept exactly


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty; a feeder needs a header row and rows"),
        ("user,password\n", "no rows after the header"),
        ("user,\nann,x\n", "line 1: column 2 has no name"),
        ("user name\nann\n", "line 1: column 'user name' is not a variable name"),
        ("1st\nann\n", "column '1st' is not a variable name"),
        ("user,user\na,b\n", "column 'user' appears twice"),
        ("seq,user\n1,a\n", "column 'seq' would hide the built-in variable {seq}"),
        ("a,b\n1,2\n1,2,3\n4\n1,2\n", "line 3 has 3 fields, the header has 2 (and 1 more such"),
        ('a,b\n1,"2\n', "line 2: unexpected end of data"),
        ('a,b\n1,"x"y\n', "line 2: ',' expected after '\"'"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"feeder: {path}: ")
    assert expected in problems[0]


def test_a_header_of_data_says_a_few_problems_not_hundreds(tmp_path: Path) -> None:
    path = write(tmp_path, ",".join(str(n) for n in range(200)) + "\n" + "x," * 199 + "x\n")
    problems = problems_of(path)
    assert len(problems) == 6
    assert problems[-1] == f"feeder: {path}: line 1: and 195 more problems with column names"


def test_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = write(tmp_path, b"user\nann\n\xff\n")
    assert problems_of(path) == [f"feeder: {path}: not UTF-8 text (byte 9)"]


def test_unreadable_things_are_refused_without_reading_them(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.csv") == [
        f"feeder: {tmp_path}/nope.csv: CSV file not found"
    ]
    assert problems_of(tmp_path) == [f"feeder: {tmp_path}: is a directory, not a CSV file"]
    assert problems_of("/dev/zero") == ["feeder: /dev/zero: is a device, not a CSV file"]
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path, "a\n1\n", "locked.csv")
        locked.chmod(0)
        assert problems_of(locked) == [f"feeder: {locked}: permission denied"]


def test_a_file_past_the_bound_is_refused_after_reading_one_byte_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feeder_module, "MAX_FEEDER_BYTES", 1024 * 1024)
    path = write(tmp_path, "a\n" + "x\n" * (1024 * 1024))
    assert problems_of(path) == [f"feeder: {path}: larger than 1 MiB; a feeder must be smaller"]
    monkeypatch.setattr(feeder_module, "MAX_FEEDER_ROWS", 3)
    path = write(tmp_path, "a\n1\n2\n3\n4\n")
    assert problems_of(path) == [f"feeder: {path}: more than 3 rows"]


def test_a_fifo_is_read_and_one_without_a_writer_is_empty(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert problems_of(fifo) == [f"feeder: {fifo}: empty; a feeder needs a header row and rows"]

    def writer() -> None:
        with open(fifo, "w") as out:  # blocks until a reader opens the FIFO
            out.write("user\nann\n")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while True:  # a read before the writer's open() began sees no writer: empty
            try:
                feeder = load_feeder(fifo)
                break
            except SpecError as exc:
                if "empty" not in exc.problems[0]:
                    raise
                assert time.monotonic() < deadline, "the writer never opened the FIFO"
                time.sleep(0.001)
    finally:
        if thread.is_alive():  # release a writer still waiting for a reader
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(timeout=10)
    assert feeder.rows == (("ann",),)


def test_a_bad_mode_is_a_problem_with_did_you_mean_beside_the_file_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "a\n")
    assert problems_of(path, "uniq") == [
        "feeder: mode 'uniq' is not one of unique, cycle, random (did you mean 'unique'?)",
        f"feeder: {path}: no rows after the header",
    ]
    assert len(problems_of(write(tmp_path, "a\n1\n"), "Cycle")) == 1


def test_the_raw_table_is_checked_before_the_file_is_read() -> None:
    assert feeder_table_problems({"file": "u.csv", "mode": "cycle"}) == []
    assert feeder_table_problems({"file": "u.csv"}) == []
    assert feeder_table_problems({"fil": "u.csv", "mode": "rand"}) == [
        "feeder: unknown key 'fil' (did you mean 'file'?)",
        'feeder: needs file = "name.csv" (relative to the scenario file)',
        "feeder: mode 'rand' is not one of unique, cycle, random (did you mean 'random'?)",
    ]
    assert feeder_table_problems({"file": 3}) == [
        "feeder: file must be a non-empty string, got int 3"
    ]
    assert feeder_table_problems("u.csv")[0].startswith("feeder: expected a table")


def make(rows: int, mode: str = "unique", file: str = "data/users.csv") -> Feeder:
    data = tuple((f"user{i}", f"pw{i}") for i in range(rows))
    return Feeder(("user", "password"), data, mode, 0, rows, file)


def test_unique_needs_a_row_per_client_and_says_how_to_fix_it() -> None:
    assert feeder_problems(make(100), 100) == []
    assert feeder_problems(make(50), 100) == [
        "feeder: users.csv has 50 rows, the job has 100 clients (mode unique gives each "
        'client its own row): add rows or use mode = "cycle"'
    ]
    assert feeder_problems(make(50, "cycle"), 100) == []
    assert feeder_problems(make(50, "random"), 1) == []


def test_shared_modes_must_fit_in_a_job_message() -> None:
    big = make(MAX_SHARED_ROWS + 1, "cycle")
    (problem,) = feeder_problems(big, 10)
    assert problem.startswith(f"feeder: users.csv has {MAX_SHARED_ROWS + 1} rows")
    assert 'use mode = "unique" or fewer rows' in problem
    assert feeder_problems(make(MAX_SHARED_ROWS + 1), 10) == []  # sliced per worker


def test_the_dict_form_survives_msgpack_and_is_checked_on_the_way_in() -> None:
    feeder = make(5, "cycle")
    wire = msgpack.unpackb(msgpack.packb(feeder_to_dict(feeder)))
    assert feeder_from_dict(wire) == feeder
    unique = make(3)
    assert feeder_from_dict(feeder_to_dict(unique)) == unique


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mode": "all"}, "feeder: mode 'all' is not one of unique, cycle, random"),
        ({"columns": ["user", "user"]}, "feeder: column 'user' appears twice"),
        ({"columns": "user"}, "feeder: columns must be a list, got str 'user'"),
        ({"rows": [["a", "b"], ["c"]]}, "feeder: row 1 must be 2 strings, got list ['c']"),
        ({"rows": [["a", 1]]}, "feeder: row 0 must be 2 strings"),
        ({"rows": {"a": 1}}, "feeder: rows must be a list"),
        ({"offset": -1}, "feeder: offset and total must be integers >= 0"),
        ({"total": True}, "feeder: offset and total must be integers >= 0"),
        ({"offset": 3, "total": 4}, "feeder: rows 3..4 exceed total 4"),
        ({"mode": "cycle", "offset": 1, "total": 3}, "feeder: mode cycle needs every row"),
        ({"mode": "random", "rows": [], "total": 0}, "feeder: mode random needs every row"),
        ({"extra": 1}, "feeder: unknown key 'extra'"),
        ({"file": 7}, "feeder: file must be a string, got int 7"),
    ],
)
def test_a_bad_dict_from_the_wire_is_refused(change: dict[str, object], expected: str) -> None:
    data = {**feeder_to_dict(make(2)), **change}
    with pytest.raises(SpecError) as info:
        feeder_from_dict(data)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_a_dict_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(SpecError, match="feeder: expected a table, got list"):
        feeder_from_dict([1])


def test_a_unique_slice_may_be_empty_and_keeps_its_offset() -> None:
    data = slice_feeder(feeder_to_dict(make(10)), 10, 0)
    feeder = feeder_from_dict(data)
    assert (feeder.rows, feeder.offset, feeder.total) == ((), 10, 10)


def test_slicing_outside_the_rows_held_is_a_value_error() -> None:
    part = slice_feeder(feeder_to_dict(make(10)), 4, 3)
    assert slice_feeder(part, 5, 2)["rows"] == [["user5", "pw5"], ["user6", "pw6"]]
    with pytest.raises(
        ValueError, match=r"clients 3..4 are not in this feeder \(it holds rows 4..6\)"
    ):
        slice_feeder(part, 3, 2)
    with pytest.raises(ValueError, match="must be >= 0"):
        slice_feeder(part, -1, 2)


def test_a_client_outside_a_unique_slice_has_no_row_rather_than_another_workers() -> None:
    part = feeder_from_dict(slice_feeder(feeder_to_dict(make(10)), 4, 3))
    assert [feeder_covers(part, g) for g in range(3, 8)] == [False, True, True, True, False]
    assert feeder_covers(make(2, "cycle"), 99)
    rng = random.Random(0)
    assert part.row_for(4, rng)["user"] == "user4"
    for client in (3, 7, 0):
        with pytest.raises(IndexError, match=f"client {client} has no row in this slice"):
            part.row_for(client, rng)


def test_cycle_and_random_slices_keep_every_row() -> None:
    for mode in ("cycle", "random"):
        data = feeder_to_dict(make(7, mode))
        part = slice_feeder(data, 3, 2)
        assert part == data
        assert part is not data


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(min_value=1, max_value=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    clients=st.integers(min_value=0, max_value=300),
)
def test_unique_slices_across_workers_are_disjoint_and_index_by_client(
    rows: int, cuts: list[int], clients: int
) -> None:
    """Workers with contiguous client ranges get disjoint rows, and each client its own row."""
    clients = min(clients, rows)
    feeder = make(rows)
    whole = feeder_to_dict(feeder)
    bounds = sorted({0, clients, *(min(c, clients) for c in cuts)})
    seen: list[tuple[str, ...]] = []
    rng = random.Random(0)
    for lo, hi in itertools.pairwise(bounds):
        wire = msgpack.unpackb(msgpack.packb(slice_feeder(whole, lo, hi - lo)))
        part = feeder_from_dict(wire)
        assert len(part.rows) == hi - lo
        for g in range(lo, hi):
            row = part.row_for(g, rng)
            assert row == {"user": f"user{g}", "password": f"pw{g}"}
            seen.append(tuple(row.values()))
    assert len(seen) == len(set(seen)) == clients


FIELD = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


@settings(max_examples=100, deadline=None)
@given(table=st.lists(st.lists(FIELD, min_size=2, max_size=2), min_size=1, max_size=20))
def test_any_field_text_round_trips_through_a_csv_file(table: list[list[str]]) -> None:
    """Quotes, commas, newlines in fields: what csv writes, the feeder reads back."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["a", "b"])
    writer.writerows(table)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text(buf.getvalue(), encoding="utf-8", newline="")
        feeder = load_feeder(path, "cycle")
    assert feeder.rows == tuple(tuple(row) for row in table)


def test_a_missing_file_is_named_as_the_caller_shows_it(tmp_path: Path) -> None:
    """A name resolved relative to the scenario file is shown with the path looked for."""
    shown = f"nope.csv (looked for {tmp_path / 'nope.csv'})"
    with pytest.raises(SpecError) as info:
        load_feeder(tmp_path / "nope.csv", "unique", shown)
    assert info.value.problems == [f"feeder: {shown}: CSV file not found"]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SpecError) as info:
        load_feeder(tmp_path / "empty.csv", "unique", "empty.csv (looked for here)")
    assert info.value.problems[0].startswith("feeder: empty.csv (looked for here): empty")
