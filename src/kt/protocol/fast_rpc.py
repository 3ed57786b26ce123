"""The common HTTP RPC request, answered without the general parser (sans-IO).

Why: nearly every RPC request a client sends has the same head as its previous one (the same
procedure, Host, Content-Type and often Content-Length); only the body changes.  The general
:class:`kt.protocol.http_server.RequestParser` re-parses every header line each time, which was
most of the bundled server's CPU per request.  Here a head is parsed once, by that parser (so
every ktserver rule applies unchanged), and remembered by its bytes; a request whose head is
remembered needs one ``find`` and a dictionary look-up.

Only heads the general parser reads the plain way are remembered (CRLF lines, no NUL, short
lines: see :func:`kt.protocol.http_server._fast_head`), only ``POST /rpc/NAME`` with a
Content-Length body (or none) and a text/tab-separated-values body; anything else returns None
and takes the general path, which answers it as before.

:func:`rpc_response` is ``build_response`` for an RPC answer (``encode_rpc_output`` and
``send_result`` in one join).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from kt import _native
from kt.protocol import http_server as hs
from kt.protocol import kt_rpc

__all__ = ["FastHead", "find_head", "rpc_response"]

HEAD_WINDOW = 2048  # a longer head takes the general path
BODY_LIMIT = 1 << 20  # a larger body takes the general path (it arrives in many pieces anyway)
_CACHE_MAX = 1024  # distinct heads remembered (at most HEAD_WINDOW bytes each)

_heads: Dict[bytes, Optional[FastHead]] = {}
# kt._speedups.kt_server_http: rpc_response and the plain TSV split in C (None: pure Python)
native = _native.load("kt_server_http")


class FastHead:
    """What the general parser made of one request head, for requests that repeat it."""

    __slots__ = ("method", "target", "path", "query", "version", "headers", "keep", "clen",
                 "procedure", "content_type", "log_text", "_query_params", "_colenc", "_plain")

    def __init__(self, parser: hs.RequestParser, procedure: str, content_type: str):
        self.method = parser.method
        self.target = parser.target
        self.path = parser.path
        self.query = parser.query
        self.version = parser.version
        self.headers = parser.headers
        self.keep = parser.keep
        self.clen = max(parser.clen, 0)
        self.procedure = procedure
        self.content_type = content_type
        self.log_text = (f"{self.method.decode('latin-1')} {self.target.decode('latin-1')} "
                         f"HTTP/1.{self.version}")
        self._query_params = kt_rpc.parse_rpc_params(self.query, b"", None)
        self._colenc = kt_rpc.parse_colenc(content_type)
        self._plain = not self._query_params and self._colenc is None

    def request(self, body: bytes) -> hs.HTTPRequest:
        """The request as the general parser would have returned it."""
        return hs.HTTPRequest(self.method, hs.M_POST, self.target, self.path, self.query, self.version,
                              self.headers, self.keep, body)

    def params(self, body: bytes) -> Dict[bytes, bytes]:
        """``kt_rpc.parse_rpc_params`` of this head's query and Content-Type with ``body``."""
        if self._plain:
            if native is not None:
                params = native.tsv_params(body)
                if params is not None:
                    return params
            elif b"\r" not in body:  # tsv_to_map without a CR to strip
                return _tsv_params(body)
        return kt_rpc.parse_rpc_params(self.query, body, self.content_type)


def _tsv_params(body: bytes) -> Dict[bytes, bytes]:
    """``tsv_to_map(body)`` of a body without a CR (the twin of ``native.tsv_params``)."""
    params = {}
    for line in body.split(b"\n"):
        key, tab, value = line.partition(b"\t")
        if tab:
            params[key] = value
    return params


def _learn(head: bytes) -> Optional[FastHead]:
    """The FastHead of ``head`` (the bytes before the first blank line), or None when a request
    with this head must take the general path."""
    whole = head + b"\r\n\r\n"
    if hs._fast_head(whole, 0) is None:
        return None
    parser = hs.RequestParser()
    try:
        parser.parse(whole, 0, False)
    except (hs.DropConnection, hs.HTTPErrorReply):
        return None
    if parser.kind != hs.M_POST or not parser.path.startswith(b"/rpc/"):
        return None
    if parser.clen < 0 and parser.chunked or parser.clen > BODY_LIMIT:
        return None
    value = parser.headers.get(b"content-type")
    if value is None:
        return None
    content_type = value.decode("latin-1")
    if not content_type.lower().startswith(kt_rpc.TSV_CONTENT_TYPE):
        return None
    return FastHead(parser, kt_rpc.parse_procedure(parser.path), content_type)


def find_head(buf) -> Optional[Tuple[FastHead, int]]:
    """``(FastHead, body start)`` of the request at the start of ``buf``, or None."""
    hend = buf.find(b"\r\n\r\n", 0, HEAD_WINDOW)
    if hend < 0:
        return None
    head = bytes(buf[:hend])
    try:
        fh = _heads[head]
    except KeyError:
        fh = _learn(head)
        if len(_heads) >= _CACHE_MAX:
            _heads.clear()
        _heads[head] = fh
    if fh is None:
        return None
    return fh, hend + 4


_TSV = kt_rpc.TSV_CONTENT_TYPE
_HEAD_START = b"\r\nServer: " + hs.SERVER_NAME + b"\r\nDate: "
_KEEP_LINES = {True: b"\r\nContent-Length: ", False: b"\r\nConnection: close\r\nContent-Length: "}
_TYPE_LINES = {name: b"\r\n" + hs._header_line("content-type", kt_rpc.tsv_content_type(name)) + b"\r\n"
               for name in (None, "B", "U")}
_EMPTY_TYPE_LINE = _TYPE_LINES[None]


_CONTROL = kt_rpc._CTRL_RE.search
_UNRESERVED = kt_rpc._UNRESERVED


def _output_encoding(output: Mapping[bytes, bytes]) -> Optional[str]:
    """``checkmapenc(output)`` (None, "B" or "U") with one regex search and one translate over
    all the strings together when none is longer than 255 bytes (its per-string cut)."""
    parts = []
    blen = 0
    for key, value in output.items():
        n, m = len(key), len(value)
        if n > 255 or m > 255:
            return kt_rpc.checkmapenc(output)
        blen += n * 6 // 4 + m * 6 // 4 + 6
        parts.append(key)
        parts.append(value)
    joined = b"".join(parts)
    if not _CONTROL(joined):
        return None
    total = len(joined)
    ulen = 3 * total - 2 * (total - len(joined.translate(None, _UNRESERVED)))
    return "B" if blen < ulen else "U"


_status_heads: Dict[int, bytes] = {}


def _status_head(code: int) -> bytes:
    head = _status_heads.get(code)
    if head is None:
        head = _status_heads[code] = hs._status_line(code)[:-2] + _HEAD_START
    return head


_TYPE_LINE_TUPLE = (_TYPE_LINES[None], _TYPE_LINES["B"], _TYPE_LINES["U"])


def rpc_response(code: int, output: Mapping[bytes, bytes], keep: bool) -> bytes:
    """``build_response(code, *encode_rpc_output(output), keep_alive=keep)`` of an RPC answer."""
    if native is not None and type(output) is dict:
        reply = native.rpc_response(_status_head(code), hs.http_date(), _KEEP_LINES[keep], output,
                                    _TYPE_LINE_TUPLE)
        if reply is not None:
            return reply
    return _rpc_response(code, output, keep)


def _rpc_response(code: int, output: Mapping[bytes, bytes], keep: bool) -> bytes:
    """``rpc_response`` in Python (the twin of ``native.rpc_response``)."""
    if not output:
        body = b""
        type_line = _EMPTY_TYPE_LINE
    else:
        colenc = _output_encoding(output)
        type_line = _TYPE_LINES[colenc]
        if colenc is not None:
            enc = kt_rpc.ENCODERS[colenc]
            output = {enc(k): enc(v) for k, v in output.items()}
        if len(output) == 1:
            body = b"%s\t%s\n" % next(iter(output.items()))
        else:
            body = b"".join([b"%s\t%s\n" % (k, output[k]) for k in sorted(output)])
    return b"".join((_status_head(code), hs.http_date(), _KEEP_LINES[keep],
                     b"%d" % len(body), type_line, body))
