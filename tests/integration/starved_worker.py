"""A real worker whose event loop can be starved on demand, for the dead-man test.

``python -m tests.integration.starved_worker ENDPOINT SILENCE_TIMEOUT`` runs a
worker agent (``once``) like ``wsload worker``; on SIGUSR1 its event loop
spins for ever in pure Python, as a loop flooded by its own clients does
(the GIL still switches, so the heartbeat thread runs). Nothing the loop was
asked to do afterwards ever runs: only the heartbeat thread can end the load.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from wsload.worker.agent import Agent, AgentOptions


def starve() -> None:
    print("starving", flush=True)
    while True:
        pass


async def main(endpoint: str, silence_timeout: float) -> int:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, starve)
    options = AgentOptions(
        endpoint=endpoint, worker_id="starved", once=True, silence_timeout=silence_timeout
    )
    return await Agent(options).serve()


if __name__ == "__main__":
    sys.exit(uvloop.run(main(sys.argv[1], float(sys.argv[2]))))
