"""Report files: written atomically, every one attempted, failures one line each."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coordinator.errors import CoordinatorError
from coordinator.outputs import Output, check_writable, write_all


def test_written_whole_with_the_umask_mode_and_no_temporary_left(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    old = os.umask(0o027)
    try:
        assert write_all([Output(str(target), lambda: "{}\n")]) == []
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_an_existing_file_is_replaced_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    target.write_text("old and longer than the new text\n")
    target.chmod(0o600)
    assert write_all([Output(str(target), lambda: "new\n")]) == []
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_every_output_is_attempted_when_one_fails(tmp_path: Path) -> None:
    def broken() -> str:
        raise ValueError("no chart today")

    outputs = [
        Output(str(tmp_path / "gone" / "a.json"), lambda: "a"),
        Output(str(tmp_path / "b.html"), broken),
        Output(str(tmp_path / "c.csv"), lambda: "c"),
    ]
    failures = write_all(outputs)
    assert failures == [
        f"cannot write {tmp_path / 'gone' / 'a.json'}: No such file or directory",
        f"cannot write {tmp_path / 'b.html'}: rendering failed: ValueError('no chart today')",
    ]
    assert (tmp_path / "c.csv").read_text() == "c"
    assert not (tmp_path / "b.html").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_device_is_written_in_place_and_a_full_one_is_one_line(tmp_path: Path) -> None:
    failures = write_all([Output("/dev/full", lambda: "x" * 100_000)])
    assert failures == ["cannot write /dev/full: No space left on device"]
    assert write_all([Output("/dev/null", lambda: "x")]) == []


def test_dash_is_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert write_all([Output("-", lambda: '{"a": 1}\n')]) == []
    assert capsys.readouterr().out == '{"a": 1}\n'


def test_only_one_output_may_go_to_standard_output() -> None:
    with pytest.raises(CoordinatorError, match="only one output can go to standard output"):
        check_writable("-", None, "-")
    check_writable("-", None)
