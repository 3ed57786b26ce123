"""Server side of HTTP/1.x exactly as ktserver speaks it (sans-IO: bytes in, bytes out).

Why hand-written and not ``httptools``: ktserver's parser (``kthttp.h``
``HTTPServer::WorkerAdapter::process``) differs from any RFC parser in ways the golden vectors
pin down: a request body is read only for POST, PUT and *unknown* methods (llhttp reads it for
GET/DELETE and rejects unknown methods), a version other than exactly ``HTTP/1.0``/``HTTP/1.1``
drops the connection without a reply, lines are cut at 8191 bytes and ``\\r`` is dropped
anywhere in a line, header values keep their trailing spaces.  Emulating all that around
llhttp would cost more than the parser itself; ``bench/bench_kt_server.py`` measures both.

Request side::

    parse_request(buf, pos=0, eof=False) -> (HTTPRequest, end) | None
    RequestParser().parse(buf, pos=0, eof=False)   # the same, resumable as bytes arrive

``None`` means "need more bytes".  It raises :class:`DropConnection` when ktserver would close
the connection without a reply, and :class:`HTTPErrorReply` when it would answer with
``send_error`` (a ready-made reply in ``.reply``) and then close.  ``eof=True`` tells the parser
that no more bytes will come, so an incomplete request becomes the error ktserver gives.

Response side: :func:`build_response` (``send_result``: status line, ``Server``, ``Date``,
``[Connection: close]``, ``Content-Length`` unless HEAD/304, extra headers sorted by name and
Capitalized-Per-Dash) and :func:`build_error` (``send_error``).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Mapping, Optional, Union

__all__ = [
    "SERVER_NAME",
    "LINE_MAX",
    "BODY_MAX",
    "HEAD_MAX",
    "M_GET",
    "M_HEAD",
    "M_POST",
    "M_PUT",
    "M_DELETE",
    "M_UNKNOWN",
    "HTTPRequest",
    "DropConnection",
    "HTTPErrorReply",
    "parse_request",
    "RequestParser",
    "build_response",
    "build_error",
    "status_name",
    "http_date",
    "kc_atoi",
    "kc_atoih",
    "kc_strnrmspc",
]

SERVER_NAME = b"KyotoTycoon/0.9.56b"
LINE_MAX = 8191  # HTTPClient::LINEBUFSIZ (8192) minus the terminating NUL
BODY_MAX = 1 << 28  # HTTPClient::RECVMAXSIZ
HEAD_MAX = 1 << 20
"""Our one deviation: a request head (line + headers) longer than 1 MiB drops the connection as
soon as that many bytes arrived (ktserver reads header lines without limit, holding one thread
per connection; here one event loop serves everybody, so one head must not take it for long)."""

M_GET, M_HEAD, M_POST, M_PUT, M_DELETE, M_UNKNOWN = range(6)
_METHODS = {b"GET": M_GET, b"HEAD": M_HEAD, b"POST": M_POST, b"PUT": M_PUT, b"DELETE": M_DELETE}
_BODY_METHODS = (M_POST, M_PUT, M_UNKNOWN)

_INT64 = 1 << 64
_SPACE = frozenset(range(1, 0x21)) | {0x7F}
_C_ISSPACE = b" \t\n\v\f\r"


class DropConnection(Exception):
    """ktserver closes the connection here without sending anything."""


class HTTPErrorReply(Exception):
    """ktserver answers with ``send_error`` (``self.reply``) and closes the connection."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.reply = build_error(code, message)


class _NeedMore(Exception):
    pass


class HTTPRequest:
    """One parsed request.  ``headers`` maps lower-cased names to raw values (last one wins)."""

    __slots__ = ("method", "kind", "target", "path", "query", "version", "headers", "keep_alive", "body")

    def __init__(self, method: bytes, kind: int, target: bytes, path: bytes, query: Optional[bytes],
                 version: int, headers: dict, keep_alive: bool, body: bytes):
        self.method = method
        self.kind = kind
        self.target = target  # path + "?" + query, as sent (used for misc["url"] / Location)
        self.path = path
        self.query = query
        self.version = version  # 0 = HTTP/1.0, 1 = HTTP/1.1
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = body

    def __repr__(self) -> str:
        return f"HTTPRequest({self.method!r} {self.target!r} HTTP/1.{self.version}, body={len(self.body)}B)"


# ---------------------------------------------------------------------------- kc helpers

def kc_atoi(s: bytes) -> int:
    """``kc::atoi``: leading white space, optional sign, digits up to the first non-digit."""
    i, n = 0, len(s)
    while i < n and s[i] in _C_ISSPACE:
        i += 1
    sign = 1
    if i < n and s[i] in b"+-":
        if s[i] == 0x2D:
            sign = -1
        i += 1
    num = 0
    while i < n and 0x30 <= s[i] <= 0x39:
        num = num * 10 + s[i] - 0x30
        i += 1
    return _to_int64(num * sign)


def kc_atoih(s: bytes) -> int:
    """``kc::atoih``: hexadecimal digits after optional white space and ``0x``."""
    i, n = 0, len(s)
    while i < n and (0 < s[i] <= 0x20):
        i += 1
    if s[i:i + 2] in (b"0x", b"0X"):
        i += 2
    num = 0
    while i < n:
        c = s[i]
        if 0x30 <= c <= 0x39:
            d = c - 0x30
        elif 0x61 <= c <= 0x66:
            d = c - 0x57
        elif 0x41 <= c <= 0x46:
            d = c - 0x37
        else:
            break
        num = (num * 16 + d) % _INT64
        i += 1
    return _to_int64(num)


def _to_int64(num: int) -> int:
    num %= _INT64
    return num - _INT64 if num >= 1 << 63 else num


def kc_strnrmspc(s: bytes) -> bytes:
    """``kc::strnrmspc``: collapse runs of space characters into one, trim both ends."""
    if not s:
        return s
    out = bytearray()
    spc = True
    for c in s:
        if c in _SPACE:
            if not spc:
                out.append(c)
            spc = True
        else:
            out.append(c)
            spc = False
    while out and out[-1] in _SPACE:
        out.pop()
    return bytes(out)


# ---------------------------------------------------------------------------- request parser

_CUT = re.compile(rb"(?:\r*[^\r]){%d}" % LINE_MAX, re.S)  # LINE_MAX bytes that are not CR


def _read_line(buf, pos: int, end: int, eof: bool):
    """``Socket::receive_line``: up to LINE_MAX non-CR bytes or up to ``\\n``.

    Returns ``(line, next_pos)``; the line is cut at a NUL like the C string it becomes.
    Raises ``_NeedMore`` (or ``DropConnection`` at EOF) when the line is incomplete.  Looks at
    no more than LINE_MAX + 1 bytes, or :data:`HEAD_MAX` when the line holds CRs (which do not
    count): a 100 MB line costs what its first 8 KB cost.
    """
    window = min(end, pos + LINE_MAX + 1)
    nl = buf.find(b"\n", pos, window)
    if nl < 0 and window < end and b"\r" in buf[pos:window]:
        window = min(end, pos + HEAD_MAX + 1)
        nl = buf.find(b"\n", pos, window)
    raw = bytes(buf[pos:nl if nl >= 0 else window])
    kept = len(raw) - raw.count(b"\r")
    if kept > LINE_MAX or (nl < 0 and kept >= LINE_MAX):
        cut = _CUT.match(raw)
        line, nxt = cut.group().replace(b"\r", b""), pos + cut.end()
    elif nl >= 0:
        line, nxt = (raw.replace(b"\r", b"") if b"\r" in raw else raw), nl + 1
    elif window < end:
        raise DropConnection("a line of carriage returns longer than the head limit")
    elif eof:
        raise DropConnection("end of input inside a line")
    else:
        raise _NeedMore
    if b"\0" in line:
        line = line[:line.index(b"\0")]
    return line, nxt


_NAME_SPACE = re.compile(rb"[\x01-\x20\x7f]")


def _fast_head(buf, pos: int, max_lines: Optional[int] = None):
    """The header block split into lines when it is plain CRLF text (the common case).

    Returns ``(lines, body_start)`` or None when the slow, byte-exact path must decide
    (bare ``\n`` or stray ``\r``, NUL bytes, over-long lines, incomplete head).
    """
    hend = buf.find(b"\r\n\r\n", pos, pos + HEAD_MAX + 4)
    if hend < 0 or (max_lines is not None and buf.count(b"\n", pos, hend) >= max_lines):
        return None
    head = bytes(buf[pos:hend])
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf or b"\0" in head:
        return None
    lines = head.split(b"\r\n")
    if len(max(lines, key=len)) > LINE_MAX:
        return None
    return lines, hend + 4


def parse_request(buf, pos: int = 0, eof: bool = False):
    """Parse one request from ``buf[pos:]``; see the module docstring for the contract."""
    return RequestParser().parse(buf, pos, eof)


_HEAD_LINE, _HEADERS, _BODY = range(3)


def _arrived(have: int, need: int, eof: bool) -> bool:
    """Whether ``need`` body bytes are there; missing at EOF, ktserver answers 400."""
    if have >= need:
        return True
    if eof:
        raise HTTPErrorReply(400, "receiving data failed")
    return False


class RequestParser:
    """:func:`parse_request` for a request that arrives in pieces: it resumes where it stopped.

    Why: a head or chunked body that grows by a few bytes at a time must not be re-parsed from
    its start on every arrival (a slow peer sending a 1 MB head one byte at a time would hold
    the server's event loop for most of the time).  Call :meth:`parse` with the same ``pos`` on
    the same, growing buffer (bytes before ``pos`` may not change) until it returns the request;
    every complete line is parsed once, the head is limited to :data:`HEAD_MAX` bytes as they
    arrive, and an incomplete line or chunk is the only part looked at again.
    """

    __slots__ = ("phase", "start", "next", "method", "kind", "target", "path", "query", "version",
                 "keep", "clen", "chunked", "headers", "parts", "total", "paused")

    def __init__(self) -> None:
        self.phase = _HEAD_LINE
        self.paused = False
        self.headers: dict = {}
        self.parts: list = []
        self.total = 0

    def parse(self, buf, pos: int = 0, eof: bool = False, max_lines: Optional[int] = None):
        """``(HTTPRequest, end)`` once complete, else None; raises like :func:`parse_request`.

        With ``max_lines``, at most that many head lines are parsed per call; ``paused`` is then
        true when it stopped for that reason (call again) rather than for missing bytes.
        """
        end = len(buf)
        self.paused = False
        if self.phase == _HEAD_LINE:
            self.start = pos
            fast = _fast_head(buf, pos, max_lines)  # None with too many lines: sliced below
            if fast is not None:
                lines, body_start = fast
                self._request_line(lines[0])
                header = self._header
                for index in range(1, len(lines)):
                    header(lines[index])
                self.next = body_start
                self.phase = _BODY
            else:
                got = self._line(buf, pos, end, eof)
                if got is None:
                    return None
                self._request_line(got[0])
                self.next = got[1]
                self.phase = _HEADERS
        if self.phase == _HEADERS:
            limit = self.start + HEAD_MAX
            budget = -1 if max_lines is None else max_lines
            while True:
                if budget == 0:
                    self.paused = True
                    return None
                budget -= 1
                got = self._line(buf, self.next, end, eof)
                if got is None:
                    return None
                line, self.next = got
                if not line:
                    break
                if self.next > limit:
                    raise DropConnection("request head too large")
                self._header(line)
            self.phase = _BODY
        return self._body(buf, end, eof)

    def _line(self, buf, pos: int, end: int, eof: bool):
        try:
            return _read_line(buf, pos, end, eof)
        except _NeedMore:
            if end - self.start > HEAD_MAX:
                raise DropConnection("request head too large") from None
            return None

    def _request_line(self, line: bytes) -> None:
        sp = line.find(b" ")
        if sp < 0:
            raise DropConnection("request line without a space")
        method = line[:sp]
        sp2 = line.find(b" ", sp + 1)
        if sp2 < 0:
            raise DropConnection("request line without a version")
        target = line[sp + 1:sp2]
        version_text = line[sp2 + 1:]
        q = target.find(b"?")
        if q >= 0:
            path, query = target[:q], target[q + 1:]
        else:
            path, query = target, None
        if not path:
            raise DropConnection("empty request path")
        if version_text == b"HTTP/1.1":
            version = 1
        elif version_text == b"HTTP/1.0":
            version = 0
        else:
            raise DropConnection("unsupported HTTP version")
        self.method, self.target, self.path, self.query, self.version = method, target, path, query, version
        self.kind = _METHODS.get(method, M_UNKNOWN)
        self.keep = version >= 1
        self.clen = -1
        self.chunked = False

    def _header(self, line: bytes) -> None:
        colon = line.find(b":")
        if colon < 0:
            return
        name = line[:colon]
        if _NAME_SPACE.search(name):
            name = kc_strnrmspc(name)
        name = name.lower()
        if not name:
            return
        value = line[colon + 1:].lstrip(b" ")
        if name == b"connection":
            low = value.lower()
            if low == b"close":
                self.keep = False
            elif low == b"keep-alive":
                self.keep = True
        elif name == b"content-length":
            self.clen = int(value) if len(value) < 19 and value.isdigit() else kc_atoi(value)
        elif name == b"transfer-encoding":
            if value.lower() == b"chunked":
                self.chunked = True
        self.headers[name] = value

    def _body(self, buf, end: int, eof: bool):
        p = self.next
        body = b""
        if self.kind in _BODY_METHODS:
            clen = self.clen
            if clen >= 0:
                if clen > BODY_MAX:
                    raise HTTPErrorReply(413, "request entity too large")
                if not _arrived(end - p, clen, eof):
                    return None
                body = bytes(buf[p:p + clen])
                p += clen
            elif self.chunked:
                if not self._chunks(buf, end, eof):
                    return None
                body, p = b"".join(self.parts), self.next
        request = HTTPRequest(self.method, self.kind, self.target, self.path, self.query, self.version,
                              self.headers, self.keep, body)
        return request, p

    def _chunks(self, buf, end: int, eof: bool) -> bool:
        """Read chunks from ``self.next`` on; True once the last one is in (``self.next`` after it)."""
        while True:
            p = self.next
            try:
                line, p = _read_line(buf, p, end, eof)
            except _NeedMore:
                return False
            except DropConnection:
                raise HTTPErrorReply(400, "receiving data failed") from None
            if not line:
                self.next = p
                return True
            csiz = kc_atoih(line)
            if self.total + csiz > BODY_MAX:
                raise HTTPErrorReply(413, "request entity too large")
            if csiz > 0:
                if not _arrived(end - p, csiz, eof):
                    return False
                chunk = bytes(buf[p:p + csiz])
                p += csiz
            else:
                chunk = b""
            if end - p < 2 and not eof and buf[p:end] in (b"", b"\r"):
                return False
            if buf[p:p + 2] != b"\r\n":
                raise HTTPErrorReply(400, "invalid chunk")
            self.next = p + 2
            if csiz < 1:
                return True
            self.parts.append(chunk)
            self.total += csiz


# ---------------------------------------------------------------------------- responses

_REASONS = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 417: "Expectation Failed",
    422: "Unprocessable Entity", 423: "Locked", 424: "Failed Dependency", 426: "Upgrade Required",
    450: "Logical Inconsistency",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 509: "Bandwidth Limit Exceeded",
    510: "Not Extended",
}


def status_name(code: int) -> str:
    """``HTTPServer::status_name``, including ``450 Logical Inconsistency``."""
    name = _REASONS.get(code)
    if name is not None:
        return name
    if code < 100:
        return "Unknown Status"
    for limit, text in ((200, "Informational"), (300, "Success"), (400, "Redirection"),
                        (500, "Client Error"), (600, "Server Error")):
        if code < limit:
            return f"Unknown {text} Status"
    return "Unknown Status"


_STATUS_LINES: dict = {}
_date_cache = [0, b""]


def http_date(now: Optional[float] = None) -> bytes:
    """RFC 1123 date as in the ``Date`` header (cached per second)."""
    sec = int(time.time() if now is None else now)
    if _date_cache[0] != sec:
        _date_cache[1] = formatdate(sec, usegmt=True).encode("ascii")
        _date_cache[0] = sec
    return _date_cache[1]


def _status_line(code: int) -> bytes:
    line = _STATUS_LINES.get(code)
    if line is None:
        line = _STATUS_LINES[code] = f"HTTP/1.1 {code} {status_name(code)}\r\n".encode("latin-1")
    return line


def _capitalize(name: bytes) -> bytes:
    out = bytearray(name)
    up = True
    for i, c in enumerate(out):
        if up and 0x61 <= c <= 0x7A:
            out[i] = c - 0x20
        up = c == 0x2D
    return bytes(out)


_header_cache: dict = {}


def _header_line(name, value) -> bytes:
    """One extra header as ``send_result`` writes it, or b"" when it would be skipped."""
    if isinstance(name, str):
        name = name.encode("latin-1")
    if isinstance(value, str):
        value = value.encode("latin-1")
    elif isinstance(value, int):
        value = str(value).encode("ascii")
    key = (name, value)
    line = _header_cache.get(key)
    if line is not None:
        return line
    n = kc_strnrmspc(name.split(b"\0", 1)[0]).lower()
    v = kc_strnrmspc(value.split(b"\0", 1)[0])
    if not n or b":" in n or b" " in n:
        line = b""
    else:
        line = _capitalize(n) + b": " + v + b"\r\n"
    if len(_header_cache) < 4096:
        _header_cache[key] = line
    return line


HeaderMap = Mapping[Union[str, bytes], Union[str, bytes, int]]


def build_response(code: int, body: bytes = b"", headers: Optional[HeaderMap] = None, *,
                   keep_alive: bool = True, head: bool = False, server: bytes = SERVER_NAME) -> bytes:
    """``send_result``: the complete response bytes.

    ``headers`` are the handler's extra headers (``resheads``); they are written sorted by
    name like ktserver's ``std::map``.  ``head`` suppresses ``Content-Length`` and the body
    (HEAD requests); so does status 304.
    """
    parts = [_status_line(code), b"Server: ", server, b"\r\nDate: ", http_date(), b"\r\n"]
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    with_body = not head and code != 304
    if with_body:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if headers:
        if len(headers) == 1:
            for name, value in headers.items():
                parts.append(_header_line(name, value))
        else:
            items = [(n.encode("latin-1") if isinstance(n, str) else n, v) for n, v in headers.items()]
            items.sort(key=lambda item: item[0].lower())  # ktserver keys are lower-case
            for name, value in items:
                parts.append(_header_line(name, value))
    parts.append(b"\r\n")
    if with_body and body:
        parts.append(body)
    return b"".join(parts)


def build_error(code: int, message: str, *, server: bytes = SERVER_NAME) -> bytes:
    """``send_error``: ``Connection: close``, ``text/plain`` body ``"<code> <reason> (<msg>)\\n"``."""
    name = status_name(code)
    body = f"{code} {name} ({message})\n".encode("latin-1")
    return b"".join([
        _status_line(code), b"Server: ", server, b"\r\nDate: ", http_date(), b"\r\n",
        b"Connection: close\r\n", b"Content-Length: %d\r\n" % len(body),
        b"Content-Type: text/plain\r\n\r\n", body,
    ])
