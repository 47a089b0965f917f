"""The ``wsload`` command line: a click group of thin commands over library APIs.

Bad input never produces a traceback: every command turns a
:class:`common.errors.WsloadError` (or a click usage error) into one line on
stderr and exit code 2.
"""

from __future__ import annotations

import click

from common import __version__
from testserver.cli import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="wsload", message="%(prog)s %(version)s")
def main() -> None:
    """wsload: distributed WebSocket load generator and test framework."""


main.add_command(serve)
