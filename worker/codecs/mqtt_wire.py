"""MQTT 3.1.1 and 5 packets: building the ones a client sends, reading a byte stream of them.

Kept apart from :mod:`wsload.worker.codecs.mqtt` (the connection's state)
because this is the part a hostile broker attacks: every length is checked
against what is left, the remaining length's varint is at most 4 bytes
(the specification's limit) and a packet is at most ``max_packet`` bytes
(the job's ``max_message_size``), so a stream that claims a 256 MB packet
costs a :class:`MalformedPacket`, never memory. No I/O.

MQTT 5 (``v5``) differs where a client sees it: a properties block (a
varint length, then the properties) after the variable header of CONNECT,
CONNACK, PUBLISH, SUBSCRIBE and their answers, and reason codes (0x80 and
up: failure) in CONNACK, PUBACK, SUBACK, UNSUBACK and the server's
DISCONNECT. We send no properties; of the server's we read the CONNACK's
(:func:`read_properties`: Server Keep Alive, Receive Maximum, Maximum QoS and
Maximum Packet Size matter) and
skip the others.
"""

from __future__ import annotations

import struct

# packet types (the fixed header's high nibble)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

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
    v5: bool = False,
) -> bytes:
    """CONNECT, protocol level 4 (3.1.1) or 5; a password goes only with a user name."""
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    payload = _string(client_id)
    if username is not None:
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _data(password)
    header = _string("MQTT") + bytes((5 if v5 else 4, flags)) + _U16.pack(keepalive)
    return _packet(CONNECT << 4, header + (b"\x00" if v5 else b"") + payload)


def publish_packet(
    topic: str, payload: bytes, qos: int, retain: bool, packet_id: int, v5: bool = False
) -> bytes:
    """PUBLISH; ``packet_id`` only with QoS 1 or 2."""
    body = _string(topic) + (_U16.pack(packet_id) if qos else b"") + (b"\x00" if v5 else b"")
    return _packet(PUBLISH << 4 | qos << 1 | (1 if retain else 0), body + payload)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]], v5: bool = False) -> bytes:
    body = _U16.pack(packet_id) + (b"\x00" if v5 else b"")
    body += b"".join(_string(t) + bytes((q,)) for t, q in filters)
    return _packet(SUBSCRIBE << 4 | 2, body)


def unsubscribe_packet(packet_id: int, filters: list[str], v5: bool = False) -> bytes:
    body = _U16.pack(packet_id) + (b"\x00" if v5 else b"") + b"".join(map(_string, filters))
    return _packet(UNSUBSCRIBE << 4 | 2, body)


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 2) or PUBCOMP for ``packet_id``."""
    return bytes((kind << 4 | (2 if kind == PUBREL else 0), 2)) + _U16.pack(packet_id)


def read_u16(body: memoryview, at: int, whole: bool = True) -> int:
    """The 16-bit integer at ``at``; ``whole`` false: the body had the wrong length."""
    if not whole or len(body) < at + 2:
        raise MalformedPacket(f"a packet of {len(body)} bytes where a packet id was due")
    value: int = _U16.unpack_from(body, at)[0]
    return value


def read_varint(body: memoryview, at: int) -> tuple[int, int]:
    """The variable byte integer at ``at`` (at most 4 bytes) and where it ends."""
    value, shift = 0, 0
    for i in range(at, min(at + 4, len(body))):
        value |= (body[i] & 0x7F) << shift
        if not body[i] & 0x80:
            return value, i + 1
        shift += 7
    raise MalformedPacket("a variable byte integer runs past the packet or 4 bytes")


def skip_properties(body: memoryview, at: int) -> int:
    """Where an MQTT 5 properties block that starts at ``at`` ends."""
    length, at = read_varint(body, at)
    if at + length > len(body):
        raise MalformedPacket("properties run past the packet")
    return at + length


#: MQTT 5 property identifier -> its value's size: 1, 2 or 4 bytes, 0 a variable byte
#: integer, -1 a string or binary (u16 length first), -2 a string pair
_PROPERTY_SIZES = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), 1),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), 2),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), 4),
    0x0B: 0,
    **dict.fromkeys((0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F), -1),
    0x26: -2,
}
SERVER_KEEP_ALIVE, RECEIVE_MAXIMUM, REASON_STRING = 0x13, 0x21, 0x1F
MAXIMUM_QOS, MAXIMUM_PACKET_SIZE = 0x24, 0x27


def read_properties(body: memoryview, at: int) -> tuple[dict[int, int | bytes], int]:
    """An MQTT 5 properties block: {identifier: integer, or bytes for strings}, its end."""
    end = skip_properties(body, at)
    at = read_varint(body, at)[1]
    props: dict[int, int | bytes] = {}
    while at < end:
        ident = body[at]
        size = _PROPERTY_SIZES.get(ident)
        at += 1
        if size is None:
            raise MalformedPacket(f"unknown MQTT 5 property {ident:#x}")
        value: int | bytes
        if size == 0:
            value, at = read_varint(body, at)
        elif size > 0:
            value, at = int.from_bytes(body[at : at + size]), at + size
        else:
            start = at
            for _ in range(-size):
                at += 2 + read_u16(body, at)
            value = bytes(body[start + 2 : at])
        if at > end:
            raise MalformedPacket(f"MQTT 5 property {ident:#x} runs past its block")
        props[ident] = value
    return props, end


#: reason codes (MQTT 5 section 2.4; CONNACK 1-5 are 3.1.1's return codes)
REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA2: "wildcard subscriptions not supported",
}


def reason(code: int) -> str:
    """A reason code as text: ``not authorized (0x87)``."""
    return f"{REASONS.get(code, 'reason')} ({code:#04x})"


def read_answer(kind: int, body: memoryview, v5: bool) -> tuple[int, memoryview]:
    """A PUBACK's, SUBACK's or UNSUBACK's packet id and reason (return) codes."""
    if v5:
        # PUBACK: a reason code when not 0, then properties; SUBACK and UNSUBACK:
        # properties, then one reason code per filter
        pid = read_u16(body, 0)
        if kind == PUBACK:
            return pid, body[2:3]
        codes = body[skip_properties(body, 2) :]
        if not codes:
            raise MalformedPacket(f"packet type {kind} without reason codes")
        return pid, codes
    if kind == SUBACK:
        if len(body) < 3:
            raise MalformedPacket("SUBACK without return codes")
        return read_u16(body, 0, True), body[2:]
    return read_u16(body, 0, len(body) == 2), body[2:]


def read_publish(body: memoryview, qos: int, v5: bool = False) -> tuple[str, int, bytes]:
    """A PUBLISH's topic, packet id (0 with QoS 0) and payload (MQTT 5's properties skipped)."""
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
    if v5:
        at = skip_properties(body, at)
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
    "AUTH",
    "CONNACK",
    "CONNECT",
    "DISCONNECT",
    "MAXIMUM_PACKET_SIZE",
    "MAXIMUM_QOS",
    "MAX_REMAINING",
    "PINGREQ",
    "PINGREQ_PACKET",
    "PINGRESP",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBREC",
    "PUBREL",
    "REASONS",
    "REASON_STRING",
    "RECEIVE_MAXIMUM",
    "SERVER_KEEP_ALIVE",
    "SUBACK",
    "SUBSCRIBE",
    "UNSUBACK",
    "UNSUBSCRIBE",
    "MalformedPacket",
    "PacketReader",
    "ack_packet",
    "connect_packet",
    "publish_packet",
    "read_answer",
    "read_properties",
    "read_publish",
    "read_u16",
    "read_varint",
    "reason",
    "skip_properties",
    "subscribe_packet",
    "unsubscribe_packet",
]
