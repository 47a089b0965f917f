"""What the coordinator and the worker share: job spec, wire protocol, histogram."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wsload")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
