"""The ``wsload`` command line: a click group of thin commands over library APIs.

Bad input never produces a traceback. Click's usage errors and every
:class:`wsload.common.errors.WsloadError` a command lets through are printed as one
line per problem on stderr (``wsload <command>: <reason>``) with exit code 2; Ctrl-C
exits with 130.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from wsload.common import __version__
from wsload.common.errors import WsloadError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


#: Subcommands imported only when invoked, so ``wsload worker`` on a worker host
#: never loads the coordinator's modules and ``wsload run`` never loads the engine.
LAZY_COMMANDS = {
    "run": "wsload.coordinator.run_cli:run",
    "coordinator": "wsload.coordinator.run_cli:coordinator",
    "test": "wsload.coordinator.checks_cli:test",
    "worker": "wsload.worker.cli:worker",
    "keys": "wsload.coordinator.keys_cli:keys",
    "client": "wsload.coordinator.console:client",
    "serve": "wsload.testserver.cli:serve",
}


class OneLineErrorGroup(click.Group):
    """A click group whose errors are one line each, for humans and CI logs alike."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

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
        except click.exceptions.NoArgsIsHelpError as exc:
            # A group called bare (``wsload``, ``wsload keys``): its normal help, exit 0.
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "wsload"
            hint = f" (see '{where} --help')" if isinstance(exc, click.UsageError) else ""
            for line in getattr(exc, "problems", None) or [exc.format_message()]:
                click.echo(f"{where}: {_one_line(line)}{hint}", err=True)
            sys.exit(exc.exit_code)
        except WsloadError as exc:  # a SpecError lists every problem: one line each
            for line in getattr(exc, "problems", None) or [str(exc)]:
                click.echo(f"wsload: {_one_line(line)}", err=True)
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
      wsload run --demo       a load run against the built-in reference server
      wsload serve            the reference test server on 127.0.0.1:9000
      wsload COMMAND --help   every option of a command
    """
