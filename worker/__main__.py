"""``python -m worker``: the same as ``wsload worker`` (used to spawn local workers).

Bad input is one line per problem and exit 2 here too, as under ``wsload``.
"""

import sys

from common.errors import WsloadError
from worker.cli import worker

if __name__ == "__main__":
    try:
        worker(prog_name="wsload worker", standalone_mode=True)
    except WsloadError as exc:
        for line in getattr(exc, "problems", None) or [str(exc)]:
            print(f"wsload worker: {line}", file=sys.stderr)
        sys.exit(2)
