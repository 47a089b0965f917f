"""The fan-out parts of a program checked together, and across the programs of a run.

:mod:`wsload.common.fanout_language` checks each value on its own; here,
what needs more than one: a program's ``[deliveries]`` beside its steps
(its templates may use the feeder's columns and what ``[[steps]]``
capture; a subscriber needs a ``[[loop]]``, since with ``[[steps]]``
alone each session closes once its steps are done), the publications
each iteration repeats, and the run as a whole.

Checked (:func:`program_fanout` per program, :func:`publication_problems`
across them): a literal topic is published by wsload's publishers or is a
server stream (``source = "server"``), not both; a step that every
iteration repeats (``[[loop]]``, or ``[[steps]]`` without one) may not
publish a constant ``seq`` (every iteration would publish the same
publication); deliveries without a ``topic`` path count under one topic
(``topics[0]`` or ``"default"``), which a publisher must publish when
every published topic is literal. A subscribed topic that no publisher
publishes is not a problem (topics may be templates, and publishers
outside the run are not known): the report shows it with no publications.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsload.common.fanout_language import parse_deliveries
from wsload.common.fields import Mode
from wsload.common.program import Action, Deliveries, Program, Step
from wsload.common.template import Node, TextTemplate

#: How a client that only receives deliveries is written.
LISTEN_HINT = " (a client that only listens: [[{}]] think = 60)"


@dataclass(frozen=True)
class Place:
    """Where a program's parts are in the scenario file, for problem lines.

    ``steps`` and ``loop`` prefix a step's place in its block (``steps: ``,
    ``scenarios[2] (chat): loop: ``), ``deliveries`` the program's table;
    ``setup`` is how many ``[[steps]]`` entries the file gives (a step's
    number counts them, compiled or not).
    """

    steps: str
    loop: str
    deliveries: str
    setup: int

    def step(self, step: Step) -> str:
        if step.number <= self.setup:
            return f"{self.steps}step {step.number}"
        return f"{self.loop}step {step.number - self.setup}"


def publication_problems(programs: Sequence[tuple[Program, Place]], mode: Mode) -> list[str]:
    """Problems across the programs of one run: who publishes what, and where it runs.

    A topic is either published by wsload's own publishers or a stream the
    service publishes itself (``source = "server"``), never both: the
    ledger would owe subscribers the gaps of one and the publications of
    the other. Only literal topics can be compared before the run. The
    integration check (one client, one pass) runs no ``post`` step.
    """
    problems: list[str] = []
    published: dict[str, str] = {}
    templated = False  # some publication's topic is known only when it renders
    for program, place in programs:
        for step in program.steps:
            if mode is Mode.INTEGRATION and step.action is Action.POST:
                problems.append(
                    f"{place.step(step)}: post steps run under load only, "
                    "not in wsload test --integration"
                )
            topic = step.publish.topic if step.publish is not None else None
            if isinstance(topic, TextTemplate) and topic.constant:
                published.setdefault(topic.source, place.step(step))
            elif topic is not None:
                templated = True
    for program, place in programs:
        deliveries = program.deliveries
        if deliveries is None:
            continue
        if deliveries.source == "wsload":
            if published and not templated and deliveries.topic is None:
                problems += _one_topic_problem(deliveries, place, published)
            continue
        for topic in deliveries.topics:
            if isinstance(topic, TextTemplate) and topic.source in published:
                problems.append(
                    f"{place.deliveries}topic {topic.source!r} is a server stream "
                    f'(source = "server") and is published by wsload ({published[topic.source]}); '
                    "a topic is one or the other"
                )
    return problems


def _one_topic_problem(
    deliveries: Deliveries, place: Place, published: Mapping[str, str]
) -> list[str]:
    """Without a ``topic`` path every delivery counts under one topic: it must be published."""
    first = deliveries.topics[0] if deliveries.topics else None
    if first is not None and not (isinstance(first, TextTemplate) and first.constant):
        return []
    name = first.source if isinstance(first, TextTemplate) else "default"
    if name in published:
        return []
    shown = ", ".join(repr(t) for t in sorted(published)[:5])
    return [
        f'{place.deliveries}without topic = "dotted.path" every delivery counts under '
        f"{name!r}, which no publish step publishes (they publish {shown}): "
        "give topic, or topics = [...] naming the published one"
    ]


def program_fanout(
    place: Place,
    setup: Sequence[Step],
    loop: Sequence[Step],
    has_loop: bool,
    deliveries_raw: Any,
    known: Collection[str] | None,
    loop_only: Collection[str],
) -> tuple[Deliveries | None, list[str]]:
    """A program's ``[deliveries]`` (None when it has none or it has problems) and the
    problems of its fan-out parts, located.

    ``setup`` and ``loop`` are its compiled steps, ``has_loop`` whether the
    file gives a ``[[loop]]``; ``known`` the variables the deliveries'
    templates may use (None: the feeder could not be read) and
    ``loop_only`` those captured only in ``[[loop]]``.
    """
    problems: list[str] = []
    # what runs every iteration: the loop, or the whole session when there is none
    for step in loop if has_loop else setup:
        publish = step.publish
        if publish is not None and getattr(publish.seq, "tree", None).__class__ is not Node:
            problems.append(
                f"{place.step(step)}: publish: seq is the same number every iteration: "
                'use "{seq}" (one publication per seq)'
            )
    if deliveries_raw is None:
        return None, problems
    deliveries, own = parse_deliveries(deliveries_raw, known, loop_only)
    problems += [place.deliveries + p for p in own]
    if place.setup and not has_loop:
        block = "scenarios.loop" if place.deliveries.startswith("scenarios") else "loop"
        problems.append(
            f"{place.deliveries}a subscriber needs [[{block}]]: with [[steps]] alone each "
            "iteration is a session that closes once its steps are done, before anything "
            "is delivered" + LISTEN_HINT.format(block)
        )
    return deliveries, problems


__all__ = ["LISTEN_HINT", "Place", "program_fanout", "publication_problems"]
