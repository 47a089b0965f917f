"""Splitting a job's clients and rate over workers: a pure function.

Clients go to workers in proportion to their capacity (cores), largest
remainders first, and never beyond what a worker's file-descriptor limit can
hold; what one worker cannot take flows to the others. The rate is split in
proportion to the clients each worker got, so every client sends at the
same pace wherever it runs. A job that cannot fit is refused before anything
starts, with the numbers that show why.

:class:`Roster` keeps who runs which clients while the job runs, and hands a
lost worker's clients on to the live ones (or to a worker that joins
mid-run, with ``--elastic``). It is pure too: the caller passes ``now``.

:func:`worker_spec` is the spec one worker gets for one share: the job's,
with a feeder cut down to the rows of that share's clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsload.common.feeder import slice_feeder
from wsload.coordinator.errors import PlanError

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


@dataclass(frozen=True)
class Handover:
    """Clients of the lost worker ``origin`` that ``share.worker_id`` takes on."""

    origin: str
    share: Assignment


class Roster:
    """Who runs which clients of a running job; hands a lost worker's clients on.

    A lost worker's clients become *orphans*, due for handing on at once when
    its process is known to be gone (``certain``), or after ``delay`` seconds
    when it only went silent: a worker cut off from the coordinator stops its
    own load after its dead-man timeout, and handing its clients on before
    then would run them twice. :meth:`due` gives the orphans that are due to
    the live workers, in proportion to their cores and within their
    descriptor room; idle workers (an elastic join with nothing to do) are
    served first, so the survivors' load stays as it was when they can. A
    client keeps its global number wherever it runs, so client ids stay
    unique; clients are never taken from a live worker.

    ``hand_on`` False (``--on-worker-loss continue``) keeps orphans for idle
    workers only: an elastic join takes them, the survivors do not.
    """

    def __init__(
        self,
        assignments: Iterable[Assignment],
        workers: Iterable[WorkerCapacity],
        *,
        rate_per_client: float | None = None,
        delay: float = 0.0,
        hand_on: bool = True,
    ) -> None:
        self.capacity: dict[str, WorkerCapacity] = {w.worker_id: w for w in workers}
        self.chunks: dict[str, list[Assignment]] = {w: [] for w in self.capacity}
        for a in assignments:
            if a.num_clients:
                self.chunks.setdefault(a.worker_id, []).append(a)
        self.rate_per_client = rate_per_client
        self.delay = delay
        self.hand_on = hand_on
        self.lost: set[str] = set()
        #: workers that declined a handover (an older worker): never a taker again
        self.declined: set[str] = set()
        #: what each worker was handed on (not its own share), for :meth:`decline`
        self.handed: dict[str, list[Handover]] = {}
        #: (due time, clients) waiting for a taker, oldest first; each names its lost worker
        self.orphans: list[tuple[float, Assignment]] = []

    def load(self, worker_id: str) -> int:
        """Clients ``worker_id`` runs now."""
        return sum(a.num_clients for a in self.chunks.get(worker_id, ()))

    @property
    def running(self) -> int:
        """Clients assigned to live workers."""
        return sum(self.load(w) for w in self.chunks if w not in self.lost)

    @property
    def orphaned(self) -> int:
        """Clients nobody runs (lost, not yet handed on)."""
        return sum(a.num_clients for _, a in self.orphans)

    def join(self, worker: WorkerCapacity) -> None:
        """A worker joined mid-run (``--elastic``): it can take orphans from now on."""
        if worker.worker_id not in self.capacity:
            self.capacity[worker.worker_id] = worker
            self.chunks[worker.worker_id] = []

    def lose(self, worker_id: str, now: float, *, certain: bool = False) -> int:
        """``worker_id`` is lost: its clients become orphans; returns how many."""
        if worker_id in self.lost or worker_id not in self.capacity:
            return 0
        self.lost.add(worker_id)
        due = now if certain else now + self.delay
        chunks = self.chunks.get(worker_id, [])
        self.orphans.extend((due, a) for a in chunks)  # each keeps its lost worker's id
        return sum(a.num_clients for a in chunks)

    def decline(self, worker_id: str, now: float) -> int:
        """``worker_id`` could not take what it was handed: orphans again; returns how many.

        A worker of the same protocol that predates handovers answers the
        second ``job`` with ``busy``; its handed clients go back to the
        orphans, due at once, for the other workers.
        """
        self.declined.add(worker_id)
        back = self.handed.pop(worker_id, [])
        for h in back:
            self.chunks[worker_id].remove(h.share)
            self.orphans.append((now, Assignment(h.origin, h.share.num_clients,
                                                 h.share.client_offset, h.share.rate)))  # fmt: skip
        return sum(h.share.num_clients for h in back)

    def next_due(self) -> float | None:
        """When the earliest orphan is due, if any."""
        return min((due for due, _ in self.orphans), default=None)

    def due(self, now: float) -> list[Handover]:
        """Hand the orphans due by ``now`` to live workers; the new shares to send.

        What no live worker has room for stays orphaned (an elastic join may
        take it later).
        """
        ready = [a for due, a in self.orphans if due <= now]
        if not ready:
            return []
        live = [
            w
            for w in self.capacity.values()
            if w.worker_id not in self.lost | self.declined
            and w.max_clients > self.load(w.worker_id)
        ]
        idle = [w for w in live if not self.load(w.worker_id)]
        takers = idle if idle or not self.hand_on else live
        if not takers:
            return []
        rooms = [
            WorkerCapacity(
                w.worker_id, w.cores, w.max_clients - self.load(w.worker_id) + FD_RESERVE
            )
            for w in takers
        ]
        counts = _water_fill(sum(a.num_clients for a in ready), rooms)
        out = self._carve(ready, takers, counts)
        taken = sum(counts)
        kept: list[tuple[float, Assignment]] = []
        for due, a in self.orphans:  # drop what was handed on, from the front of ``ready``
            if due <= now and taken:
                used = min(taken, a.num_clients)
                taken -= used
                if used == a.num_clients:
                    continue
                a = self._slice(a, used, a.num_clients - used, a.worker_id)
            kept.append((due, a))
        self.orphans = kept
        for h in out:
            self.chunks[h.share.worker_id].append(h.share)
            self.handed.setdefault(h.share.worker_id, []).append(h)
        return out

    def _carve(
        self, ready: list[Assignment], takers: list[WorkerCapacity], counts: list[int]
    ) -> list[Handover]:
        """Cut the ready orphans, in order, into each taker's count of clients."""
        out: list[Handover] = []
        pieces = list(ready)
        for taker, count in zip(takers, counts, strict=True):
            while count:
                head = pieces[0]
                used = min(count, head.num_clients)
                out.append(Handover(head.worker_id, self._slice(head, 0, used, taker.worker_id)))
                count -= used
                if used == head.num_clients:
                    pieces.pop(0)
                else:
                    pieces[0] = self._slice(head, used, head.num_clients - used, head.worker_id)
        return out

    def _slice(self, a: Assignment, skip: int, count: int, worker_id: str) -> Assignment:
        rate = self.rate_per_client * count if self.rate_per_client is not None else None
        return Assignment(worker_id, count, a.client_offset + skip, rate)


def worker_spec(spec: Mapping[str, Any], offset: int, count: int) -> dict[str, Any]:
    """The job's spec (``JobSpec.to_dict()``) for job-wide clients ``offset .. offset+count-1``.

    Identical but for the feeder: a ``unique`` feeder carries only those
    clients' rows (so rows are disjoint across workers and hosts, and a
    worker never holds the whole file); ``cycle`` and ``random`` keep every
    row (:func:`wsload.common.feeder.slice_feeder`).
    """
    body = dict(spec)
    feeder = body.get("feeder")
    if feeder:
        body["feeder"] = slice_feeder(feeder, offset, count)
    return body


__all__ = [
    "FD_RESERVE",
    "Assignment",
    "Handover",
    "Roster",
    "WorkerCapacity",
    "plan",
    "worker_spec",
]
