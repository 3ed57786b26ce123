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
it, at most ``timeout`` (or ``connect_timeout``).

Only requests whose repetition cannot change the outcome are resent after a dropped
connection (``idempotent=True`` below; the table is in docs/reliability.md): reads, ``set``,
``remove_bulk``, ``clear``, ``sync``, ``optimize``, ``copy``, read-only ``misc`` and
``search``.  Every other write that loses its connection after being sent raises
``ConnectionDroppedError``: it may or may not have been applied.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from kt.ops import run
from kt.ops import tt as _ops
from kt.ops.codec import Codec, check_int
from kt.protocol import tt_binary as tt
from kt.serializers import KT_BINARY, Serializer
from kt.transport import DEFAULT_CONNECT_TIMEOUT, ConnectionDroppedError, Pool

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

Key = _ops.Key
_text = Codec.arg


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


class TokyoTyrantBase:
    """What the sync and the asyncio TokyoTyrant share: settings and Codec.

    ``_transport`` is the pool class (``Pool`` here, ``kt.aio.transport.AsyncPool`` there);
    ``_bind`` attaches the driver that runs operations over it.  ``max_connections=None``
    means the transport's default (32 sync, 4 asyncio).
    """

    _transport: Any = Pool

    def __init__(
        self,
        host: str = "",
        port: int = 1978,
        serializer: Any = KT_BINARY,
        decode_keys: bool = True,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_connections: Optional[int] = None,
    ) -> None:
        self._codec = Codec(serializer, decode_keys)
        self.decode_keys = decode_keys
        size = {} if max_connections is None else {"max_size": max_connections}
        self._pool = self._transport(host, port, timeout=timeout, connect_timeout=connect_timeout, **size)
        self.host = self._pool.host
        self.port = port
        self.timeout = timeout
        self._bind()

    def _bind(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._pool.address} serializer={self._codec.serializer.name}>"

    @property
    def serializer(self) -> Serializer:
        return self._codec.serializer

    @property
    def pool(self) -> Any:
        return self._pool


class TokyoTyrant(TokyoTyrantBase):
    """Client for a Tokyo Tyrant server (ttserver 1.1.41 protocol) or kt's bundled one.

    Every method runs one operation of :mod:`kt.ops.tt` (the asyncio client runs the same
    ones).  ``max_connections`` bounds the pool (default 32).
    """

    def _bind(self) -> None:
        # While some thread holds a no-reply connection, requests look for it first.
        self._run_pooled = partial(run, self._pool.request)
        self._run_pending = partial(run, self._request)
        self._run = self._run_pooled
        self._local = threading.local()
        self._pending_threads = 0  # > 0 while some thread holds a no-reply connection
        self._pending_lock = threading.Lock()

    # -- transport ------------------------------------------------------------------------

    def _request(self, data: bytes, parse: Any, idempotent: bool = False) -> Any:
        """Pool.request, but first on this thread's no-reply connection (when it has one)."""
        if self._pending_threads:
            conn = self._reclaim()
            if conn is not None:
                if conn.is_stale():  # dropped: nothing to wait for, nothing sent yet
                    self._pool.release(conn)
                else:
                    try:
                        return conn.request(data, parse)
                    except ConnectionDroppedError:
                        if not idempotent:
                            raise
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
            self._run = self._run_pending if self._pending_threads else self._run_pooled

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

    # -- single records -------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        """The value at ``key`` (deserialized), or None when there is none."""
        return self._run(_ops.get(self._codec, key))

    def get_raw(self, key: Key) -> Optional[bytes]:
        """The stored bytes at ``key``, or None."""
        return self._run(_ops.get_raw(self._codec, key))

    def set(self, key: Key, value: Any) -> bool:
        """Store ``value`` at ``key`` (overwriting); True, or ServerError if the server refused."""
        return self._run(_ops.set(self._codec, key, value))

    def add(self, key: Key, value: Any) -> bool:
        """Store only if ``key`` is new; False when it already exists."""
        return self._run(_ops.add(self._codec, key, value))

    def append(self, key: Key, value: Any) -> bool:
        """Append to the value at ``key`` (creating it when missing)."""
        return self._run(_ops.append(self._codec, key, value))

    def addshl(self, key: Key, value: Any, width: int) -> bool:
        """Append, then keep only the last ``width`` bytes of the value."""
        return self._run(_ops.addshl(self._codec, key, value, width))

    def setnr(self, key: Key, value: Any) -> None:
        """Store without waiting for (or getting) any reply."""
        self._send_no_reply(_ops.setnr(self._codec, key, value).data)

    def setnr_bulk(self, __data: Optional[Dict[Any, Any]] = None, **kwargs: Any) -> None:
        """Store many records with no-reply puts, all in one write."""
        plan = _ops.setnr_bulk(self._codec, __data, **kwargs)
        if plan is not None:
            self._send_no_reply(plan.data)

    def remove(self, key: Key) -> int:
        """Remove ``key``; the number of records removed (1 or 0)."""
        return self._run(_ops.remove(self._codec, key))

    def exists(self, key: Key) -> bool:
        """True when ``key`` exists."""
        return self._run(_ops.exists(self._codec, key))

    def length(self, key: Key) -> Optional[int]:
        """The size in bytes of the value at ``key`` (None when missing)."""
        return self._run(_ops.length(self._codec, key))

    def incr(self, key: Key, n: int = 1) -> int:
        """Add ``n`` (may be negative) to a 4-byte integer record; returns the new value."""
        return self._run(_ops.incr(self._codec, key, n))

    def incr_double(self, key: Key, n: float = 1.0) -> float:
        """Add ``n`` (may be negative) to an 8-byte double record; returns the new value."""
        return self._run(_ops.incr_double(self._codec, key, n))

    def get_part(self, key: Key, start: Optional[int] = None, end: Optional[int] = None) -> Any:
        """Part of the value: ``end`` bytes (a length, as in the seed) from offset ``start``
        (defaults: 0 and the rest).  False when the key is missing or ``start`` is past the
        end of the value.  KT_BINARY/KT_NONE decode the part; other serializers give bytes."""
        return self._run(_ops.get_part(self._codec, key, start, end))

    # -- bulk -----------------------------------------------------------------------------

    def get_bulk(self, keys: Iterable[Key]) -> Dict[Any, Any]:
        """Dict of the keys found (deserialized values); missing keys are left out."""
        return self._run(_ops.get_bulk(self._codec, keys))

    def get_bulk_raw(self, keys: Iterable[Key]) -> Dict[Any, bytes]:
        """Dict of the keys found, values as stored bytes."""
        return self._run(_ops.get_bulk_raw(self._codec, keys))

    def set_bulk(self, __data: Optional[Dict[Any, Any]] = None, **kwargs: Any) -> bool:
        """Store many records in one call (misc ``putlist``)."""
        return self._run(_ops.set_bulk(self._codec, __data, **kwargs))

    def update(
        self, __data: Optional[Dict[Any, Any]] = None, db: Any = None, expire_time: Any = None, **kwargs: Any
    ) -> bool:
        """Same as ``set_bulk`` (``db`` and ``expire_time`` exist for signature compatibility
        with KyotoTycoon; Tokyo Tyrant has neither)."""
        return self._run(_ops.update(self._codec, __data, db, expire_time, **kwargs))

    def remove_bulk(self, keys: Iterable[Key]) -> bool:
        """Remove many records in one call (misc ``outlist``; missing keys are ignored)."""
        return self._run(_ops.remove_bulk(self._codec, keys))

    def setdup(self, key: Key, value: Any) -> bool:
        """B+ tree: add ``value`` after the key's existing values (False on other databases)."""
        return self._run(_ops.setdup(self._codec, key, value))

    def setdupback(self, key: Key, value: Any) -> bool:
        """B+ tree: add ``value`` before the key's existing values (False on other databases)."""
        return self._run(_ops.setdupback(self._codec, key, value))

    # -- misc, script ---------------------------------------------------------------------

    def misc(
        self, cmd: Union[str, bytes], args: Optional[Sequence[Any]] = None, update_log: bool = True
    ) -> Any:
        """Call a database function; a list of byte strings, or None when it failed.

        ``update_log=False`` sets RDBMONOULOG (opts bit 0): the call is not written to the
        server's update log.
        """
        return self._run(_ops.misc(self._codec, cmd, args, update_log))

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
        return self._run(
            _ops.script(self._codec, name, key, value, lock_records, lock_all, encode_value, decode_result)
        )

    # -- database -------------------------------------------------------------------------

    def clear(self) -> bool:
        """Remove every record."""
        return self._run(_ops.clear(self._codec))

    def status(self) -> Dict[str, str]:
        """The server's ``stat`` report as a dict of str."""
        return self._run(_ops.status(self._codec))

    def count(self) -> int:
        """Number of records."""
        return self._run(_ops.count(self._codec))

    def __len__(self) -> int:
        return self._run(_ops.count(self._codec))

    @property
    def size(self) -> int:
        """Size of the database (file size, or memory use for on-memory databases)."""
        return self._run(_ops.size(self._codec))

    @property
    def error(self) -> Optional[Tuple[int, str]]:
        """(code, message) of the server's last error, or None where the database has none
        (on-memory databases do not keep one)."""
        return self._run(_ops.error(self._codec))

    def optimize(self, options: Union[str, bytes] = "") -> bool:
        """Rebuild the database with Tokyo Cabinet tuning ``options`` (e.g. ``'bnum=1000'``)."""
        return self._run(_ops.optimize(self._codec, options))

    def synchronize(self) -> bool:
        """Write the database to disk."""
        return self._run(_ops.synchronize(self._codec))

    def copy(self, path: Union[str, bytes]) -> bool:
        """Copy the database file to ``path`` on the server's machine."""
        return self._run(_ops.copy(self._codec, path))

    def genuid(self) -> int:
        """A new unique ID (table databases)."""
        return self._run(_ops.genuid(self._codec))

    # -- ranges and iteration -------------------------------------------------------------

    def get_range(
        self, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0
    ) -> Dict[Any, Any]:
        """B+ tree: the records with ``start <= key < stop`` (``max_keys`` 0 = all)."""
        return self._run(_ops.get_range(self._codec, start, stop, max_keys))

    def match_prefix(self, prefix: Key, max_keys: Optional[int] = 1024) -> List[Any]:
        """Keys starting with ``prefix`` (at most ``max_keys``; None = all)."""
        return self._run(_ops.match_prefix(self._codec, prefix, max_keys))

    def match_regex(self, regex: Union[str, bytes], max_keys: Optional[int] = 1024) -> List[Any]:
        """Keys matching the POSIX extended ``regex`` (at most ``max_keys``; None = all)."""
        return self._run(_ops.match_regex(self._codec, regex, max_keys))

    def iter_from(self, start_key: Key) -> Dict[Any, Any]:
        """The records from ``start_key`` to the end of the database, in iteration order.

        Uses the server's one shared iterator (as every Tokyo Tyrant client does).
        """
        return self._run(_ops.iter_from(self._codec, start_key))

    def keys(self) -> List[Any]:
        """Every key, in the database's order."""
        return self._run(_ops.keys(self._codec))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def items(self) -> List[Tuple[Any, Any]]:
        """Every ``(key, value)``, in the database's order (fetched in chunks with ``mget``)."""
        return self._run(_ops.items(self._codec))

    def values(self) -> List[Any]:
        """Every value, in the database's order."""
        return self._run(_ops.values(self._codec))

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
        return self._run(_ops.set_index(self._codec, name, index_type, check_exists))

    def optimize_index(self, name: Union[str, bytes]) -> bool:
        """Rebuild the index on column ``name``."""
        return self._run(_ops.optimize_index(self._codec, name))

    def delete_index(self, name: Union[str, bytes]) -> bool:
        """Drop the index on column ``name``."""
        return self._run(_ops.delete_index(self._codec, name))

    def search(self, expressions: Iterable[Sequence[Any]], cmd: Optional[str] = None) -> Any:
        """Run a table query.

        Each expression is the fields of one query command as on the wire, e.g.
        ``('addcond', 'age', OP_NUM_GE, '5')``, ``('setorder', 'name', ORDER_STR_ASC)``,
        ``('setlimit', 10, 0)``.  ``cmd``: None -> list of primary keys, ``'count'`` -> int,
        ``'get'`` -> list of ``(key, {column: value})``, ``'out'`` -> remove the matches (True).
        """
        return self._run(_ops.search(self._codec, expressions, cmd))


class QueryBuilder:
    """Build a table query step by step, then run it with ``execute``/``get``/``count``/``delete``.

    >>> query = QueryBuilder().filter('age', OP_NUM_GE, 18).order_by('name').limit(10)
    >>> query.execute(db)    # keys

    Given a ``kt.aio.TokyoTyrant`` the four methods return an awaitable (they return what the
    client's ``search`` returns): ``await query.execute(async_db)``.
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
        op = check_int(op, "op")
        if op & ~(OP_NEGATE | OP_NOINDEX) not in _OPS:
            raise ValueError(f"unknown query operator {op!r}; use the OP_* constants")
        if isinstance(value, (list, tuple)):
            value = b",".join(_text(item, "filter value") for item in value)
        self._conditions.append(("addcond", _text(column, "column"), op, _text(value, "filter value")))
        return self

    def order_by(self, column: Union[str, bytes], ordering: Optional[int] = None) -> QueryBuilder:
        """Order the results by ``column`` (ORDER_STR_ASC unless told otherwise)."""
        ordering = ORDER_STR_ASC if ordering is None else check_int(ordering, "ordering")
        if ordering not in _ORDERS:
            raise ValueError(f"unknown ordering {ordering!r}; use the ORDER_* constants")
        self._orderings.append(("setorder", _text(column, "column"), ordering))
        return self

    def limit(self, limit: Optional[int] = None) -> QueryBuilder:
        if limit is not None and check_int(limit, "limit") < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        self._limit = limit
        return self

    def offset(self, offset: Optional[int] = None) -> QueryBuilder:
        if offset is not None and check_int(offset, "offset") < 0:
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
