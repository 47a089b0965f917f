"""STOMP frames on the wire: parsing a byte stream into frames, writing one.

A frame (https://stomp.github.io/stomp-specification-1.2.html) is a command
line, header lines, a blank line and a body ended by NUL (or exactly
``content-length`` bytes then NUL); EOLs (``\\n`` or ``\\r\\n``) may come
between frames (heart-beats). Header names and values are escaped in 1.1
and 1.2 (``\\n``, ``\\c``, ``\\\\``; 1.2 also ``\\r``), except in CONNECT and
CONNECTED. A repeated header: the first one counts.

Kept apart from the codec (:mod:`.stomp`) because it is the part a hostile
peer reaches first: every bound is here (:data:`MAX_FRAME`,
:data:`MAX_HEADER_BYTES`, :data:`MAX_HEADERS`) and every malformed input is a
:class:`StompProtocolError`, never another exception.
"""

from __future__ import annotations

from collections.abc import Mapping

from wsload.common.fields import MAX_MAX_MESSAGE_SIZE
from wsload.worker.codecs.base import cut

#: a frame's bytes, headers and body, at most (the job's ``max_message_size``, if
#: less, bounds it: the codec passes that bound as ``max_frame``)
MAX_FRAME = MAX_MAX_MESSAGE_SIZE
#: a frame's command and header lines
MAX_HEADER_BYTES = 64 * 1024
#: header lines in one frame
MAX_HEADERS = 256

_ESCAPE_12 = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})
_ESCAPE_11 = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"})
_UNESCAPE = {"\\\\": "\\", "\\r": "\r", "\\n": "\n", "\\c": ":"}

#: one parsed frame: command, headers, body
ParsedFrame = tuple[str, dict[str, str], bytes]


class StompProtocolError(ValueError):
    """The peer's bytes are not STOMP (or past a bound): ``protocol_error``."""


def _unescape(value: str) -> str:
    """STOMP 1.1/1.2 header unescaping; an undefined escape is a protocol error."""
    out: list[str] = []
    i = 0
    while True:
        j = value.find("\\", i)
        if j < 0:
            out.append(value[i:])
            return "".join(out)
        pair = value[j : j + 2]
        if pair not in _UNESCAPE:
            raise StompProtocolError(f"undefined escape {pair!r} in a header")
        out.append(value[i:j])
        out.append(_UNESCAPE[pair])
        i = j + 2


def parse_frames(
    buf: bytes | bytearray, escaped: bool, max_frame: int = MAX_FRAME
) -> tuple[list[ParsedFrame], int, int]:
    """The whole frames at the start of ``buf``: (frames, bytes used, bytes the rest needs).

    Bytes past the last whole frame are a partial frame (``buf[used:]``),
    kept by the caller; the third figure is how many bytes that partial
    frame has in all when its ``content-length`` says so (0: unknown), so
    the caller parses it again only once they are all there (a large frame
    in many pieces costs linear time). ``escaped``: header values use
    1.1/1.2 escapes. ``max_frame``: a frame's bound. Raises
    :class:`StompProtocolError` for bytes that cannot be STOMP.
    """
    frames: list[ParsedFrame] = []
    pos = 0
    need = 0
    head_limit = min(MAX_HEADER_BYTES, max_frame)
    n = len(buf)
    while pos < n:
        c = buf[pos]
        if c == 10:  # a heart-beat (or the EOLs a frame may end with)
            pos += 1
            continue
        if c == 13:
            if pos + 1 == n:
                break
            if buf[pos + 1] != 10:
                raise StompProtocolError("a lone CR between frames")
            pos += 2
            continue
        head_end = buf.find(b"\n\n", pos, pos + head_limit)
        crlf_end = buf.find(b"\n\r\n", pos, pos + head_limit)
        if crlf_end >= 0 and (head_end < 0 or crlf_end < head_end):
            body_at = crlf_end + 3
            head_end = crlf_end
        elif head_end >= 0:
            body_at = head_end + 2
        else:
            if n - pos >= head_limit:
                raise StompProtocolError(f"no end of headers within {head_limit} bytes")
            break
        lines = buf[pos:head_end].decode("utf-8", "replace").split("\n")
        if len(lines) > MAX_HEADERS + 1:
            raise StompProtocolError(f"more than {MAX_HEADERS} headers in a frame")
        command = lines[0].removesuffix("\r")
        if not command.isalpha():
            raise StompProtocolError(f"not a STOMP command: {cut(command, 80)!r}")
        headers: dict[str, str] = {}
        unescape = escaped and command != "CONNECTED"
        for line in lines[1:]:
            line = line.removesuffix("\r")
            name, colon, value = line.partition(":")
            if not colon:
                raise StompProtocolError(f"a header line without ':' in {command}")
            if unescape and "\\" in line:
                name, value = _unescape(name), _unescape(value)
            headers.setdefault(name, value)  # a repeated header: the first one counts
        length_text = headers.get("content-length")
        if length_text is not None:
            if not length_text.isdigit():
                raise StompProtocolError(f"content-length {cut(length_text, 80)!r}")
            end = body_at + int(length_text)
            if end + 1 - pos > max_frame:
                raise StompProtocolError(f"a frame past {max_frame} bytes")
            if end >= n:
                need = end + 1 - pos
                break
            if buf[end] != 0:
                raise StompProtocolError("no NUL after the content-length body")
        else:
            end = buf.find(b"\0", body_at, pos + max_frame)
            if end < 0:
                if n - pos >= max_frame:
                    raise StompProtocolError(f"a frame past {max_frame} bytes")
                break
        frames.append((command, headers, bytes(buf[body_at:end])))
        pos = end + 1
    return frames, pos, need


def write_frame(command: str, headers: Mapping[str, str], body: str, version: str) -> str:
    """A frame to send (text), its headers escaped as ``version`` says (1.0: not at all)."""
    if version == "1.0":
        lines = "".join(f"{k}:{v}\n" for k, v in headers.items())
    else:
        table = _ESCAPE_12 if version == "1.2" else _ESCAPE_11
        lines = "".join(f"{k.translate(table)}:{v.translate(table)}\n" for k, v in headers.items())
    return f"{command}\n{lines}\n{body}\0"


__all__ = [
    "MAX_FRAME",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "ParsedFrame",
    "StompProtocolError",
    "parse_frames",
    "write_frame",
]
