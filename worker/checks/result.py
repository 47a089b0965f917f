"""One check's outcome, and the run of checks around it.

Plain data that crosses the wire inside a ``result`` message's ``details``
(``{"checks": [...]}``), so the coordinator can print and export them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"


class Skip(Exception):
    """Raised inside a check: it does not apply to this target (the message says why)."""


class Fail(Exception):
    """Raised inside a check: the target misbehaved (the message says how)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    reason: str = ""
    duration: float = 0.0  # seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_check(
    name: str, check: Callable[[], Awaitable[str | None]], limit: float
) -> CheckResult:
    """Run one check within ``limit`` seconds; its return value is the pass detail."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            detail = await check()
    except Skip as exc:
        return CheckResult(name, SKIP, str(exc), time.monotonic() - started)
    except Fail as exc:
        return CheckResult(name, FAIL, str(exc), time.monotonic() - started)
    except TimeoutError:
        return CheckResult(name, FAIL, f"no answer within {limit:g} s", time.monotonic() - started)
    except Exception as exc:  # any other failure of the target is a failed check, not a crash
        reason = f"{type(exc).__name__}: {exc}"
        return CheckResult(name, FAIL, reason, time.monotonic() - started)
    return CheckResult(name, PASS, detail or "", time.monotonic() - started)


__all__ = ["FAIL", "PASS", "SKIP", "CheckResult", "Fail", "Skip", "run_check"]
