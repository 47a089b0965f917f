"""Dispatch a functional-mode job to its battery; the agent's single entry point."""

from __future__ import annotations

from typing import Any

from wsload.common.spec import JobSpec, Mode
from wsload.worker.checks.integration import run_integration
from wsload.worker.checks.result import FAIL, CheckResult
from wsload.worker.checks.unit import run_unit


async def run_mode(spec: JobSpec) -> tuple[bool, dict[str, Any]]:
    """Run the checks of ``spec.mode``; (all passed, details for the ``result`` message)."""
    details: dict[str, Any]
    if spec.mode is Mode.EVENT:
        # The event mode is a load job of the fan-out machinery, judged by the
        # coordinator (wsload.coordinator.event_mode); only another version sends this.
        why = "event jobs run as load jobs of the coordinator: use a coordinator of this version"
        details = {"mode": "event", "checks": [CheckResult("event", FAIL, why).to_dict()]}
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
