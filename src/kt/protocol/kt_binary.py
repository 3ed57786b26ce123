"""Kyoto Tycoon's binary protocol (protocol.md §A), both directions, sans-IO.

Client side: request encoders (``encode_*``) return ``bytes``; reply parsers follow the
contract of docs/internals.md: ``parse_xxx(buf, pos) -> (result, end) | None``, ``0xBF`` raises
:class:`kt.errors.ServerError`, bytes that can never be a valid reply raise
:class:`kt.errors.ProtocolError`.

Server side: :func:`parse_request` decodes one request incrementally and reports exactly the
cases the real server treats differently (unknown magic, oversized sizes, truncation), and the
``encode_*_reply`` functions build every reply.

All integers are big-endian.  Records are plain tuples so the hot path creates no objects
beyond the result: set_bulk records are ``(dbidx, key, value, xt)``, get_bulk/remove_bulk
request records ``(dbidx, key)``, play_script records ``(key, value)``.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from kt._native import load
from kt.errors import ProtocolError, ServerError
from kt.protocol.records import records_dict

Buffer = Union[bytes, bytearray, memoryview]

MAGIC_NOP = 0xB0
MAGIC_REPLICATION = 0xB1
MAGIC_PLAY_SCRIPT = 0xB4
MAGIC_SET_BULK = 0xB8
MAGIC_REMOVE_BULK = 0xB9
MAGIC_GET_BULK = 0xBA
MAGIC_ERROR = 0xBF

FLAG_NO_REPLY = 0x00000001
"""``BONOREPLY`` for set_bulk/remove_bulk/play_script; ``WHITESID`` for replication."""

DATA_MAX_SIZE = 1 << 28
"""``RemoteDB::DATAMAXSIZ``: the largest key, value or name the server accepts."""

ERROR_REPLY = b"\xbf"
REPLICATION_ACK = b"\xb1"
"""Sent once by the server after a replication request; also the client's answer to NOP."""

MAGIC_NAMES = {
    MAGIC_NOP: "nop",
    MAGIC_REPLICATION: "replication",
    MAGIC_PLAY_SCRIPT: "play_script",
    MAGIC_SET_BULK: "set_bulk",
    MAGIC_REMOVE_BULK: "remove_bulk",
    MAGIC_GET_BULK: "get_bulk",
    MAGIC_ERROR: "error",
}

_HEAD = struct.Struct(">BII")  # magic, flags, rnum
_COUNT = struct.Struct(">BI")  # magic, hits/rnum
_SET_REC = struct.Struct(">HIIq")  # dbidx, ksiz, vsiz, xt
_KEY_REC = struct.Struct(">HI")  # dbidx, ksiz
_SCRIPT_HEAD = struct.Struct(">BIII")  # magic, flags, nsiz, rnum
_SCRIPT_REC = struct.Struct(">II")  # ksiz, vsiz
_REPL_REQ = struct.Struct(">BIQH")  # magic, flags, ts, sid
_REPL_REC = struct.Struct(">BQI")  # magic, ts, msiz
_NOP = struct.Struct(">BQ")  # magic, ts
_GET_ONE_HEAD = struct.Struct(">BIIHI")  # magic, flags, rnum=1, dbidx, ksiz
_SET_ONE_HEAD = struct.Struct(">BIIHIIq")  # magic, flags, rnum=1, dbidx, ksiz, vsiz, xt
_GET_ONE_REPLY = struct.Struct(">BIHIIq")  # magic, hits, dbidx, ksiz, vsiz, xt

_pack_set_rec = _SET_REC.pack
_pack_key_rec = _KEY_REC.pack
_pack_script_rec = _SCRIPT_REC.pack
_unpack_set_rec = _SET_REC.unpack_from
_unpack_count = _COUNT.unpack_from
_unpack_script_rec = _SCRIPT_REC.unpack_from

SetRecord = Tuple[int, bytes, bytes, int]
KeyRecord = Tuple[int, bytes]
ScriptRecord = Tuple[bytes, bytes]


# --------------------------------------------------------------------------- client requests


def _too_large(size: int) -> ValueError:
    return ValueError(
        f"a key, value or name of {size} bytes; Kyoto Tycoon accepts at most {DATA_MAX_SIZE} "
        "(256 MiB) and drops the connection otherwise"
    )


def _join_checked(parts: List[bytes]) -> bytes:
    """``b"".join(parts)``; ValueError when a key/value part exceeds DATA_MAX_SIZE (only a
    request larger than the limit can hold one, so smaller requests are not scanned)."""
    data = b"".join(parts)
    if len(data) > DATA_MAX_SIZE:
        largest = max(map(len, parts))
        if largest > DATA_MAX_SIZE:
            raise _too_large(largest)
    return data


def encode_set_bulk(records: Iterable[SetRecord], no_reply: bool = False) -> bytes:
    """``set_bulk`` (0xB8) for ``(dbidx, key, value, xt)`` records; xt as from ``to_binary_xt``."""
    parts: List[bytes] = [b""]
    append = parts.append
    n = 0
    for dbidx, key, value, xt in records:
        append(_pack_set_rec(dbidx, len(key), len(value), xt))
        append(key)
        append(value)
        n += 1
    parts[0] = _HEAD.pack(MAGIC_SET_BULK, FLAG_NO_REPLY if no_reply else 0, n)
    return _join_checked(parts)


def encode_set_one(dbidx: int, key: bytes, value: bytes, xt: int, no_reply: bool = False) -> bytes:
    """Fast path: ``set_bulk`` with exactly one record."""
    if len(value) > DATA_MAX_SIZE or len(key) > DATA_MAX_SIZE:
        raise _too_large(max(len(key), len(value)))
    return (
        _SET_ONE_HEAD.pack(
            MAGIC_SET_BULK, FLAG_NO_REPLY if no_reply else 0, 1, dbidx, len(key), len(value), xt
        )
        + key
        + value
    )


def _encode_key_records(magic: int, records: Iterable[KeyRecord], flags: int) -> bytes:
    parts: List[bytes] = [b""]
    append = parts.append
    n = 0
    for dbidx, key in records:
        append(_pack_key_rec(dbidx, len(key)))
        append(key)
        n += 1
    parts[0] = _HEAD.pack(magic, flags, n)
    return _join_checked(parts)


def encode_get_bulk(records: Iterable[KeyRecord]) -> bytes:
    """``get_bulk`` (0xBA) for ``(dbidx, key)`` records (the server ignores flags; we send 0)."""
    return _encode_key_records(MAGIC_GET_BULK, records, 0)


def encode_get_one(dbidx: int, key: bytes) -> bytes:
    """Fast path: ``get_bulk`` for one key; parse the reply with :func:`parse_get_one_reply`."""
    if len(key) > DATA_MAX_SIZE:
        raise _too_large(len(key))
    return _GET_ONE_HEAD.pack(MAGIC_GET_BULK, 0, 1, dbidx, len(key)) + key


def encode_remove_bulk(records: Iterable[KeyRecord], no_reply: bool = False) -> bytes:
    """``remove_bulk`` (0xB9) for ``(dbidx, key)`` records."""
    return _encode_key_records(MAGIC_REMOVE_BULK, records, FLAG_NO_REPLY if no_reply else 0)


def encode_play_script(name: bytes, records: Iterable[ScriptRecord], no_reply: bool = False) -> bytes:
    """``play_script`` (0xB4): procedure ``name`` with ``(key, value)`` input records."""
    parts: List[bytes] = [b"", name]
    append = parts.append
    n = 0
    for key, value in records:
        append(_pack_script_rec(len(key), len(value)))
        append(key)
        append(value)
        n += 1
    parts[0] = _SCRIPT_HEAD.pack(MAGIC_PLAY_SCRIPT, FLAG_NO_REPLY if no_reply else 0, len(name), n)
    return _join_checked(parts)


def encode_set_bulk_items(
    items: Iterable[Tuple[object, object]],
    dbidx: int,
    xt: int,
    encode_key: Callable[[object], bytes],
    encode_value: Callable[[object], bytes],
    no_reply: bool = False,
    bytes_pass_through: bool = False,
) -> bytes:
    """``set_bulk`` of ``(key, value)`` items into one database with one ``xt`` in one pass.

    Keys that are ``bytes`` are sent as they are and ``str`` keys as UTF-8; anything else goes
    through ``encode_key``.  Values go through ``encode_value``, except ``bytes`` values when
    ``bytes_pass_through`` (for value codecs that store bytes unchanged).
    """
    parts: List[bytes] = [b""]
    append = parts.append
    pack = _pack_set_rec
    n = 0
    for key, value in items:
        kind = type(key)
        k = key if kind is bytes else (key.encode("utf-8") if kind is str else encode_key(key))
        v = value if (bytes_pass_through and type(value) is bytes) else encode_value(value)
        append(pack(dbidx, len(k), len(v), xt))
        append(k)
        append(v)
        n += 1
    parts[0] = _HEAD.pack(MAGIC_SET_BULK, FLAG_NO_REPLY if no_reply else 0, n)
    return _join_checked(parts)


def _pair(item: Any) -> Tuple[Any, Any]:
    """Unpack one ``(key, value)`` item (the compiled encoder calls it on an item that is not a
    2-tuple, so both raise the same error)."""
    key, value = item
    return key, value


def encode_key_bulk(
    magic: int,
    keys: Iterable[object],
    dbidx: int,
    encode_key: Callable[[object], bytes],
    no_reply: bool = False,
) -> bytes:
    """``get_bulk`` / ``remove_bulk`` (``magic``) of ``keys`` in one database, one pass
    (``bytes`` keys as they are, ``str`` as UTF-8, others through ``encode_key``)."""
    parts: List[bytes] = [b""]
    append = parts.append
    pack = _pack_key_rec
    n = 0
    for key in keys:
        kind = type(key)
        k = key if kind is bytes else (key.encode("utf-8") if kind is str else encode_key(key))
        append(pack(dbidx, len(k)))
        append(k)
        n += 1
    flags = FLAG_NO_REPLY if (no_reply and magic != MAGIC_GET_BULK) else 0
    parts[0] = _HEAD.pack(magic, flags, n)
    return _join_checked(parts)


def encode_replication(ts: int, sid: int, white_sid: bool = False) -> bytes:
    """Replication request (0xB1): stream update-log records newer than ``ts``."""
    return _REPL_REQ.pack(MAGIC_REPLICATION, FLAG_NO_REPLY if white_sid else 0, ts, sid)


# --------------------------------------------------------------------------- client replies


def _bytes_view(buf: Buffer, start: int, end: int) -> bytes:
    """``buf[start:end]`` as ``bytes`` with a single copy whatever the buffer type."""
    if type(buf) is bytes:
        return buf[start:end]
    return memoryview(buf)[start:end].tobytes()


def _unexpected(buf: Buffer, pos: int, expected: int) -> ProtocolError:
    got = buf[pos]
    return ProtocolError(
        f"expected a {MAGIC_NAMES[expected]} reply (0x{expected:02X}), got byte 0x{got:02X}"
    )


def _check_magic(buf: Buffer, pos: int, expected: int, procedure: str) -> bool:
    """True when a reply can start here; raises for 0xBF and foreign bytes."""
    if len(buf) <= pos:
        return False
    magic = buf[pos]
    if magic == expected:
        return True
    if magic == MAGIC_ERROR:
        raise ServerError(
            "the server reported an error (0xBF)", code=MAGIC_ERROR, procedure=procedure, end=pos + 1
        )
    raise _unexpected(buf, pos, expected)


def _parse_count(buf: Buffer, pos: int, magic: int, procedure: str) -> Optional[Tuple[int, int]]:
    if len(buf) - pos < 5:
        if len(buf) > pos:
            _check_magic(buf, pos, magic, procedure)
        return None
    got, hits = _unpack_count(buf, pos)
    if got != magic:
        _check_magic(buf, pos, magic, procedure)
    return hits, pos + 5


def parse_set_bulk_reply(buf: Buffer, pos: int = 0) -> Optional[Tuple[int, int]]:
    """``[0xB8][hits:u32]`` -> ``(hits, end)``."""
    return _parse_count(buf, pos, MAGIC_SET_BULK, "set_bulk")


def parse_remove_bulk_reply(buf: Buffer, pos: int = 0) -> Optional[Tuple[int, int]]:
    """``[0xB9][hits:u32]`` -> ``(hits, end)``."""
    return _parse_count(buf, pos, MAGIC_REMOVE_BULK, "remove_bulk")


def _too_big(what: str, size: int) -> ProtocolError:
    return ProtocolError(f"{what} of {size} bytes exceeds the protocol limit of {DATA_MAX_SIZE}")


def _as_bytes(buf: Buffer) -> bytes:
    return buf if type(buf) is bytes else bytes(buf)


def parse_get_bulk_reply(buf: Buffer, pos: int = 0) -> Optional[Tuple[List[SetRecord], int]]:
    """``get_bulk`` reply -> ``([(dbidx, key, value, xt), ...], end)``; xt is the stored absolute time."""
    head = _parse_count(buf, pos, MAGIC_GET_BULK, "get_bulk")
    if head is None:
        return None
    hits, off = head
    data = _as_bytes(buf)
    size = len(data)
    if size - off < hits * 18:
        return None
    unpack = _unpack_set_rec
    records: List[SetRecord] = []
    append = records.append
    try:
        for _ in range(hits):
            dbidx, ksiz, vsiz, xt = unpack(data, off)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                raise _too_big("a get_bulk record", max(ksiz, vsiz))
            kstart = off + 18
            vstart = kstart + ksiz
            off = vstart + vsiz
            append((dbidx, data[kstart:vstart], data[vstart:off], xt))
    except struct.error:
        return None  # a record header runs past the bytes received so far
    if off > size:
        return None
    return records, off


_unpack_sizes = struct.Struct(">II").unpack_from


def parse_get_bulk_pairs(buf: Buffer, pos: int = 0) -> Optional[Tuple[List[ScriptRecord], int]]:
    """Like :func:`parse_get_bulk_reply` but only ``[(key, value), ...]``: the client's fast path."""
    head = _parse_count(buf, pos, MAGIC_GET_BULK, "get_bulk")
    if head is None:
        return None
    hits, off = head
    data = _as_bytes(buf)
    size = len(data)
    if size - off < hits * 18:
        return None
    unpack = _unpack_sizes
    pairs: List[ScriptRecord] = []
    append = pairs.append
    try:
        for _ in range(hits):
            ksiz, vsiz = unpack(data, off + 2)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                raise _too_big("a get_bulk record", max(ksiz, vsiz))
            kstart = off + 18
            vstart = kstart + ksiz
            off = vstart + vsiz
            append((data[kstart:vstart], data[vstart:off]))
    except struct.error:
        return None
    if off > size:
        return None
    return pairs, off


def parse_get_bulk_dict(
    buf: Buffer, pos: int = 0, text_keys: bool = True, text_values: bool = False
) -> Optional[Tuple[dict, int]]:
    """``get_bulk`` reply straight to ``{key: value}``: the client's get_bulk result.

    ``text_keys`` / ``text_values``: UTF-8 text where it decodes, bytes where it does not (the
    KT_BINARY rule); otherwise bytes.  Later duplicates win, as in a dict built from pairs.
    """
    parsed = _py_parse_get_bulk_pairs(buf, pos)
    if parsed is None:
        return None
    pairs, end = parsed
    return records_dict(pairs, text_keys, text_values), end


_unpack_get_one = _GET_ONE_REPLY.unpack_from


def parse_get_one_reply(
    buf: Buffer, pos: int = 0
) -> Optional[Tuple[Optional[Tuple[bytes, int]], int]]:
    """Reply to :func:`encode_get_one` -> ``((value, xt) or None for a miss, end)``."""
    try:
        magic, hits, _, ksiz, vsiz, xt = _unpack_get_one(buf, pos)
    except struct.error:
        # Shorter than a hit's header: a miss (5 bytes), an error byte, or not there yet.
        head = _parse_count(buf, pos, MAGIC_GET_BULK, "get_bulk")
        if head is None:
            return None
        hits, end = head
        if hits == 0:
            return None, end
        if hits != 1:
            raise ProtocolError(f"get_bulk for one key answered {hits} records") from None
        return None
    if magic != MAGIC_GET_BULK:
        _check_magic(buf, pos, MAGIC_GET_BULK, "get_bulk")
    if hits != 1:
        if hits == 0:
            return None, pos + 5
        raise ProtocolError(f"get_bulk for one key answered {hits} records")
    if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
        raise _too_big("a get_bulk record", max(ksiz, vsiz))
    end = pos + 23 + ksiz + vsiz
    if end > len(buf):
        return None
    if type(buf) is bytes:
        return (buf[end - vsiz : end], xt), end
    return (memoryview(buf)[end - vsiz : end].tobytes(), xt), end


def parse_get_value_reply(buf: Buffer, pos: int = 0) -> Optional[Tuple[Optional[bytes], int]]:
    """Reply to :func:`encode_get_one` -> ``(value or None for a miss, end)``: the client's
    single-get fast path (no xt, no intermediate tuple)."""
    try:
        magic, hits, _, ksiz, vsiz, _ = _unpack_get_one(buf, pos)
    except struct.error:
        found = parse_get_one_reply(buf, pos)
        return found if found is None else (None, found[1])
    if magic != MAGIC_GET_BULK or hits != 1 or ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
        found = parse_get_one_reply(buf, pos)  # errors, misses and bad sizes: the full checks
        return found if found is None or found[0] is None else (found[0][0], found[1])
    end = pos + 23 + ksiz + vsiz
    if end > len(buf):
        return None
    if type(buf) is bytes:
        return buf[end - vsiz : end], end
    return memoryview(buf)[end - vsiz : end].tobytes(), end


def parse_play_script_reply(buf: Buffer, pos: int = 0) -> Optional[Tuple[List[ScriptRecord], int]]:
    """``play_script`` reply -> ``([(key, value), ...] in the server's key order, end)``."""
    head = _parse_count(buf, pos, MAGIC_PLAY_SCRIPT, "play_script")
    if head is None:
        return None
    rnum, off = head
    size = len(buf)
    if size - off < rnum * 8:
        return None
    scan = off
    for _ in range(rnum):
        if size - scan < 8:
            return None
        ksiz, vsiz = _unpack_script_rec(buf, scan)
        if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
            raise _too_big("a play_script record", max(ksiz, vsiz))
        scan += 8 + ksiz + vsiz
    if scan > size:
        return None
    data = buf if type(buf) is bytes else memoryview(buf)[off:scan].tobytes()
    base = off if data is buf else 0
    records: List[ScriptRecord] = []
    for _ in range(rnum):
        ksiz, vsiz = _unpack_script_rec(data, base)
        kstart = base + 8
        vstart = kstart + ksiz
        base = vstart + vsiz
        records.append((data[kstart:vstart], data[vstart:base]))
    return records, scan


# -- the compiled twins (kt._speedups.client_codecs) ------------------------------------------
# The pure-Python functions above stay reachable as ``_py_<name>``: the compiled versions hand
# every unusual case to them, and the tests compare both.
_py_encode_key_bulk = encode_key_bulk
_py_encode_key_records = _encode_key_records
_py_encode_set_bulk_items = encode_set_bulk_items
_py_encode_get_one = encode_get_one
_py_encode_set_one = encode_set_one
_py_parse_get_bulk_pairs = parse_get_bulk_pairs
_py_parse_get_bulk_reply = parse_get_bulk_reply
_py_parse_get_bulk_dict = parse_get_bulk_dict
_py_parse_get_value_reply = parse_get_value_reply
_py_parse_set_bulk_reply = parse_set_bulk_reply
_py_parse_remove_bulk_reply = parse_remove_bulk_reply

TWINS = {  # compiled name -> pure-Python twin
    "kt_encode_key_bulk": _py_encode_key_bulk,
    "kt_encode_key_records": _py_encode_key_records,
    "kt_encode_set_bulk_items": _py_encode_set_bulk_items,
    "kt_encode_get_one": _py_encode_get_one,
    "kt_encode_set_one": _py_encode_set_one,
    "kt_parse_get_bulk_pairs": _py_parse_get_bulk_pairs,
    "kt_parse_get_bulk_reply": _py_parse_get_bulk_reply,
    "kt_parse_get_bulk_dict": _py_parse_get_bulk_dict,
    "kt_parse_get_value_reply": _py_parse_get_value_reply,
    "kt_parse_set_bulk_reply": _py_parse_set_bulk_reply,
    "kt_parse_remove_bulk_reply": _py_parse_remove_bulk_reply,
}

_native = load("client_codecs")
if _native is not None:
    encode_key_bulk = _native.kt_encode_key_bulk  # noqa: F811
    _encode_key_records = _native.kt_encode_key_records  # noqa: F811
    encode_set_bulk_items = _native.kt_encode_set_bulk_items  # noqa: F811
    encode_get_one = _native.kt_encode_get_one  # noqa: F811
    encode_set_one = _native.kt_encode_set_one  # noqa: F811
    parse_get_bulk_pairs = _native.kt_parse_get_bulk_pairs  # noqa: F811
    parse_get_bulk_reply = _native.kt_parse_get_bulk_reply  # noqa: F811
    parse_get_bulk_dict = _native.kt_parse_get_bulk_dict  # noqa: F811
    parse_get_value_reply = _native.kt_parse_get_value_reply  # noqa: F811
    parse_set_bulk_reply = _native.kt_parse_set_bulk_reply  # noqa: F811
    parse_remove_bulk_reply = _native.kt_parse_remove_bulk_reply  # noqa: F811


class ReplicationMessage:
    """One frame of a replication stream (server -> client).

    ``kind`` is ``"ack"`` (the one-byte start), ``"record"`` (``ts`` and ``message``; an empty
    message is a heartbeat) or ``"nop"`` (caught up: answer with :data:`REPLICATION_ACK`).
    """

    __slots__ = ("kind", "ts", "message")

    def __init__(self, kind: str, ts: int = 0, message: bytes = b""):
        self.kind = kind
        self.ts = ts
        self.message = message

    def __repr__(self) -> str:
        return f"ReplicationMessage({self.kind!r}, ts={self.ts}, message={self.message!r})"


def parse_replication_frame(
    buf: Buffer, pos: int = 0, started: bool = True
) -> Optional[Tuple[ReplicationMessage, int]]:
    """Parse one replication frame; pass ``started=False`` for the very first (the ack)."""
    size = len(buf)
    if size <= pos:
        return None
    magic = buf[pos]
    if magic == MAGIC_ERROR:
        raise ServerError("the server refused replication (0xBF)", code=MAGIC_ERROR, procedure="replication")
    if not started:
        if magic != MAGIC_REPLICATION:
            raise _unexpected(buf, pos, MAGIC_REPLICATION)
        return ReplicationMessage("ack"), pos + 1
    if magic == MAGIC_NOP:
        if size - pos < 9:
            return None
        return ReplicationMessage("nop", _NOP.unpack_from(buf, pos)[1]), pos + 9
    if magic != MAGIC_REPLICATION:
        raise _unexpected(buf, pos, MAGIC_REPLICATION)
    if size - pos < 13:
        return None
    _, ts, msiz = _REPL_REC.unpack_from(buf, pos)
    if msiz > DATA_MAX_SIZE:
        raise _too_big("a replication record", msiz)
    end = pos + 13 + msiz
    if end > size:
        return None
    return ReplicationMessage("record", ts, _bytes_view(buf, pos + 13, end)), end


# --------------------------------------------------------------------------- server requests

TRUNCATED = "truncated"
"""The peer closed the connection before the request was complete."""
OVERSIZED = "oversized"
"""A size field exceeded :data:`DATA_MAX_SIZE`; the real server stops reading right there."""


class BinaryRequest:
    """A decoded (possibly partial) binary request, as the server sees it.

    ``magic`` is the first byte; ``known`` tells whether the server handles it (otherwise it
    closes without a reply).  ``records`` holds every record decoded completely, in wire order
    (``(dbidx, key, value, xt)`` for set_bulk, ``(dbidx, key)`` for get/remove_bulk,
    ``(key, value)`` for play_script).  ``failure`` is ``None`` for a complete request, or
    :data:`TRUNCATED` / :data:`OVERSIZED`: the real server still applies ``records`` (set/remove)
    before it answers ``0xBF`` and closes.  ``rnum`` is the announced record count.
    """

    __slots__ = ("magic", "flags", "rnum", "records", "name", "ts", "sid", "failure")

    def __init__(self, magic: int, flags: int = 0, rnum: int = 0):
        self.magic = magic
        self.flags = flags
        self.rnum = rnum
        self.records: list = []
        self.name = b""
        self.ts = 0
        self.sid = 0
        self.failure: Optional[str] = None

    @property
    def known(self) -> bool:
        return self.magic in _KNOWN_REQUESTS

    @property
    def no_reply(self) -> bool:
        """True when the client asked for no reply (never for get_bulk/replication)."""
        return bool(self.flags & FLAG_NO_REPLY) and self.magic in _NO_REPLY_CAPABLE

    def __repr__(self) -> str:
        name = MAGIC_NAMES.get(self.magic, f"0x{self.magic:02X}")
        return (
            f"BinaryRequest({name}, flags={self.flags}, rnum={self.rnum}, "
            f"records={len(self.records)}, failure={self.failure!r})"
        )


_KNOWN_REQUESTS = frozenset(
    (MAGIC_REPLICATION, MAGIC_PLAY_SCRIPT, MAGIC_SET_BULK, MAGIC_REMOVE_BULK, MAGIC_GET_BULK)
)
_NO_REPLY_CAPABLE = frozenset((MAGIC_PLAY_SCRIPT, MAGIC_SET_BULK, MAGIC_REMOVE_BULK))


def is_binary_start(first_byte: int) -> bool:
    """KT dispatch rule: a request starting with 0x00 or a byte >= 0x80 is binary."""
    return first_byte == 0 or first_byte >= 0x80


def _finish(req: BinaryRequest, failure: str, end: int) -> Tuple[BinaryRequest, int]:
    req.failure = failure
    return req, end


def parse_request(
    buf: Buffer, pos: int = 0, eof: bool = False
) -> Optional[Tuple[BinaryRequest, int]]:
    """Decode one binary request starting at ``buf[pos]``.

    Returns ``None`` when more bytes are needed (never when ``eof`` is true), else
    ``(request, end)``.  An unknown magic is returned at once (``request.known`` is false,
    ``end = pos + 1``).  With ``failure`` set, ``end`` is where decoding stopped; the connection
    must be closed after answering, so the rest of the buffer does not matter.
    """
    size = len(buf)
    if size <= pos:
        return None
    magic = buf[pos]
    if magic not in _KNOWN_REQUESTS:
        return BinaryRequest(magic), pos + 1
    if magic == MAGIC_REPLICATION:
        if size - pos < 15:
            return _finish(BinaryRequest(magic), TRUNCATED, size) if eof else None
        _, flags, ts, sid = _REPL_REQ.unpack_from(buf, pos)
        req = BinaryRequest(magic, flags)
        req.ts = ts
        req.sid = sid
        return req, pos + 15
    if magic == MAGIC_PLAY_SCRIPT:
        return _parse_script_request(buf, pos, eof)
    if size - pos < 9:
        return _finish(BinaryRequest(magic), TRUNCATED, size) if eof else None
    _, flags, rnum = _HEAD.unpack_from(buf, pos)
    req = BinaryRequest(magic, flags, rnum)
    records, off, failure = parse_records(buf, pos + 9, magic, rnum)
    req.records = records
    if failure is not None:
        return _finish(req, failure, off)
    if len(records) < rnum:
        return _finish(req, TRUNCATED, size) if eof else None
    return req, off


def parse_records(buf: Buffer, pos: int, magic: int, count: int) -> Tuple[list, int, Optional[str]]:
    """Up to ``count`` complete records of a set/remove/get_bulk request from ``buf[pos:]``.

    For servers that apply a bulk request as it arrives (ktserver reads and applies record by
    record, so a request announcing 2^31 records needs no more memory than one record).
    Returns ``(records, end, failure)``: the records (``(dbidx, key, value, xt)`` for set_bulk,
    ``(dbidx, key)`` otherwise), the offset after the last one, and :data:`OVERSIZED` when the
    next record announces a size over :data:`DATA_MAX_SIZE` (``end`` is then after its header;
    the request is broken).  Fewer than ``count`` records without a failure: the next one has
    not fully arrived.
    """
    if type(buf) is bytes:
        return _records(buf, buf, pos, magic, count)
    with memoryview(buf) as data:  # released before the caller resizes its buffer
        return _records(buf, data, pos, magic, count)


def _records(buf: Buffer, data: Any, pos: int, magic: int, count: int) -> Tuple[list, int, Optional[str]]:
    """parse_records' loop.  ``bytes(data[a:b])`` copies once from a memoryview and not at
    all from bytes, with no helper call per record: this runs for every bulk record."""
    size = len(buf)
    off = pos
    records: list = []
    append = records.append
    if magic == MAGIC_SET_BULK:
        unpack = _unpack_set_rec
        for _ in range(count):
            if size - off < 18:
                break
            dbidx, ksiz, vsiz, xt = unpack(buf, off)
            if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
                return records, off + 18, OVERSIZED
            kstart = off + 18
            vstart = kstart + ksiz
            end = vstart + vsiz
            if end > size:
                break
            append((dbidx, bytes(data[kstart:vstart]), bytes(data[vstart:end]), xt))
            off = end
        return records, off, None
    unpack_key = _KEY_REC.unpack_from
    for _ in range(count):
        if size - off < 6:
            break
        dbidx, ksiz = unpack_key(buf, off)
        if ksiz > DATA_MAX_SIZE:
            return records, off + 6, OVERSIZED
        end = off + 6 + ksiz
        if end > size:
            break
        append((dbidx, bytes(data[off + 6:end])))
        off = end
    return records, off, None


def _parse_script_request(buf: Buffer, pos: int, eof: bool) -> Optional[Tuple[BinaryRequest, int]]:
    size = len(buf)
    if size - pos < 13:
        return _finish(BinaryRequest(MAGIC_PLAY_SCRIPT), TRUNCATED, size) if eof else None
    _, flags, nsiz, rnum = _SCRIPT_HEAD.unpack_from(buf, pos)
    req = BinaryRequest(MAGIC_PLAY_SCRIPT, flags, rnum)
    if nsiz > DATA_MAX_SIZE:
        return _finish(req, OVERSIZED, pos + 13)
    off = pos + 13 + nsiz
    if off > size:
        return _finish(req, TRUNCATED, size) if eof else None
    req.name = _bytes_view(buf, pos + 13, off)
    append = req.records.append
    for _ in range(rnum):
        if size - off < 8:
            return _finish(req, TRUNCATED, size) if eof else None
        ksiz, vsiz = _unpack_script_rec(buf, off)
        if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
            return _finish(req, OVERSIZED, off + 8)
        vstart = off + 8 + ksiz
        end = vstart + vsiz
        if end > size:
            return _finish(req, TRUNCATED, size) if eof else None
        append((_bytes_view(buf, off + 8, vstart), _bytes_view(buf, vstart, end)))
        off = end
    return req, off


# --------------------------------------------------------------------------- server replies


def encode_count_reply(magic: int, hits: int) -> bytes:
    """``[magic][hits:u32]``: the set_bulk / remove_bulk answer."""
    return _COUNT.pack(magic, hits)


def encode_set_bulk_reply(hits: int) -> bytes:
    return _COUNT.pack(MAGIC_SET_BULK, hits)


def encode_remove_bulk_reply(hits: int) -> bytes:
    return _COUNT.pack(MAGIC_REMOVE_BULK, hits)


def encode_get_bulk_reply(records: Sequence[SetRecord]) -> bytes:
    """``get_bulk`` answer for the hits ``(dbidx, key, value, xt)`` (xt = stored absolute time)."""
    return _COUNT.pack(MAGIC_GET_BULK, len(records)) + encode_get_bulk_records(records)


def encode_get_bulk_records(records: Iterable[SetRecord]) -> bytes:
    """The records of a ``get_bulk`` answer, without its head (a server answering a request
    that arrives in batches encodes each batch's hits, then sends the head and them)."""
    parts: List[bytes] = []
    append = parts.append
    for dbidx, key, value, xt in records:
        append(_pack_set_rec(dbidx, len(key), len(value), xt))
        append(key)
        append(value)
    return b"".join(parts)


def encode_play_script_reply(records: Iterable[ScriptRecord]) -> bytes:
    """``play_script`` answer; records are sent sorted by key bytes, as the server's std::map."""
    ordered = sorted(records, key=lambda kv: kv[0])
    parts: List[bytes] = [_COUNT.pack(MAGIC_PLAY_SCRIPT, len(ordered))]
    append = parts.append
    for key, value in ordered:
        append(_pack_script_rec(len(key), len(value)))
        append(key)
        append(value)
    return b"".join(parts)


def encode_replication_record(ts: int, message: bytes) -> bytes:
    """One update-log record in a replication stream (an empty message is a heartbeat)."""
    return _REPL_REC.pack(MAGIC_REPLICATION, ts, len(message)) + message


def encode_replication_nop(ts: int) -> bytes:
    """"Caught up" frame; the client must answer :data:`REPLICATION_ACK`."""
    return _NOP.pack(MAGIC_NOP, ts)



def scan_request(buf: Buffer, pos: int = 0, state: Optional[tuple] = None) -> Tuple[bool, Optional[tuple]]:
    """Resumable "is the request at ``buf[pos]`` complete yet?" for servers reading big requests.

    Re-running :func:`parse_request` on every new segment of a large bulk request costs
    O(n^2); this walks only record headers and remembers where it stopped.  Returns
    ``(decidable, state)``: when ``decidable`` is true, :func:`parse_request` will not return
    None (complete, unknown magic or oversized); otherwise pass ``state`` back with the same
    ``pos`` once ``buf`` has grown.  (Added by the server helper, H3b.)
    """
    size = len(buf)
    if state is None:
        if size <= pos:
            return False, None
        magic = buf[pos]
        if magic not in _KNOWN_REQUESTS:
            return True, None
        if magic == MAGIC_REPLICATION:
            return size - pos >= 15, None
        if magic == MAGIC_PLAY_SCRIPT:
            if size - pos < 13:
                return False, None
            _, _, nsiz, rnum = _SCRIPT_HEAD.unpack_from(buf, pos)
            if nsiz > DATA_MAX_SIZE:
                return True, None
            state = (magic, pos + 13 + nsiz, rnum)
        else:
            if size - pos < 9:
                return False, None
            state = (magic, pos + 9, _HEAD.unpack_from(buf, pos)[2])
    magic, off, left = state
    if magic == MAGIC_SET_BULK:
        head, unpack = 18, _SET_REC.unpack_from
    elif magic == MAGIC_PLAY_SCRIPT:
        head, unpack = 8, _SCRIPT_REC.unpack_from
    else:
        head, unpack = 6, _KEY_REC.unpack_from
    while left and off + head <= size:
        fields = unpack(buf, off)
        if magic == MAGIC_SET_BULK:
            body = fields[1] + fields[2]
            too_big = fields[1] > DATA_MAX_SIZE or fields[2] > DATA_MAX_SIZE
        elif magic == MAGIC_PLAY_SCRIPT:
            body = fields[0] + fields[1]
            too_big = fields[0] > DATA_MAX_SIZE or fields[1] > DATA_MAX_SIZE
        else:
            body = fields[1]
            too_big = body > DATA_MAX_SIZE
        if too_big:
            return True, None
        off += head + body
        left -= 1
    return (not left and off <= size), (magic, off, left)


__all__ = [
    "MAGIC_NOP",
    "MAGIC_REPLICATION",
    "MAGIC_PLAY_SCRIPT",
    "MAGIC_SET_BULK",
    "MAGIC_REMOVE_BULK",
    "MAGIC_GET_BULK",
    "MAGIC_ERROR",
    "FLAG_NO_REPLY",
    "DATA_MAX_SIZE",
    "ERROR_REPLY",
    "REPLICATION_ACK",
    "TRUNCATED",
    "OVERSIZED",
    "BinaryRequest",
    "ReplicationMessage",
    "encode_set_bulk",
    "encode_set_one",
    "encode_get_bulk",
    "encode_get_one",
    "encode_remove_bulk",
    "encode_play_script",
    "encode_replication",
    "parse_set_bulk_reply",
    "parse_remove_bulk_reply",
    "parse_get_bulk_reply",
    "parse_get_bulk_pairs",
    "parse_get_bulk_dict",
    "encode_set_bulk_items",
    "encode_key_bulk",
    "parse_get_one_reply",
    "parse_get_value_reply",
    "parse_play_script_reply",
    "parse_replication_frame",
    "is_binary_start",
    "parse_request",
    "parse_records",
    "encode_get_bulk_records",
    "scan_request",
    "encode_count_reply",
    "encode_set_bulk_reply",
    "encode_remove_bulk_reply",
    "encode_get_bulk_reply",
    "encode_play_script_reply",
    "encode_replication_record",
    "encode_replication_nop",
]
