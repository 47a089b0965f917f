"""``wsload keys generate DIR``: CURVE keys for a coordinator and its workers."""

from __future__ import annotations

import click

from wsload.common.curve import generate


@click.group()
def keys() -> None:
    """Manage CURVE keys that encrypt and authenticate the coordinator/worker link."""


@keys.command("generate")
@click.argument("directory", type=click.Path(file_okay=False))
def generate_keys(directory: str) -> None:
    """Write coordinator and worker key pairs to DIRECTORY (secrets created with mode 0600).

    A secret key file that group or others may read is refused when loaded.

    \b
    Then:
      wsload coordinator --bind tcp://0.0.0.0:5555 --keys DIRECTORY ...
      wsload worker --connect tcp://COORDINATOR:5555 --keys DIRECTORY
    Give worker hosts a copy without coordinator.key_secret.
    """
    for path in generate(directory):
        click.echo(f"wrote {path}")
