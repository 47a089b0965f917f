"""Protocol codecs: what a scenario's ``protocol = ...`` speaks over its WebSocket.

:func:`codec_class` maps a protocol's name to its :class:`Codec` class,
importing the module only when a job uses it (a raw load never imports
them). The names and each protocol's verbs and options are declared for
both sides in :mod:`wsload.common.protocols`; the classes here implement them.
"""

from __future__ import annotations

import importlib

from wsload.worker.codecs.base import Codec

#: protocol name -> (module under wsload.worker.codecs, class name)
_CODECS: dict[str, tuple[str, str]] = {
    "socketio": ("socketio", "SocketIOCodec"),
    "graphql": ("graphql", "GraphQLCodec"),
    "stomp": ("stomp", "StompCodec"),
    "mqtt": ("mqtt", "MqttCodec"),
}


def codec_class(name: str) -> type[Codec]:
    """The codec class of protocol ``name`` (checked before the run: KeyError is a bug)."""
    module, cls = _CODECS[name]
    found: type[Codec] = getattr(importlib.import_module(f"wsload.worker.codecs.{module}"), cls)
    return found


__all__ = ["Codec", "codec_class"]
