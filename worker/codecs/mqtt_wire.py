"""MQTT 3.1.1 packets: building the ones a client sends, reading a byte stream of them.

Kept apart from :mod:`wsload.worker.codecs.mqtt` (the connection's state)
because this is the part a hostile broker attacks: every length is checked
against what is left, the remaining length's varint is at most 4 bytes
(the specification's limit) and a packet is at most ``max_packet`` bytes
(the job's ``max_message_size``), so a stream that claims a 256 MB packet
costs a :class:`MalformedPacket`, never memory. No I/O.
"""

from __future__ import annotations

import struct

# packet types (the fixed header's high nibble)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = range(8, 15)

PINGREQ_PACKET = bytes((PINGREQ << 4, 0))
_U16 = struct.Struct(">H")
#: the largest remaining length 4 varint bytes hold (268,435,455)
MAX_REMAINING = 0x0FFFFFFF


class MalformedPacket(ValueError):
    """The stream broke MQTT's framing or a packet's layout (the text says how)."""


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    if len(body) > MAX_REMAINING:
        raise ValueError(f"a packet body of {len(body)} bytes exceeds MQTT's limit")
    return bytes((first,)) + _remaining(len(body)) + body


def _string(text: str) -> bytes:
    return _data(text.encode())


def _data(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"a string of {len(data)} bytes exceeds MQTT's 65535")
    return _U16.pack(len(data)) + data


def connect_packet(
    client_id: str,
    *,
    keepalive: int,
    clean_session: bool,
    username: str | None = None,
    password: bytes | None = None,
) -> bytes:
    """CONNECT, protocol level 4 (3.1.1); a password without a user name is 3.1.1's error."""
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    payload = _string(client_id)
    if username is not None:
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _data(password)
    header = _string("MQTT") + bytes((4, flags)) + _U16.pack(keepalive)
    return _packet(CONNECT << 4, header + payload)


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int) -> bytes:
    """PUBLISH; ``packet_id`` only with QoS 1 or 2."""
    body = _string(topic) + (_U16.pack(packet_id) if qos else b"") + payload
    return _packet(PUBLISH << 4 | qos << 1 | (1 if retain else 0), body)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = _U16.pack(packet_id) + b"".join(_string(t) + bytes((q,)) for t, q in filters)
    return _packet(SUBSCRIBE << 4 | 2, body)


def unsubscribe_packet(packet_id: int, filters: list[str]) -> bytes:
    return _packet(UNSUBSCRIBE << 4 | 2, _U16.pack(packet_id) + b"".join(map(_string, filters)))


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 2) or PUBCOMP for ``packet_id``."""
    return bytes((kind << 4 | (2 if kind == PUBREL else 0), 2)) + _U16.pack(packet_id)


def read_u16(body: memoryview, at: int, whole: bool = True) -> int:
    """The 16-bit integer at ``at``; ``whole`` false: the body had the wrong length."""
    if not whole or len(body) < at + 2:
        raise MalformedPacket(f"a packet of {len(body)} bytes where a packet id was due")
    value: int = _U16.unpack_from(body, at)[0]
    return value


def read_publish(body: memoryview, qos: int) -> tuple[str, int, bytes]:
    """A PUBLISH's topic, packet id (0 with QoS 0) and payload."""
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    n = read_u16(body, 0)
    at = 2 + n
    if len(body) < at:
        raise MalformedPacket("PUBLISH topic runs past the packet")
    try:
        topic = bytes(body[2:at]).decode()
    except UnicodeDecodeError:
        raise MalformedPacket("PUBLISH topic is not UTF-8") from None
    pid = 0
    if qos:
        pid = read_u16(body, at)
        at += 2
        if not pid:
            raise MalformedPacket("PUBLISH with packet id 0")
    return topic, pid, bytes(body[at:])


class PacketReader:
    """MQTT's byte stream, fed frame by frame, read packet by packet.

    Holds at most one partial packet (less than ``max_packet`` bytes plus a
    frame); a length past ``max_packet`` or a 5-byte varint is refused as
    soon as its header is read.
    """

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max_packet
        self.buffer = bytearray()
        #: the bytes the buffered partial packet needs in all (0: its header is not all here)
        self.need = 0

    def feed(self, data: bytes) -> list[tuple[int, memoryview]]:
        """The whole packets ``data`` completes: (first byte, body) each, in order."""
        if self.buffer:
            self.buffer += data
            if len(self.buffer) < self.need:  # a big packet in many frames: no copy
                return []
            view = memoryview(bytes(self.buffer))
        else:
            view = memoryview(data)
        packets: list[tuple[int, memoryview]] = []
        at, end = 0, len(view)
        while at < end:
            length, shift, i = 0, 0, at + 1
            while True:
                if i >= end:  # the header is not all here yet
                    self._keep(view, at, 0)
                    return packets
                byte = view[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift == 28:
                    raise MalformedPacket("remaining length longer than 4 bytes")
            if i - at + length > self.max_packet:
                raise MalformedPacket(
                    f"a packet of {i - at + length} bytes exceeds max_message_size "
                    f"({self.max_packet})"
                )
            if i + length > end:
                self._keep(view, at, i - at + length)
                return packets
            packets.append((view[at], view[i : i + length]))
            at = i + length
        self.buffer.clear()
        self.need = 0
        return packets

    def _keep(self, view: memoryview, at: int, need: int) -> None:
        self.need = need
        if at or not self.buffer:
            self.buffer[:] = view[at:]


__all__ = [
    "CONNACK",
    "CONNECT",
    "DISCONNECT",
    "MAX_REMAINING",
    "PINGREQ",
    "PINGREQ_PACKET",
    "PINGRESP",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBREC",
    "PUBREL",
    "SUBACK",
    "SUBSCRIBE",
    "UNSUBACK",
    "UNSUBSCRIBE",
    "MalformedPacket",
    "PacketReader",
    "ack_packet",
    "connect_packet",
    "publish_packet",
    "read_publish",
    "read_u16",
    "subscribe_packet",
    "unsubscribe_packet",
]
