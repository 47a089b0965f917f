"""``python -m wsload``: the ``wsload`` command, where its script is not on PATH."""

from wsload.coordinator.cli import main

if __name__ == "__main__":
    main(prog_name="wsload")
