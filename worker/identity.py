"""Who this worker is: its id, and the hello that tells a coordinator what it can carry."""

from __future__ import annotations

import os
import resource
import socket
import uuid

from wsload.common import __version__
from wsload.common.protocol import Hello


def fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return what we have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def introduce(worker_id: str) -> Hello:
    """The hello: host, pid, version, cores this process may use, descriptors it may open."""
    return Hello(
        worker_id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
        fd_limit=fd_limit(),
    )


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


__all__ = ["fd_limit", "introduce", "new_worker_id"]
