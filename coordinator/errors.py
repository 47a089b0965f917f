"""The exception tree of ``coordinator``; every error derives from ``WsloadError``."""

from wsload.common.errors import WsloadError


class CoordinatorError(WsloadError):
    """Base of the coordinator's errors."""


class PlanError(CoordinatorError):
    """A job cannot be split over the workers at hand (the reason says why)."""
