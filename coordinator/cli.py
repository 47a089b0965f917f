"""The ``wsload`` command line: a click group of thin commands over library APIs.

Bad input never produces a traceback. Click's usage errors and every
:class:`common.errors.WsloadError` a command lets through are printed as one
line on stderr (``wsload <command>: <reason>``) with exit code 2; Ctrl-C
exits with 130.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from common import __version__
from common.errors import WsloadError
from testserver.cli import serve

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class OneLineErrorGroup(click.Group):
    """A click group whose errors are one line each, for humans and CI logs alike."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "wsload"
            hint = f" (see '{where} --help')" if isinstance(exc, click.UsageError) else ""
            click.echo(f"{where}: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except WsloadError as exc:
            click.echo(f"wsload: {_one_line(str(exc))}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except (click.Abort, KeyboardInterrupt):
            click.echo("wsload: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="wsload", message="%(prog)s %(version)s")
def main() -> None:
    """wsload: distributed WebSocket load generator and test framework.

    \b
    Start here:
      wsload serve            run the reference test server on 127.0.0.1:9000
      wsload COMMAND --help   every option of a command
    """


main.add_command(serve)
