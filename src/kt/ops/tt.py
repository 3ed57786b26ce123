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

import datetime
import itertools
import time
from functools import partial
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Sequence, Tuple, Union

from kt.errors import ServerError
from kt.ops import Operation, Plan, nothing
from kt.ops.codec import Codec, check_int
from kt.protocol import tt_binary as tt
from kt.serializers import KT_BINARY, KT_NONE, TT_TABLE, encode_key

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


get_bytes = get_raw


def set(c: Codec, key: Key, value: Any, no_reply: bool = False) -> Operation:
    if no_reply:
        return setnr(c, key, value)
    return (  # a Plan as a bare tuple: the hot path
        _encode_put(key.encode("utf-8") if type(key) is str else c.key(key), c.encode_value(value)),
        _parse_put,
        None,
        True,
    )


def add(c: Codec, key: Key, value: Any, encode_value: bool = True) -> Plan:
    return Plan(tt.encode_putkeep(c.key(key), _value(c, value, encode_value)), tt.parse_putkeep)


def append(c: Codec, key: Key, value: Any, encode_value: bool = True) -> Plan:
    return Plan(tt.encode_putcat(c.key(key), _value(c, value, encode_value)), tt.parse_putcat)


def addshl(c: Codec, key: Key, value: Any, width: int, encode_value: bool = True) -> Plan:
    width = check_int(width, "width")
    return Plan(tt.encode_putshl(c.key(key), _value(c, value, encode_value), width), tt.parse_putshl)


def setnr(c: Codec, key: Key, value: Any) -> Plan:
    return Plan(tt.encode_putnr(c.key(key), c.encode_value(value)), None)  # type: ignore[arg-type]


def setnr_bulk(c: Codec, __data: Optional[Dict[Any, Any]] = None, /, **kwargs: Any) -> Optional[Plan]:
    """None when there is nothing to send."""
    data = merge(__data, kwargs, "setnr_bulk")
    if not data:
        return None
    return Plan(tt.encode_putnr_items(data.items(), encode_key, c.encode_value, c.bytes_pass_through), None)  # type: ignore[arg-type]


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


def get_part(
    c: Codec, key: Key, start: Optional[int] = None, end: Optional[int] = None, decode_value: bool = True
) -> Plan:
    args = [c.key(key)]
    if start is not None or end is not None:
        args.append(b"%d" % (0 if start is None else check_int(start, "start")))
    if end is not None:
        args.append(b"%d" % check_int(end, "end"))
    decode = decode_value and c.serializer in (KT_BINARY, KT_NONE)

    def finish(result: Optional[List[bytes]]) -> Any:
        if not result:
            return False
        return c.decode_value(result[0]) if decode else result[0]

    return _misc(b"getpart", args, _NO_LOG, finish, True)


# -- bulk ---------------------------------------------------------------------------------


# mget replies parsed straight into the result dict, by (text_keys, text_values).
_MGET_DICT = {flags: partial(tt.parse_mget_dict, text_keys=flags[0], text_values=flags[1])
              for flags in itertools.product((False, True), repeat=2)}


def get_bulk(c: Codec, keys: Iterable[Key], decode_values: bool = True) -> Plan:
    data = tt.encode_mget_keys(keys, encode_key)
    flags = c.text_flags(decode_values)
    if flags is not None:
        return Plan(data, _MGET_DICT[flags], None, True)
    return Plan(data, tt.parse_mget, partial(c.records, raw_values=False), True)


def get_bulk_raw(c: Codec, keys: Iterable[Key]) -> Plan:
    return Plan(tt.encode_mget(c.keys(keys)), tt.parse_mget, partial(c.records, raw_values=True), True)


def set_bulk(
    c: Codec, __data: Optional[Dict[Any, Any]] = None, /, no_reply: bool = False, encode_values: bool = True,
    **kwargs: Any,
) -> Operation:
    """``no_reply``: no-reply puts (a plan whose ``parse`` is None; None when there is nothing)."""
    data = merge(__data, kwargs, "set_bulk")
    encode = c.encode_value if encode_values else partial(_plain, c)
    pass_through = c.bytes_pass_through and encode_values
    if no_reply:
        if not data:
            return None  # type: ignore[return-value]
        return Plan(tt.encode_putnr_items(data.items(), encode_key, encode, pass_through), None)  # type: ignore[arg-type]
    if not data:
        return nothing(True)
    # Not idempotent: on a B+ tree database with duplicates a repeated putlist adds records.
    request = tt.encode_putlist(data.items(), encode_key, encode, pass_through)
    return Plan(request, tt.parse_misc, _succeeded, False)


def update(
    c: Codec,
    __data: Optional[Dict[Any, Any]] = None, /,
    db: Any = None,
    expire_time: Any = None,
    no_reply: bool = False,
    encode_values: bool = True,
    **kwargs: Any,
) -> Operation:
    if db is not None or expire_time is not None:
        raise ValueError("Tokyo Tyrant has no numbered databases and no expiry: pass db/expire_time as None")
    return set_bulk(c, __data, no_reply=no_reply, encode_values=encode_values, **kwargs)


_EMPTY_OUTLIST = len(tt.encode_misc(b"outlist", []))


def remove_bulk(c: Codec, keys: Iterable[Key]) -> Operation:
    request = tt.encode_outlist(keys, encode_key)
    if len(request) == _EMPTY_OUTLIST:
        return nothing(True)
    return Plan(request, tt.parse_misc, _succeeded, True)


def setdup(c: Codec, key: Key, value: Any, encode_value: bool = True) -> Plan:
    return _misc_ok(b"putdup", [c.key(key), _value(c, value, encode_value)])


def setdupback(c: Codec, key: Key, value: Any, encode_value: bool = True) -> Plan:
    return _misc_ok(b"putdupback", [c.key(key), _value(c, value, encode_value)])


# -- misc, script -------------------------------------------------------------------------


def misc(
    c: Codec, cmd: Union[str, bytes], args: Optional[Sequence[Any]] = None, update_log: bool = True,
    decode_values: bool = False,
) -> Plan:
    """``decode_values``: the result items deserialized (kt's switch), else bytes."""
    name = c.arg(cmd, "misc command")
    encoded = [] if args is None else [c.arg(arg, "misc argument") for arg in args]

    def decoded(result: Optional[List[bytes]]) -> Optional[List[Any]]:
        return None if result is None else [c.decode_value(item) for item in result]

    return _misc(
        name, encoded, _LOG if update_log else _NO_LOG, decoded if decode_values else None,
        name in READ_ONLY_MISC,
    )


def script(
    c: Codec,
    name: Union[str, bytes],
    key: Optional[Key] = None,
    value: Any = None,
    lock_records: bool = False,
    lock_all: bool = False,
    encode_value: bool = True,
    decode_result: bool = False,
    decode_value: Optional[bool] = None,
    as_list: bool = False,
    as_dict: bool = False,
    as_int: bool = False,
) -> Plan:
    """``decode_value`` is kt's name for ``decode_result``.  A reply of ``true``/``false`` is
    True/False (as kt gave them); ``as_list``: the reply's lines; ``as_dict``: its
    ``key\tvalue`` lines; ``as_int``: the reply as an int (None when empty)."""
    opts = (tt.EXT_LOCK_RECORD if lock_records else 0) | (tt.EXT_LOCK_GLOBAL if lock_all else 0)
    kbytes = b"" if key is None else c.key(key)
    if value is None:
        vbytes = b""
    elif encode_value:
        vbytes = c.encode_value(value)
    else:
        vbytes = c.arg(value, "script value")
    data = tt.encode_ext(c.arg(name, "script name"), kbytes, vbytes, opts)
    decode = decode_result if decode_value is None else decode_value
    return Plan(data, tt.parse_ext, partial(_script_result, c, decode, as_list, as_dict, as_int))


def _script_result(c: Codec, decode: bool, as_list: bool, as_dict: bool, as_int: bool, raw: bytes) -> Any:
    if raw == b"true" or raw == b"false":
        return raw == b"true"
    if as_int:
        return int(raw) if raw else None
    if as_list or as_dict:
        lines = raw.rstrip(b"\n").split(b"\n") if raw else []
        convert = c.decode_value if decode else bytes
        if as_dict:
            return {convert(k): convert(v) for k, _, v in (line.partition(b"\t") for line in lines)}
        return [convert(line) for line in lines]
    return c.decode_value(raw) if decode else raw


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


def get_range(
    c: Codec, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0,
    decode_values: bool = True,
) -> Plan:
    """A dict holds one value per key: with duplicate keys the last record's (see get_rangelist)."""

    def finish(result: Optional[List[bytes]]) -> Dict[Any, Any]:
        if result is None:
            raise _fail("range failed (only B+ tree databases support ranges)", "range")
        return dict(_pairs(c, result, decode_values))

    return _misc(b"range", _range_args(c, start, stop, max_keys), _NO_LOG, finish, True)


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
        return c.decode_key_list(list(dict.fromkeys(result[::2])))  # a key with duplicates once

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


def keys(c: Codec) -> Generator[Plan, Any, List[Any]]:
    """One key per record: a key with duplicates (B+ tree) comes once per record."""
    return c.decode_key_list([k for k, _ in (yield from _records(c, False))])


def items(c: Codec, start_key: Optional[Key] = None) -> Generator[Plan, Any, List[Tuple[Any, Any]]]:
    """Every record (from ``start_key`` on, walking the server's iterator, when given)."""
    if start_key is None:
        records = yield from _records(c)
    else:
        records = yield from _iterate_from(c, start_key)
    decode_key = c.decode_key
    decode = c.decode_value
    return [(decode_key(k), decode(v)) for k, v in records]


def values(c: Codec) -> Generator[Plan, Any, List[Any]]:
    decode = c.decode_value
    return [decode(v) for _, v in (yield from _records(c))]


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


# -- coleifer/kt 0.9.6 compatibility: kt's extra arguments and methods --------------------
# (kt's `encode_value=False` sends str/bytes/numbers as text; `decode_value(s)=False` returns
# bytes.)


def _plain(c: Codec, value: Any) -> bytes:
    """A value sent without the serializer (kt's ``encode_value=False``)."""
    return c.arg(value, "value")


def _value(c: Codec, value: Any, encode_value: bool) -> bytes:
    return c.encode_value(value) if encode_value else _plain(c, value)


def set_bytes(c: Codec, key: Key, value: Any, no_reply: bool = False) -> Plan:
    """``set`` without the serializer; ``no_reply``: a ``putnr`` plan (``parse`` None)."""
    if no_reply:
        return Plan(tt.encode_putnr(c.key(key), _plain(c, value)), None)  # type: ignore[arg-type]
    return Plan(_encode_put(c.key(key), _plain(c, value)), _parse_put, None, True)


def seize(c: Codec, key: Key, decode_value: bool = True) -> Generator[Plan, Any, Any]:
    """The value at ``key`` (None when missing), removing the record: get, then out."""
    bkey = c.key(key)
    raw = yield Plan(_encode_get(bkey), _parse_get, None, True)
    if raw is None:
        return None
    yield Plan(tt.encode_out(bkey), tt.parse_out)
    return c.decode_value(raw) if decode_value else raw


pop = seize


def _restore_ts(timestamp: Any) -> int:
    """Microseconds since the epoch, from an int or a (local-time, naive) ``datetime``."""
    if isinstance(timestamp, datetime.datetime):
        return int(time.mktime(timestamp.timetuple())) * 1000000 + timestamp.microsecond
    return check_int(timestamp, "timestamp")


def restore(c: Codec, path: Union[str, bytes], timestamp: Any, options: int = 0) -> Plan:
    """Replay the update logs in ``path`` from ``timestamp`` on."""
    data = tt.encode_restore(c.arg(path, "path"), _restore_ts(timestamp), check_int(options, "options"))
    return Plan(data, tt.parse_ok)


def set_master(c: Codec, host: Union[str, bytes], port: int, timestamp: Any, options: int = 0) -> Plan:
    """Make the server a replica of ``host:port`` from ``timestamp`` on."""
    data = tt.encode_setmst(c.arg(host, "host"), check_int(port, "port"), _restore_ts(timestamp),
                            check_int(options, "options"))
    return Plan(data, tt.parse_ok)


def clear_cache(c: Codec) -> Plan:
    return _misc(b"cacheclear", [], _NO_LOG, _succeeded, True)


def defragment(c: Codec, nsteps: Optional[int] = None) -> Plan:
    args = [] if nsteps is None else [b"%d" % check_int(nsteps, "nsteps")]
    return _misc_ok(b"defrag", args, True)


def _pairs(c: Codec, items: List[bytes], decode_values: bool) -> List[Tuple[Any, Any]]:
    decode_key = c.decode_key
    if not decode_values:
        return [(decode_key(k), v) for k, v in zip(items[::2], items[1::2])]
    decode = c.decode_value
    return [(decode_key(k), decode(v)) for k, v in zip(items[::2], items[1::2])]


def _range_args(c: Codec, start: Optional[Key], stop: Optional[Key], max_keys: int) -> List[bytes]:
    args = [b"" if start is None else c.key(start), b"%d" % (check_int(max_keys or 0, "max_keys"))]
    if stop is not None:
        args.append(c.key(stop))
    return args


def get_rangelist(
    c: Codec, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0,
    decode_values: bool = True,
) -> Plan:
    """Like ``get_range`` as a list of pairs, which keeps the records of duplicate keys."""

    def finish(result: Optional[List[bytes]]) -> List[Tuple[Any, Any]]:
        if result is None:
            raise _fail("range failed (only B+ tree databases support ranges)", "range")
        return _pairs(c, result, decode_values)

    return _misc(b"range", _range_args(c, start, stop, max_keys), _NO_LOG, finish, True)


def match_regexlist(
    c: Codec, regex: Union[str, bytes], max_keys: Optional[int] = None, decode_values: bool = True
) -> Plan:
    """The records whose key matches ``regex``, as ``(key, value)`` pairs."""
    args = [c.arg(regex, "regex")]
    if max_keys is not None:
        args.append(b"%d" % check_int(max_keys, "max_keys"))

    def finish(result: Optional[List[bytes]]) -> List[Tuple[Any, Any]]:
        if result is None:
            raise _fail(f"regex {regex!r} was rejected by the server", "regex")
        return _pairs(c, result, decode_values)

    return _misc(b"regex", args, _NO_LOG, finish, True)


def keys_fast(c: Codec) -> Plan:
    """Every distinct key in one request (``fwmkeys``)."""
    return Plan(tt.encode_fwmkeys(b"", -1), tt.parse_fwmkeys, c.decode_key_list, True)


def items_fast(c: Codec) -> Plan:
    """B+ tree: every record in one request (misc ``range``), duplicates included."""
    return get_rangelist(c)


def _records(c: Codec, values: bool = True) -> Generator[Plan, Any, List[Tuple[bytes, bytes]]]:
    """Every record as wire pairs, the duplicate keys of a B+ tree included.

    A B+ tree answers misc ``range`` in chunks of ITEMS_CHUNK records; each chunk starts at
    the last key seen (a range includes its start), skipping the records of that key already
    taken.  Other databases refuse ``range``; their keys are unique, so ``fwmkeys`` and
    ``mget`` in chunks give every record (values left empty when ``values`` is False).
    """
    records: List[Tuple[bytes, bytes]] = []
    start, skip = b"", 0
    while True:
        chunk = ITEMS_CHUNK
        items = yield _misc(b"range", [start, b"%d" % (skip + chunk)], _NO_LOG, None, True)
        if items is None:
            break  # not a B+ tree
        pairs = list(zip(items[::2], items[1::2]))
        records += pairs[skip:]
        if len(pairs) < skip + chunk:
            return records  # the range ran out
        start = records[-1][0]
        skip = 0
        for key, _value in reversed(records):
            if key != start:
                break
            skip += 1
    keys = yield Plan(tt.encode_fwmkeys(b"", -1), tt.parse_fwmkeys, None, True)
    if not values:
        return [(k, b"") for k in keys]
    for offset in range(0, len(keys), ITEMS_CHUNK):
        records += yield Plan(tt.encode_mget(keys[offset : offset + ITEMS_CHUNK]), tt.parse_mget, None, True)
    return records


def _iterate_from(c: Codec, start_key: Key) -> Generator[Plan, Any, List[Tuple[bytes, bytes]]]:
    """Records from ``start_key`` on, walking the server's one shared iterator."""
    if (yield _misc(b"iterinit", [c.key(start_key)], _NO_LOG, None, True)) is None:
        return []
    records = []
    while True:
        item = yield _misc(b"iternext", [], _NO_LOG)
        if not item:
            return records
        records.append((item[0], item[1]))
