"""``wsload serve``: placeholder until the test server lands."""

import click


@click.command()
def serve() -> None:
    """Run the reference test server."""
