"""Which scenario each of the job's clients runs: counts by weight, clients interleaved.

``[[scenarios]]`` with ``clients = N`` get exactly ``N`` clients; the rest
of the job's clients are split by ``weight`` with the largest-remainder
method (exact integers, in rational arithmetic so every machine gets the
same counts). Clients are then interleaved, not blocked: job-wide clients
``0 .. total - 1`` are cut into contiguous slices, one per worker, and
ramps and ``[[stages]]`` connect the lowest numbers first, so every
contiguous range -- in particular every prefix -- must hold close to the
overall mix, or one worker (or the first minute of a ramp) would run one
scenario only.

The interleaving is a balanced binary tree over the programs: each node
spreads its left group's ``a`` clients among its ``n`` with Bresenham's
rule (position ``i`` is left iff ``L(i+1) > L(i)``, ``L(i) = (i*a + n//2) // n``),
then recurses with the position's rank inside the chosen group. In any
range of ``m`` consecutive clients, program ``p`` gets ``m * count(p) /
total`` clients give or take less than the depth of its leaf
(``ceil(log2(programs))``). :meth:`Assignment.program_of` and
:meth:`Assignment.count_in` are ``O(log programs)`` integer arithmetic, with
no table of ``total`` entries (a job may have ten million clients).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from wsload.common.program import Program


@dataclass(frozen=True)
class _Node:
    size: int  #: clients under this node
    left_size: int  #: of which in the left subtree
    left: _Node | int  #: a subtree, or a program index (leaf)
    right: _Node | int


def _where(programs: Sequence[Program], i: int) -> str:
    return f"scenarios[{i + 1}] ({programs[i].name})"


def mix_problems(programs: Sequence[Program], total: int) -> list[str]:
    """What stops ``total`` clients being split over ``programs``, a line each."""
    if not programs:
        return ["scenarios: no scenario to run"]
    problems: list[str] = []
    fixed = 0
    for i, program in enumerate(programs):
        if program.clients is not None:
            if isinstance(program.clients, bool) or program.clients < 0:
                problems.append(f"{_where(programs, i)}: clients must be >= 0")
            else:
                fixed += program.clients
        elif not (math.isfinite(program.weight) and program.weight >= 0):
            problems.append(f"{_where(programs, i)}: weight must be a number >= 0")
    if problems:
        return problems
    weighted = [i for i, p in enumerate(programs) if p.clients is None]
    if fixed > total:
        return [
            f"scenarios: fixed clients add up to {fixed}, more than the job's {total} "
            "clients: raise the job's clients or lower the scenarios'"
        ]
    left = total - fixed
    if left and not weighted:
        return [
            f"scenarios: fixed clients add up to {fixed}, the job has {total}: give a scenario "
            f"a weight instead of clients to take the other {left}, or set the job's clients "
            f"to {fixed}"
        ]
    if left and not sum(programs[i].weight for i in weighted):
        return [f"scenarios: the weights add up to 0, with {left} clients to share"]
    counts = split_counts(programs, total)
    for i in weighted:
        if not counts[i] and left and programs[i].weight > 0:
            problems.append(
                f"{_where(programs, i)}: weight {programs[i].weight:g} gives it none of the "
                f"{left} clients shared by weight; raise its weight or the job's clients"
            )
    return problems


def split_counts(programs: Sequence[Program], total: int) -> list[int]:
    """Clients per program: fixed ones as given, the rest by weight, largest remainder
    first (ties: the lower index). No checks: :func:`mix_problems` says what is wrong."""
    counts = [p.clients or 0 for p in programs]
    weighted = [i for i, p in enumerate(programs) if p.clients is None]
    left = total - sum(counts)
    weights = {i: Fraction(programs[i].weight) for i in weighted}
    whole = sum(weights.values(), Fraction(0))
    if left <= 0 or not whole:
        return counts
    quotas = {i: left * w / whole for i, w in weights.items()}
    for i, quota in quotas.items():
        counts[i] = math.floor(quota)
    spare = left - sum(counts[i] for i in weighted)
    by_remainder = sorted(weighted, key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[:spare]:
        counts[i] += 1
    return counts


def _build(leaves: Sequence[tuple[int, int]]) -> _Node | int:
    """A balanced tree over ``(program, count)`` leaves (counts > 0)."""
    if len(leaves) == 1:
        return leaves[0][0]
    half = len(leaves) // 2
    left, right = _build(leaves[:half]), _build(leaves[half:])
    left_size = sum(c for _, c in leaves[:half])
    return _Node(left_size + sum(c for _, c in leaves[half:]), left_size, left, right)


def _lefts(node: _Node, i: int) -> int:
    """Left-group positions among the node's first ``i`` (Bresenham, centred)."""
    return (i * node.left_size + node.size // 2) // node.size


class Assignment:
    """The job's clients mapped to programs; the same on every worker."""

    __slots__ = ("_counts", "_paths", "_root", "total")

    def __init__(self, counts: Sequence[int]) -> None:
        self._counts = tuple(counts)
        self.total = sum(self._counts)
        leaves = [(p, c) for p, c in enumerate(self._counts) if c > 0]
        self._root: _Node | int | None = _build(leaves) if leaves else None
        self._paths: dict[int, tuple[tuple[_Node, bool], ...]] = {}
        self._walk(self._root, ())

    def _walk(self, node: _Node | int | None, path: tuple[tuple[_Node, bool], ...]) -> None:
        if node is None:
            return
        if isinstance(node, int):
            self._paths[node] = path
            return
        self._walk(node.left, (*path, (node, True)))
        self._walk(node.right, (*path, (node, False)))

    @property
    def programs(self) -> int:
        return len(self._counts)

    def count(self, p: int) -> int:
        """Clients of program ``p`` in the whole job."""
        return self._counts[p]

    def locate(self, g: int) -> tuple[int, int]:
        """Job-wide client ``g``'s program, and its rank among that program's clients."""
        if not 0 <= g < self.total or self._root is None:
            raise IndexError(f"client {g} is not one of the job's {self.total}")
        node, i = self._root, g
        while not isinstance(node, int):
            before = _lefts(node, i)
            if _lefts(node, i + 1) > before:
                node, i = node.left, before
            else:
                node, i = node.right, i - before
        return node, i

    def program_of(self, g: int) -> int:
        """The program (index into the job's programs) job-wide client ``g`` runs."""
        return self.locate(g)[0]

    def prefix(self, p: int, n: int) -> int:
        """Clients of program ``p`` among job-wide clients ``0 .. n - 1``."""
        path = self._paths.get(p)
        if path is None:
            return 0
        i = max(0, min(n, self.total))
        for node, left in path:
            before = _lefts(node, i)
            i = before if left else i - before
        return i

    def count_in(self, p: int, offset: int, count: int) -> int:
        """Clients of program ``p`` among job-wide clients ``offset .. offset + count - 1``."""
        return self.prefix(p, offset + count) - self.prefix(p, offset)


def assign(programs: Sequence[Program], total: int) -> Assignment:
    """Split ``total`` clients over ``programs``; :class:`ValueError` with the problems if not."""
    if problems := mix_problems(programs, total):
        raise ValueError("; ".join(problems))
    return Assignment(split_counts(programs, total))


__all__ = ["Assignment", "assign", "mix_problems", "split_counts"]
