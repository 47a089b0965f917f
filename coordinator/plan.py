"""Splitting a job's clients and rate over workers: a pure function.

Clients go to workers in proportion to their capacity (cores), largest
remainders first, and never beyond what a worker's file-descriptor limit can
hold; what one worker cannot take flows to the others. The rate is split in
proportion to the clients each worker got, so every client sends at the
same pace wherever it runs. A job that cannot fit is refused before anything
starts, with the numbers that show why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.errors import PlanError

#: File descriptors a worker keeps for itself (ZeroMQ, logs, the event loop).
FD_RESERVE = 64


@dataclass(frozen=True)
class WorkerCapacity:
    """What a worker said about itself in its ``hello``."""

    worker_id: str
    cores: int = 1
    fd_limit: int = 1024

    @property
    def max_clients(self) -> int:
        """Connections this worker can hold: one descriptor each, minus its own needs."""
        return max(0, self.fd_limit - FD_RESERVE)


@dataclass(frozen=True)
class Assignment:
    """One worker's share: clients ``client_offset ..`` and its part of the rate."""

    worker_id: str
    num_clients: int
    client_offset: int
    rate: float | None


def plan(
    num_clients: int, rate: float | None, workers: Sequence[WorkerCapacity]
) -> list[Assignment]:
    """Assign ``num_clients`` (and ``rate`` messages/s in total) to ``workers``."""
    if not workers:
        raise PlanError("no workers to run the job")
    capacity = sum(w.max_clients for w in workers)
    if num_clients > capacity:
        detail = ", ".join(f"{w.worker_id}: {w.max_clients}" for w in workers)
        raise PlanError(
            f"{num_clients} clients do not fit: the workers can hold {capacity} "
            f"connections in all by their file-descriptor limits ({detail}); "
            "add workers or raise the limits (ulimit -n)"
        )
    counts = _water_fill(num_clients, workers)
    out: list[Assignment] = []
    offset = 0
    for worker, count in zip(workers, counts, strict=True):
        share = rate * count / num_clients if rate is not None and num_clients else None
        out.append(Assignment(worker.worker_id, count, offset, share))
        offset += count
    return out


def _water_fill(total: int, workers: Sequence[WorkerCapacity]) -> list[int]:
    """Proportional split by cores, capped per worker, excess flowing to the rest."""
    counts = [0] * len(workers)
    open_ = [i for i, w in enumerate(workers) if w.max_clients > 0]
    left = total
    while left and open_:
        weights = [max(1, workers[i].cores) for i in open_]
        weight_sum = sum(weights)
        exact = [left * w / weight_sum for w in weights]
        shares = [int(x) for x in exact]
        # Largest remainders first; ties go to the earlier worker.
        by_remainder = sorted(range(len(open_)), key=lambda k: (shares[k] - exact[k], k))
        for k in by_remainder[: left - sum(shares)]:
            shares[k] += 1
        still_open = []
        for k, i in enumerate(open_):
            room = workers[i].max_clients - counts[i]
            take = min(room, shares[k])
            counts[i] += take
            left -= take
            if counts[i] < workers[i].max_clients:
                still_open.append(i)
        open_ = still_open
    return counts


__all__ = ["FD_RESERVE", "Assignment", "WorkerCapacity", "plan"]
