"""Record files for ``kt export`` / ``kt import``: one record per line, three formats.

A record is ``(key: bytes, value: bytes, xt: int | None)``; ``xt`` is the absolute Unix time
the record expires at (None: never).  Each format has a line encoder and a line decoder, both
pure functions, so the streaming loops in :mod:`kt.cli.transfer` stay format-blind.

* ``tsv``: ``key<TAB>value[<TAB>xt]``, what ``ktremotemgr list -pv -pt`` prints.  Bytes that
  would break a line are escaped (``\\t \\n \\r \\\\``, and ``\\xHH`` for NUL and bytes that are not
  UTF-8), so plain text is written unchanged.  With ``hex=True`` every key and value is hex
  instead (``ktremotemgr list -px`` / ``import -sx``: ``"6B 31"``).
* ``jsonl``: ``{"key": ..., "value": ..., "xt": ...}``; a key or value that is not UTF-8 is
  written as ``key_b64`` / ``value_b64``.
* ``csv``: a ``key,value,xt`` header, then the fields escaped as in ``tsv``.

Decoders raise :class:`RecordError` naming what is wrong; the caller adds the line number.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
from typing import Callable, Dict, NamedTuple, Optional, Tuple

FORMATS = ("tsv", "jsonl", "csv")


class Record(NamedTuple):
    key: bytes
    value: bytes
    xt: Optional[int] = None


class RecordError(ValueError):
    """A line of an import file that is not a valid record."""


# -- escaping (tsv and csv) ------------------------------------------------------------------

_NEEDS_ESCAPE = re.compile(rb"[\\\t\n\r\x00\x80-\xff]")
_UNESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.|$)", re.DOTALL)
_VALID_ESCAPE = re.compile(rb"\\(?:x[0-9A-Fa-f]{2}|[\\tnr])")
_SIMPLE_UNESCAPES = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}


def escape(data: bytes) -> bytes:
    """``data`` as one line-safe, UTF-8 field (unchanged when it is plain ASCII text)."""
    if not _NEEDS_ESCAPE.search(data):
        return data
    # The four ASCII bytes are never part of a multi-byte UTF-8 sequence, so escaping them
    # first leaves the rest as it was; "backslashreplace" then writes each byte that is not
    # UTF-8 as \xhh.  Every step runs in C.
    data = data.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    data = data.replace(b"\x00", b"\\x00")  # NUL is UTF-8, but invisible and hard on text tools
    return data.decode("utf-8", "backslashreplace").encode("utf-8")


def _unescape_one(match: re.Match) -> bytes:
    code = match.group(1)
    simple = _SIMPLE_UNESCAPES.get(code)
    if simple is not None:
        return simple
    if code[:1] == b"x" and len(code) == 3:
        return bytes([int(code[1:], 16)])
    shown = "\\" + code.decode("utf-8", "replace") if code else "\\ at the end of the field"
    raise RecordError(f"bad escape {shown!r} (use \\\\, \\t, \\n, \\r or \\xHH)")


def unescape(field: bytes) -> bytes:
    """Invert :func:`escape`; RecordError on an unknown escape."""
    if b"\\" not in field:
        return field
    # Fast path, all in C: with every valid escape taken out (read left to right, as the
    # decoder does) no backslash is left, and "unicode_escape" reads exactly those escapes
    # (the other bytes come back as Latin-1 characters, which encode to the same bytes).
    # A Python callback per escape took 30 us per binary value, most of an import's time.
    if b"\\" in _VALID_ESCAPE.sub(b"", field):
        return _UNESCAPE.sub(_unescape_one, field)  # raises RecordError naming the bad escape
    return field.decode("unicode_escape").encode("latin-1")


def _check_utf8(line: bytes) -> None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"not valid UTF-8 at byte {exc.start + 1} (binary data must be escaped as \\xHH)"
        ) from None


def _parse_xt(text: bytes) -> Optional[int]:
    if not text:
        return None
    try:
        xt = int(text)
    except ValueError:
        raise RecordError(f"expiry {text[:40]!r} is not a Unix time (an integer)") from None
    if xt <= 0:
        raise RecordError(f"expiry {xt} is not a Unix time after 1970")
    return xt


def _xt_field(xt: Optional[int]) -> bytes:
    return b"" if xt is None else b"%d" % xt


# -- tsv -------------------------------------------------------------------------------------


def encode_tsv(record: Record) -> bytes:
    key, value, xt = record
    if xt is None:
        return b"%s\t%s\n" % (escape(key), escape(value))
    return b"%s\t%s\t%d\n" % (escape(key), escape(value), xt)


def _columns(fields: list, line_fields: int) -> Tuple[bytes, bytes, Optional[int]]:
    if line_fields not in (2, 3):
        raise RecordError(f"wrong column count: {line_fields} (expected key, value and an optional xt)")
    return fields[0], fields[1], _parse_xt(fields[2]) if line_fields == 3 else None


def decode_tsv(line: bytes) -> Record:
    _check_utf8(line)
    fields = line.split(b"\t")
    key, value, xt = _columns(fields, len(fields))
    return Record(unescape(key), unescape(value), xt)


def _hex(data: bytes) -> bytes:
    return data.hex(" ").upper().encode("ascii")


def _unhex(field: bytes) -> bytes:
    try:
        return bytes.fromhex(field.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise RecordError(f"bad hex field {field[:40]!r} (expected pairs of hex digits)") from None


def encode_tsv_hex(record: Record) -> bytes:
    key, value, xt = record
    if xt is None:
        return b"%s\t%s\n" % (_hex(key), _hex(value))
    return b"%s\t%s\t%d\n" % (_hex(key), _hex(value), xt)


def decode_tsv_hex(line: bytes) -> Record:
    fields = line.split(b"\t")
    key, value, xt = _columns(fields, len(fields))
    return Record(_unhex(key), _unhex(value), xt)


# -- jsonl -----------------------------------------------------------------------------------


def _json_field(out: Dict[str, object], name: str, data: bytes) -> None:
    try:
        out[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[name + "_b64"] = base64.b64encode(data).decode("ascii")


def encode_jsonl(record: Record) -> bytes:
    out: Dict[str, object] = {}
    _json_field(out, "key", record.key)
    _json_field(out, "value", record.value)
    if record.xt is not None:
        out["xt"] = record.xt
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _json_bytes(obj: dict, name: str) -> bytes:
    if name in obj:
        text = obj[name]
        if not isinstance(text, str):
            raise RecordError(f'"{name}" must be a string, not {type(text).__name__}')
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(f'"{name}" holds a lone surrogate (use "{name}_b64" for binary data)') from None
    b64 = obj.get(name + "_b64")
    if b64 is None:
        raise RecordError(f'missing "{name}" (or "{name}_b64")')
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise RecordError(f'"{name}_b64" is not valid base64') from None


def decode_jsonl(line: bytes) -> Record:
    _check_utf8(line)
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise RecordError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, not {type(obj).__name__}")
    unknown = set(obj) - {"key", "key_b64", "value", "value_b64", "xt"}
    if unknown:
        raise RecordError(f"unknown fields {sorted(unknown)}")
    xt = obj.get("xt")
    if xt is not None and (isinstance(xt, bool) or not isinstance(xt, int) or xt <= 0):
        raise RecordError(f'"xt" must be a Unix time (a positive integer), not {xt!r}')
    return Record(_json_bytes(obj, "key"), _json_bytes(obj, "value"), xt)


# -- csv -------------------------------------------------------------------------------------

CSV_HEADER = b"key,value,xt\n"
_CSV_SPECIAL = re.compile(rb'[,"]')


def _csv_field(data: bytes) -> bytes:
    data = escape(data)
    if _CSV_SPECIAL.search(data):
        return b'"' + data.replace(b'"', b'""') + b'"'
    return data


def encode_csv(record: Record) -> bytes:
    return b"%s,%s,%s\n" % (_csv_field(record.key), _csv_field(record.value), _xt_field(record.xt))


def decode_csv(line: bytes) -> Record:
    _check_utf8(line)
    try:
        rows = list(csv.reader([line.decode("utf-8")], strict=True))
    except csv.Error as exc:
        raise RecordError(f"bad CSV ({exc})") from None
    fields = [field.encode("utf-8") for field in rows[0]] if rows else []
    key, value, xt = _columns(fields, len(fields))
    return Record(unescape(key), unescape(value), xt)


# -- choosing a format -------------------------------------------------------------------------

Encoder = Callable[[Record], bytes]
Decoder = Callable[[bytes], Record]

_CODECS: Dict[Tuple[str, bool], Tuple[Encoder, Decoder]] = {
    ("tsv", False): (encode_tsv, decode_tsv),
    ("tsv", True): (encode_tsv_hex, decode_tsv_hex),
    ("jsonl", False): (encode_jsonl, decode_jsonl),
    ("csv", False): (encode_csv, decode_csv),
}
HEADERS = {"csv": CSV_HEADER}
_SUFFIXES = {".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def codec(fmt: str, hex: bool = False) -> Tuple[Encoder, Decoder]:
    """``(encode, decode)`` of a format; ``hex`` is only for tsv."""
    try:
        return _CODECS[fmt, hex]
    except KeyError:
        if hex:
            raise ValueError("--hex applies to the tsv format only") from None
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})") from None


def guess_format(path: Optional[str]) -> str:
    """The format a file name suggests (tsv when it says nothing, as for stdin)."""
    if path:
        for suffix, fmt in _SUFFIXES.items():
            if path.lower().endswith(suffix):
                return fmt
    return "tsv"
