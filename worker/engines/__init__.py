"""The client engines, registered in one place: :data:`ENGINES` and :func:`create_engine`.

Each engine is a :class:`wsload.worker.engine.Engine` (the population's lifecycle)
whose connections are :class:`wsload.worker.accounting.Link` objects:

- ``picows`` (:mod:`wsload.worker.engines.picows`, the default): replies handled in
  the protocol callback, which sends the next message itself;
- ``websockets`` (:mod:`wsload.worker.engines.websockets`): the websockets library,
  which also does permessage-deflate.

The dependencies point one way: ``worker.accounting`` (the core, and the Link
protocol) <- ``worker.engine`` (the lifecycle) <- each engine <- this registry
<- the worker's agent. A new engine is a module here and one line in ENGINES.
"""

from __future__ import annotations

from typing import Any

from wsload.common.spec import JobSpec
from wsload.worker.engine import Engine
from wsload.worker.engines.picows import PicowsEngine
from wsload.worker.engines.websockets import WebsocketsEngine
from wsload.worker.schedule import Share

#: every client engine by its name (:data:`wsload.common.fields.ENGINES`, what ``--engine`` takes)
ENGINES: dict[str, type[Engine]] = {
    "picows": PicowsEngine,
    "websockets": WebsocketsEngine,
}


def create_engine(spec: JobSpec, share: Share | None = None, **kwargs: Any) -> Engine:
    """The engine ``spec`` asks for (:attr:`JobSpec.client_engine`), ready to :meth:`Engine.run`.

    ``kwargs`` are :class:`wsload.worker.engine.Engine`'s (``on_batch``, ``start_at``,
    ``window``, ``client_prefix``).
    """
    return ENGINES[spec.client_engine](spec, share, **kwargs)


__all__ = ["ENGINES", "create_engine"]
