"""Tokyo Tyrant binary protocol (ttserver 1.1.41, protocol "0.91"), both directions, sans-IO.

Every request is ``0xC8 <command byte>`` followed by big-endian fixed fields and the raw
bytes they size (protocol.md §E).  Every reply starts with a one-byte code, 0 = success,
1 = failure; what follows depends on the command (and on the code: a failed ``misc`` still
carries a four-byte zero record count).

Client side: ``encode_<command>(...) -> bytes`` and ``parse_<reply>(buf, pos) -> (result, end)
| None`` per docs/internals.md.  Results follow what a caller means by the command:

* a *logical* miss is a value: ``get``/``vsiz``/``iternext`` miss -> ``None``, ``putkeep`` on
  an existing key and ``out`` of a missing key -> ``False``, a failed ``misc`` -> ``None``;
* a failure that can only mean something went wrong raises ``ServerError`` (``put``,
  ``putcat``, ``putshl``, ``addint``/``adddouble`` on a value of the wrong size) or
  ``ScriptError`` (``ext``);
* maintenance commands (``sync``, ``optimize``, ``vanish``, ``copy``, ``restore``,
  ``setmst``, ``iterinit``) answer ``True``/``False``.

Server side: ``parse_request(buf, pos) -> (Request, end) | None`` raising ``RequestError``
(a ``ProtocolError`` whose ``kind`` says why) on the inputs after which the real server
closes the connection without a reply, and ``encode_*_reply`` for every reply, so the bundled
server reads and writes only through this module.

Also here: the table-query argument helpers (``addcond``, ``setorder``, ...), the search
result helpers (hint stripping, ``get`` records, ``count``), the ``adddouble`` fixed-point
number format, and the replication stream / update-log message framing.
"""

from __future__ import annotations

import math
import struct
from typing import Callable, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from kt._native import load
from kt.errors import ProtocolError, ScriptError, ServerError
from kt.protocol.records import records_dict

Buffer = Union[bytes, bytearray, memoryview]
Parsed = Optional[Tuple[object, int]]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

MAGIC = 0xC8

CMD_PUT = 0x10
CMD_PUTKEEP = 0x11
CMD_PUTCAT = 0x12
CMD_PUTSHL = 0x13
CMD_PUTNR = 0x18
CMD_OUT = 0x20
CMD_GET = 0x30
CMD_MGET = 0x31
CMD_VSIZ = 0x38
CMD_ITERINIT = 0x50
CMD_ITERNEXT = 0x51
CMD_FWMKEYS = 0x58
CMD_ADDINT = 0x60
CMD_ADDDOUBLE = 0x61
CMD_EXT = 0x68
CMD_SYNC = 0x70
CMD_OPTIMIZE = 0x71
CMD_VANISH = 0x72
CMD_COPY = 0x73
CMD_RESTORE = 0x74
CMD_SETMST = 0x78
CMD_RNUM = 0x80
CMD_SIZE = 0x81
CMD_STAT = 0x88
CMD_MISC = 0x90
CMD_REPL = 0xA0

COMMAND_NAMES = {
    CMD_PUT: "put",
    CMD_PUTKEEP: "putkeep",
    CMD_PUTCAT: "putcat",
    CMD_PUTSHL: "putshl",
    CMD_PUTNR: "putnr",
    CMD_OUT: "out",
    CMD_GET: "get",
    CMD_MGET: "mget",
    CMD_VSIZ: "vsiz",
    CMD_ITERINIT: "iterinit",
    CMD_ITERNEXT: "iternext",
    CMD_FWMKEYS: "fwmkeys",
    CMD_ADDINT: "addint",
    CMD_ADDDOUBLE: "adddouble",
    CMD_EXT: "ext",
    CMD_SYNC: "sync",
    CMD_OPTIMIZE: "optimize",
    CMD_VANISH: "vanish",
    CMD_COPY: "copy",
    CMD_RESTORE: "restore",
    CMD_SETMST: "setmst",
    CMD_RNUM: "rnum",
    CMD_SIZE: "size",
    CMD_STAT: "stat",
    CMD_MISC: "misc",
    CMD_REPL: "repl",
}
COMMANDS_BY_NAME = {name: cmd for cmd, name in COMMAND_NAMES.items()}

MAX_ARG_SIZE = 1 << 28
"""ttserver's MAXARGSIZ: a larger (or negative) size makes it drop the connection."""
MAX_ARG_NUM = 1 << 20
"""ttserver's MAXARGNUM: the most keys in ``mget`` / arguments in ``misc``."""
MAX_NAME_SIZE = 1024
"""``ext``/``misc`` function names must be shorter than this."""

MISC_NO_UPDATE_LOG = 1
"""``misc`` opts bit 0 (RDBMONOULOG): do NOT write the call to the update log."""
EXT_LOCK_RECORD = 1
EXT_LOCK_GLOBAL = 2
RESTORE_CONSISTENCY_CHECK = 1

REPL_NOP = b"\xca"
"""What a master sends on the replication stream when it has nothing to say."""
REPL_RECORD_MAGIC = 0xC9

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
TRILLION = 1000000000000

HINT_PREFIX = b"\x00\x00[[HINT]]\n"

# Table query: condition operators (tctdb.h TDBQC*), flags, orderings, mstypes, index types.
QCSTREQ, QCSTRINC, QCSTRBW, QCSTREW, QCSTRAND, QCSTROR, QCSTROREQ, QCSTRRX = range(8)
QCNUMEQ, QCNUMGT, QCNUMGE, QCNUMLT, QCNUMLE, QCNUMBT, QCNUMOREQ = range(8, 15)
QCFTSPH, QCFTSAND, QCFTSOR, QCFTSEX = range(15, 19)
QCNEGATE = 1 << 24
QCNOIDX = 1 << 25
QOSTRASC, QOSTRDESC, QONUMASC, QONUMDESC = range(4)
MSUNION, MSISECT, MSDIFF = range(3)
ITLEXICAL, ITDECIMAL, ITTOKEN, ITQGRAM = range(4)
ITOPT = 9998
ITVOID = 9999
ITKEEP = 1 << 24

# --------------------------------------------------------------------------------------------
# Struct shapes (precompiled; ">" = big-endian, sizes as the server reads them: signed)
# --------------------------------------------------------------------------------------------

_HDR_K = struct.Struct(">BBI")
_HDR_KV = struct.Struct(">BBII")
_HDR_KVW = struct.Struct(">BBIIi")
_HDR_FWM = struct.Struct(">BBIi")
_HDR_ADDINT = struct.Struct(">BBIi")
_HDR_ADDDOUBLE = struct.Struct(">BBIqq")
_HDR_EXT = struct.Struct(">BBIIII")
_HDR_MISC = struct.Struct(">BBIII")
_HDR_RESTORE = struct.Struct(">BBIQI")
_HDR_SETMST = struct.Struct(">BBIiQI")
_HDR_REPL = struct.Struct(">BBQI")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_I32X2 = struct.Struct(">ii")
_I32X3 = struct.Struct(">iii")
_I32X4 = struct.Struct(">iiii")
_I64 = struct.Struct(">q")
_Q64 = struct.Struct(">Q")
_I64X2 = struct.Struct(">qq")
_CODE_I32 = struct.Struct(">Bi")
_CODE_I64 = struct.Struct(">Bq")
_CODE_I64X2 = struct.Struct(">Bqq")
_REPL_HDR = struct.Struct(">BQII")
_RESTORE_FIELDS = struct.Struct(">iQi")
_SETMST_FIELDS = struct.Struct(">iiQi")
_REPL_FIELDS = struct.Struct(">qi")

_pack_k = _HDR_K.pack
_pack_kv = _HDR_KV.pack
_pack_u32 = _U32.pack
_unpack_i32 = _I32.unpack_from
_unpack_i32x2 = _I32X2.unpack_from
_unpack_code_i32 = _CODE_I32.unpack_from

_SIMPLE = {
    cmd: bytes((MAGIC, cmd))
    for cmd in (CMD_ITERINIT, CMD_ITERNEXT, CMD_SYNC, CMD_VANISH, CMD_RNUM, CMD_SIZE, CMD_STAT)
}

BytesLike = Union[bytes, bytearray, memoryview]


def _check_size(data: BytesLike, what: str) -> int:
    size = len(data)
    if size > MAX_ARG_SIZE:
        raise ValueError(f"{what} is {size} bytes; Tokyo Tyrant accepts at most {MAX_ARG_SIZE}")
    return size


def _check_name(name: bytes, what: str) -> int:
    size = len(name)
    if size >= MAX_NAME_SIZE:
        raise ValueError(f"{what} name is {size} bytes; Tokyo Tyrant accepts at most {MAX_NAME_SIZE - 1}")
    return size


def _check_i32(value: int, what: str) -> int:
    if not -(1 << 31) <= value < (1 << 31):
        raise ValueError(f"{what} {value} does not fit a signed 32-bit integer")
    return value


# --------------------------------------------------------------------------------------------
# adddouble fixed-point numbers (ttutil.c: ttpackdouble / ttunpackdouble)
# --------------------------------------------------------------------------------------------


def pack_double(number: float, strict: bool = True) -> Tuple[int, int]:
    """Split ``number`` into the wire's ``(integ, fract * 10**12)`` pair, both truncated.

    +inf -> (INT64_MAX, 0), -inf -> (INT64_MIN, 0), NaN -> (INT64_MIN, INT64_MIN).  A finite
    number whose integral part does not fit 64 bits raises ``ValueError`` when ``strict``
    (a client should not send it); otherwise it becomes what the C server's conversion gives
    on x86-64 (INT64_MIN, i.e. the peer reads -inf).
    """
    number = float(number)
    if number != number:
        return INT64_MIN, INT64_MIN
    if number == math.inf:
        return INT64_MAX, 0
    if number == -math.inf:
        return INT64_MIN, 0
    fract, integ = math.modf(number)
    if not -9.223372036854775e18 <= integ <= 9.223372036854775e18:
        if strict:
            raise ValueError(f"{number!r} is too large for Tokyo Tyrant's adddouble (|x| < 2**63)")
        return INT64_MIN, 0
    return int(integ), int(fract * TRILLION)


def unpack_double(integ: int, fract: int) -> float:
    """The inverse of ``pack_double``."""
    if integ == INT64_MIN and fract == INT64_MIN:
        return math.nan
    if integ == INT64_MAX:
        return math.inf
    if integ == INT64_MIN:
        return -math.inf
    return integ + fract / TRILLION


# --------------------------------------------------------------------------------------------
# Client: request encoders
# --------------------------------------------------------------------------------------------


def _encode_kv(cmd: int, key: bytes, value: bytes) -> bytes:
    lk = len(key)
    lv = len(value)
    if lk > MAX_ARG_SIZE or lv > MAX_ARG_SIZE:
        _check_size(key, "key")
        _check_size(value, "value")
    return _pack_kv(MAGIC, cmd, lk, lv) + key + value


def encode_put(key: bytes, value: bytes) -> bytes:
    """put: store, overwriting."""
    lk = len(key)
    lv = len(value)
    if lk > MAX_ARG_SIZE or lv > MAX_ARG_SIZE:
        _check_size(key, "key")
        _check_size(value, "value")
    return _pack_kv(MAGIC, CMD_PUT, lk, lv) + key + value


def encode_putkeep(key: bytes, value: bytes) -> bytes:
    """putkeep: store only if the key is new."""
    return _encode_kv(CMD_PUTKEEP, key, value)


def encode_putcat(key: bytes, value: bytes) -> bytes:
    """putcat: append to the value (create it when missing)."""
    return _encode_kv(CMD_PUTCAT, key, value)


def encode_putnr(key: bytes, value: bytes) -> bytes:
    """putnr: put without any reply (not even on failure)."""
    return _encode_kv(CMD_PUTNR, key, value)


def encode_putshl(key: bytes, value: bytes, width: int) -> bytes:
    """putshl: append, then keep only the last ``width`` bytes."""
    if width < 0:
        raise ValueError(f"putshl width must be >= 0, not {width} (the server drops the connection)")
    _check_i32(width, "putshl width")
    lk = _check_size(key, "key")
    lv = _check_size(value, "value")
    return _HDR_KVW.pack(MAGIC, CMD_PUTSHL, lk, lv, width) + key + value


def encode_out(key: bytes) -> bytes:
    """out: remove a record."""
    return _pack_k(MAGIC, CMD_OUT, len(key)) + key


def encode_get(key: bytes) -> bytes:
    """get: fetch a value."""
    return _pack_k(MAGIC, CMD_GET, len(key)) + key


def encode_vsiz(key: bytes) -> bytes:
    """vsiz: the size of a value."""
    return _pack_k(MAGIC, CMD_VSIZ, len(key)) + key


def encode_mget(keys: Sequence[bytes]) -> bytes:
    """mget: fetch many values at once."""
    count = len(keys)
    if count > MAX_ARG_NUM:
        raise ValueError(f"mget of {count} keys; Tokyo Tyrant accepts at most {MAX_ARG_NUM} per call")
    parts = [_pack_u32(len(key)) + key for key in keys]
    parts.insert(0, _pack_k(MAGIC, CMD_MGET, count))
    return b"".join(parts)


def _wire_keys(keys: Iterable[object], encode_key: Callable[[object], bytes]) -> List[bytes]:
    return [k if type(k) is bytes else k.encode("utf-8") if type(k) is str else encode_key(k) for k in keys]


def encode_mget_keys(keys: Iterable[object], encode_key: Callable[[object], bytes]) -> bytes:
    """``encode_mget`` of caller keys in one pass (str as UTF-8, others via ``encode_key``)."""
    return encode_mget(_wire_keys(keys, encode_key))


def _wire_items(
    items: Iterable[Tuple[object, object]],
    encode_key: Callable[[object], bytes],
    encode_value: Callable[[object], bytes],
    bytes_pass_through: bool,
) -> List[Tuple[bytes, bytes]]:
    """Caller ``(key, value)`` items as wire bytes: keys as in :func:`encode_mget_keys`, values
    through ``encode_value`` (``bytes`` as they are when ``bytes_pass_through``)."""
    return [
        (key if type(key) is bytes else key.encode("utf-8") if type(key) is str else encode_key(key),
         value if (bytes_pass_through and type(value) is bytes) else encode_value(value))
        for key, value in items
    ]


def encode_putlist(
    items: Iterable[Tuple[object, object]],
    encode_key: Callable[[object], bytes],
    encode_value: Callable[[object], bytes],
    bytes_pass_through: bool = False,
) -> bytes:
    """misc ``putlist`` of caller ``(key, value)`` items (converted as in :func:`_wire_items`)."""
    pairs = _wire_items(items, encode_key, encode_value, bytes_pass_through)
    return _py_encode_misc(b"putlist", [part for pair in pairs for part in pair])


def encode_outlist(keys: Iterable[object], encode_key: Callable[[object], bytes]) -> bytes:
    """misc ``outlist`` of caller keys (as in :func:`encode_mget_keys`)."""
    return _py_encode_misc(b"outlist", _wire_keys(keys, encode_key))


def encode_putnr_items(
    items: Iterable[Tuple[object, object]],
    encode_key: Callable[[object], bytes],
    encode_value: Callable[[object], bytes],
    bytes_pass_through: bool = False,
) -> bytes:
    """:func:`encode_putnr_bulk` of caller ``(key, value)`` items (as in :func:`encode_putlist`)."""
    return _py_encode_putnr_bulk(_wire_items(items, encode_key, encode_value, bytes_pass_through))


def encode_iterinit() -> bytes:
    return _SIMPLE[CMD_ITERINIT]


def encode_iternext() -> bytes:
    return _SIMPLE[CMD_ITERNEXT]


def encode_fwmkeys(prefix: bytes, max_keys: int = -1) -> bytes:
    """fwmkeys: keys starting with ``prefix``; ``max_keys < 0`` = unlimited."""
    _check_i32(max_keys, "fwmkeys max")
    return _HDR_FWM.pack(MAGIC, CMD_FWMKEYS, _check_size(prefix, "prefix"), max_keys) + prefix


def encode_addint(key: bytes, num: int) -> bytes:
    """addint: add a signed 32-bit integer to a 4-byte native integer value."""
    _check_i32(num, "addint number")
    return _HDR_ADDINT.pack(MAGIC, CMD_ADDINT, _check_size(key, "key"), num) + key


def encode_adddouble(key: bytes, num: float) -> bytes:
    """adddouble: add a number to an 8-byte native double value (wire: 10**12 fixed point)."""
    integ, fract = pack_double(num)
    return _HDR_ADDDOUBLE.pack(MAGIC, CMD_ADDDOUBLE, _check_size(key, "key"), integ, fract) + key


def encode_ext(name: bytes, key: bytes = b"", value: bytes = b"", opts: int = 0) -> bytes:
    """ext: call the Lua function ``name(key, value)`` of the server's -ext script."""
    return (
        _HDR_EXT.pack(
            MAGIC,
            CMD_EXT,
            _check_name(name, "ext function"),
            opts,
            _check_size(key, "key"),
            _check_size(value, "value"),
        )
        + name
        + key
        + value
    )


def encode_sync() -> bytes:
    return _SIMPLE[CMD_SYNC]


def encode_optimize(params: bytes = b"") -> bytes:
    """optimize: rebuild the database with TC tuning ``params``."""
    return _pack_k(MAGIC, CMD_OPTIMIZE, _check_size(params, "optimize params")) + params


def encode_vanish() -> bytes:
    return _SIMPLE[CMD_VANISH]


def encode_copy(path: bytes) -> bytes:
    """copy: copy the database file to ``path`` on the server."""
    return _pack_k(MAGIC, CMD_COPY, _check_size(path, "path")) + path


def encode_restore(path: bytes, ts: int, opts: int = 0) -> bytes:
    """restore: replay the update logs in ``path`` from timestamp ``ts`` (microseconds)."""
    return _HDR_RESTORE.pack(MAGIC, CMD_RESTORE, _check_size(path, "path"), ts, opts) + path


def encode_setmst(host: bytes, port: int, ts: int = 0, opts: int = 0) -> bytes:
    """setmst: set (or with an empty host, unset) the replication master."""
    return _HDR_SETMST.pack(MAGIC, CMD_SETMST, _check_size(host, "host"), port, ts, opts) + host


def encode_rnum() -> bytes:
    return _SIMPLE[CMD_RNUM]


def encode_size() -> bytes:
    return _SIMPLE[CMD_SIZE]


def encode_stat() -> bytes:
    return _SIMPLE[CMD_STAT]


def encode_misc(name: bytes, args: Sequence[bytes] = (), opts: int = 0) -> bytes:
    """misc: call a database function; ``opts & MISC_NO_UPDATE_LOG`` skips the update log."""
    count = len(args)
    if count > MAX_ARG_NUM:
        raise ValueError(f"misc with {count} arguments; Tokyo Tyrant accepts at most {MAX_ARG_NUM}")
    parts = [_pack_u32(len(arg)) + arg for arg in args]
    if count and max(map(len, args)) > MAX_ARG_SIZE:
        for arg in args:
            _check_size(arg, "misc argument")
    parts.insert(0, _HDR_MISC.pack(MAGIC, CMD_MISC, _check_name(name, "misc function"), opts, count) + name)
    return b"".join(parts)


def encode_putnr_bulk(records: Sequence[Tuple[bytes, bytes]]) -> bytes:
    """Many putnr requests in one buffer (one write, no replies)."""
    data = b"".join([_pack_kv(MAGIC, CMD_PUTNR, len(k), len(v)) + k + v for k, v in records])
    if len(data) > MAX_ARG_SIZE:
        for key, value in records:
            _check_size(key, "key")
            _check_size(value, "value")
    return data


def encode_repl(ts: int, sid: int) -> bytes:
    """repl: ask for the update-log stream from timestamp ``ts`` as slave ``sid``."""
    return _HDR_REPL.pack(MAGIC, CMD_REPL, ts, sid)


# --------------------------------------------------------------------------------------------
# Client: reply parsers
# --------------------------------------------------------------------------------------------


def _bad_code(code: int, command: str) -> ProtocolError:
    return ProtocolError(f"Tokyo Tyrant {command} reply starts with code {code:#04x}, expected 0 or 1")


def _status(buf: Buffer, pos: int, command: str) -> Optional[int]:
    if len(buf) <= pos:
        return None
    code = buf[pos]
    if code > 1:
        raise _bad_code(code, command)
    return code


def parse_ok(buf: Buffer, pos: int = 0) -> Parsed:
    """One-byte reply -> ``True`` (0) / ``False`` (1).

    For putkeep (False = the key exists), out (False = no such key), iterinit, sync,
    optimize, vanish, copy, restore, setmst.
    """
    if len(buf) <= pos:
        return None
    code = buf[pos]
    if code == 0:
        return True, pos + 1
    if code == 1:
        return False, pos + 1
    raise _bad_code(code, "status")


parse_putkeep = parse_ok
parse_out = parse_ok


def _parse_write(buf: Buffer, pos: int, command: str) -> Parsed:
    if len(buf) <= pos:
        return None
    code = buf[pos]
    if code == 0:
        return True, pos + 1
    if code == 1:
        raise ServerError(f"{command} failed", code=1, procedure=command, end=pos + 1)
    raise _bad_code(code, command)


def parse_put(buf: Buffer, pos: int = 0) -> Parsed:
    """put -> True; a failure (read-only or broken database, forbidden) raises ServerError."""
    return _parse_write(buf, pos, "put")


def parse_putcat(buf: Buffer, pos: int = 0) -> Parsed:
    """putcat -> True; failure raises ServerError."""
    return _parse_write(buf, pos, "putcat")


def parse_putshl(buf: Buffer, pos: int = 0) -> Parsed:
    """putshl -> True; failure raises ServerError."""
    return _parse_write(buf, pos, "putshl")


def _sized(buf: Buffer, pos: int, what: str) -> int:
    size = _unpack_i32(buf, pos)[0]
    if size < 0:
        raise ProtocolError(f"Tokyo Tyrant {what} has a negative size {size}")
    return size


def parse_get(buf: Buffer, pos: int = 0) -> Parsed:
    """get -> the value, or ``None`` when the key does not exist."""
    end = len(buf)
    start = pos + 5
    if end >= start:
        code, size = _unpack_code_i32(buf, pos)
        if code == 0:
            stop = start + size
            if size < 0:
                raise ProtocolError(f"Tokyo Tyrant reply has a negative size {size}")
            if stop > end:
                return None
            if type(buf) is bytes:
                return buf[start:stop], stop
            return bytes(buf[start:stop]), stop
    elif end > pos:
        code = buf[pos]
        if code == 0:
            return None
    else:
        return None
    if code == 1:
        return None, pos + 1
    raise _bad_code(code, "get")


def parse_iternext(buf: Buffer, pos: int = 0) -> Parsed:
    """iternext -> the next key, or ``None`` at the end."""
    return parse_get(buf, pos)


def parse_ext(buf: Buffer, pos: int = 0) -> Parsed:
    """ext -> the function's result; failure (no script, missing function, nil, error)
    raises ScriptError: the protocol does not tell these apart."""
    if len(buf) > pos and buf[pos] == 1:
        raise ScriptError(
            "ext: the Lua function failed, returned nil/false or does not exist",
            code=1,
            procedure="ext",
            end=pos + 1,
        )
    return parse_get(buf, pos)


def parse_vsiz(buf: Buffer, pos: int = 0) -> Parsed:
    """vsiz -> the size, or ``None`` when the key does not exist."""
    code = _status(buf, pos, "vsiz")
    if code is None:
        return None
    if code:
        return None, pos + 1
    if len(buf) < pos + 5:
        return None
    return _sized(buf, pos + 1, "vsiz reply"), pos + 5


def parse_mget(buf: Buffer, pos: int = 0) -> Parsed:
    """mget -> list of ``(key, value)`` for the keys found, in request order."""
    head = _list_head(buf, pos, "mget")
    if head is None:
        return None
    code, count = head
    if type(buf) is not bytes:
        buf = bytes(buf)  # one copy instead of two per record
    end = len(buf)
    pos += 5
    records = []
    append = records.append
    unpack = _unpack_i32x2
    try:
        for _ in range(count):
            lk, lv = unpack(buf, pos)
            if lk < 0 or lv < 0:
                raise ProtocolError(f"Tokyo Tyrant mget record has a negative size ({lk}, {lv})")
            kstart = pos + 8
            vstart = kstart + lk
            pos = vstart + lv
            append((buf[kstart:vstart], buf[vstart:pos]))
    except struct.error:  # ran off the end: not all bytes are here yet
        return None
    if pos > end:
        return None
    if code:
        raise ServerError("mget failed", code=1, procedure="mget", end=pos)
    return records, pos


def parse_mget_dict(buf: Buffer, pos: int = 0, text_keys: bool = True, text_values: bool = False) -> Parsed:
    """mget straight to ``{key: value}`` (the client's get_bulk result); ``text_keys`` /
    ``text_values``: UTF-8 text where it decodes, else bytes."""
    parsed = _py_parse_mget(buf, pos)
    if parsed is None:
        return None
    pairs, end = parsed
    return records_dict(pairs, text_keys, text_values), end


def _list_head(buf: Buffer, pos: int, what: str) -> Optional[Tuple[int, int]]:
    """``[code:1][count:4]`` of a list reply -> (code, count), None when incomplete."""
    end = len(buf)
    if end < pos + 5:
        if end > pos and buf[pos] > 1:
            raise _bad_code(buf[pos], what)
        return None
    code, count = _unpack_code_i32(buf, pos)
    if code > 1:
        raise _bad_code(code, what)
    if count < 0:
        raise ProtocolError(f"Tokyo Tyrant {what} reply has a negative element count {count}")
    return code, count


def _parse_list(buf: Buffer, pos: int, what: str) -> Optional[Tuple[int, List[bytes], int]]:
    """``[code:1][n:4]`` then n ``[size:4][bytes]`` -> (code, items, end)."""
    head = _list_head(buf, pos, what)
    if head is None:
        return None
    code, count = head
    if type(buf) is not bytes:
        buf = bytes(buf)
    end = len(buf)
    pos += 5
    items = []
    append = items.append
    unpack = _unpack_i32
    try:
        for _ in range(count):
            size = unpack(buf, pos)[0]
            if size < 0:
                raise ProtocolError(f"Tokyo Tyrant {what} element has a negative size {size}")
            start = pos + 4
            pos = start + size
            append(buf[start:pos])
    except struct.error:
        return None
    if pos > end:
        return None
    return code, items, pos


def parse_fwmkeys(buf: Buffer, pos: int = 0) -> Parsed:
    """fwmkeys -> list of keys."""
    parsed = _parse_list(buf, pos, "fwmkeys")
    if parsed is None:
        return None
    code, keys, end = parsed
    if code:
        raise ServerError("fwmkeys failed", code=1, procedure="fwmkeys", end=end)
    return keys, end


def parse_misc(buf: Buffer, pos: int = 0) -> Parsed:
    """misc -> list of result elements, or ``None`` when the function failed.

    The failure reply is five bytes (code 1 and a zero count), not one.
    """
    parsed = _parse_list(buf, pos, "misc")
    if parsed is None:
        return None
    code, items, end = parsed
    return (None if code else items), end


def parse_addint(buf: Buffer, pos: int = 0) -> Parsed:
    """addint -> the new sum; failure (the value is not a 4-byte integer) raises ServerError."""
    code = _status(buf, pos, "addint")
    if code is None:
        return None
    if code:
        raise ServerError(
            "addint failed: the existing value is not a 4-byte integer",
            code=1,
            procedure="addint",
            end=pos + 1,
        )
    if len(buf) < pos + 5:
        return None
    return _unpack_i32(buf, pos + 1)[0], pos + 5


def parse_adddouble(buf: Buffer, pos: int = 0) -> Parsed:
    """adddouble -> the new sum; failure (the value is not an 8-byte double) raises ServerError."""
    code = _status(buf, pos, "adddouble")
    if code is None:
        return None
    if code:
        raise ServerError(
            "adddouble failed: the existing value is not an 8-byte double",
            code=1,
            procedure="adddouble",
            end=pos + 1,
        )
    if len(buf) < pos + 17:
        return None
    integ, fract = _I64X2.unpack_from(buf, pos + 1)
    return unpack_double(integ, fract), pos + 17


def _parse_count64(buf: Buffer, pos: int, what: str) -> Parsed:
    code = _status(buf, pos, what)
    if code is None:
        return None
    if code:
        raise ServerError(f"{what} failed", code=1, procedure=what, end=pos + 1)
    if len(buf) < pos + 9:
        return None
    return _Q64.unpack_from(buf, pos + 1)[0], pos + 9


def parse_rnum(buf: Buffer, pos: int = 0) -> Parsed:
    """rnum -> the number of records."""
    return _parse_count64(buf, pos, "rnum")


def parse_size(buf: Buffer, pos: int = 0) -> Parsed:
    """size -> the database size in bytes."""
    return _parse_count64(buf, pos, "size")


def parse_stat_text(text: bytes) -> dict:
    """The ``name\\tvalue\\n`` lines of a stat reply -> dict of str."""
    result = {}
    for line in bytes(text).decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        name, sep, value = line.partition("\t")
        if not sep:
            raise ProtocolError(f"Tokyo Tyrant stat line without a TAB: {line!r}")
        result[name] = value
    return result


def parse_stat(buf: Buffer, pos: int = 0) -> Parsed:
    """stat -> dict of the server's ``name -> value`` (both str), in the server's order."""
    code = _status(buf, pos, "stat")
    if code is None:
        return None
    if code:
        raise ServerError("stat failed", code=1, procedure="stat", end=pos + 1)
    parsed = parse_get(buf, pos)
    if parsed is None:
        return None
    text, end = parsed
    return parse_stat_text(text), end


class ReplRecord(NamedTuple):
    """One update on the replication stream: ``message`` is the logged request + result byte."""

    ts: int
    sid: int
    message: bytes


def parse_repl_sid(buf: Buffer, pos: int = 0) -> Parsed:
    """The first four bytes of a replication stream: the master's server ID."""
    if len(buf) < pos + 4:
        return None
    return _U32.unpack_from(buf, pos)[0], pos + 4


def parse_repl_item(buf: Buffer, pos: int = 0) -> Parsed:
    """One replication stream item -> ``None`` result for a NOP, else a ``ReplRecord``."""
    if len(buf) <= pos:
        return None
    magic = buf[pos]
    if magic == REPL_NOP[0]:
        return None, pos + 1
    if magic != REPL_RECORD_MAGIC:
        raise ProtocolError(f"Tokyo Tyrant replication stream item starts with {magic:#04x}")
    if len(buf) < pos + 17:
        return None
    _, ts, sid, size = _REPL_HDR.unpack_from(buf, pos)
    if size > MAX_ARG_SIZE:
        raise ProtocolError(f"Tokyo Tyrant replication record of {size} bytes")
    start = pos + 17
    stop = start + size
    if stop > len(buf):
        return None
    return ReplRecord(ts, sid, bytes(buf[start:stop])), stop


# --------------------------------------------------------------------------------------------
# Table queries: misc "search" arguments and results (protocol.md §E.4)
# --------------------------------------------------------------------------------------------


def _field(value: Union[bytes, str, int]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode("ascii")
    raise TypeError(f"query fields must be str, bytes or numbers, not {type(value).__name__}")


def query_arg(*fields: Union[bytes, str, int]) -> bytes:
    """One search argument: its fields joined with NUL bytes, e.g. ``query_arg('setlimit', 10, 0)``."""
    return b"\x00".join([_field(field) for field in fields])


def query_addcond(column: Union[bytes, str], op: int, expr: Union[bytes, str, int, float]) -> bytes:
    """``addcond\\0col\\0op\\0expr``; column ``""`` is the primary key."""
    return query_arg(b"addcond", column, op, expr)


def query_setorder(column: Union[bytes, str], order: int = QOSTRASC) -> bytes:
    return query_arg(b"setorder", column, order)


def query_setlimit(limit: int = -1, skip: int = 0) -> bytes:
    """``setlimit\\0max\\0skip``; ``limit < 0`` = unlimited."""
    return query_arg(b"setlimit", limit, skip)


def query_get(columns: Iterable[Union[bytes, str]] = ()) -> bytes:
    """``get`` (whole records) or ``get\\0c1\\0c2`` (only those columns)."""
    return query_arg(b"get", *columns)


def query_mstype(mstype: int) -> bytes:
    return query_arg(b"mstype", mstype)


QUERY_OUT = b"out"
QUERY_COUNT = b"count"
QUERY_HINT = b"hint"
QUERY_NEXT = b"next"


def split_hint(items: List[bytes]) -> Tuple[List[bytes], Optional[bytes]]:
    """Strip the ``\\0\\0[[HINT]]\\n...`` element a ``hint`` search appends -> (items, hint)."""
    if items and items[-1].startswith(HINT_PREFIX):
        return items[:-1], items[-1][len(HINT_PREFIX) :]
    return items, None


def split_columns(blob: bytes) -> List[Tuple[bytes, bytes]]:
    """``c1\\0v1\\0c2\\0v2`` -> [(c1, v1), (c2, v2)] (a trailing odd field is ignored, as TC does)."""
    if not blob:
        return []
    fields = blob.split(b"\x00")
    return list(zip(fields[::2], fields[1::2]))


def join_columns(columns: Iterable[Tuple[bytes, bytes]]) -> bytes:
    """The inverse of ``split_columns``."""
    return b"\x00".join([part for pair in columns for part in pair])


def parse_search_record(item: bytes) -> Tuple[Optional[bytes], List[Tuple[bytes, bytes]]]:
    """One ``get`` search result -> (primary key or None, [(column, value), ...]).

    Without a column list the server sends ``\\0pkey\\0c1\\0v1...`` (pkey under the empty
    column name); with one, only the listed columns.
    """
    pairs = split_columns(item)
    if pairs and pairs[0][0] == b"":
        return pairs[0][1], pairs[1:]
    return None, pairs


def parse_search_count(items: List[bytes]) -> int:
    """The single decimal element of a ``count`` search (hint already stripped)."""
    if len(items) != 1:
        raise ProtocolError(f"Tokyo Tyrant search count returned {len(items)} elements, expected 1")
    try:
        return int(items[0])
    except ValueError:
        raise ProtocolError(f"Tokyo Tyrant search count is not a number: {items[0]!r}") from None


# --------------------------------------------------------------------------------------------
# Server: incremental request parser
# --------------------------------------------------------------------------------------------


class RequestError(ProtocolError):
    """A request after which ttserver closes the connection without replying.

    ``kind`` is one of ``not_binary`` (first byte is not 0xC8: the text protocols),
    ``unknown_command``, ``bad_size`` (negative or > MAX_ARG_SIZE), ``too_many_args``
    (> MAX_ARG_NUM or negative), ``bad_name`` (ext/misc name size >= 1024 or negative),
    ``bad_width`` (putshl width < 0), ``bad_repl`` (repl timestamp or sid < 1).

    For a known command, ``command`` is its byte (ttserver has counted it) and ``consumed`` the
    buffer offset up to which ttserver had read when it gave up: its fixed header.  ttserver
    goes on parsing whatever is already buffered after that point as the next request, and
    closes the connection only when nothing is.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.command: Optional[int] = None
        self.consumed: Optional[int] = None
        super().__init__(message)


class Request:
    """One decoded request; only the fields of its command are set (the others read None)."""

    FIELDS = (
        "key",
        "value",
        "width",
        "keys",
        "prefix",
        "max",
        "num",
        "name",
        "opts",
        "args",
        "params",
        "path",
        "ts",
        "sid",
        "host",
        "port",
    )
    # Unset fields fall back to these class attributes: building a request sets only its own.
    key = value = width = keys = prefix = max = num = name = None
    opts = args = params = path = ts = sid = host = port = None

    def __init__(
        self, command: int, key: Optional[bytes] = None, value: Optional[bytes] = None, **fields: object
    ) -> None:
        self.command = command
        if key is not None:
            self.key = key
        if value is not None:
            self.value = value
        if fields:
            unknown = set(fields).difference(self.FIELDS)
            if unknown:
                raise TypeError(f"Request has no field(s) {sorted(unknown)}")
            self.__dict__.update(fields)

    @property
    def command_name(self) -> str:
        return COMMAND_NAMES[self.command]

    def fields(self) -> dict:
        """The fields that are set, by name (for tests and logging)."""
        return {attr: getattr(self, attr) for attr in self.FIELDS if getattr(self, attr) is not None}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self.command == other.command and self.fields() == other.fields()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields().items())
        return f"Request({self.command_name}{', ' if inner else ''}{inner})"


def _size_error(command: int, what: str, size: int) -> RequestError:
    return RequestError("bad_size", f"{COMMAND_NAMES[command]}: {what} size {size} out of range")


def _read_sized_items(
    buf: Buffer, pos: int, end: int, count: int, cmd: int, what: str
) -> Optional[Tuple[List[bytes], int]]:
    """``count`` items framed ``[size:4][bytes]`` (mget keys, misc arguments), or None if short.

    A negative or oversized item size ends the list there, after its size field, as in
    ttserver's do_mget/do_misc (which then answer with the items read so far).
    """
    items = []
    append = items.append
    for _ in range(count):
        if end < pos + 4:
            return None
        size = _unpack_i32(buf, pos)[0]
        if size < 0 or size > MAX_ARG_SIZE:
            return items, pos + 4
        start = pos + 4
        pos = start + size
        if pos > end:
            return None
        append(bytes(buf[start:pos]))
    return items, pos


def _check_sizes(command: int, *sizes: int) -> None:
    for size in sizes:
        if size < 0 or size > MAX_ARG_SIZE:
            raise _size_error(command, "argument", size)


def _req_kv(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 10:
        return None
    lk, lv = _unpack_i32x2(buf, pos + 2)
    if lk < 0 or lv < 0 or lk > MAX_ARG_SIZE or lv > MAX_ARG_SIZE:
        _check_sizes(cmd, lk, lv)
    kstart = pos + 10
    vstart = kstart + lk
    stop = vstart + lv
    if stop > end:
        return None
    return Request(cmd, bytes(buf[kstart:vstart]), bytes(buf[vstart:stop])), stop


def _req_k(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 6:
        return None
    lk = _unpack_i32(buf, pos + 2)[0]
    if lk < 0 or lk > MAX_ARG_SIZE:
        raise _size_error(cmd, "key", lk)
    start = pos + 6
    stop = start + lk
    if stop > end:
        return None
    return Request(cmd, bytes(buf[start:stop])), stop


def _req_bare(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    return Request(cmd), pos + 2


def _req_putshl(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 14:
        return None
    lk, lv, width = _I32X3.unpack_from(buf, pos + 2)
    _check_sizes(cmd, lk, lv)
    if width < 0:
        raise RequestError("bad_width", f"putshl: negative width {width}")
    kstart = pos + 14
    vstart = kstart + lk
    stop = vstart + lv
    if stop > end:
        return None
    return Request(cmd, bytes(buf[kstart:vstart]), bytes(buf[vstart:stop]), width=width), stop


def _req_mget(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 6:
        return None
    count = _unpack_i32(buf, pos + 2)[0]
    if count < 0 or count > MAX_ARG_NUM:
        raise RequestError("too_many_args", f"mget: key count {count} out of range")
    pos += 6
    parsed = _read_sized_items(buf, pos, end, count, cmd, "key")
    if parsed is None:
        return None
    keys, pos = parsed
    return Request(cmd, keys=keys), pos


def _req_fwmkeys(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 10:
        return None
    size, limit = _unpack_i32x2(buf, pos + 2)
    _check_sizes(cmd, size)
    start = pos + 10
    stop = start + size
    if stop > end:
        return None
    return Request(cmd, prefix=bytes(buf[start:stop]), max=limit), stop


def _req_addint(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 10:
        return None
    size, num = _unpack_i32x2(buf, pos + 2)
    _check_sizes(cmd, size)
    start = pos + 10
    stop = start + size
    if stop > end:
        return None
    return Request(cmd, bytes(buf[start:stop]), num=num), stop


def _req_adddouble(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 22:
        return None
    size = _unpack_i32(buf, pos + 2)[0]
    _check_sizes(cmd, size)
    integ, fract = _I64X2.unpack_from(buf, pos + 6)
    start = pos + 22
    stop = start + size
    if stop > end:
        return None
    return Request(cmd, bytes(buf[start:stop]), num=unpack_double(integ, fract)), stop


def _req_ext(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 18:
        return None
    nsiz, opts, lk, lv = _I32X4.unpack_from(buf, pos + 2)
    if nsiz < 0 or nsiz >= MAX_NAME_SIZE:
        raise RequestError("bad_name", f"ext: function name size {nsiz} out of range")
    _check_sizes(cmd, lk, lv)
    nstart = pos + 18
    kstart = nstart + nsiz
    vstart = kstart + lk
    stop = vstart + lv
    if stop > end:
        return None
    return Request(
        cmd, bytes(buf[kstart:vstart]), bytes(buf[vstart:stop]), name=bytes(buf[nstart:kstart]), opts=opts
    ), stop


def _req_sized(buf: Buffer, pos: int, end: int, cmd: int, attr: str) -> Parsed:
    if end < pos + 6:
        return None
    size = _unpack_i32(buf, pos + 2)[0]
    _check_sizes(cmd, size)
    start = pos + 6
    stop = start + size
    if stop > end:
        return None
    return Request(cmd, **{attr: bytes(buf[start:stop])}), stop


def _req_optimize(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    return _req_sized(buf, pos, end, cmd, "params")


def _req_copy(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    return _req_sized(buf, pos, end, cmd, "path")


def _req_restore(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 18:
        return None
    size, ts, opts = _RESTORE_FIELDS.unpack_from(buf, pos + 2)
    _check_sizes(cmd, size)
    start = pos + 18
    stop = start + size
    if stop > end:
        return None
    return Request(cmd, path=bytes(buf[start:stop]), ts=ts, opts=opts), stop


def _req_setmst(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 22:
        return None
    size, port, ts, opts = _SETMST_FIELDS.unpack_from(buf, pos + 2)
    _check_sizes(cmd, size)
    start = pos + 22
    stop = start + size
    if stop > end:
        return None
    return Request(cmd, host=bytes(buf[start:stop]), port=port, ts=ts, opts=opts), stop


def _req_misc(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 14:
        return None
    nsiz, opts, count = _I32X3.unpack_from(buf, pos + 2)
    if nsiz < 0 or nsiz >= MAX_NAME_SIZE:
        raise RequestError("bad_name", f"misc: function name size {nsiz} out of range")
    if count < 0 or count > MAX_ARG_NUM:
        raise RequestError("too_many_args", f"misc: argument count {count} out of range")
    nstart = pos + 14
    pos = nstart + nsiz
    if pos > end:
        return None
    name = bytes(buf[nstart:pos])
    parsed = _read_sized_items(buf, pos, end, count, cmd, "misc argument")
    if parsed is None:
        return None
    args, pos = parsed
    return Request(cmd, name=name, opts=opts, args=args), pos


def _req_repl(buf: Buffer, pos: int, end: int, cmd: int) -> Parsed:
    if end < pos + 14:
        return None
    ts, sid = _REPL_FIELDS.unpack_from(buf, pos + 2)
    if ts < 1 or sid < 1:
        raise RequestError("bad_repl", f"repl: timestamp {ts} / server id {sid} must be >= 1")
    return Request(cmd, ts=ts, sid=sid), pos + 14


# magic, command and the fixed fields ttserver reads before it validates them
_HEADER_SIZES = {
    _req_kv: 10, _req_k: 6, _req_bare: 2, _req_putshl: 14, _req_mget: 6, _req_fwmkeys: 10,
    _req_addint: 10, _req_adddouble: 22, _req_ext: 18, _req_optimize: 6, _req_copy: 6,
    _req_restore: 18, _req_setmst: 22, _req_misc: 14, _req_repl: 14,
}

_REQUEST_PARSERS = {
    CMD_PUT: _req_kv,
    CMD_PUTKEEP: _req_kv,
    CMD_PUTCAT: _req_kv,
    CMD_PUTSHL: _req_putshl,
    CMD_PUTNR: _req_kv,
    CMD_OUT: _req_k,
    CMD_GET: _req_k,
    CMD_MGET: _req_mget,
    CMD_VSIZ: _req_k,
    CMD_ITERINIT: _req_bare,
    CMD_ITERNEXT: _req_bare,
    CMD_FWMKEYS: _req_fwmkeys,
    CMD_ADDINT: _req_addint,
    CMD_ADDDOUBLE: _req_adddouble,
    CMD_EXT: _req_ext,
    CMD_SYNC: _req_bare,
    CMD_OPTIMIZE: _req_optimize,
    CMD_VANISH: _req_bare,
    CMD_COPY: _req_copy,
    CMD_RESTORE: _req_restore,
    CMD_SETMST: _req_setmst,
    CMD_RNUM: _req_bare,
    CMD_SIZE: _req_bare,
    CMD_STAT: _req_bare,
    CMD_MISC: _req_misc,
    CMD_REPL: _req_repl,
}


def parse_request(buf: Buffer, pos: int = 0) -> Parsed:
    """One client request from ``buf[pos:]`` -> ``(Request, end)``, or ``None`` for "need more".

    Raises ``RequestError`` for what makes the real server close without replying (see its
    ``kind``); ``not_binary`` means the bytes belong to the memcached/HTTP text protocols.
    """
    end = len(buf)
    if end < pos + 2:
        if end > pos and buf[pos] != MAGIC:
            raise RequestError("not_binary", f"request starts with {buf[pos]:#04x}, not 0xC8")
        return None
    if buf[pos] != MAGIC:
        raise RequestError("not_binary", f"request starts with {buf[pos]:#04x}, not 0xC8")
    cmd = buf[pos + 1]
    parser = _REQUEST_PARSERS.get(cmd)
    if parser is None:
        exc = RequestError("unknown_command", f"unknown command byte {cmd:#04x}")
        exc.consumed = pos + 2
        raise exc
    try:
        return parser(buf, pos, end, cmd)
    except RequestError as exc:
        exc.command = cmd
        exc.consumed = pos + _HEADER_SIZES[parser]
        raise


def scan_request(buf: Buffer, pos: int = 0, state: Optional[tuple] = None) -> Tuple[bool, Optional[tuple]]:
    """Resumable "is the request at ``buf[pos]`` complete yet?" for requests of many items.

    ``mget`` and ``misc`` carry up to 2^20 ``[size:4][bytes]`` items; re-running
    :func:`parse_request` on each new segment of a large one costs O(n^2) (a peer dripping
    the last bytes of 1 MB of tiny items kept a server core busy).  This walks only the item
    sizes it has not seen and returns ``(decidable, state)``: when ``decidable``,
    :func:`parse_request` will not return None (complete, or an error to raise); otherwise pass
    ``state`` back, with the same request at ``pos`` (offsets are relative to it), once more
    bytes have arrived.  Other commands need no scan (parsing them re-reads a few fixed fields):
    ``(True, None)`` once their first two bytes are there.
    """
    size = len(buf)
    if state is None:
        if size - pos < 2 or buf[pos] != MAGIC:
            return size - pos >= 2 or (size > pos and buf[pos] != MAGIC), None
        cmd = buf[pos + 1]
        if cmd == CMD_MGET:
            if size - pos < 6:
                return False, None
            count = _unpack_i32(buf, pos + 2)[0]
            start = 6
        elif cmd == CMD_MISC:
            if size - pos < 14:
                return False, None
            nsiz, _opts, count = _I32X3.unpack_from(buf, pos + 2)
            if nsiz < 0 or nsiz >= MAX_NAME_SIZE:
                return True, None
            start = 14 + nsiz
        else:
            return True, None
        if count < 0 or count > MAX_ARG_NUM:
            return True, None
        state = (start, count)
    off, left = state
    off += pos
    while left and off + 4 <= size:
        item = _unpack_i32(buf, off)[0]
        if item < 0 or item > MAX_ARG_SIZE:
            return True, None
        off += 4 + item
        left -= 1
    return (not left and off <= size), (off - pos, left)


# --------------------------------------------------------------------------------------------
# Server: reply encoders
# --------------------------------------------------------------------------------------------

REPLY_OK = b"\x00"
REPLY_FAIL = b"\x01"
MISC_FAIL = b"\x01\x00\x00\x00\x00"


def encode_status_reply(ok: bool) -> bytes:
    """The one-byte reply of put, putkeep, putcat, putshl, out, iterinit, sync, optimize,
    vanish, copy, restore, setmst (and of every command's failure but misc)."""
    return REPLY_OK if ok else REPLY_FAIL


def _encode_bytes_reply(data: Optional[bytes]) -> bytes:
    if data is None:
        return REPLY_FAIL
    return _CODE_I32.pack(0, len(data)) + data


def encode_get_reply(value: Optional[bytes]) -> bytes:
    """get: ``00 [vsiz][value]`` or ``01`` when missing."""
    return _encode_bytes_reply(value)


def encode_iternext_reply(key: Optional[bytes]) -> bytes:
    """iternext: ``00 [ksiz][key]`` or ``01`` at the end."""
    return _encode_bytes_reply(key)


def encode_ext_reply(result: Optional[bytes]) -> bytes:
    """ext: ``00 [rsiz][result]`` or ``01`` on failure."""
    return _encode_bytes_reply(result)


def encode_vsiz_reply(size: Optional[int]) -> bytes:
    return REPLY_FAIL if size is None else _CODE_I32.pack(0, size)


def encode_mget_reply(records: Iterable[Tuple[bytes, bytes]]) -> bytes:
    """mget: always code 0; the hits, in request order."""
    parts = [b""]
    append = parts.append
    count = 0
    for key, value in records:
        append(_pack_kv_sizes(len(key), len(value)))
        append(key)
        append(value)
        count += 1
    parts[0] = _CODE_I32.pack(0, count)
    return b"".join(parts)


_pack_kv_sizes = _I32X2.pack


def _encode_list(code: int, items: Sequence[bytes]) -> bytes:
    parts = [_CODE_I32.pack(code, len(items))]
    append = parts.append
    for item in items:
        append(_pack_u32(len(item)))
        append(item)
    return b"".join(parts)


def encode_fwmkeys_reply(keys: Sequence[bytes]) -> bytes:
    """fwmkeys: always code 0."""
    return _encode_list(0, keys)


def encode_misc_reply(items: Optional[Sequence[bytes]]) -> bytes:
    """misc: ``00 [n] n*[size][elem]``, or the five-byte failure ``01 00000000`` for None."""
    if items is None:
        return MISC_FAIL
    return _encode_list(0, items)


def encode_addint_reply(total: Optional[int]) -> bytes:
    return REPLY_FAIL if total is None else _CODE_I32.pack(0, total)


def encode_adddouble_reply(total: Optional[float]) -> bytes:
    if total is None:
        return REPLY_FAIL
    return _CODE_I64X2.pack(0, *pack_double(total, strict=False))


def encode_rnum_reply(count: int) -> bytes:
    return _CODE_I64.pack(0, count)


def encode_size_reply(size: int) -> bytes:
    return _CODE_I64.pack(0, size)


def encode_stat_text(pairs: Union[Mapping, Iterable[Tuple[object, object]]]) -> bytes:
    """``name\\tvalue\\n`` lines (str or bytes names and values)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    lines = []
    for name, value in items:
        lines.append(_field(name) + b"\t" + _field(value) + b"\n")
    return b"".join(lines)


def encode_stat_reply(pairs: Union[Mapping, Iterable[Tuple[object, object]]]) -> bytes:
    """stat: ``00 [ssiz][text]``; ``pairs`` in the order to report them."""
    return _encode_bytes_reply(encode_stat_text(pairs))


def encode_repl_sid(sid: int) -> bytes:
    """The four-byte server ID that starts a replication stream."""
    return _pack_u32(sid)


def encode_repl_record(ts: int, sid: int, message: bytes) -> bytes:
    """One update on the replication stream: ``C9 [ts:8][sid:4][msiz:4][message]``."""
    return _REPL_HDR.pack(REPL_RECORD_MAGIC, ts, sid, len(message)) + message


def encode_ulog_message(request: bytes, ok: bool) -> bytes:
    """An update-log message: the binary request followed by its result byte (0 = success).

    For ``misc`` use ``encode_misc_log`` (the logged form has no opts field).
    """
    return request + (REPLY_OK if ok else REPLY_FAIL)


def encode_misc_log(name: bytes, args: Sequence[bytes], ok: bool) -> bytes:
    """The update-log message of a misc call: ``C8 90 [nsiz][argc][name]{[asiz][arg]}* [result]``."""
    parts = [_HDR_KV.pack(MAGIC, CMD_MISC, len(name), len(args)), name]
    for arg in args:
        parts.append(_pack_u32(len(arg)))
        parts.append(arg)
    parts.append(REPLY_OK if ok else REPLY_FAIL)
    return b"".join(parts)


def parse_log_message(message: Buffer) -> Tuple[Request, bool]:
    """An update-log / replication message -> (the logged request, whether it succeeded)."""
    message = bytes(message)
    if len(message) < 3 or message[0] != MAGIC:
        raise ProtocolError("Tokyo Tyrant update-log message does not start with 0xC8")
    ok = message[-1] == 0
    body = message[:-1]
    if body[1] == CMD_MISC:
        if len(body) < 10:
            raise ProtocolError("Tokyo Tyrant update-log misc message is truncated")
        nsiz, count = _I32X2.unpack_from(body, 2)
        # Re-frame as a request with opts 0 so the one request parser reads it.
        body = _HDR_MISC.pack(MAGIC, CMD_MISC, nsiz, 0, count) + body[10:]
    parsed = parse_request(body)
    if parsed is None or parsed[1] != len(body):
        raise ProtocolError("Tokyo Tyrant update-log message is truncated or has trailing bytes")
    return parsed[0], ok


# --------------------------------------------------------------------------------------------
# The compiled twins (kt._speedups.client_codecs)
# --------------------------------------------------------------------------------------------
# The pure-Python functions stay reachable as ``_py_<name>``: the compiled versions hand every
# unusual case to them, and the tests compare both.
_py_encode_mget_keys = encode_mget_keys
_py_encode_putlist = encode_putlist
_py_encode_misc = encode_misc
_py_encode_outlist = encode_outlist
_py_encode_putnr_items = encode_putnr_items
_py_encode_putnr_bulk = encode_putnr_bulk
_py_encode_get = encode_get
_py_encode_put = encode_put
_py_parse_mget = parse_mget
_py_parse_mget_dict = parse_mget_dict
_py_parse_misc = parse_misc
_py_parse_get = parse_get
_py_parse_put = parse_put

TWINS = {  # compiled name -> pure-Python twin
    "tt_encode_mget_keys": _py_encode_mget_keys,
    "tt_encode_putlist": _py_encode_putlist,
    "tt_encode_misc": _py_encode_misc,
    "tt_encode_outlist": _py_encode_outlist,
    "tt_encode_putnr_items": _py_encode_putnr_items,
    "tt_encode_get": _py_encode_get,
    "tt_encode_put": _py_encode_put,
    "tt_parse_mget": _py_parse_mget,
    "tt_parse_mget_dict": _py_parse_mget_dict,
    "tt_parse_misc": _py_parse_misc,
    "tt_parse_get": _py_parse_get,
    "tt_parse_put": _py_parse_put,
}

_native = load("client_codecs")
if _native is not None:
    encode_mget_keys = _native.tt_encode_mget_keys  # noqa: F811
    encode_putlist = _native.tt_encode_putlist  # noqa: F811
    encode_misc = _native.tt_encode_misc  # noqa: F811
    encode_outlist = _native.tt_encode_outlist  # noqa: F811
    encode_putnr_items = _native.tt_encode_putnr_items  # noqa: F811
    encode_get = _native.tt_encode_get  # noqa: F811
    encode_put = _native.tt_encode_put  # noqa: F811
    parse_mget = _native.tt_parse_mget  # noqa: F811
    parse_mget_dict = _native.tt_parse_mget_dict  # noqa: F811
    parse_misc = _native.tt_parse_misc  # noqa: F811
    parse_get = _native.tt_parse_get  # noqa: F811
    parse_put = _native.tt_parse_put  # noqa: F811
