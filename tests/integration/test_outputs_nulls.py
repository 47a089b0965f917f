"""What real runs write: nulls where nothing was measured, the CSV as the run happened,
``--json -`` and ``--csv -`` on standard output, the progress line of a conversation.

Real ``wsload`` processes against the reference server on 127.0.0.1. The target
that never answers is ``wsload serve --drop-rate 1``: it reads every message and
drops every reply, so connections open, messages go out and none is ever answered.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.integration.conftest import WSLOAD, ServerFactory
from wsload.coordinator.figures import PERCENTILE_KEYS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT = 90.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [WSLOAD, "run", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def silent_run(ws_url: str, *outputs: str) -> subprocess.CompletedProcess[str]:
    """2 clients for 2 s against a target that never answers, replies awaited 0.5 s."""
    return run("--ws-url", ws_url, "-c", "2", "-d", "2", "--interval", "0.2", "-w", "1",
               "--reply-timeout", "0.5", "--drain-timeout", "1", "--quiet", *outputs)  # fmt: skip


def test_a_run_with_no_replies_has_nulls_in_json_and_dashes_in_text_and_csv(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory("--drop-rate", "1")
    csv_path = tmp_path / "s.csv"
    proc = silent_run(server.ws_url, "--json", "-", "--csv", str(csv_path))
    assert proc.returncode == 1, proc.stderr  # it tested nothing
    doc: dict[str, Any] = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    assert doc["total_sent"] > 0
    assert doc["total_received"] == 0
    assert doc["timed_out"] > 0
    for section in ("latency_percentiles", "service_time_percentiles"):
        assert doc[section] == dict.fromkeys(PERCENTILE_KEYS), section
    assert doc["avg_latency"] is None
    for row in doc["time_series"]:
        assert all(row[k] is None for k in PERCENTILE_KEYS), row
    assert doc["connect_time_percentiles"]["p50"] > 0  # connections did open: measured
    assert doc["success_rate"] == 0.0  # answers were awaited, none came: a measured 0 %
    params = doc["parameters"]
    assert (params["reply_timeout"], params["drain_timeout"]) == (0.5, 1.0)
    assert params["clients"] == 2

    text = proc.stderr  # the human summary went to stderr
    assert text.startswith("wsload: FAILED: nothing tested: ")
    assert "  Average latency:         -\n" in text
    for key in ("p50", "p99", "max"):
        line = next(x for x in text.splitlines() if x.strip().startswith(f"{key} "))
        assert line.split()[1:3] == ["-", "-"], line  # latency and service time
    assert "0.00 ms" not in text.split("percentile")[0]

    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert rows
    assert {(r["p50_ms"], r["p95_ms"], r["p99_ms"]) for r in rows} == {("-", "-", "-")}
    assert sum(int(r["timed_out"]) for r in rows) == doc["timed_out"]
    assert sum(int(r["sent"]) for r in rows) == doc["total_sent"]
    start = params["started_at_unix"]
    stamps = [datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows]
    for stamp, row in zip(stamps, rows, strict=True):  # the end of the row's second, to the ms
        assert abs(stamp - (start + int(row["time"]))) <= 0.001, (stamp, row)
    assert stamps == sorted(stamps)


def test_csv_dash_writes_the_csv_to_standard_output(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    proc = run("--ws-url", server.ws_url, "-c", "2", "-d", "2", "--interval", "0.2", "-w", "1",
               "--reply-timeout", "5", "--quiet", "--csv", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))  # stdout holds the CSV only
    assert rows
    assert sum(int(r["received"]) for r in rows) > 0
    assert all(r["timestamp"].endswith("Z") for r in rows)
    assert proc.stderr.startswith("wsload: PASSED")  # the summary went to stderr
    assert "Connections:             2 opened (0 reconnects)" in proc.stderr


def test_a_conversations_progress_line_counts_expects_met(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    chat = server.ws_url.removesuffix("/ws") + "/chat"
    proc = run("--scenario", str(EXAMPLES / "chat.toml"), "--ws-url", chat, "-c", "4",
               "-d", "3", "--ramp-up", "0.5", "-w", "1", "--reply-timeout", "10")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    progress = [x for x in proc.stderr.splitlines() if x.startswith("[")]
    assert progress, proc.stderr  # stderr is not a terminal: one line a second
    for line in progress:
        assert "  expects met " in line, line
        assert "received" not in line, line
