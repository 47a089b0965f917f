"""What a worker accepts: a job spec it can run, aimed where it may aim.

Checked on the worker itself, whatever the coordinator checked: a worker
trusts its own ``--allow-target`` list, not the peer that sent the job.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from wsload.common.errors import SpecError
from wsload.common.protocol import Job
from wsload.common.spec import JobSpec, Mode, spec_from_dict


def checked_spec(job: Job) -> tuple[JobSpec | None, list[str]]:
    try:
        spec = spec_from_dict(job.spec)
    except SpecError as exc:
        return None, exc.problems
    problems = spec.problems()
    return (None, problems) if problems else (spec, [])


def target_refusal(spec: JobSpec, allowed: tuple[str, ...]) -> str | None:
    """Why this worker must not run ``spec`` (``--allow-target``), or None.

    A shared worker fleet can be restricted to the services it exists to test,
    so whoever reaches its coordinator cannot aim it anywhere else.
    """
    if not allowed:
        return None
    urls = [spec.ws_url] + ([spec.api_url] if spec.mode is Mode.EVENT else [])
    for url in urls:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
        if not any(_allows(rule, host, port) for rule in allowed):
            return f"target {host}:{port} is not in --allow-target ({', '.join(allowed)})"
    return None


def _allows(rule: str, host: str, port: int) -> bool:
    rule_host, sep, rule_port = rule.lower().rpartition(":")
    if not sep or not rule_port.isdigit():  # HOST alone (or a bare IPv6 address)
        return rule.lower().strip("[]") == host
    return rule_host.strip("[]") == host and int(rule_port) == port


__all__ = ["checked_spec", "target_refusal"]
