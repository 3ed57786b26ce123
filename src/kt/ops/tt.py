"""Every Tokyo Tyrant operation, once: argument checks, request bytes, reply shaping.

Each function takes the client's :class:`~kt.ops.codec.Codec` followed by exactly the
arguments of the public method of the same name, and returns a :class:`~kt.ops.Plan` or a
generator of plans (see :mod:`kt.ops`).  ``TokyoTyrant`` (sync) and ``kt.aio.TokyoTyrant``
only run them.  ``setnr``/``setnr_bulk`` return a plan whose ``parse`` is None: the request
has no reply, and the drivers send it without waiting.

``idempotent``: True for reads and for writes whose repeat leaves the same stored state and
reply (``put``, ``outlist``, ``vanish``, ``sync``, ``optimize``, ``copy``, read-only ``misc``
and ``search``).  Writes whose reply or effect depends on the previous state (``putkeep``,
``putcat``, ``out``, ``addint``, ``ext``, ``genuid``, ``iternext``, ``putlist`` on a B+ tree
with duplicates, ``setindex``...) and other ``misc`` calls are never resent (the table is in
docs/reliability.md).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Sequence, Tuple, Union

from kt.errors import ServerError
from kt.ops import Operation, Plan, nothing
from kt.ops.codec import Codec, check_int
from kt.protocol import tt_binary as tt
from kt.serializers import KT_BINARY, KT_NONE, TT_TABLE

Key = Union[str, bytes]

ITEMS_CHUNK = 1000
SEARCH_CMDS = (None, "count", "get", "out")
INDEX_KEEP = tt.ITKEEP
INDEX_OPTIMIZE = tt.ITOPT
INDEX_VOID = tt.ITVOID

_encode_get = tt.encode_get
_encode_put = tt.encode_put
_parse_get = tt.parse_get
_parse_put = tt.parse_put
_LOG = 0
_NO_LOG = tt.MISC_NO_UPDATE_LOG
# misc functions that only read: safe to resend after a dropped connection.
READ_ONLY_MISC = frozenset((b"get", b"getlist", b"getpart", b"range", b"regex", b"error"))


def merge(data: Optional[Dict[Any, Any]], kwargs: Dict[str, Any], what: str) -> Dict[Any, Any]:
    if data is None:
        return kwargs
    if not hasattr(data, "items"):
        raise TypeError(f"{what} takes a mapping of keys to values, not {type(data).__name__}")
    if kwargs:
        merged = dict(data)
        merged.update(kwargs)
        return merged
    return data


def _misc(
    name: bytes, args: List[bytes], opts: int, finish: Optional[Callable[[Any], Any]] = None,
    idempotent: bool = False,
) -> Plan:
    return Plan(tt.encode_misc(name, args, opts), tt.parse_misc, finish, idempotent)


def _succeeded(result: Optional[List[bytes]]) -> bool:
    return result is not None


def _misc_ok(name: bytes, args: List[bytes], idempotent: bool = False) -> Plan:
    """A logged misc call whose result is whether it succeeded."""
    return _misc(name, args, _LOG, _succeeded, idempotent)


def _fail(message: str, procedure: str) -> ServerError:
    return ServerError(message, code=1, procedure=procedure)


# -- single records -----------------------------------------------------------------------


def get(c: Codec, key: Key) -> Operation:
    return (  # a Plan as a bare tuple: the hot path
        _encode_get(key.encode("utf-8") if type(key) is str else c.key(key)),
        _parse_get,
        None if c.raw_values else c.decode_optional,
        True,
    )


def get_raw(c: Codec, key: Key) -> Plan:
    return Plan(_encode_get(c.key(key)), _parse_get, None, True)


def set(c: Codec, key: Key, value: Any) -> Operation:
    return (  # a Plan as a bare tuple: the hot path
        _encode_put(key.encode("utf-8") if type(key) is str else c.key(key), c.encode_value(value)),
        _parse_put,
        None,
        True,
    )


def add(c: Codec, key: Key, value: Any) -> Plan:
    return Plan(tt.encode_putkeep(c.key(key), c.encode_value(value)), tt.parse_putkeep)


def append(c: Codec, key: Key, value: Any) -> Plan:
    return Plan(tt.encode_putcat(c.key(key), c.encode_value(value)), tt.parse_putcat)


def addshl(c: Codec, key: Key, value: Any, width: int) -> Plan:
    width = check_int(width, "width")
    return Plan(tt.encode_putshl(c.key(key), c.encode_value(value), width), tt.parse_putshl)


def setnr(c: Codec, key: Key, value: Any) -> Plan:
    return Plan(tt.encode_putnr(c.key(key), c.encode_value(value)), None)  # type: ignore[arg-type]


def setnr_bulk(c: Codec, __data: Optional[Dict[Any, Any]] = None, /, **kwargs: Any) -> Optional[Plan]:
    """None when there is nothing to send."""
    data = merge(__data, kwargs, "setnr_bulk")
    if not data:
        return None
    encode = c.encode_value
    return Plan(tt.encode_putnr_bulk([(c.key(k), encode(v)) for k, v in data.items()]), None)  # type: ignore[arg-type]


def _one_if_removed(removed: bool) -> int:
    return 1 if removed else 0


def remove(c: Codec, key: Key) -> Plan:
    return Plan(tt.encode_out(c.key(key)), tt.parse_out, _one_if_removed)


def exists(c: Codec, key: Key) -> Plan:
    return Plan(tt.encode_vsiz(c.key(key)), tt.parse_vsiz, _succeeded, True)


def length(c: Codec, key: Key) -> Plan:
    return Plan(tt.encode_vsiz(c.key(key)), tt.parse_vsiz, None, True)


def incr(c: Codec, key: Key, n: int = 1) -> Plan:
    return Plan(tt.encode_addint(c.key(key), check_int(n, "n")), tt.parse_addint)


def incr_double(c: Codec, key: Key, n: float = 1.0) -> Plan:
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"n must be a number, not {type(n).__name__}")
    return Plan(tt.encode_adddouble(c.key(key), n), tt.parse_adddouble)


def get_part(c: Codec, key: Key, start: Optional[int] = None, end: Optional[int] = None) -> Plan:
    args = [c.key(key)]
    if start is not None or end is not None:
        args.append(b"%d" % (0 if start is None else check_int(start, "start")))
    if end is not None:
        args.append(b"%d" % check_int(end, "end"))
    decode = c.serializer in (KT_BINARY, KT_NONE)

    def finish(result: Optional[List[bytes]]) -> Any:
        if not result:
            return False
        return c.decode_value(result[0]) if decode else result[0]

    return _misc(b"getpart", args, _NO_LOG, finish, True)


# -- bulk ---------------------------------------------------------------------------------


def get_bulk(c: Codec, keys: Iterable[Key]) -> Plan:
    finish = partial(c.records, raw_values=c.raw_values)
    return Plan(tt.encode_mget(c.keys(keys)), tt.parse_mget, finish, True)


def get_bulk_raw(c: Codec, keys: Iterable[Key]) -> Plan:
    return Plan(tt.encode_mget(c.keys(keys)), tt.parse_mget, partial(c.records, raw_values=True), True)


def set_bulk(c: Codec, __data: Optional[Dict[Any, Any]] = None, /, **kwargs: Any) -> Operation:
    data = merge(__data, kwargs, "set_bulk")
    if not data:
        return nothing(True)
    encode = c.encode_value
    # Not idempotent: on a B+ tree database with duplicates a repeated putlist adds records.
    return _misc_ok(b"putlist", [part for k, v in data.items() for part in (c.key(k), encode(v))])


def update(
    c: Codec,
    __data: Optional[Dict[Any, Any]] = None, /,
    db: Any = None,
    expire_time: Any = None,
    **kwargs: Any,
) -> Operation:
    if db is not None or expire_time is not None:
        raise ValueError("Tokyo Tyrant has no numbered databases and no expiry: pass db/expire_time as None")
    return set_bulk(c, __data, **kwargs)


def remove_bulk(c: Codec, keys: Iterable[Key]) -> Operation:
    args = c.keys(keys)
    if not args:
        return nothing(True)
    return _misc_ok(b"outlist", args, True)


def setdup(c: Codec, key: Key, value: Any) -> Plan:
    return _misc_ok(b"putdup", [c.key(key), c.encode_value(value)])


def setdupback(c: Codec, key: Key, value: Any) -> Plan:
    return _misc_ok(b"putdupback", [c.key(key), c.encode_value(value)])


# -- misc, script -------------------------------------------------------------------------


def misc(
    c: Codec, cmd: Union[str, bytes], args: Optional[Sequence[Any]] = None, update_log: bool = True
) -> Plan:
    name = c.arg(cmd, "misc command")
    encoded = [] if args is None else [c.arg(arg, "misc argument") for arg in args]
    return _misc(name, encoded, _LOG if update_log else _NO_LOG, None, name in READ_ONLY_MISC)


def script(
    c: Codec,
    name: Union[str, bytes],
    key: Optional[Key] = None,
    value: Any = None,
    lock_records: bool = False,
    lock_all: bool = False,
    encode_value: bool = True,
    decode_result: bool = False,
) -> Plan:
    opts = (tt.EXT_LOCK_RECORD if lock_records else 0) | (tt.EXT_LOCK_GLOBAL if lock_all else 0)
    kbytes = b"" if key is None else c.key(key)
    if value is None:
        vbytes = b""
    elif encode_value:
        vbytes = c.encode_value(value)
    else:
        vbytes = c.arg(value, "script value")
    data = tt.encode_ext(c.arg(name, "script name"), kbytes, vbytes, opts)
    return Plan(data, tt.parse_ext, c.decode_value if decode_result else None)


# -- database -----------------------------------------------------------------------------


def clear(c: Codec) -> Plan:
    return Plan(tt.encode_vanish(), tt.parse_ok, None, True)


def status(c: Codec) -> Plan:
    return Plan(tt.encode_stat(), tt.parse_stat, None, True)


def count(c: Codec) -> Plan:
    return Plan(tt.encode_rnum(), tt.parse_rnum, None, True)


def size(c: Codec) -> Plan:
    return Plan(tt.encode_size(), tt.parse_size, None, True)


def _error(result: Optional[List[bytes]]) -> Optional[Tuple[int, str]]:
    if not result:
        return None
    text = result[0].decode("utf-8", "replace")
    code, _sep, message = text.partition(": ")
    try:
        return int(code), message
    except ValueError:
        return -1, text


def error(c: Codec) -> Plan:
    return _misc(b"error", [], _NO_LOG, _error, True)


def optimize(c: Codec, options: Union[str, bytes] = "") -> Plan:
    return Plan(tt.encode_optimize(c.arg(options, "options")), tt.parse_ok, None, True)


def synchronize(c: Codec) -> Plan:
    return Plan(tt.encode_sync(), tt.parse_ok, None, True)


def copy(c: Codec, path: Union[str, bytes]) -> Plan:
    return Plan(tt.encode_copy(c.arg(path, "path")), tt.parse_ok, None, True)


def _uid(result: Optional[List[bytes]]) -> int:
    if not result:
        raise _fail("genuid failed (only table databases generate IDs)", "genuid")
    return int(result[0])


def genuid(c: Codec) -> Plan:
    return _misc(b"genuid", [], _LOG, _uid)


# -- ranges and iteration -----------------------------------------------------------------


def _pairs_to_dict(c: Codec, items: List[bytes]) -> Dict[Any, Any]:
    decode_key = c.decode_key
    decode = c.decode_value
    return {decode_key(k): decode(v) for k, v in zip(items[::2], items[1::2])}


def get_range(c: Codec, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0) -> Plan:
    args = [b"" if start is None else c.key(start), b"%d" % (check_int(max_keys or 0, "max_keys"))]
    if stop is not None:
        args.append(c.key(stop))

    def finish(result: Optional[List[bytes]]) -> Dict[Any, Any]:
        if result is None:
            raise _fail("range failed (only B+ tree databases support ranges)", "range")
        return _pairs_to_dict(c, result)

    return _misc(b"range", args, _NO_LOG, finish, True)


def match_prefix(c: Codec, prefix: Key, max_keys: Optional[int] = 1024) -> Plan:
    limit = -1 if max_keys is None else check_int(max_keys, "max_keys")
    return Plan(tt.encode_fwmkeys(c.key(prefix), limit), tt.parse_fwmkeys, c.decode_key_list, True)


def match_regex(c: Codec, regex: Union[str, bytes], max_keys: Optional[int] = 1024) -> Plan:
    args = [c.arg(regex, "regex")]
    if max_keys is not None:
        args.append(b"%d" % check_int(max_keys, "max_keys"))

    def finish(result: Optional[List[bytes]]) -> List[Any]:
        if result is None:
            raise _fail(f"regex {regex!r} was rejected by the server", "regex")
        return c.decode_key_list(result[::2])

    return _misc(b"regex", args, _NO_LOG, finish, True)


def iter_from(c: Codec, start_key: Key) -> Generator[Plan, Any, Dict[Any, Any]]:
    """Walks the server's one shared iterator (as every Tokyo Tyrant client does)."""
    if (yield _misc(b"iterinit", [c.key(start_key)], _NO_LOG, None, True)) is None:
        return {}
    result = {}
    while True:
        item = yield _misc(b"iternext", [], _NO_LOG)
        if not item:
            return result
        result[c.decode_key(item[0])] = c.decode_value(item[1])


def keys(c: Codec) -> Plan:
    return Plan(tt.encode_fwmkeys(b"", -1), tt.parse_fwmkeys, c.decode_key_list, True)


def items(c: Codec) -> Generator[Plan, Any, List[Tuple[Any, Any]]]:
    """Every record, fetched in chunks of ITEMS_CHUNK keys with ``mget``."""
    all_keys = yield Plan(tt.encode_fwmkeys(b"", -1), tt.parse_fwmkeys, None, True)
    decode_key = c.decode_key
    decode = c.decode_value
    result = []
    for offset in range(0, len(all_keys), ITEMS_CHUNK):
        chunk = all_keys[offset : offset + ITEMS_CHUNK]
        records = yield Plan(tt.encode_mget(chunk), tt.parse_mget, None, True)
        result.extend((decode_key(k), decode(v)) for k, v in records)
    return result


def values(c: Codec) -> Generator[Plan, Any, List[Any]]:
    return [value for _, value in (yield from items(c))]


# -- table databases ----------------------------------------------------------------------


def set_index(c: Codec, name: Union[str, bytes], index_type: int, check_exists: bool = False) -> Plan:
    kind = check_int(index_type, "index_type")
    if check_exists:
        kind |= INDEX_KEEP

    def finish(result: Optional[List[bytes]]) -> bool:
        if result is None and check_exists:
            raise _fail(
                f"setindex {name!r} failed: the index exists or the database is not a table", "setindex"
            )
        return result is not None

    return _misc(b"setindex", [c.arg(name, "column"), b"%d" % kind], _LOG, finish)


def optimize_index(c: Codec, name: Union[str, bytes]) -> Plan:
    return _misc_ok(b"setindex", [c.arg(name, "column"), b"%d" % INDEX_OPTIMIZE])


def delete_index(c: Codec, name: Union[str, bytes]) -> Plan:
    return _misc_ok(b"setindex", [c.arg(name, "column"), b"%d" % INDEX_VOID])


def _search_record(c: Codec, item: bytes) -> Tuple[Any, Dict[Any, Any]]:
    pkey, columns = tt.parse_search_record(item)
    record = TT_TABLE.decode(tt.join_columns(columns)) if columns else {}
    return (None if pkey is None else c.decode_key(pkey)), record


def search(c: Codec, expressions: Iterable[Sequence[Any]], cmd: Optional[str] = None) -> Plan:
    if cmd not in SEARCH_CMDS:
        raise ValueError(f"search cmd must be one of None, 'count', 'get', 'out', not {cmd!r}")
    args = []
    for expression in expressions:
        if isinstance(expression, (str, bytes)):
            expression = (expression,)
        args.append(tt.query_arg(*expression))
    if cmd is not None:
        args.append(cmd.encode("ascii"))

    def finish(result: Optional[List[bytes]]) -> Any:
        if result is None:
            raise _fail("search failed (only table databases can be searched)", "search")
        result, _hint = tt.split_hint(result)
        if cmd is None:
            return c.decode_key_list(result)
        if cmd == "count":
            return tt.parse_search_count(result)
        if cmd == "get":
            return [_search_record(c, item) for item in result]
        return True

    if cmd == "out":
        return _misc(b"search", args, _LOG, finish)
    return _misc(b"search", args, _NO_LOG, finish, True)
