"""Every Kyoto Tycoon operation, once: argument checks, request bytes, reply shaping.

Each function takes the client's :class:`~kt.ops.codec.Codec` followed by exactly the
arguments of the public method of the same name, and returns a :class:`~kt.ops.Plan` (see
:mod:`kt.ops`).  ``KyotoTycoon`` (sync) and ``kt.aio.KyotoTycoon`` only run them.

Single-record and bulk get/set/remove use KT's binary protocol; everything else is a
TSV-RPC call over HTTP/1.1.  Cursor operations take a :class:`CursorState` (the cursor's id,
database and position), which their ``finish`` steps keep up to date.

``idempotent``: True for reads and for writes whose repeat leaves the same stored state and
the same reply (``set``, ``set_bulk``, ``clear``...); the transport may resend those after a
dropped connection.  Writes whose reply or effect depends on the previous state (``add``,
``remove``, ``incr``, ``cas``, ``seize``, ``append``, ``script``) are never resent.
"""

from __future__ import annotations

import datetime
import itertools
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from kt.errors import ScriptError, ServerError
from kt.expiry import NO_EXPIRY_XT, XT_MAX, ExpireTime, to_binary_xt, to_xt
from kt.ops import Operation, Plan, nothing
from kt.ops.codec import Codec, check_db
from kt.protocol import http, kt_rpc
from kt.protocol.kt_binary import (
    DATA_MAX_SIZE,
    MAGIC_GET_BULK,
    MAGIC_REMOVE_BULK,
    encode_get_bulk,
    encode_get_one,
    encode_key_bulk,
    encode_play_script,
    encode_remove_bulk,
    encode_set_bulk,
    encode_set_bulk_items,
    encode_set_one,
    parse_get_bulk_dict,
    parse_get_bulk_pairs,
    parse_get_bulk_reply,
    parse_get_value_reply,
    parse_play_script_reply,
    parse_remove_bulk_reply,
    parse_set_bulk_reply,
)
from kt.serializers import encode_key

_parse_response = http.parse_response
_build_rpc = kt_rpc.build_rpc_request
_EMPTY_BULK = 9  # magic + flags + count: a bulk request with no records
_INT64_LIMIT = 1 << 63

# -- shaping RPC replies ------------------------------------------------------------------


def rpc_outcome(
    response: http.Response, procedure: str, allow_logical: bool = True
) -> Tuple[bool, Dict[bytes, bytes]]:
    """``(ok, output)`` of an RPC reply: 2xx -> True, 450 -> False (when ``allow_logical``),
    anything else raises ServerError with the server's text."""
    status, output = kt_rpc.parse_rpc_response(response)
    if 200 <= status < 300:
        return True, output
    if allow_logical and 450 <= status < 500:
        return False, output
    if b"ERROR" not in output and response.body.strip():
        # Failures before dispatch (e.g. 413) come as text/plain "<code> <reason> (<why>)".
        message = response.body.strip().decode("utf-8", "replace")
    else:
        message = kt_rpc.error_message(output, status)
    raise ServerError(message, code=status, procedure=procedure)


def _ok(procedure: str, response: http.Response) -> bool:
    return rpc_outcome(response, procedure)[0]


_ok_finishers: Dict[str, Callable[[http.Response], bool]] = {}


def _ok_for(procedure: str) -> Callable[[http.Response], bool]:
    """``_ok`` bound to ``procedure`` (made once per procedure name)."""
    try:
        return _ok_finishers[procedure]
    except KeyError:
        return _ok_finishers.setdefault(procedure, partial(_ok, procedure))


def _strict_ok(procedure: str, response: http.Response) -> bool:
    return rpc_outcome(response, procedure, False)[0]


def _output(procedure: str, response: http.Response) -> Dict[bytes, bytes]:
    return rpc_outcome(response, procedure, False)[1]


def rpc(
    c: Codec,
    procedure: str,
    params: List[Tuple[bytes, bytes]],
    db: Optional[int] = None,
    finish: Optional[Callable[[http.Response], Any]] = None,
    idempotent: bool = False,
    use_db: bool = True,
) -> Operation:
    """A TSV-RPC call; ``finish`` defaults to "True on 2xx, False on 450, else raise"."""
    if use_db:
        dbidx = c.default_db if db is None else check_db(db)
        if dbidx:
            params.append((b"DB", b"%d" % dbidx))
    data = _build_rpc(procedure, params, c.host_header)
    if len(data) > DATA_MAX_SIZE:
        check_size(len(data) - data.index(b"\r\n\r\n") - 4, procedure)
    return (data, _parse_response, finish or _ok_for(procedure), idempotent)  # a bare Plan: hot


def check_size(size: int, procedure: str) -> None:
    """ktserver answers 413 and hangs up on a body over 256 MiB: refuse before sending."""
    if size > DATA_MAX_SIZE:
        raise ValueError(
            f"{procedure}: the request body would be over {size} bytes; Kyoto Tycoon accepts "
            f"at most {DATA_MAX_SIZE} (256 MiB)"
        )


def _as_text_dict(output: Mapping[bytes, bytes]) -> Dict[str, str]:
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in output.items()}


def _ranked_keys(output: Mapping[bytes, bytes]) -> List[bytes]:
    """match_* outputs: ``_key -> rank``; the server sorts lines by key, the rank is the order."""
    ranked = []
    for name, rank in output.items():
        if name[:1] == b"_":
            try:
                order = int(rank)
            except ValueError:
                order = 0
            ranked.append((order, name[1:]))
    ranked.sort()
    return [name for _, name in ranked]


def _with_xt(params: List[Tuple[bytes, bytes]], expire_time: ExpireTime) -> List[Tuple[bytes, bytes]]:
    xt = to_xt(expire_time)
    if xt is not None:
        params.append((b"xt", b"%d" % xt))
    return params


# -- binary protocol: single records ------------------------------------------------------


def get(c: Codec, key: Any, db: Optional[int] = None) -> Operation:
    return (  # a Plan as a bare tuple: the hot path
        encode_get_one(
            c.default_db if db is None else check_db(db),
            key.encode("utf-8") if type(key) is str else encode_key(key),
        ),
        parse_get_value_reply,
        None if c.raw_values else c.decode_optional,
        True,
    )


def get_raw(c: Codec, key: Any, db: Optional[int] = None) -> Plan:
    return Plan(get(c, key, db)[0], parse_get_value_reply, None, True)


get_bytes = get_raw


def set(
    c: Codec, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    no_reply: bool = False,
) -> Operation:
    if no_reply:
        return set_no_reply(c, key, value, db, expire_time)
    return (  # a Plan as a bare tuple: the hot path
        encode_set_one(
            c.default_db if db is None else check_db(db),
            key.encode("utf-8") if type(key) is str else encode_key(key),
            value if (type(value) is bytes and c.bytes_pass_through) else c.encode_value(value),
            NO_EXPIRY_XT if expire_time is None else to_binary_xt(expire_time),
        ),
        parse_set_bulk_reply,
        None,
        True,
    )


def set_no_reply(
    c: Codec, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    encode_value: bool = True,
) -> Plan:
    """``set`` with the no-reply flag (``parse`` None: sent without waiting)."""
    v = c.encode_value(value) if encode_value else _plain(c, value)
    xt = NO_EXPIRY_XT if expire_time is None else to_binary_xt(expire_time)
    return Plan(encode_set_one(c.db(db), c.key(key), v, xt, True), None)  # type: ignore[arg-type]


def remove(c: Codec, key: Any, db: Optional[int] = None, no_reply: bool = False) -> Plan:
    return Plan(
        encode_remove_bulk(((c.db(db), c.key(key)),), no_reply),
        None if no_reply else parse_remove_bulk_reply,  # type: ignore[arg-type]
    )


# -- binary protocol: bulk ----------------------------------------------------------------


def get_bulk_raw(c: Codec, keys: Iterable[Any], db: Optional[int] = None) -> Plan:
    data = encode_key_bulk(MAGIC_GET_BULK, keys, c.db(db), encode_key)
    return Plan(data, parse_get_bulk_pairs, partial(c.records, raw_values=True), True)


# get_bulk replies parsed straight into the result dict, by (text_keys, text_values).
_GET_BULK_DICT = {flags: partial(parse_get_bulk_dict, text_keys=flags[0], text_values=flags[1])
                  for flags in itertools.product((False, True), repeat=2)}


def get_bulk(c: Codec, keys: Iterable[Any], db: Optional[int] = None, decode_values: bool = True) -> Plan:
    data = encode_key_bulk(MAGIC_GET_BULK, keys, c.db(db), encode_key)
    flags = c.text_flags(decode_values)
    if flags is not None:
        return Plan(data, _GET_BULK_DICT[flags], None, True)
    return Plan(data, parse_get_bulk_pairs, partial(c.records, raw_values=False), True)


def _zero(_: Any) -> int:
    return 0


def set_bulk(
    c: Codec,
    __data: Optional[Mapping[Any, Any]] = None, /,
    db: Optional[int] = None,
    expire_time: ExpireTime = None,
    no_reply: bool = False,
    encode_values: bool = True,
    **kwargs: Any,
) -> Operation:
    """``no_reply``: a plan whose ``parse`` is None (None when there is nothing to send)."""
    items: Any = __data.items() if __data else ()
    if kwargs:
        items = [*items, *kwargs.items()]
    data = encode_set_bulk_items(
        items, c.db(db), to_binary_xt(expire_time), encode_key,
        c.encode_value if encode_values else partial(_plain, c), no_reply,
        bytes_pass_through=c.bytes_pass_through or not encode_values,
    )
    if len(data) == _EMPTY_BULK:
        return None if no_reply else nothing(0)  # type: ignore[return-value]
    return Plan(data, None if no_reply else parse_set_bulk_reply, None, True)  # type: ignore[arg-type]


update = set_bulk


def remove_bulk(
    c: Codec, keys: Iterable[Any], db: Optional[int] = None, no_reply: bool = False
) -> Operation:
    data = encode_key_bulk(MAGIC_REMOVE_BULK, keys, c.db(db), encode_key, no_reply)
    if len(data) == _EMPTY_BULK:
        return None if no_reply else nothing(0)  # type: ignore[return-value]
    return Plan(data, None if no_reply else parse_remove_bulk_reply)  # type: ignore[arg-type]


def script(
    c: Codec,
    name: Any,
    __data: Optional[Mapping[Any, Any]] = None, /,
    encode_values: bool = True,
    decode_values: Optional[bool] = None,
    no_reply: bool = False,
    **kwargs: Any,
) -> Plan:
    """``decode_values`` (default: as ``encode_values``) deserializes the output values;
    ``no_reply`` sends the call with the no-reply flag (``parse`` None, no output)."""
    encode_value = c.encode_value if encode_values else (lambda v: c.text(v, "script value"))
    records = []
    for source in (__data or {}, kwargs):
        records.extend([(c.key(k), encode_value(v)) for k, v in source.items()])
    proc = c.text(name, "script name")

    def parse(buf: Any, pos: int) -> Any:
        try:
            return parse_play_script_reply(buf, pos)
        except ScriptError:
            raise
        except ServerError as exc:
            raise ScriptError(
                f"the scripting procedure {proc.decode('utf-8', 'replace')!r} failed, is missing, or "
                "scripting is disabled on the server",
                code=exc.code,
                procedure="play_script",
            ) from exc

    decode_key = c.decode_key
    decode = encode_values if decode_values is None else decode_values
    decode_value = c.decode_value if decode else bytes

    def finish(output: List[Tuple[bytes, bytes]]) -> Dict[Any, Any]:
        return {decode_key(k): decode_value(v) for k, v in output}

    if no_reply:
        return Plan(encode_play_script(proc, records, True), None)  # type: ignore[arg-type]
    return Plan(encode_play_script(proc, records), parse, finish)


# -- HTTP RPC: record operations ----------------------------------------------------------


def _store(
    c: Codec, procedure: str, key: Any, value: Any, db: Optional[int], expire_time: ExpireTime,
    idempotent: bool = False, encode_value: bool = True,
) -> Operation:
    encoded = c.encode_value(value) if encode_value else _plain(c, value)
    check_size(len(encoded), procedure)  # before building a request of that size
    params = _with_xt([(b"key", c.key(key)), (b"value", encoded)], expire_time)
    return rpc(c, procedure, params, db, idempotent=idempotent)


def add(
    c: Codec, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    encode_value: bool = True,
) -> Operation:
    return _store(c, "add", key, value, db, expire_time, encode_value=encode_value)


def replace(
    c: Codec, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    encode_value: bool = True,
) -> Operation:
    return _store(c, "replace", key, value, db, expire_time, idempotent=True, encode_value=encode_value)


def append(
    c: Codec, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    encode_value: bool = True,
) -> Operation:
    return _store(c, "append", key, value, db, expire_time, encode_value=encode_value)


def exists(c: Codec, key: Any, db: Optional[int] = None) -> Operation:
    return rpc(c, "check", [(b"key", c.key(key))], db, idempotent=True)


check = exists


def seize(c: Codec, key: Any, db: Optional[int] = None, decode_value: bool = True) -> Operation:
    decode = c.decode_value if decode_value else bytes

    def finish(response: http.Response) -> Any:
        ok, output = rpc_outcome(response, "seize")
        return decode(output[b"value"]) if ok else None

    return rpc(c, "seize", [(b"key", c.key(key))], db, finish)


pop = seize


def cas(
    c: Codec, key: Any, old_val: Any, new_val: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    encode_value: bool = True,
) -> Operation:
    encode = c.encode_value if encode_value else partial(_plain, c)
    params = [(b"key", c.key(key))]
    if old_val is not None:
        params.append((b"oval", encode(old_val)))
    if new_val is not None:
        params.append((b"nval", encode(new_val)))
    return rpc(c, "cas", _with_xt(params, expire_time), db)


def _increment(
    c: Codec, procedure: str, key: Any, num: bytes, orig: Any, db: Optional[int], expire_time: ExpireTime,
    convert: Callable[[bytes], Any],
) -> Operation:
    params = [(b"key", c.key(key)), (b"num", num)]
    if orig is not None:
        params.append((b"orig", orig if isinstance(orig, bytes) else str(orig).encode("ascii")))

    def finish(response: http.Response) -> Any:
        ok, output = rpc_outcome(response, procedure)
        if not ok:
            raise ServerError(kt_rpc.error_message(output, 450), code=450, procedure=procedure)
        return convert(output[b"num"])

    return rpc(c, procedure, _with_xt(params, expire_time), db, finish)


def incr(
    c: Codec, key: Any, n: int = 1, orig: Optional[int] = None, db: Optional[int] = None,
    expire_time: ExpireTime = None,
) -> Operation:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if not -_INT64_LIMIT < n < _INT64_LIMIT:
        raise ValueError(f"n must satisfy |n| < 2**63 (the server's 64-bit counter), not {n}")
    return _increment(c, "increment", key, b"%d" % n, orig, db, expire_time, int)


def incr_double(
    c: Codec, key: Any, n: float = 1.0, orig: Optional[float] = None, db: Optional[int] = None,
    expire_time: ExpireTime = None,
) -> Operation:
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"n must be a number, not {type(n).__name__}")
    return _increment(c, "increment_double", key, repr(float(n)).encode(), orig, db, expire_time, _double)


def _double(num: bytes) -> float:
    try:
        return float(num)
    except ValueError:  # ktserver cuts a %f longer than its buffer and ends it with "*"
        raise ServerError(
            f"the new value was stored but the server could not format it: {num[:40]!r}...",
            code=200,
            procedure="increment_double",
        ) from None


# -- HTTP RPC: database operations --------------------------------------------------------


def clear(c: Codec, db: Optional[int] = None) -> Operation:
    return rpc(c, "clear", [], db, partial(_strict_ok, "clear"), idempotent=True)


def status(c: Codec, db: Optional[int] = None) -> Operation:
    return rpc(c, "status", [], db, lambda r: _as_text_dict(_output("status", r)), idempotent=True)


def report(c: Codec) -> Operation:
    return rpc(c, "report", [], None, lambda r: _as_text_dict(_output("report", r)), True, use_db=False)


def synchronize(
    c: Codec, hard: bool = False, command: Optional[str] = None, db: Optional[int] = None
) -> Operation:
    params = []
    if hard:
        params.append((b"hard", b""))
    if command is not None:
        params.append((b"command", c.text(command, "command")))
    return rpc(c, "synchronize", params, db, idempotent=command is None)


def vacuum(c: Codec, step: int = 0, db: Optional[int] = None) -> Operation:
    params = [(b"step", b"%d" % step)] if step else []
    return rpc(c, "vacuum", params, db, partial(_strict_ok, "vacuum"), idempotent=True)


def _status_field(field: str, convert: Callable[[str], Any], plan: Operation) -> Plan:
    """``plan`` (a status plan) finished into one converted field of the status."""
    data, parse, shape, idempotent = plan
    return Plan(data, parse, lambda response: convert(shape(response)[field]), idempotent)


def count(c: Codec, db: Optional[int] = None) -> Plan:
    return _status_field("count", int, status(c, db))


def size(c: Codec) -> Plan:
    return _status_field("size", int, status(c))


def path(c: Codec) -> Plan:
    return _status_field("path", str, status(c))


def _match(
    c: Codec, procedure: str, params: List[Tuple[bytes, bytes]], max_keys: Optional[int], db: Optional[int]
) -> Operation:
    if max_keys is not None:
        params.append((b"max", b"%d" % max_keys))
    decode_key = c.decode_key
    return rpc(c, procedure, params, db,
               lambda r: [decode_key(k) for k in _ranked_keys(_output(procedure, r))], idempotent=True)


def match_prefix(
    c: Codec, prefix: Any, max_keys: Optional[int] = None, db: Optional[int] = None
) -> Operation:
    return _match(c, "match_prefix", [(b"prefix", c.key(prefix))], max_keys, db)


def match_regex(c: Codec, regex: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> Operation:
    return _match(c, "match_regex", [(b"regex", c.text(regex, "regex"))], max_keys, db)


def match_similar(
    c: Codec, origin: Any, distance: Optional[int] = None, max_keys: Optional[int] = None,
    db: Optional[int] = None,
) -> Operation:
    params = [(b"origin", c.key(origin))]
    if distance is not None:
        params.append((b"range", b"%d" % distance))
    if isinstance(origin, str):
        params.append((b"utf", b""))  # distance in characters, not bytes
    return _match(c, "match_similar", params, max_keys, db)


def split_key(key_or_keydb: Any) -> Tuple[Any, Optional[int]]:
    """``db[key]`` or ``db[key, db_index]`` -> ``(key, db_index or None)``."""
    if isinstance(key_or_keydb, tuple):
        if len(key_or_keydb) != 2:
            raise TypeError("use db[key] or db[key, db_index]")
        return key_or_keydb[0], key_or_keydb[1]
    return key_or_keydb, None


# -- cursors ------------------------------------------------------------------------------

_cursor_ids = itertools.count(1)


class CursorState:
    """What a cursor's operations need: its id, database, and whether it is positioned."""

    __slots__ = ("cursor_id", "cur", "db", "created", "positioned")

    def __init__(self, c: Codec, db: Optional[int] = None, cursor_id: Optional[int] = None) -> None:
        self.db = c.db(db)
        self.cursor_id = next(_cursor_ids) if cursor_id is None else int(cursor_id)
        self.cur = b"%d" % self.cursor_id
        self.created = False  # the server creates it on first use
        self.positioned = False


def _cursor_rpc(
    c: Codec, state: CursorState, procedure: str, params: List[Tuple[bytes, bytes]],
    finish: Callable[[bool, Dict[bytes, bytes]], Any],
) -> Plan:
    params.append((b"CUR", state.cur))
    if state.db:
        params.append((b"DB", b"%d" % state.db))

    def finished(response: http.Response) -> Any:
        state.created = True  # the server made it on this first use: cur_delete it on close
        return finish(*rpc_outcome(response, procedure))

    return Plan(_build_rpc(procedure, params, c.host_header), _parse_response, finished)


def _cursor_move(c: Codec, state: CursorState, procedure: str, params: List[Tuple[bytes, bytes]]) -> Plan:
    def moved(ok: bool, _output: Any) -> bool:
        state.positioned = ok
        return ok

    return _cursor_rpc(c, state, procedure, params, moved)


def cur_jump(c: Codec, state: CursorState, key: Any = None) -> Plan:
    return _cursor_move(c, state, "cur_jump", [] if key is None else [(b"key", c.key(key))])


def cur_jump_back(c: Codec, state: CursorState, key: Any = None) -> Plan:
    return _cursor_move(c, state, "cur_jump_back", [] if key is None else [(b"key", c.key(key))])


def cur_step(c: Codec, state: CursorState) -> Plan:
    return _cursor_move(c, state, "cur_step", [])


def cur_step_back(c: Codec, state: CursorState) -> Plan:
    return _cursor_move(c, state, "cur_step_back", [])


def _cursor_read(
    c: Codec, state: CursorState, procedure: str, params: List[Tuple[bytes, bytes]],
    shape: Callable[[Dict[bytes, bytes]], Any],
) -> Plan:
    def read(ok: bool, output: Dict[bytes, bytes]) -> Any:
        if not ok:
            state.positioned = False
            return None
        return shape(output)

    return _cursor_rpc(c, state, procedure, params, read)


def _step(step: bool) -> List[Tuple[bytes, bytes]]:
    return [(b"step", b"")] if step else []


def cur_key(c: Codec, state: CursorState, step: bool = False) -> Plan:
    return _cursor_read(c, state, "cur_get_key", _step(step), lambda out: c.decode_key(out[b"key"]))


def cur_value(c: Codec, state: CursorState, step: bool = False) -> Plan:
    return _cursor_read(c, state, "cur_get_value", _step(step), lambda out: c.decode_value(out[b"value"]))


def cur_get(c: Codec, state: CursorState, step: bool = False) -> Plan:
    return _cursor_read(c, state, "cur_get", _step(step), lambda out: c.record(out[b"key"], out[b"value"]))


def cur_seize(c: Codec, state: CursorState) -> Plan:
    return _cursor_read(c, state, "cur_seize", [], lambda out: c.record(out[b"key"], out[b"value"]))


def cur_set_value(
    c: Codec, state: CursorState, value: Any, step: bool = False, expire_time: ExpireTime = None
) -> Plan:
    params = _with_xt([(b"value", c.encode_value(value)), *_step(step)], expire_time)
    return _cursor_rpc(c, state, "cur_set_value", params, lambda ok, _: ok)


def cur_remove(c: Codec, state: CursorState) -> Plan:
    return _cursor_rpc(c, state, "cur_remove", [], lambda ok, _: ok)


def cur_delete(c: Codec, state: CursorState) -> Optional[Plan]:
    """Delete the server-side cursor; None when the server never created it."""
    if not state.created:
        return None
    return Plan(_build_rpc("cur_delete", [(b"CUR", state.cur)], c.host_header), _parse_response)


# -- coleifer/kt 0.9.6 compatibility: kt's extra arguments and methods --------------------
# (``encode_value(s)=False`` sends str/bytes as given; ``decode_value(s)=False`` returns bytes;
# ``no_reply=True`` sets the binary protocol's no-reply flag: the plan's ``parse`` is None and
# the client sends it without waiting, see KyotoTycoon._send_no_reply.)


def _plain(c: Codec, value: Any) -> bytes:
    return c.text(value, "value")


def _xt_out(xt: int) -> Optional[int]:
    """A stored expiration time as kt reported it: epoch seconds, None for never."""
    return None if xt >= XT_MAX else xt  # the server stores "never" as XT_MAX


def _details(c: Codec, decode_values: bool) -> Callable[[List[Tuple[int, bytes, bytes, int]]], List[Any]]:
    decode_key = c.decode_key
    decode = c.decode_value if decode_values else bytes

    def finish(records: List[Tuple[int, bytes, bytes, int]]) -> List[Tuple[int, Any, Any, Optional[int]]]:
        return [(db, decode_key(k), decode(v), _xt_out(xt)) for db, k, v, xt in records]

    return finish


def get_bulk_details(
    c: Codec, keys: Iterable[Any], db: Optional[int] = None, decode_values: bool = True
) -> Plan:
    """``[(db, key, value, expire_time)]`` of the keys found."""
    data = encode_key_bulk(MAGIC_GET_BULK, keys, c.db(db), encode_key)
    return Plan(data, parse_get_bulk_reply, _details(c, decode_values), True)


def _db_keys(c: Codec, db_key_list: Iterable[Tuple[int, Any]]) -> List[Tuple[int, bytes]]:
    return [(check_db(db), c.key(key)) for db, key in db_key_list]


def get_bulk_raw_details(
    c: Codec, db_key_list: Iterable[Tuple[int, Any]], decode_values: bool = True
) -> Plan:
    """Like ``get_bulk_details`` for ``(db, key)`` pairs across databases."""
    data = encode_get_bulk(_db_keys(c, db_key_list))
    return Plan(data, parse_get_bulk_reply, _details(c, decode_values), True)


def set_bytes(
    c: Codec, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
    no_reply: bool = False,
) -> Plan:
    xt = NO_EXPIRY_XT if expire_time is None else to_binary_xt(expire_time)
    data = encode_set_one(c.db(db), c.key(key), _plain(c, value), xt, no_reply)
    return Plan(data, None if no_reply else parse_set_bulk_reply, None, True)  # type: ignore[arg-type]


def set_bulk_raw(c: Codec, data: Iterable[Tuple[int, Any, Any, ExpireTime]], no_reply: bool = False,
                 encode_values: bool = True) -> Operation:
    """``(db, key, value, expire_time)`` records across databases."""
    encode = c.encode_value if encode_values else partial(_plain, c)
    records = [(check_db(db), c.key(key), encode(value), NO_EXPIRY_XT if xt is None else to_binary_xt(xt))
               for db, key, value, xt in data]
    if not records:
        return nothing(None if no_reply else 0)
    return Plan(encode_set_bulk(records, no_reply), None if no_reply else parse_set_bulk_reply,  # type: ignore[arg-type]
                None, True)


def remove_bulk_raw(c: Codec, db_key_list: Iterable[Tuple[int, Any]], no_reply: bool = False) -> Operation:
    records = _db_keys(c, db_key_list)
    if not records:
        return nothing(None if no_reply else 0)
    return Plan(encode_remove_bulk(records, no_reply), None if no_reply else parse_remove_bulk_reply)  # type: ignore[arg-type]


def length(c: Codec, key: Any, db: Optional[int] = None) -> Plan:
    """Size in bytes of the value at ``key``, None when missing (RPC ``check``)."""
    def finish(response: http.Response) -> Optional[int]:
        ok, output = rpc_outcome(response, "check")
        return int(output[b"vsiz"]) if ok else None

    return rpc(c, "check", [(b"key", c.key(key))], db, finish, idempotent=True)


def keys_nonlazy(c: Codec, db: Optional[int] = None) -> Plan:
    """Every key of the database in one request (``match_prefix`` of the empty prefix)."""
    return match_prefix(c, b"", None, db)


def _ulog_entries(response: http.Response) -> List[Tuple[str, int, datetime.datetime]]:
    entries = []
    for name, meta in _output("ulog_list", response).items():
        size, _sep, stamp = meta.partition(b":")
        entries.append((name.decode("utf-8", "replace"), int(size),
                        datetime.datetime.fromtimestamp(int(stamp) / 1e9)))
    return entries


def ulog_list(c: Codec) -> Plan:
    """The server's update-log files: ``[(path, size, time of last record)]``."""
    return rpc(c, "ulog_list", [], None, _ulog_entries, True, use_db=False)


def ulog_remove(c: Codec, max_dt: Optional[datetime.datetime] = None) -> Plan:
    """Remove update-log files older than ``max_dt`` (default: now)."""
    moment = max_dt or datetime.datetime.now()
    params = [(b"ts", b"%d" % int(moment.timestamp() * 1e9))]
    return rpc(c, "ulog_remove", params, None, partial(_strict_ok, "ulog_remove"), True, use_db=False)
