#!/usr/bin/env python3
"""The original framework's entry point, kept for its users' CI jobs and habits.

``./scripts/websocket_test.py --all`` (and every flag of the original script:
``--unit --integration --load --event --client --bash --ws-url --api-url
--num-clients --duration --interval``, plus the environment variables
``WS_URL``, ``API_URL``, ``NUM_CLIENTS``, ``TEST_DURATION``,
``MESSAGE_INTERVAL``) runs ``wsload test`` with the same flags and exits
with its code.

It runs with whatever ``python3`` is first on the PATH, which need not be
the interpreter wsload is installed in: it uses the interpreter's own wsload
when that imports, else this checkout's ``.venv`` (``make install``), else a
``wsload`` on the PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def _wsload_command() -> list[str] | None:
    try:
        import wsload.coordinator.cli  # noqa: F401
    except ImportError:
        pass
    else:
        return [sys.executable, "-P", "-m", "wsload"]
    checkout = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "wsload"
    for candidate in (str(checkout), shutil.which("wsload")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return None


def main() -> None:
    command = _wsload_command()
    if command is None:
        sys.exit(
            "websocket_test.py: wsload is not installed "
            "(run `make install` in the repository, or `pipx install .`)"
        )
    os.execv(command[0], [*command, "test", *sys.argv[1:]])


if __name__ == "__main__":
    main()
