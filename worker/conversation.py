"""The worker's side of the coordinator conversation, sans-I/O.

Given a message the coordinator sent (as bytes) or a silence, and ``now``,
:class:`Conversation` says what to do: send a message, start or extend a
job, stop the load, end the session (and how). :class:`wsload.worker.agent.Agent`
owns the sockets, the clock and the engine and does only that. Shaped like
python-websockets' sans-I/O protocol, so the rules -- hello until welcomed,
a refusal that ends the worker or only this session, a coordinator of
another protocol version, a second job of the running one (a handover), the
``bye``, giving up on a coordinator that never answers -- are unit-tested
with a fake clock.

The dead-man rule (no load outlives a silent coordinator) is
:class:`wsload.worker.deadman.DeadMan`, on the heartbeat thread; this conversation
arms it on ``welcome`` (:class:`Welcomed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wsload.common.errors import ProtocolError
from wsload.common.protocol import (
    Bye,
    Clock,
    Error,
    Job,
    Message,
    Refuse,
    Stop,
    VersionMismatch,
    Welcome,
    decode,
)
from wsload.worker.link import HandshakeProblem

#: seconds a sent hello has to be answered before it is sent again
HELLO_EVERY = 1.0
#: how soon to try again when the hello could not even be sent (no connection yet)
HELLO_RETRY = 0.05
#: a long-lived worker refused by a coordinator (it has all the workers it
#: needs) says hello again after this many seconds: the next run may want it
REFUSED_RETRY = 5.0
EXIT_OK = 0
EXIT_REFUSED = 2


@dataclass(frozen=True)
class SessionEnd:
    """How one coordinator session ended: exit with ``code``, or look for the next one."""

    code: int | None = None
    retry_after: float = 0.0
    #: what a long-lived worker says as it goes back to waiting (a refusal
    #: repeated every REFUSED_RETRY seconds is said once)
    note: str = ""
    #: to send before the session's sockets close (the answer to a ``bye``)
    answer: Message | None = None


@dataclass(frozen=True)
class Welcomed:
    """The coordinator took this worker: arm the dead-man rule."""

    welcome: Welcome


@dataclass(frozen=True)
class Seen:
    """The coordinator spoke after its welcome: it is alive (the dead-man clock restarts)."""


@dataclass(frozen=True)
class StartJob:
    job: Job


@dataclass(frozen=True)
class TakeOver:
    """A second ``job`` of the running load: a lost worker's clients, to add to it."""

    job: Job


@dataclass(frozen=True)
class Reply:
    message: Message


@dataclass(frozen=True)
class AnswerClock:
    """Answer this clock probe at once with the worker's wall clock (the coordinator
    measures the worker's offset from the round trip: the sooner, the tighter)."""

    probe: Clock


@dataclass(frozen=True)
class StopLoad:
    """Stop the running load (``stop``, ``bye``): it drains and reports its result."""


@dataclass(frozen=True)
class Say:
    """A line for the worker's stderr."""

    text: str


@dataclass(frozen=True)
class End:
    """The session is over: wait for the running job, send ``end.answer``, then leave."""

    end: SessionEnd


Action = Welcomed | Seen | StartJob | TakeOver | Reply | AnswerClock | StopLoad | Say | End


class Conversation:
    """One worker's conversation with the coordinators it meets, one session at a time."""

    def __init__(
        self,
        worker_id: str,
        endpoint: str,
        now: float,
        *,
        once: bool = False,
        hello_timeout: float | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.endpoint = endpoint
        self.once = once
        self.hello_timeout = hello_timeout
        #: when this worker started looking for a coordinator (for ``hello_timeout``)
        self.looking_since = now
        self.welcomed = False
        #: the job running (or last run): a second job of it adds clients
        self.job_id = ""
        self.job_running = False
        #: a load engine runs (a check job cannot take clients over)
        self.load_running = False
        self._hint: HandshakeProblem | None = None
        self._last_note = ""

    def new_session(self) -> None:
        self.welcomed = False
        self.job_running = self.load_running = False
        self._hint = None

    # -- what arrives -------------------------------------------------------

    def receive(self, data: bytes) -> list[Action]:
        """One message from the coordinator; after the welcome, any understood one is :class:`Seen`.

        The shell sets :attr:`job_running` and :attr:`load_running` first.
        """
        try:
            msg: Message = decode(data)
        except VersionMismatch as exc:
            # The coordinator's refusal of our version is itself in its version.
            if not self.welcomed:
                return self._refused(f"the coordinator speaks another protocol: {exc}", final=True)
            return [Seen()]
        except ProtocolError as exc:
            return [Say(f"ignoring a bad message: {exc}")]
        if not self.welcomed:
            if isinstance(msg, Welcome):
                self.welcomed = True
                return [Welcomed(msg)]
            if isinstance(msg, Refuse):
                return self._refused(msg.reason, final=False)
            return []
        if isinstance(msg, Job):
            if not self.job_running:
                self.job_id, self.job_running = msg.job_id, True
                return [Seen(), StartJob(msg)]
            if self.load_running and msg.job_id == self.job_id:
                return [Seen(), TakeOver(msg)]
            return [Seen(), Reply(self.busy())]
        if isinstance(msg, Stop):
            return [Seen(), StopLoad()]
        if isinstance(msg, Clock):
            return [Seen()] if msg.worker_time is not None else [Seen(), AnswerClock(msg)]
        if isinstance(msg, Bye):
            # Answered, so the coordinator knows its bye arrived before it closes.
            end = SessionEnd(note=self._waiting("run over"), answer=Bye("leaving"))
            return [Seen(), StopLoad(), End(end)]
        return [Seen()]

    def busy(self) -> Error:
        return Error("busy", f"{self.worker_id} is running a job")

    def _refused(self, reason: str, *, final: bool) -> list[Action]:
        refusal = f"refused by coordinator: {reason}"
        if self.once or final:
            return [Say(refusal), End(SessionEnd(EXIT_REFUSED))]
        retry = f"{refusal}; trying again every {REFUSED_RETRY:g} s"
        return [End(SessionEnd(retry_after=REFUSED_RETRY, note=retry))]

    # -- what does not arrive -----------------------------------------------

    @staticmethod
    def hello_wait(sent: bool) -> float:
        """How long to wait for an answer to a hello (HELLO_RETRY if it could not be sent)."""
        return HELLO_EVERY if sent else HELLO_RETRY

    def unanswered(self, now: float, problem: HandshakeProblem | None) -> list[Action]:
        """A hello went unanswered; ``problem``: what the link's monitor says, if anything."""
        if problem is not None and problem.final:
            return [Say(problem.text), End(SessionEnd(EXIT_REFUSED))]
        out: list[Action] = []
        if problem is not None and self._hint is None:
            out.append(Say(f"{problem.text}; trying again"))
        self._hint = problem or self._hint
        limit = self.hello_timeout
        if limit is not None and now - self.looking_since >= limit:
            why = f" ({self._hint.text})" if self._hint else ""
            out.append(Say(f"no coordinator answered at {self.endpoint} within {limit:g} s{why}"))
            out.append(End(SessionEnd(EXIT_REFUSED)))
        return out

    def silenced(self) -> SessionEnd:
        """The coordinator went silent (the dead-man rule fired): look for the next one."""
        return SessionEnd(note=self._waiting("the coordinator went silent"))

    def looking(self, now: float) -> None:
        """The session is over (its job drained): ``hello_timeout`` counts from ``now``."""
        self.looking_since = now

    def _waiting(self, why: str) -> str:
        return f"{why}; waiting for the next coordinator at {self.endpoint}"

    # -- between sessions ---------------------------------------------------

    def after(self, end: SessionEnd) -> tuple[int | None, str]:
        """The exit code once a session ended (None: look for the next), and a line to say.

        A refusal repeated every REFUSED_RETRY seconds is said once.
        """
        if end.code is not None:
            return end.code, ""
        if self.once:
            return EXIT_OK, ""
        say = end.note
        if end.retry_after and end.note == self._last_note:
            say = ""
        self._last_note = end.note
        return None, say


__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "HELLO_EVERY",
    "HELLO_RETRY",
    "REFUSED_RETRY",
    "Action",
    "AnswerClock",
    "Conversation",
    "End",
    "Reply",
    "Say",
    "Seen",
    "SessionEnd",
    "StartJob",
    "StopLoad",
    "TakeOver",
    "Welcomed",
]
