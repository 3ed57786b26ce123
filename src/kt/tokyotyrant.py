"""The Tokyo Tyrant client (``TokyoTyrant``), table queries (``QueryBuilder``) and constants.

Thin by design: each method checks its arguments, serializes, builds one request with the
sans-IO codec ``kt.protocol.tt_binary`` and hands it to the shared transport
(``kt.transport.Pool``).  Logical outcomes are return values (a missing key is ``None``,
``add`` of an existing key is ``False``); failures that can only mean trouble raise
``ServerError`` / ``ScriptError``.

No-reply writes (``setnr``/``setnr_bulk``) go out at once and their connection goes straight
back to the pool, so they never hold one.  The calling thread remembers which connection
carried them: its next request takes that very connection back if it is idle (a server
handles one connection's requests in order, so the request sees the writes), or goes
anywhere once that connection has answered someone else's request since (the writes were
processed before that answer).  While another thread is using it, the request waits for
it, at most ``timeout`` (or ``connect_timeout``).  A request on the taken-back connection is
not resent if that connection drops (elsewhere it could overtake the writes).

Only requests whose repetition cannot change the outcome are resent after a dropped
connection (``idempotent=True`` below; the table is in docs/reliability.md): reads, ``set``,
``remove_bulk``, ``clear``, ``sync``, ``optimize``, ``copy``, read-only ``misc`` and
``search``.  Every other write that loses its connection after being sent raises
``ConnectionDroppedError``: it may or may not have been applied.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from kt.errors import ServerError
from kt.protocol import tt_binary as tt
from kt.serializers import (
    KT_BINARY,
    KT_NONE,
    TT_TABLE,
    Serializer,
    encode_key,
    key_decoder,
    resolve_serializer,
)
from kt.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_SIZE,
    ConnectionDroppedError,
    Pool,
    outcome_unknown,
)

__all__ = [
    "TokyoTyrant",
    "QueryBuilder",
    "INDEX_STR",
    "INDEX_NUM",
    "INDEX_TOKEN",
    "INDEX_QGRAM",
    "INDEX_OPTIMIZE",
    "INDEX_VOID",
    "INDEX_KEEP",
    "OP_STR_EQ",
    "OP_STR_CONTAINS",
    "OP_STR_STARTSWITH",
    "OP_STR_ENDSWITH",
    "OP_STR_ALL",
    "OP_STR_ANY",
    "OP_STR_ANYEXACT",
    "OP_STR_REGEX",
    "OP_NUM_EQ",
    "OP_NUM_GT",
    "OP_NUM_GE",
    "OP_NUM_LT",
    "OP_NUM_LE",
    "OP_NUM_BETWEEN",
    "OP_NUM_ANYEXACT",
    "OP_FTS_PHRASE",
    "OP_FTS_ALL",
    "OP_FTS_ANY",
    "OP_FTS_EXPRESSION",
    "OP_NEGATE",
    "OP_NOINDEX",
    "ORDER_STR_ASC",
    "ORDER_STR_DESC",
    "ORDER_NUM_ASC",
    "ORDER_NUM_DESC",
]

# Index types (tctdb.h TDBIT*).
INDEX_STR = tt.ITLEXICAL
INDEX_NUM = tt.ITDECIMAL
INDEX_TOKEN = tt.ITTOKEN
INDEX_QGRAM = tt.ITQGRAM
INDEX_OPTIMIZE = tt.ITOPT
INDEX_VOID = tt.ITVOID
INDEX_KEEP = tt.ITKEEP

# Condition operators (tctdb.h TDBQC*); combine with OP_NEGATE / OP_NOINDEX using ``|``.
OP_STR_EQ = tt.QCSTREQ
OP_STR_CONTAINS = tt.QCSTRINC
OP_STR_STARTSWITH = tt.QCSTRBW
OP_STR_ENDSWITH = tt.QCSTREW
OP_STR_ALL = tt.QCSTRAND
OP_STR_ANY = tt.QCSTROR
OP_STR_ANYEXACT = tt.QCSTROREQ
OP_STR_REGEX = tt.QCSTRRX
OP_NUM_EQ = tt.QCNUMEQ
OP_NUM_GT = tt.QCNUMGT
OP_NUM_GE = tt.QCNUMGE
OP_NUM_LT = tt.QCNUMLT
OP_NUM_LE = tt.QCNUMLE
OP_NUM_BETWEEN = tt.QCNUMBT
OP_NUM_ANYEXACT = tt.QCNUMOREQ
OP_FTS_PHRASE = tt.QCFTSPH
OP_FTS_ALL = tt.QCFTSAND
OP_FTS_ANY = tt.QCFTSOR
OP_FTS_EXPRESSION = tt.QCFTSEX
OP_NEGATE = tt.QCNEGATE
OP_NOINDEX = tt.QCNOIDX

# Orderings (tctdb.h TDBQO*).
ORDER_STR_ASC = tt.QOSTRASC
ORDER_STR_DESC = tt.QOSTRDESC
ORDER_NUM_ASC = tt.QONUMASC
ORDER_NUM_DESC = tt.QONUMDESC

_OPS = frozenset(range(tt.QCSTREQ, tt.QCFTSEX + 1))
_ORDERS = frozenset((ORDER_STR_ASC, ORDER_STR_DESC, ORDER_NUM_ASC, ORDER_NUM_DESC))
_SEARCH_CMDS = (None, "count", "get", "out")
_ITEMS_CHUNK = 1000

Key = Union[str, bytes]

_encode_get = tt.encode_get
_encode_put = tt.encode_put
_parse_get = tt.parse_get
_parse_put = tt.parse_put
_encode_putnr = tt.encode_putnr
_encode_misc = tt.encode_misc
_LOG = 0
_NO_LOG = tt.MISC_NO_UPDATE_LOG
# misc functions that only read: safe to resend after a dropped connection.
_READ_ONLY_MISC = frozenset((b"get", b"getlist", b"getpart", b"range", b"regex", b"error"))


def _key(key: Any) -> bytes:
    kind = type(key)
    if kind is str:
        return key.encode("utf-8")
    if kind is bytes:
        return key
    return encode_key(key)


def _keys(keys: Iterable[Any]) -> List[bytes]:
    """``_key`` over many keys, without a call per str/bytes key."""
    return [k.encode("utf-8") if type(k) is str else k if type(k) is bytes else encode_key(k) for k in keys]


def _text(value: Any, what: str) -> bytes:
    """Bytes for names, paths and misc arguments given as str, bytes or a number."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode("ascii")
    raise TypeError(f"{what} must be str, bytes or a number, not {type(value).__name__}")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _merge(data: Optional[Dict[Any, Any]], kwargs: Dict[str, Any], what: str) -> Dict[Any, Any]:
    if data is None:
        return kwargs
    if not hasattr(data, "items"):
        raise TypeError(f"{what} takes a mapping of keys to values, not {type(data).__name__}")
    if kwargs:
        merged = dict(data)
        merged.update(kwargs)
        return merged
    return data


class _PendingWrites:
    """Which connection carried this thread's latest no-reply writes, and its reply count then.

    Holds no connection checked out.  ``__del__`` (the thread ended) keeps the client's count
    of threads with pending writes right.
    """

    __slots__ = ("conn", "replies", "owner")

    def __init__(self, conn: Any, replies: int, owner: TokyoTyrant) -> None:
        self.conn = conn
        self.replies = replies
        self.owner: Optional[TokyoTyrant] = owner  # set while counted in owner._pending_threads

    def __del__(self) -> None:
        try:
            owner, self.owner = self.owner, None
            if owner is not None:
                owner._count_pending(-1)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class TokyoTyrant:
    """Client for a Tokyo Tyrant server (ttserver 1.1.41 protocol) or kt's bundled one."""

    def __init__(
        self,
        host: str = "",
        port: int = 1978,
        serializer: Any = KT_BINARY,
        decode_keys: bool = True,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._serializer: Serializer = resolve_serializer(serializer)
        self._encode_value = self._serializer.encode
        self._decode_value = self._serializer.decode
        self._decode_key = key_decoder(decode_keys)
        self.decode_keys = decode_keys
        # Decoders that would only copy bytes are skipped on the bulk paths.
        self._raw_keys = not decode_keys
        self._raw_values = self._serializer is KT_NONE
        self._pool = pool = Pool(
            host, port, timeout=timeout, connect_timeout=connect_timeout, max_size=max_connections
        )
        self._pool_request = pool.request
        self.host = self._pool.host
        self.port = port
        self.timeout = timeout
        self._local = threading.local()
        self._pending_threads = 0  # > 0 while some thread holds a no-reply connection
        self._pending_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TokyoTyrant {self._pool.address} serializer={self._serializer.name}>"

    @property
    def serializer(self) -> Serializer:
        return self._serializer

    @property
    def pool(self) -> Pool:
        return self._pool

    # -- transport ------------------------------------------------------------------------

    def _request(self, data: bytes, parse: Any, idempotent: bool = False) -> Any:
        if self._pending_threads:
            conn = self._reclaim()
            if conn is not None:
                if conn.is_stale():  # dropped: nothing to wait for, nothing sent yet
                    self._pool.release(conn)
                else:
                    try:
                        return conn.request(data, parse)
                    except ConnectionDroppedError as exc:
                        # Not resent even if idempotent: on another connection it could
                        # overtake the setnr writes this one may have delivered.
                        if not idempotent:
                            raise outcome_unknown(exc) from exc
                        raise ConnectionDroppedError(
                            f"{exc}; it carried this thread's no-reply writes, which may or may "
                            "not have been applied"
                        ) from exc
                    finally:
                        self._pool.release(conn)
        return self._pool.request(data, parse, idempotent=idempotent)

    def _take_pending(self) -> Optional[_PendingWrites]:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            self._local.pending = None
            if pending.owner is not None:
                pending.owner = None
                self._count_pending(-1)
        return pending

    def _count_pending(self, delta: int) -> None:
        with self._pending_lock:
            self._pending_threads += delta

    def _reclaim(self) -> Any:
        """The connection of this thread's unprocessed no-reply writes, checked out, or None."""
        pending = self._take_pending()
        if pending is None:
            return None
        return self._pool.reclaim(pending.conn, pending.replies)

    def _send_no_reply(self, data: bytes) -> None:
        pool = self._pool
        conn = self._reclaim()  # keeps this thread's no-reply writes in order
        if conn is None:
            conn = pool.acquire()
        if conn.is_stale():  # a write to a peer that hung up would be lost silently
            pool.release(conn)  # closed by is_stale(): the pool discards it
            conn = pool.acquire()
        try:
            conn.send(data)
            replies = conn.replies
        finally:
            pool.release(conn)
        self._count_pending(1)
        self._local.pending = _PendingWrites(conn, replies, self)

    def checkin(self) -> None:
        """Return this thread's pinned connection (if any) to the pool."""
        self._release_pending()
        self._pool.checkin()

    def close(self) -> None:
        """Close idle connections (the client reconnects on its next call)."""
        self._release_pending()
        self._pool.close()

    def _release_pending(self) -> None:
        self._take_pending()

    def __enter__(self) -> TokyoTyrant:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- values ---------------------------------------------------------------------------

    def _decode(self, raw: Optional[bytes]) -> Any:
        return None if raw is None else self._decode_value(raw)

    def _pairs(self, data: Dict[Any, Any]) -> List[bytes]:
        """[k1, v1, k2, v2, ...] as misc putlist wants them."""
        encode = self._encode_value
        return [part for key, value in data.items() for part in (_key(key), encode(value))]

    # -- single records -------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        """The value at ``key`` (deserialized), or None when there is none."""
        # The hot path: the transport is called directly unless no-reply writes are pending.
        data = _encode_get(key.encode("utf-8") if type(key) is str else _key(key))
        if self._pending_threads:
            raw = self._request(data, _parse_get, idempotent=True)
        else:
            raw = self._pool_request(data, _parse_get, idempotent=True)
        return None if raw is None else self._decode_value(raw)

    def get_raw(self, key: Key) -> Optional[bytes]:
        """The stored bytes at ``key``, or None."""
        return self._request(_encode_get(_key(key)), _parse_get, idempotent=True)

    def set(self, key: Key, value: Any) -> bool:
        """Store ``value`` at ``key`` (overwriting); True, or ServerError if the server refused."""
        data = _encode_put(key.encode("utf-8") if type(key) is str else _key(key), self._encode_value(value))
        if self._pending_threads:
            return self._request(data, _parse_put, idempotent=True)
        return self._pool_request(data, _parse_put, idempotent=True)

    def add(self, key: Key, value: Any) -> bool:
        """Store only if ``key`` is new; False when it already exists."""
        return self._request(tt.encode_putkeep(_key(key), self._encode_value(value)), tt.parse_putkeep)

    def append(self, key: Key, value: Any) -> bool:
        """Append to the value at ``key`` (creating it when missing)."""
        return self._request(tt.encode_putcat(_key(key), self._encode_value(value)), tt.parse_putcat)

    def addshl(self, key: Key, value: Any, width: int) -> bool:
        """Append, then keep only the last ``width`` bytes of the value."""
        width = _int(width, "width")
        data = tt.encode_putshl(_key(key), self._encode_value(value), width)
        return self._request(data, tt.parse_putshl)

    def setnr(self, key: Key, value: Any) -> None:
        """Store without waiting for (or getting) any reply."""
        self._send_no_reply(_encode_putnr(_key(key), self._encode_value(value)))

    def setnr_bulk(self, __data: Optional[Dict[Any, Any]] = None, **kwargs: Any) -> None:
        """Store many records with no-reply puts, all in one write."""
        data = _merge(__data, kwargs, "setnr_bulk")
        if not data:
            return
        encode = self._encode_value
        self._send_no_reply(tt.encode_putnr_bulk([(_key(k), encode(v)) for k, v in data.items()]))

    def remove(self, key: Key) -> int:
        """Remove ``key``; the number of records removed (1 or 0)."""
        return 1 if self._request(tt.encode_out(_key(key)), tt.parse_out) else 0

    def exists(self, key: Key) -> bool:
        return self._request(tt.encode_vsiz(_key(key)), tt.parse_vsiz, idempotent=True) is not None

    def length(self, key: Key) -> Optional[int]:
        """The size in bytes of the value at ``key`` (None when missing)."""
        return self._request(tt.encode_vsiz(_key(key)), tt.parse_vsiz, idempotent=True)

    def incr(self, key: Key, n: int = 1) -> int:
        """Add ``n`` (may be negative) to a 4-byte integer record; returns the new value."""
        return self._request(tt.encode_addint(_key(key), _int(n, "n")), tt.parse_addint)

    def incr_double(self, key: Key, n: float = 1.0) -> float:
        """Add ``n`` (may be negative) to an 8-byte double record; returns the new value."""
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise TypeError(f"n must be a number, not {type(n).__name__}")
        return self._request(tt.encode_adddouble(_key(key), n), tt.parse_adddouble)

    def get_part(self, key: Key, start: Optional[int] = None, end: Optional[int] = None) -> Any:
        """Part of the value: ``end`` bytes (a length, as in the seed) from offset ``start``
        (defaults: 0 and the rest).  False when the key is missing or ``start`` is past the
        end of the value.  KT_BINARY/KT_NONE decode the part; other serializers give bytes."""
        args = [_key(key)]
        if start is not None or end is not None:
            args.append(b"%d" % (0 if start is None else _int(start, "start")))
        if end is not None:
            args.append(b"%d" % _int(end, "end"))
        result = self._misc(b"getpart", args, _NO_LOG, idempotent=True)
        if not result:
            return False
        if self._serializer in (KT_BINARY, KT_NONE):
            return self._decode_value(result[0])
        return result[0]

    # -- bulk -----------------------------------------------------------------------------

    def get_bulk(self, keys: Iterable[Key]) -> Dict[Any, Any]:
        """Dict of the keys found (deserialized values); missing keys are left out."""
        records = self._request(tt.encode_mget(_keys(keys)), tt.parse_mget, idempotent=True)
        return self._records_to_dict(records, self._raw_values)

    def get_bulk_raw(self, keys: Iterable[Key]) -> Dict[Any, bytes]:
        records = self._request(tt.encode_mget(_keys(keys)), tt.parse_mget, idempotent=True)
        return self._records_to_dict(records, True)

    def _decode_keys(self, keys: List[bytes]) -> List[Any]:
        """Wire keys -> Python keys; UTF-8 in one pass, per key only when some are not text."""
        if self._raw_keys:
            return keys
        try:
            return [k.decode("utf-8") for k in keys]
        except UnicodeDecodeError:
            decode_key = self._decode_key
            return [decode_key(k) for k in keys]

    def _records_to_dict(self, records: List[Tuple[bytes, bytes]], raw_values: bool) -> Dict[Any, Any]:
        if not raw_values and self._serializer is KT_BINARY:
            try:  # text keys and values: decode without a call per record
                if self._raw_keys:
                    return {k: v.decode("utf-8") for k, v in records}
                return {k.decode("utf-8"): v.decode("utf-8") for k, v in records}
            except UnicodeDecodeError:
                pass
        if self._raw_keys:
            if raw_values:
                return dict(records)
            decode = self._decode_value
            return {k: decode(v) for k, v in records}
        decode_key = self._decode_key
        if raw_values:
            return {decode_key(k): v for k, v in records}
        decode = self._decode_value
        return {decode_key(k): decode(v) for k, v in records}

    def set_bulk(self, __data: Optional[Dict[Any, Any]] = None, **kwargs: Any) -> bool:
        """Store many records in one call (misc ``putlist``)."""
        data = _merge(__data, kwargs, "set_bulk")
        if not data:
            return True
        return self._misc(b"putlist", self._pairs(data), _LOG) is not None

    def update(
        self, __data: Optional[Dict[Any, Any]] = None, db: Any = None, expire_time: Any = None, **kwargs: Any
    ) -> bool:
        """Same as ``set_bulk`` (``db`` and ``expire_time`` exist for signature compatibility
        with KyotoTycoon; Tokyo Tyrant has neither)."""
        if db is not None or expire_time is not None:
            raise ValueError(
                "Tokyo Tyrant has no numbered databases and no expiry: pass db/expire_time as None"
            )
        return self.set_bulk(__data, **kwargs)

    def remove_bulk(self, keys: Iterable[Key]) -> bool:
        """Remove many records in one call (misc ``outlist``; missing keys are ignored)."""
        args = _keys(keys)
        if not args:
            return True
        return self._misc(b"outlist", args, _LOG, idempotent=True) is not None

    def setdup(self, key: Key, value: Any) -> bool:
        """B+ tree: add ``value`` after the key's existing values (False on other databases)."""
        return self._misc(b"putdup", [_key(key), self._encode_value(value)], _LOG) is not None

    def setdupback(self, key: Key, value: Any) -> bool:
        """B+ tree: add ``value`` before the key's existing values (False on other databases)."""
        return self._misc(b"putdupback", [_key(key), self._encode_value(value)], _LOG) is not None

    # -- misc, script ---------------------------------------------------------------------

    def misc(
        self, cmd: Union[str, bytes], args: Optional[Sequence[Any]] = None, update_log: bool = True
    ) -> Any:
        """Call a database function; a list of byte strings, or None when it failed.

        ``update_log=False`` sets RDBMONOULOG (opts bit 0): the call is not written to the
        server's update log.
        """
        name = _text(cmd, "misc command")
        encoded = [] if args is None else [_text(arg, "misc argument") for arg in args]
        return self._misc(name, encoded, _LOG if update_log else _NO_LOG, name in _READ_ONLY_MISC)

    def _misc(
        self, name: bytes, args: List[bytes], opts: int, idempotent: bool = False
    ) -> Optional[List[bytes]]:
        return self._request(_encode_misc(name, args, opts), tt.parse_misc, idempotent)

    def script(
        self,
        name: Union[str, bytes],
        key: Optional[Key] = None,
        value: Any = None,
        lock_records: bool = False,
        lock_all: bool = False,
        encode_value: bool = True,
        decode_result: bool = False,
    ) -> Any:
        """Call the Lua function ``name(key, value)`` of the server's ``-ext`` script.

        Returns the bytes it returned (deserialized when ``decode_result``).  ScriptError
        when the function is missing, fails, or returns nil/false (the protocol cannot tell
        these apart).
        """
        opts = (tt.EXT_LOCK_RECORD if lock_records else 0) | (tt.EXT_LOCK_GLOBAL if lock_all else 0)
        kbytes = b"" if key is None else _key(key)
        if value is None:
            vbytes = b""
        elif encode_value:
            vbytes = self._encode_value(value)
        else:
            vbytes = _text(value, "script value")
        result = self._request(tt.encode_ext(_text(name, "script name"), kbytes, vbytes, opts), tt.parse_ext)
        return self._decode_value(result) if decode_result else result

    # -- database -------------------------------------------------------------------------

    def clear(self) -> bool:
        """Remove every record."""
        return self._request(tt.encode_vanish(), tt.parse_ok, idempotent=True)

    def status(self) -> Dict[str, str]:
        """The server's ``stat`` report as a dict of str."""
        return self._request(tt.encode_stat(), tt.parse_stat, idempotent=True)

    def count(self) -> int:
        """Number of records."""
        return self._request(tt.encode_rnum(), tt.parse_rnum, idempotent=True)

    def __len__(self) -> int:
        return self._request(tt.encode_rnum(), tt.parse_rnum, idempotent=True)

    @property
    def size(self) -> int:
        """Size of the database (file size, or memory use for on-memory databases)."""
        return self._request(tt.encode_size(), tt.parse_size, idempotent=True)

    @property
    def error(self) -> Optional[Tuple[int, str]]:
        """(code, message) of the server's last error, or None where the database has none
        (on-memory databases do not keep one)."""
        result = self._misc(b"error", [], _NO_LOG, idempotent=True)
        if not result:
            return None
        text = result[0].decode("utf-8", "replace")
        code, sep, message = text.partition(": ")
        try:
            return int(code), message
        except ValueError:
            return -1, text

    def optimize(self, options: Union[str, bytes] = "") -> bool:
        """Rebuild the database with Tokyo Cabinet tuning ``options`` (e.g. ``'bnum=1000'``)."""
        return self._request(tt.encode_optimize(_text(options, "options")), tt.parse_ok, idempotent=True)

    def synchronize(self) -> bool:
        """Write the database to disk."""
        return self._request(tt.encode_sync(), tt.parse_ok, idempotent=True)

    def copy(self, path: Union[str, bytes]) -> bool:
        """Copy the database file to ``path`` on the server's machine."""
        return self._request(tt.encode_copy(_text(path, "path")), tt.parse_ok, idempotent=True)

    def genuid(self) -> int:
        """A new unique ID (table databases)."""
        result = self._misc(b"genuid", [], _LOG)
        if not result:
            raise ServerError("genuid failed (only table databases generate IDs)", code=1, procedure="genuid")
        return int(result[0])

    # -- ranges and iteration -------------------------------------------------------------

    def _pairs_to_dict(self, items: List[bytes]) -> Dict[Any, Any]:
        decode_key = self._decode_key
        decode = self._decode_value
        return {decode_key(k): decode(v) for k, v in zip(items[::2], items[1::2])}

    def get_range(
        self, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0
    ) -> Dict[Any, Any]:
        """B+ tree: the records with ``start <= key < stop`` (``max_keys`` 0 = all)."""
        args = [b"" if start is None else _key(start), b"%d" % (_int(max_keys or 0, "max_keys"))]
        if stop is not None:
            args.append(_key(stop))
        result = self._misc(b"range", args, _NO_LOG, idempotent=True)
        if result is None:
            raise ServerError(
                "range failed (only B+ tree databases support ranges)", code=1, procedure="range"
            )
        return self._pairs_to_dict(result)

    def match_prefix(self, prefix: Key, max_keys: Optional[int] = 1024) -> List[Any]:
        """Keys starting with ``prefix`` (at most ``max_keys``; None = all)."""
        limit = -1 if max_keys is None else _int(max_keys, "max_keys")
        keys = self._request(tt.encode_fwmkeys(_key(prefix), limit), tt.parse_fwmkeys, idempotent=True)
        return self._decode_keys(keys)

    def match_regex(self, regex: Union[str, bytes], max_keys: Optional[int] = 1024) -> List[Any]:
        """Keys matching the POSIX extended ``regex`` (at most ``max_keys``; None = all)."""
        args = [_text(regex, "regex")]
        if max_keys is not None:
            args.append(b"%d" % _int(max_keys, "max_keys"))
        result = self._misc(b"regex", args, _NO_LOG, idempotent=True)
        if result is None:
            raise ServerError(f"regex {regex!r} was rejected by the server", code=1, procedure="regex")
        return self._decode_keys(result[::2])

    def iter_from(self, start_key: Key) -> Dict[Any, Any]:
        """The records from ``start_key`` to the end of the database, in iteration order.

        Uses the server's one shared iterator (as every Tokyo Tyrant client does).
        """
        if self._misc(b"iterinit", [_key(start_key)], _NO_LOG, idempotent=True) is None:
            return {}
        decode_key = self._decode_key
        decode = self._decode_value
        result = {}
        while True:
            item = self._misc(b"iternext", [], _NO_LOG)
            if not item:
                return result
            result[decode_key(item[0])] = decode(item[1])

    def keys(self) -> List[Any]:
        """Every key, in the database's order."""
        return self._decode_keys(self._request(tt.encode_fwmkeys(b"", -1), tt.parse_fwmkeys, idempotent=True))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def items(self) -> List[Tuple[Any, Any]]:
        """Every ``(key, value)``, in the database's order (fetched in chunks with ``mget``)."""
        keys = self._request(tt.encode_fwmkeys(b"", -1), tt.parse_fwmkeys, idempotent=True)
        decode_key = self._decode_key
        decode = self._decode_value
        result = []
        for offset in range(0, len(keys), _ITEMS_CHUNK):
            chunk = keys[offset : offset + _ITEMS_CHUNK]
            records = self._request(tt.encode_mget(chunk), tt.parse_mget, idempotent=True)
            result.extend((decode_key(k), decode(v)) for k, v in records)
        return result

    def values(self) -> List[Any]:
        return [value for _, value in self.items()]

    # -- mapping protocol -----------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            if key.step is not None:
                raise ValueError("slices of a Tokyo Tyrant database take no step")
            return self.get_range(key.start, key.stop)
        return self.get(key)

    def __setitem__(self, key: Key, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: Key) -> None:
        self.remove(key)

    def __contains__(self, key: Key) -> bool:
        return self.exists(key)

    # -- table databases ------------------------------------------------------------------

    def set_index(self, name: Union[str, bytes], index_type: int, check_exists: bool = False) -> bool:
        """Create an index on column ``name`` (INDEX_STR/NUM/TOKEN/QGRAM).

        With ``check_exists`` a failure (e.g. the index already exists) raises ServerError.
        """
        kind = _int(index_type, "index_type")
        if check_exists:
            kind |= INDEX_KEEP
        result = self._misc(b"setindex", [_text(name, "column"), b"%d" % kind], _LOG)
        if result is None and check_exists:
            raise ServerError(
                f"setindex {name!r} failed: the index exists or the database is not a table",
                code=1,
                procedure="setindex",
            )
        return result is not None

    def optimize_index(self, name: Union[str, bytes]) -> bool:
        return self._misc(b"setindex", [_text(name, "column"), b"%d" % INDEX_OPTIMIZE], _LOG) is not None

    def delete_index(self, name: Union[str, bytes]) -> bool:
        return self._misc(b"setindex", [_text(name, "column"), b"%d" % INDEX_VOID], _LOG) is not None

    def search(self, expressions: Iterable[Sequence[Any]], cmd: Optional[str] = None) -> Any:
        """Run a table query.

        Each expression is the fields of one query command as on the wire, e.g.
        ``('addcond', 'age', OP_NUM_GE, '5')``, ``('setorder', 'name', ORDER_STR_ASC)``,
        ``('setlimit', 10, 0)``.  ``cmd``: None -> list of primary keys, ``'count'`` -> int,
        ``'get'`` -> list of ``(key, {column: value})``, ``'out'`` -> remove the matches (True).
        """
        if cmd not in _SEARCH_CMDS:
            raise ValueError(f"search cmd must be one of None, 'count', 'get', 'out', not {cmd!r}")
        args = []
        for expression in expressions:
            if isinstance(expression, (str, bytes)):
                expression = (expression,)
            args.append(tt.query_arg(*expression))
        if cmd is not None:
            args.append(cmd.encode("ascii"))
        opts = 0 if cmd == "out" else tt.MISC_NO_UPDATE_LOG
        result = self._request(tt.encode_misc(b"search", args, opts), tt.parse_misc, cmd != "out")
        if result is None:
            raise ServerError(
                "search failed (only table databases can be searched)", code=1, procedure="search"
            )
        result, _hint = tt.split_hint(result)
        if cmd is None:
            return self._decode_keys(result)
        if cmd == "count":
            return tt.parse_search_count(result)
        if cmd == "get":
            return [self._search_record(item) for item in result]
        return True

    def _search_record(self, item: bytes) -> Tuple[Any, Dict[Any, Any]]:
        pkey, columns = tt.parse_search_record(item)
        decode = TT_TABLE.decode
        record = decode(tt.join_columns(columns)) if columns else {}
        return (None if pkey is None else self._decode_key(pkey)), record


class QueryBuilder:
    """Build a table query step by step, then run it with ``execute``/``get``/``count``/``delete``.

    >>> query = QueryBuilder().filter('age', OP_NUM_GE, 18).order_by('name').limit(10)
    >>> query.execute(db)    # keys
    """

    def __init__(self) -> None:
        self._conditions: List[Tuple[Any, ...]] = []
        self._orderings: List[Tuple[Any, ...]] = []
        self._limit: Optional[int] = None
        self._offset: Optional[int] = None

    def filter(self, column: Union[str, bytes], op: int, value: Any) -> QueryBuilder:
        """Add a condition; ``op`` is an OP_* constant, optionally ``| OP_NEGATE | OP_NOINDEX``.

        A list/tuple ``value`` (for OP_STR_ANY, OP_NUM_BETWEEN, ...) is sent as its items
        separated by commas.
        """
        op = _int(op, "op")
        if op & ~(OP_NEGATE | OP_NOINDEX) not in _OPS:
            raise ValueError(f"unknown query operator {op!r}; use the OP_* constants")
        if isinstance(value, (list, tuple)):
            value = b",".join(_text(item, "filter value") for item in value)
        self._conditions.append(("addcond", _text(column, "column"), op, _text(value, "filter value")))
        return self

    def order_by(self, column: Union[str, bytes], ordering: Optional[int] = None) -> QueryBuilder:
        """Order the results by ``column`` (ORDER_STR_ASC unless told otherwise)."""
        ordering = ORDER_STR_ASC if ordering is None else _int(ordering, "ordering")
        if ordering not in _ORDERS:
            raise ValueError(f"unknown ordering {ordering!r}; use the ORDER_* constants")
        self._orderings.append(("setorder", _text(column, "column"), ordering))
        return self

    def limit(self, limit: Optional[int] = None) -> QueryBuilder:
        if limit is not None and _int(limit, "limit") < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        self._limit = limit
        return self

    def offset(self, offset: Optional[int] = None) -> QueryBuilder:
        if offset is not None and _int(offset, "offset") < 0:
            raise ValueError(f"offset must be >= 0 or None, not {offset}")
        self._offset = offset
        return self

    def build_search(self) -> List[Tuple[Any, ...]]:
        """The query as ``TokyoTyrant.search`` expressions."""
        expressions = list(self._conditions) + list(self._orderings)
        if self._limit is not None or self._offset is not None:
            expressions.append(("setlimit", -1 if self._limit is None else self._limit, self._offset or 0))
        return expressions

    def execute(self, client: TokyoTyrant) -> List[Any]:
        """The primary keys of the matching records."""
        return client.search(self.build_search())

    def delete(self, client: TokyoTyrant) -> bool:
        """Remove the matching records."""
        return client.search(self.build_search(), "out")

    def get(self, client: TokyoTyrant) -> List[Tuple[Any, Dict[Any, Any]]]:
        """``(key, {column: value})`` for each matching record."""
        return client.search(self.build_search(), "get")

    def count(self, client: TokyoTyrant) -> int:
        """The number of matching records."""
        return client.search(self.build_search(), "count")
