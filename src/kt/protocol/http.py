"""HTTP/1.1 client framing, sans-IO: request bytes out, incremental response parsing in.

The response parser follows the contract of docs/internals.md:
``parse_response(buf, pos) -> (Response, end) | None``; bytes that can never become a valid
response raise :class:`kt.errors.ProtocolError`.  Framing: ``Content-Length``, chunked
transfer coding, no body for HEAD/1xx/204/304, and "until the peer closes" when neither is
given (pass ``eof=True`` once the socket reached EOF).  Header names keep their spelling and
order; :meth:`Response.header` looks them up case-insensitively.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

from kt.errors import ProtocolError

Buffer = Union[bytes, bytearray, memoryview]

MAX_HEAD_SIZE = 1 << 16
"""Longest status line + headers we wait for before calling the peer broken."""
MAX_BODY_SIZE = 1 << 31
"""Largest body length we accept (KT values are at most 256 MiB, Base64 adds a third)."""


def build_request(
    method: str,
    target: str,
    headers: Sequence[Tuple[str, str]] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """``METHOD target version``, the headers exactly in the given order, a blank line, body.

    Nothing is added implicitly: pass ``Host``, ``Content-Length`` etc. yourself (see
    :func:`standard_headers`), so a recorded request can be reproduced byte for byte.
    """
    lines = [f"{method} {target} {version}"]
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + bytes(body)


def standard_headers(
    host: str,
    body: Optional[bytes] = None,
    content_type: Optional[str] = None,
    keep_alive: bool = True,
    extra: Sequence[Tuple[str, str]] = (),
) -> List[Tuple[str, str]]:
    """Headers in the order this package always sends them: Host, extras, Content-Type,
    Connection (only ``close``), Content-Length (when there is a body)."""
    headers = [("Host", host)]
    headers.extend(extra)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if not keep_alive:
        headers.append(("Connection", "close"))
    if body is not None:
        headers.append(("Content-Length", str(len(body))))
    return headers


class Response:
    """One parsed HTTP response (``headers``: ``(name, value)`` pairs in wire order)."""

    __slots__ = ("version", "status", "reason", "headers", "body", "_index")

    def __init__(
        self,
        version: str,
        status: int,
        reason: str,
        headers: Sequence[Tuple[str, str]],
        body: bytes,
        index: Optional[Dict[str, str]] = None,
    ):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self._index = index

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """Case-insensitive lookup (the last occurrence wins)."""
        index = self._index
        if index is None:
            index = self._index = {k.lower(): v for k, v in self.headers}
        return index.get(name.lower(), default)

    @property
    def content_type(self) -> Optional[str]:
        return self.header("content-type")

    @property
    def keep_alive(self) -> bool:
        """False when the server will close the connection after this response."""
        conn = self.header("connection")
        if conn is not None:
            token = conn.strip().lower()
            if token == "close":
                return False
            if token == "keep-alive":
                return True
        return self.version == "HTTP/1.1"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason!r} body={len(self.body)} bytes>"


# A server repeats the same response heads (only Date and Content-Length vary, and rarely):
# parsing is a pure function of the head bytes, so recent results are reused as they are.
_HEAD_CACHE: Dict[bytes, tuple] = {}
_HEAD_CACHE_SIZE = 256


def _parse_head(head: bytes) -> Tuple[str, int, str, Tuple[Tuple[str, str], ...], Dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    version = parts[0]
    if len(parts) < 2 or len(version) != 8 or not version.startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not code.isascii():
        raise ProtocolError(f"bad HTTP status code: {status_line[:80]!r}")
    reason = parts[2] if len(parts) > 2 else ""
    headers: List[Tuple[str, str]] = []
    index: Dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"malformed HTTP header line: {line[:80]!r}")
        value = value.strip(" \t")
        headers.append((name, value))
        index[name.lower()] = value
    return version, int(code), reason, tuple(headers), index


def _parse_chunked(buf: Buffer, off: int) -> Optional[Tuple[bytes, int]]:
    size = len(buf)
    parts: List[bytes] = []
    total = 0
    view = memoryview(buf)
    while True:
        line_end = bytes(view[off : min(size, off + 1024)]).find(b"\r\n")
        if line_end < 0:
            if size - off >= 1024:
                raise ProtocolError("chunk size line too long")
            return None
        line = bytes(view[off : off + line_end])
        digits = line.split(b";", 1)[0].strip()
        try:
            chunk = int(digits, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line: {line[:40]!r}") from None
        if chunk < 0 or digits[:1] in (b"-", b"+"):
            raise ProtocolError(f"bad chunk size line: {line[:40]!r}")
        total += chunk
        if total > MAX_BODY_SIZE:
            raise ProtocolError("chunked body too large")
        off += line_end + 2
        if chunk == 0:
            # Trailers until an empty line.
            while True:
                line_end = bytes(view[off : min(size, off + MAX_HEAD_SIZE)]).find(b"\r\n")
                if line_end < 0:
                    if size - off >= MAX_HEAD_SIZE:
                        raise ProtocolError("chunked trailer too long")
                    return None
                off += line_end + 2
                if line_end == 0:
                    return b"".join(parts), off
        if size - off < chunk + 2:
            return None
        parts.append(bytes(view[off : off + chunk]))
        off += chunk
        if bytes(view[off : off + 2]) != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF")
        off += 2


def parse_response(
    buf: Buffer, pos: int = 0, head_request: bool = False, eof: bool = False
) -> Optional[Tuple[Response, int]]:
    """Parse one response at ``buf[pos:]``; ``head_request`` when it answers a HEAD."""
    if type(buf) is not bytes:
        data = bytes(buf)
    else:
        data = buf
    head_end = data.find(b"\r\n\r\n", pos)
    if head_end < 0:
        if len(data) - pos > MAX_HEAD_SIZE:
            raise ProtocolError("HTTP response head too long")
        if eof and len(data) > pos:
            raise ProtocolError("connection closed in the middle of an HTTP response head")
        if len(data) - pos >= 5 and not data.startswith(b"HTTP/", pos):
            raise ProtocolError(f"not an HTTP response: {data[pos:pos + 40]!r}")
        return None
    if head_end - pos > MAX_HEAD_SIZE:
        raise ProtocolError("HTTP response head too long")
    head = data[pos:head_end]
    parsed = _HEAD_CACHE.get(head)
    if parsed is None:
        parsed = _parse_head(head)
        if len(_HEAD_CACHE) >= _HEAD_CACHE_SIZE:
            _HEAD_CACHE.clear()
        _HEAD_CACHE[head] = parsed
    version, status, reason, headers, index = parsed
    off = head_end + 4
    if head_request or status < 200 or status in (204, 304):
        return Response(version, status, reason, headers, b"", index), off
    te = index.get("transfer-encoding")
    if te is not None and "chunked" in te.lower():
        chunked = _parse_chunked(data, off)
        if chunked is None:
            if eof:
                raise ProtocolError("connection closed in the middle of a chunked body")
            return None
        body, end = chunked
        return Response(version, status, reason, headers, body, index), end
    length_text = index.get("content-length")
    if length_text is not None:
        if not (length_text.isdigit() and length_text.isascii()):
            raise ProtocolError(f"bad Content-Length: {length_text!r}")
        length = int(length_text)
        if length > MAX_BODY_SIZE:
            raise ProtocolError(f"Content-Length {length} too large")
        end = off + length
        if end > len(data):
            if eof:
                raise ProtocolError("connection closed before the whole HTTP body arrived")
            return None
        return Response(version, status, reason, headers, data[off:end], index), end
    if not eof:
        return None
    return Response(version, status, reason, headers, data[off:], index), len(data)


__all__ = [
    "MAX_HEAD_SIZE",
    "MAX_BODY_SIZE",
    "Response",
    "build_request",
    "standard_headers",
    "parse_response",
]
