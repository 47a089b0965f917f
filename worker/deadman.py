"""The dead-man rule, sans-I/O: no load outlives its coordinator, whatever the load.

When the coordinator has been silent for ``silence_timeout`` seconds the
worker must stop its load. Asking the event loop to stop it is the polite
way, and it is enough while the loop still turns; but a loop starved by its
own clients (a closed loop or a ``--rate`` above what the worker can send)
may never run that request, and its connections would stay open, loading a
target nobody is measuring any more. So once the stop was asked for, the
load has ``grace`` seconds to end; after that the heartbeat thread exits the
process, which closes every socket at once.

:class:`DeadMan` only decides (the caller passes the clock); the heartbeat
thread acts on what :meth:`DeadMan.poll` says. It is armed when a
coordinator welcomes the worker (:meth:`DeadMan.arm`), not by any earlier
heartbeat (a coordinator that just said ``bye`` may still beat): a
long-lived worker waiting minutes for its next coordinator has no
coordinator to miss, and no load to stop.
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    NONE = "none"
    #: the coordinator just fell silent: ask the loop to stop the load
    STOP = "stop"
    #: the load was asked to stop ``grace`` seconds ago and still runs: exit the process
    EXIT = "exit"


class DeadMan:
    """Tracks the coordinator's last sign of life and the load's stop deadline."""

    def __init__(self, silence_timeout: float, now: float) -> None:
        self.silence_timeout = silence_timeout
        self._last_seen = now
        self._armed = False  # a coordinator welcomed us
        self._silent = False  # STOP was returned for the current silence
        self._grace: float | None = None  # a load runs, with this grace to stop
        self._exit_at: float | None = None

    def seen(self, now: float) -> None:
        """The coordinator spoke. A stop already asked for still has to happen in time."""
        self._last_seen = now
        self._silent = False

    def arm(self, now: float) -> None:
        """A coordinator welcomed the worker: from now on its silence counts."""
        self._armed = True
        self.seen(now)

    def silent_for(self, now: float) -> float:
        return now - self._last_seen

    def load_started(self, grace: float, now: float) -> None:
        """A load runs from now; once asked to stop, it has ``grace`` seconds."""
        self._grace = grace
        if self._silent:  # started during a silence: it is stopped at once, in time too
            self._exit_at = now + grace

    def load_stopped(self) -> None:
        self._grace = None
        self._exit_at = None

    def poll(self, now: float) -> Action:
        """What to do now; STOP once per silence, EXIT once per missed deadline."""
        if not self._armed:
            return Action.NONE
        if not self._silent and now - self._last_seen > self.silence_timeout:
            self._silent = True
            if self._grace is not None:
                self._exit_at = now + self._grace
            return Action.STOP
        if self._exit_at is not None and now >= self._exit_at:
            self._exit_at = None
            return Action.EXIT
        return Action.NONE


__all__ = ["Action", "DeadMan"]
