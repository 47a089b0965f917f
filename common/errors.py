"""The exception tree of ``common``.

Everything the shared core raises on bad input derives from :class:`WsloadError`,
so a shell (CLI, coordinator, worker agent) can turn it into a one-line reason
without catching unrelated bugs.
"""


class WsloadError(Exception):
    """Base of every error wsload raises on purpose."""


class SpecError(WsloadError):
    """A job spec (flags, environment, scenario file) is invalid.

    ``problems`` holds one human-readable line per problem found, so a user
    fixes them all in one go instead of one per run.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ProtocolError(WsloadError):
    """A coordinator/worker message could not be decoded or is not valid."""


class HistogramError(WsloadError):
    """A histogram was given a value or a serialised form it cannot take."""


class KeyFileError(WsloadError):
    """A CURVE key directory or key file is missing, unreadable or incomplete."""
