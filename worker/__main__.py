"""``python -m worker``: the same as ``wsload worker`` (used to spawn local workers)."""

from worker.cli import worker

if __name__ == "__main__":
    worker(prog_name="wsload worker")
