"""Kyoto Tycoon's TSV-RPC over HTTP (protocol.md §B.2-B.4), both directions, sans-IO.

Column encodings B (Base64), U (URL) and Q (quoted-printable) are encoded and decoded exactly
as the server's ``kcutil.h`` does, quirks included:

* every decoder treats its input as a C string (it stops at the first NUL byte);
* ``urldecode``/``quotedecode`` read bytes as signed ``char`` (x86/x86-64), so raw bytes
  ``<= 0x20`` (URL) / ``< 0x20`` (QP), ``0x7F`` *and every raw byte >= 0x80* are dropped;
  ``+`` becomes a space in URL decoding; a malformed hex digit counts as 0;
* ``basedecode`` skips foreign characters, stops after the first group holding ``=`` and
  decodes a short final group as if it were complete (so always pad).

The server picks its output encoding with :func:`checkmapenc` (never Q).  Clients normally send
``colenc=B`` (binary safe) or no encoding when every key and value is free of TAB/CR/LF; see
:func:`choose_request_encoding`.
"""

from __future__ import annotations

import binascii
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from kt.errors import ProtocolError, ServerError

Pairs = Union[Mapping[bytes, bytes], Iterable[Tuple[bytes, bytes]]]

TSV_CONTENT_TYPE = "text/tab-separated-values"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# --------------------------------------------------------------------------- column codecs

_URL_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.~"
_URL_TABLE = [chr(b) if b in _URL_SAFE else f"%{b:02x}" for b in range(256)]
_QP_TABLE = [
    f"={b:02X}" if (b == 0x3D or b < 0x20 or b > 0x7E) else chr(b) for b in range(256)
]
_QP_PLAIN = bytes(b for b in range(0x20, 0x7F) if b != 0x3D)


def url_encode(data: bytes) -> bytes:
    """``kc::urlencode``: ``A-Za-z0-9_-.~`` verbatim, everything else ``%xx`` (lower-case hex)."""
    if not data.translate(None, _URL_SAFE):
        return bytes(data)
    return "".join(map(_URL_TABLE.__getitem__, data)).encode("ascii")


def quote_encode(data: bytes) -> bytes:
    """``kc::quoteencode``: ``=``, bytes < 0x20 and > 0x7E become ``=XX`` (upper-case hex)."""
    if not data.translate(None, _QP_PLAIN):
        return bytes(data)
    return "".join(map(_QP_TABLE.__getitem__, data)).encode("ascii")


def base_encode(data: bytes) -> bytes:
    """``kc::baseencode``: standard alphabet, always padded, no line breaks."""
    return binascii.b2a_base64(data, newline=False)


def _c_string(data: bytes) -> bytes:
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def _hex_digit(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x61 <= c <= 0x66:
        return c - 0x61 + 10
    if 0x41 <= c <= 0x46:
        return c - 0x41 + 10
    return -1


def _hex_pair(a: int, b: int) -> int:
    """kcutil's two-digit reader: a bad first digit counts as 0, a bad second one is skipped."""
    hi = _hex_digit(a)
    num = hi if hi >= 0 else 0
    lo = _hex_digit(b)
    if lo >= 0:
        num = num * 16 + lo
    return num & 0xFF


def hex_decode(data: bytes) -> bytes:
    """``kc::hexdecode`` on a C string: blanks skipped, digits read in pairs (``_hex_pair``),
    a lone last digit is one byte."""
    text = _c_string(bytes(data))
    out = bytearray()
    i, end = 0, len(text)
    while True:
        while i < end and text[i] <= 0x20:
            i += 1
        if i >= end:
            return bytes(out)
        out.append(_hex_pair(text[i], text[i + 1] if i + 1 < end else 0))
        i += 2


_URL_PLAIN_RE = re.compile(rb"[\x21-\x24\x26-\x2a\x2c-\x7e]*")
_URL_WELL_FORMED_RE = re.compile(rb"(?:[\x21-\x24\x26-\x2a\x2c-\x7e]|%[0-9A-Fa-f]{2})*")
_URL_TOKEN_RE = re.compile(rb"%(.)(.)|%.?\Z|\+|[\x00-\x20\x7f-\xff]", re.S)


def _url_token(m: re.Match) -> bytes:
    text = m.group()
    if text == b"+":
        return b" "
    if len(text) == 3:
        return bytes((_hex_pair(text[1], text[2]),))
    return b""


def url_decode(data: bytes) -> bytes:
    """``kc::urldecode`` exactly (see the module docstring for the quirks)."""
    data = _c_string(bytes(data))
    if _URL_PLAIN_RE.fullmatch(data):
        return data
    if _URL_WELL_FORMED_RE.fullmatch(data):
        # Imported here: urllib.parse (and the ipaddress it loads) is ~5% of ``kt get``'s start.
        from urllib.parse import unquote_to_bytes

        return unquote_to_bytes(data)
    return _URL_TOKEN_RE.sub(_url_token, data)


_QP_WELL_FORMED_RE = re.compile(rb"(?:[\x20-\x3c\x3e-\x7e]|=[0-9A-F]{2})*")
_QP_TOKEN_RE = re.compile(rb"=\r\n?|=\n|=(.)(.)|=.?\Z|[\x00-\x1f\x7f-\xff]", re.S)
_QP_HEX_RE = re.compile(rb"=([0-9A-F]{2})")


def _qp_token(m: re.Match) -> bytes:
    text = m.group()
    if len(text) == 3 and text[1] not in b"\r\n":
        return bytes((_hex_pair(text[1], text[2]),))
    return b""


def quote_decode(data: bytes) -> bytes:
    """``kc::quotedecode`` exactly: ``=XX``, soft line breaks removed, control bytes dropped."""
    data = _c_string(bytes(data))
    if b"=" not in data and not data.translate(None, _QP_PLAIN + b"="):
        return data
    if _QP_WELL_FORMED_RE.fullmatch(data):
        return _QP_HEX_RE.sub(lambda m: bytes((int(m.group(1), 16),)), data)
    return _QP_TOKEN_RE.sub(_qp_token, data)


_B64_CANONICAL_RE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUES = {c: i for i, c in enumerate(_B64_ALPHABET)}


def base_decode(data: bytes) -> bytes:
    """``kc::basedecode`` exactly (foreign bytes skipped, stops after the first ``=`` group)."""
    data = _c_string(bytes(data))
    if _B64_CANONICAL_RE.fullmatch(data):
        return binascii.a2b_base64(data)
    out = bytearray()
    pos = 0
    size = len(data)
    values = _B64_VALUES
    eqcnt = 0
    while pos < size and eqcnt == 0:
        bits = 0
        count = 0
        while pos < size and count < 4:
            c = data[pos]
            pos += 1
            if c in values:
                bits = (bits << 6) | values[c]
                count += 1
            elif c == 0x3D:
                bits <<= 6
                count += 1
                eqcnt += 1
        if count == 0 and pos >= size:
            continue
        if eqcnt == 0:
            out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF))
        elif eqcnt == 1:
            out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF))
        elif eqcnt == 2:
            out.append((bits >> 16) & 0xFF)
    return bytes(out)


ENCODERS = {"B": base_encode, "U": url_encode, "Q": quote_encode}
DECODERS = {"B": base_decode, "U": url_decode, "Q": quote_decode}


def _codec_name(colenc: Optional[str]) -> Optional[str]:
    if colenc is None:
        return None
    name = colenc.upper()
    if name not in ENCODERS:
        raise ValueError(f"colenc must be one of B, U, Q or None, not {colenc!r}")
    return name


# --------------------------------------------------------------------------- encoding choice

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.!~*'()"
_CTRL_RE = re.compile(rb"[\x00-\x1f\x7f]")


def checkmapenc(pairs: Pairs) -> Optional[str]:
    """The server's choice of output encoding (``ktutil.h: checkmapenc``): None, "B" or "U"."""
    items = pairs.items() if type(pairs) is dict or isinstance(pairs, Mapping) else pairs
    binary = False
    blen = 0
    ulen = 0
    search = _CTRL_RE.search
    for key, value in items:
        for s in (key, value):
            n = len(s)
            if n > 255:
                n = 255
                s = s[:255]
                binary = True
            blen += n * 6 // 4 + 3
            if not binary and search(s):
                binary = True
            ulen += 3 * n - 2 * (n - len(s.translate(None, _UNRESERVED)))
    if not binary:
        return None
    return "B" if blen < ulen else "U"


_TSV_UNSAFE_RE = re.compile(rb"[\t\n\r]")


def choose_request_encoding(pairs: Sequence[Tuple[bytes, bytes]]) -> Optional[str]:
    """Client default: no encoding when no key/value holds TAB, CR or LF, else Base64.

    Raw TSV is byte-exact for every other byte (the server does not decode unencoded bodies)
    and is the cheapest for both sides; Base64 is binary safe whatever the bytes.  Measured for
    a ``set`` of a 16-byte key and 100-byte value: building 2.0 µs (auto) vs 2.3 µs (always B),
    server-side decoding 1.2 µs vs 6.0 µs, 227 vs 285 request bytes.
    """
    search = _TSV_UNSAFE_RE.search
    for key, value in pairs:
        if search(key) or search(value):
            return "B"
    return None


# --------------------------------------------------------------------------- TSV bodies


def encode_tsv(pairs: Pairs, colenc: Optional[str] = None) -> bytes:
    """``key\\tvalue\\n`` lines in the given order, every column encoded with ``colenc``."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    name = _codec_name(colenc)
    if name is None:
        return b"".join([b"%s\t%s\n" % kv for kv in items])
    enc = ENCODERS[name]
    return b"".join([b"%s\t%s\n" % (enc(k), enc(v)) for k, v in items])


def tsv_to_map(body: bytes, into: Optional[Dict[bytes, bytes]] = None) -> Dict[bytes, bytes]:
    """``ktutil.h: tsvtomap``: lines on LF, one CR stripped, lines without TAB ignored, last wins."""
    result: Dict[bytes, bytes] = {} if into is None else into
    for line in bytes(body).split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        key, tab, value = line.partition(b"\t")
        if tab:
            result[key] = value
    return result


def tsv_map_decode(pairs: Mapping[bytes, bytes], colenc: Optional[str]) -> Dict[bytes, bytes]:
    """``tsvmapdecode``: decode every key and value (visited in raw-key order; later wins)."""
    name = _codec_name(colenc)
    if name is None:
        return dict(pairs)
    dec = DECODERS[name]
    result: Dict[bytes, bytes] = {}
    for key in sorted(pairs):
        result[dec(key)] = dec(pairs[key])
    return result


def www_form_to_map(text: bytes, into: Optional[Dict[bytes, bytes]] = None) -> Dict[bytes, bytes]:
    """``ktutil.h: wwwformtomap``: pairs split on ``&``/``;``, leading 0x01-0x20 skipped."""
    result: Dict[bytes, bytes] = {} if into is None else into
    for pair in re.split(rb"[&;]", bytes(text)):
        pair = pair.lstrip(b"\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12"
                           b"\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
        if not pair:
            continue
        pair = _c_string(pair)
        key, _, value = pair.partition(b"=")
        result[url_decode(key)] = url_decode(value)
    return result


def encode_www_form(pairs: Pairs) -> bytes:
    """A query string / form body (``key=value&...``) with ``kc::urlencode`` escaping."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return b"&".join([url_encode(k) + b"=" + url_encode(v) for k, v in items])


_COLENC_CACHE: Dict[str, Optional[str]] = {}


def parse_colenc(content_type: Optional[str]) -> Optional[str]:
    """The ``colenc`` attribute of a TSV Content-Type: "B", "Q", "U" or None."""
    if not content_type:
        return None
    try:
        return _COLENC_CACHE[content_type]
    except KeyError:
        pass
    colenc = _parse_colenc(content_type)
    if len(_COLENC_CACHE) < 64:
        _COLENC_CACHE[content_type] = colenc
    return colenc


def _parse_colenc(content_type: str) -> Optional[str]:
    lowered = content_type.lower()
    if not lowered.startswith(TSV_CONTENT_TYPE):
        return None
    colenc = None
    # ktrpc.h: every "colenc=" token is looked at; the last one naming B, Q or U wins.
    for token in re.split(r"[ ;]+", content_type[len(TSV_CONTENT_TYPE):]):
        if token[:7].lower() == "colenc=":
            rest = token[7:]
            if rest.startswith('"'):
                rest = rest[1:]
            first = rest[:1].upper()
            if first in ENCODERS:
                colenc = first
    return colenc


_CONTENT_TYPES = {None: TSV_CONTENT_TYPE, **{n: f"{TSV_CONTENT_TYPE}; colenc={n}" for n in "BUQ"}}


def tsv_content_type(colenc: Optional[str]) -> str:
    """``text/tab-separated-values`` with the ``colenc`` attribute for ``colenc``."""
    try:
        return _CONTENT_TYPES[colenc]
    except KeyError:
        return _CONTENT_TYPES[_codec_name(colenc)]


# --------------------------------------------------------------------------- status mapping

RV_SUCCESS = 0
RV_NOIMPL = 1
RV_INVALID = 2
RV_LOGIC = 3
RV_TIMEOUT = 4
RV_INTERNAL = 5
RV_NETWORK = 6
RV_MISC = 15

_RV_TO_STATUS = {RV_SUCCESS: 200, RV_NOIMPL: 501, RV_INVALID: 400, RV_LOGIC: 450, RV_TIMEOUT: 503,
                 RV_INTERNAL: 500}


def rv_to_status(rv: int) -> int:
    """Server side: the HTTP status for an RPC return value (anything unknown is 500)."""
    return _RV_TO_STATUS.get(rv, 500)


def status_to_rv(status: Optional[int]) -> int:
    """Client side (``RPCClient::call``): the RPC return value for an HTTP status."""
    if status is None:
        return RV_NETWORK
    if 200 <= status < 300:
        return RV_SUCCESS
    if 450 <= status < 500:
        return RV_LOGIC
    if 400 <= status < 500:
        return RV_INVALID
    if status == 501:
        return RV_NOIMPL
    if status == 503:
        return RV_TIMEOUT
    if 500 <= status < 600:
        return RV_INTERNAL
    return RV_MISC


# --------------------------------------------------------------------------- client helpers

_REQUEST_HEAD = (
    "POST /rpc/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
)
_REQUEST_HEAD_CLOSE = (
    "POST /rpc/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nConnection: close\r\n"
    "Content-Length: %d\r\n\r\n"
)
AUTO = "auto"


def build_rpc_request(
    procedure: str,
    params: Sequence[Tuple[bytes, bytes]] = (),
    host: str = "localhost",
    colenc: Optional[str] = AUTO,
    keep_alive: bool = True,
) -> bytes:
    """A complete ``POST /rpc/<procedure>`` request with ``params`` as a TSV body, in order.

    ``colenc`` is "B", "U", "Q", None (raw TSV: the caller guarantees no TAB/CR/LF) or
    ``"auto"`` (:func:`choose_request_encoding`).  ``procedure`` must be URL-safe (every
    procedure name is).
    """
    if colenc == AUTO:
        colenc = None
        search = _TSV_UNSAFE_RE.search
        for key, value in params:
            if search(key) or search(value):
                colenc = "B"
                break
    if colenc is None:
        body = b"".join([b"%s\t%s\n" % kv for kv in params])
    else:
        body = encode_tsv(params, colenc)
    head = _REQUEST_HEAD if keep_alive else _REQUEST_HEAD_CLOSE
    return (head % (procedure, host, tsv_content_type(colenc), len(body))).encode("latin-1") + body


def decode_tsv_response(body: bytes, content_type: Optional[str]) -> Dict[bytes, bytes]:
    """The output map of an RPC response body (decoded with its ``colenc``), in wire order."""
    colenc = parse_colenc(content_type)
    if colenc is None:
        return tsv_to_map(body)
    dec = DECODERS[colenc]
    result: Dict[bytes, bytes] = {}
    for line in bytes(body).split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        key, tab, value = line.partition(b"\t")
        if tab:
            result[dec(key)] = dec(value)
    return result


def decode_tsv_pairs(body: bytes, content_type: Optional[str]) -> List[Tuple[bytes, bytes]]:
    """Like :func:`decode_tsv_response` but keeps every line (duplicates too) as pairs."""
    colenc = parse_colenc(content_type)
    dec = DECODERS[colenc] if colenc else None
    pairs: List[Tuple[bytes, bytes]] = []
    for line in bytes(body).split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        key, tab, value = line.partition(b"\t")
        if tab:
            pairs.append((dec(key), dec(value)) if dec else (key, value))
    return pairs


def parse_rpc_response(response) -> Tuple[int, Dict[bytes, bytes]]:
    """``(HTTP status, output map)`` of an RPC answer (a :class:`kt.protocol.http.Response`)."""
    return response.status, decode_tsv_response(response.body, response.header("content-type"))


def error_message(output: Mapping[bytes, bytes], status: int) -> str:
    """The server's ERROR text, or a generic description when it sent none."""
    text = output.get(b"ERROR")
    if text is None:
        return f"HTTP status {status}"
    return text.decode("utf-8", "replace")


def raise_for_rpc_status(
    status: int, output: Mapping[bytes, bytes], procedure: str, allow_logical: bool = True
) -> bool:
    """Return True on success, False for a logical failure (450) when ``allow_logical``.

    Any other failure raises :class:`kt.errors.ServerError` carrying the server's ERROR text,
    the HTTP status as ``code`` and the procedure name.
    """
    if 200 <= status < 300:
        return True
    if allow_logical and 450 <= status < 500:
        return False
    raise ServerError(error_message(output, status), code=status, procedure=procedure)


# --------------------------------------------------------------------------- server helpers


def parse_rpc_params(
    query: Optional[bytes], body: bytes, content_type: Optional[str]
) -> Dict[bytes, bytes]:
    """The RPC input map exactly as ``RPCServer::WorkerAdapter::process`` builds it (§B.2)."""
    params: Dict[bytes, bytes] = {}
    if query:
        www_form_to_map(query, params)
    if not content_type:
        return params
    lowered = content_type.lower()
    if lowered.startswith(FORM_CONTENT_TYPE):
        www_form_to_map(_c_string(bytes(body)), params)
    elif lowered.startswith(TSV_CONTENT_TYPE):
        tsv_to_map(body, params)
        colenc = parse_colenc(content_type)
        if colenc is not None:
            params = tsv_map_decode(params, colenc)
    return params


def encode_rpc_output(output: Mapping[bytes, bytes]) -> Tuple[bytes, str]:
    """Body and Content-Type of an RPC answer, choosing the encoding like the real server.

    Records are sorted by key bytes; with an encoding, by the encoded key (the server's
    ``tsvmapencode`` re-keys its std::map by the encoded strings).
    """
    colenc = checkmapenc(output)
    if colenc is None:
        body = b"".join([b"%s\t%s\n" % (k, output[k]) for k in sorted(output)])
    else:
        enc = ENCODERS[colenc]
        encoded = {enc(k): enc(v) for k, v in output.items()}
        body = b"".join([b"%s\t%s\n" % (k, encoded[k]) for k in sorted(encoded)])
    return body, tsv_content_type(colenc)


def parse_procedure(path: bytes) -> str:
    """Procedure name of an ``/rpc/...`` path (URL-decoded), as text."""
    if not path.startswith(b"/rpc/"):
        raise ProtocolError(f"not an RPC path: {path!r}")
    return url_decode(path[5:]).decode("utf-8", "surrogateescape")


__all__ = [
    "TSV_CONTENT_TYPE",
    "FORM_CONTENT_TYPE",
    "AUTO",
    "url_encode",
    "url_decode",
    "quote_encode",
    "quote_decode",
    "base_encode",
    "base_decode",
    "ENCODERS",
    "DECODERS",
    "checkmapenc",
    "choose_request_encoding",
    "encode_tsv",
    "tsv_to_map",
    "tsv_map_decode",
    "www_form_to_map",
    "encode_www_form",
    "parse_colenc",
    "tsv_content_type",
    "RV_SUCCESS",
    "RV_NOIMPL",
    "RV_INVALID",
    "RV_LOGIC",
    "RV_TIMEOUT",
    "RV_INTERNAL",
    "RV_NETWORK",
    "RV_MISC",
    "rv_to_status",
    "status_to_rv",
    "build_rpc_request",
    "decode_tsv_response",
    "decode_tsv_pairs",
    "parse_rpc_response",
    "error_message",
    "raise_for_rpc_status",
    "parse_rpc_params",
    "encode_rpc_output",
    "parse_procedure",
]
