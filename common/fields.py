"""The job spec's fields by type: each value checked and converted losslessly, without I/O.

Split from :mod:`common.spec` so the spec module holds the spec and its
layering; this one answers "is this value of the right type for that
field", for a TOML file, an environment variable, a flag or the wire alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from common.validation import describe


class Mode(StrEnum):
    """What a job does: make load, or run one of the functional check batteries."""

    LOAD = "load"
    UNIT = "unit"
    INTEGRATION = "integration"
    EVENT = "event"


_INT_FIELDS = frozenset({"num_clients", "payload_size", "event_count", "max_message_size"})
_FLOAT_FIELDS = frozenset(
    {
        "duration",
        "interval",
        "rate",
        "ramp_up",
        "connect_timeout",
        "reply_timeout",
        "drain_timeout",
        "reconnect_max_delay",
        "event_wait",
    }
)
_STR_FIELDS = frozenset(
    {"ws_url", "api_url", "payload", "id_field", "ca_file", "event_method", "event_path"}
    | {"event_body", "engine", "match"}
)
_BOOL_FIELDS = frozenset({"reconnect", "compression", "tls_insecure"})
_STR_LIST_FIELDS = frozenset({"subprotocols", "thresholds", "event_names", "source_addresses"})


def coerce(name: str, value: Any) -> Any:
    """Check one field's type, converting only lossless representations."""
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {describe(value)}")
        return value
    if name in _FLOAT_FIELDS:
        if name == "rate" and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {describe(value)}")
        return float(value)
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {describe(value)}")
        return value
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {describe(value)}")
        return value
    if name in _STR_LIST_FIELDS:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {describe(value)}")
        return tuple(value)
    if name == "headers":
        return coerce_headers(value)
    if name == "steps":
        ok = isinstance(value, list | tuple) and all(
            isinstance(step, dict) and all(isinstance(k, str) for k in step) for step in value
        )
        if not ok:
            raise ValueError(f"expected a list of tables ([[steps]]), got {describe(value)}")
        return tuple(dict(step) for step in value)
    if name == "mode":
        try:
            return Mode(value)
        except ValueError:
            choices = ", ".join(m.value for m in Mode)
            raise ValueError(f"expected one of {choices}, got {describe(value)}") from None
    raise AssertionError(f"no coercion for field {name}")  # pragma: no cover


def coerce_headers(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        value = list(value.items())
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a table of name = value, got {describe(value)}")
    pairs: list[tuple[str, str]] = []
    for item in value:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise ValueError(f"expected name/value string pairs, got {describe(item)}")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def parse_text(name: str, raw: str) -> Any:
    """Parse a field from text (environment variable), keeping the error readable."""
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {_short(raw)}") from None
    if name in _FLOAT_FIELDS:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {_short(raw)}") from None
    return raw


def _short(raw: str) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["Mode", "coerce", "coerce_headers", "parse_text"]
