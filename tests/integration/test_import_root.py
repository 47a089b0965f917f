"""One import root: the wheel installs only ``wsload``; a caller's own modules never replace it.

The repository keeps ``coordinator/``, ``worker/``, ``common/`` and
``testserver/`` at its top; they install as ``wsload.*``. A user who runs
wsload from a directory holding their own ``worker.py``, ``coordinator.py``
or ``common/`` package must still get wsload's code, in the coordinator and
in every local worker process it starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import WSLOAD

REPO = Path(__file__).resolve().parents[2]
IMPOSTOR = 'raise SystemExit("the impostor {} ran instead of wsload")\n'


@pytest.mark.timeout(120)
def test_a_run_ignores_modules_named_like_wsloads_folders(tmp_path: Path) -> None:
    for name in ("worker", "coordinator", "common", "testserver"):
        (tmp_path / f"{name}.py").write_text(IMPOSTOR.format(name))
    package = tmp_path / "common"
    package.mkdir()
    (package / "__init__.py").write_text(IMPOSTOR.format("common package"))
    (tmp_path / "common.py").unlink()  # the package, not the module, is what shadows here
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [WSLOAD, "run", "--demo", "--workers", "2", "-c", "4", "-d", "1", "--interval", "0.1",
         "--quiet", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "impostor" not in proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert summary["total_sent"] > 0
    assert summary["total_received"] == summary["total_sent"]
    assert len(summary["workers"]) == 2  # both local workers ran wsload's worker


def test_import_wsload_is_the_public_surface_and_loads_nothing_else(tmp_path: Path) -> None:
    probe = (
        "import sys, wsload\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('wsload.'))\n"
        "names = [wsload.WebSocketClient, wsload.WebSocketLoadTester, wsload.WebSocketEventTester,"
        " wsload.check_websocket, wsload.run_load, wsload.RunSummary]\n"
        "print(wsload.__version__, len(names), loaded)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-P", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    version, count, _ = proc.stdout.split(" ", 2)
    assert version
    assert count == "6"
    bare = subprocess.run(
        [sys.executable, "-P", "-c", "import sys, wsload; print(sorted(sys.modules))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for heavy in ("wsload.coordinator.cli", "wsload.worker.engine", "zmq", "picows"):
        assert f"'{heavy}'" not in bare.stdout  # `import wsload` stays cheap for workers


@pytest.mark.timeout(120)
def test_the_wheel_has_exactly_one_top_level_name(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=110, check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("wsload-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"wsload", wheel.name.split("-py")[0] + ".dist-info"}, tops
    for needed in (
        "wsload/__init__.py",
        "wsload/worker/__main__.py",
        "wsload/coordinator/console.html",
        "wsload/coordinator/scripts/ws_smoke.sh",
    ):
        assert needed in names  # fmt: skip
