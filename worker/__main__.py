"""``python -P -m wsload.worker``: the same as ``wsload worker`` (how local workers start).

Bad input is one line per problem and exit 2 here too, as under ``wsload``.
"""

import sys

from wsload.common.errors import WsloadError
from wsload.worker.cli import worker

if __name__ == "__main__":
    try:
        worker(prog_name="wsload worker", standalone_mode=True)
    except WsloadError as exc:
        for line in getattr(exc, "problems", None) or [str(exc)]:
            print(f"wsload worker: {line}", file=sys.stderr)
        sys.exit(2)
