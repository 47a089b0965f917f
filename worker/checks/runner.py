"""Dispatch a functional-mode job to its battery; the agent's single entry point."""

from __future__ import annotations

from typing import Any

from wsload.common.spec import JobSpec, Mode
from wsload.worker.checks.event import run_event
from wsload.worker.checks.integration import run_integration
from wsload.worker.checks.result import FAIL
from wsload.worker.checks.unit import run_unit


async def run_mode(spec: JobSpec) -> tuple[bool, dict[str, Any]]:
    """Run the checks of ``spec.mode``; (all passed, details for the ``result`` message)."""
    if spec.mode is Mode.EVENT:
        details = await run_event(spec)
    elif spec.mode is Mode.UNIT:
        details = {"mode": "unit", "checks": [c.to_dict() for c in await run_unit(spec)]}
    elif spec.mode is Mode.INTEGRATION:
        results = await run_integration(spec)
        details = {"mode": "integration", "checks": [c.to_dict() for c in results]}
    else:
        raise ValueError(f"{spec.mode} is not a check mode")
    ok = all(check["status"] != FAIL for check in details["checks"])
    return ok, details


__all__ = ["run_mode"]
