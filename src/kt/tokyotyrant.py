"""The Tokyo Tyrant client (``TokyoTyrant``), table queries (``QueryBuilder``) and constants.

Thin by design: each method checks its arguments, serializes, builds one request with the
sans-IO codec ``kt.protocol.tt_binary`` and hands it to the shared transport
(``kt.transport.Pool``).  Logical outcomes are return values (a missing key is ``None``,
``add`` of an existing key is ``False``); failures that can only mean trouble raise
``ServerError`` / ``ScriptError``.

No-reply writes (``setnr``/``setnr_bulk``, ``set(no_reply=True)``) never hold a connection,
and a later read from the same thread sees them (:mod:`kt.pooled`, shared with KT).

Only requests whose repetition cannot change the outcome are resent after a dropped
connection (``idempotent=True`` below; the table is in docs/reliability.md): reads, ``set``,
``remove_bulk``, ``clear``, ``sync``, ``optimize``, ``copy``, read-only ``misc`` and
``search``.  Every other write that loses its connection after being sent raises
``ConnectionDroppedError``: it may or may not have been applied.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from kt.ops import tt as _ops
from kt.ops.codec import Codec, check_int
from kt.pooled import PooledClient
from kt.protocol import tt_binary as tt
from kt.serializers import KT_BINARY, Serializer
from kt.transport import DEFAULT_CONNECT_TIMEOUT, Pool

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
        connection_pool: bool = True,
    ) -> None:
        """``connection_pool`` is accepted for coleifer/kt code; connections are always pooled."""
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


class TokyoTyrant(TokyoTyrantBase, PooledClient):
    """Client for a Tokyo Tyrant server (ttserver 1.1.41 protocol) or kt's bundled one.

    Every method runs one operation of :mod:`kt.ops.tt` (the asyncio client runs the same
    ones).  ``max_connections`` bounds the pool (default 32).
    """

    def _bind(self) -> None:
        self._init_no_reply(self._pool)  # kt.pooled: no-reply writes, close/checkin/open/lua

    # -- single records -------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        """The value at ``key`` (deserialized), or None when there is none."""
        return self._run(_ops.get(self._codec, key))

    def get_raw(self, key: Key) -> Optional[bytes]:
        """The stored bytes at ``key``, or None."""
        return self._run(_ops.get_raw(self._codec, key))

    get_bytes = get_raw

    def set(self, key: Key, value: Any, no_reply: bool = False) -> Optional[bool]:
        """Store ``value`` at ``key`` (overwriting); True, or ServerError if the server refused.

        ``no_reply``: send it as ``setnr`` and return None without waiting."""
        if no_reply:
            return self.setnr(key, value)
        return self._run(_ops.set(self._codec, key, value))

    def set_bytes(self, key: Key, value: Any, no_reply: bool = False) -> Optional[bool]:
        """``set`` of bytes (or text) without the serializer."""
        return self._run_or_send(_ops.set_bytes(self._codec, key, value, no_reply))

    def add(self, key: Key, value: Any, encode_value: bool = True) -> bool:
        """Store only if ``key`` is new; False when it already exists."""
        return self._run(_ops.add(self._codec, key, value, encode_value))

    def append(self, key: Key, value: Any, encode_value: bool = True) -> bool:
        """Append to the value at ``key`` (creating it when missing)."""
        return self._run(_ops.append(self._codec, key, value, encode_value))

    def addshl(self, key: Key, value: Any, width: int, encode_value: bool = True) -> bool:
        """Append, then keep only the last ``width`` bytes of the value."""
        return self._run(_ops.addshl(self._codec, key, value, width, encode_value))

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

    def seize(self, key: Key, decode_value: bool = True) -> Any:
        """Get and remove the value at ``key`` (None when missing); two requests, not atomic."""
        return self._run(_ops.seize(self._codec, key, decode_value))

    pop = seize

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

    def get_part(
        self, key: Key, start: Optional[int] = None, end: Optional[int] = None, decode_value: bool = True
    ) -> Any:
        """Part of the value: ``end`` bytes (a length, as in the seed) from offset ``start``
        (defaults: 0 and the rest).  False when the key is missing or ``start`` is past the
        end of the value.  KT_BINARY/KT_NONE decode the part (unless ``decode_value`` is
        False); other serializers give bytes."""
        return self._run(_ops.get_part(self._codec, key, start, end, decode_value))

    # -- bulk -----------------------------------------------------------------------------

    def get_bulk(self, keys: Iterable[Key], decode_values: bool = True) -> Dict[Any, Any]:
        """Dict of the keys found (deserialized values unless ``decode_values`` is False);
        missing keys are left out."""
        return self._run(_ops.get_bulk(self._codec, keys, decode_values))

    def get_bulk_raw(self, keys: Iterable[Key]) -> Dict[Any, bytes]:
        """Dict of the keys found, values as stored bytes."""
        return self._run(_ops.get_bulk_raw(self._codec, keys))

    def set_bulk(
        self, __data: Optional[Dict[Any, Any]] = None, no_reply: bool = False, encode_values: bool = True,
        **kwargs: Any,
    ) -> Optional[bool]:
        """Store many records in one call (misc ``putlist``); ``no_reply``: as no-reply puts
        (returns None); ``encode_values=False`` sends bytes/text without the serializer."""
        return self._run_or_send(
            _ops.set_bulk(self._codec, __data, no_reply=no_reply, encode_values=encode_values, **kwargs)
        )

    def update(
        self, __data: Optional[Dict[Any, Any]] = None, db: Any = None, expire_time: Any = None,
        no_reply: bool = False, encode_values: bool = True, **kwargs: Any,
    ) -> Optional[bool]:
        """Same as ``set_bulk`` (``db`` and ``expire_time`` exist for signature compatibility
        with KyotoTycoon; Tokyo Tyrant has neither)."""
        return self._run_or_send(_ops.update(
            self._codec, __data, db, expire_time, no_reply=no_reply, encode_values=encode_values, **kwargs
        ))

    def remove_bulk(self, keys: Iterable[Key]) -> bool:
        """Remove many records in one call (misc ``outlist``; missing keys are ignored)."""
        return self._run(_ops.remove_bulk(self._codec, keys))

    def setdup(self, key: Key, value: Any, encode_value: bool = True) -> bool:
        """B+ tree: add ``value`` after the key's existing values (False on other databases)."""
        return self._run(_ops.setdup(self._codec, key, value, encode_value))

    def setdupback(self, key: Key, value: Any, encode_value: bool = True) -> bool:
        """B+ tree: add ``value`` before the key's existing values (False on other databases)."""
        return self._run(_ops.setdupback(self._codec, key, value, encode_value))

    # -- misc, script ---------------------------------------------------------------------

    def misc(
        self, cmd: Union[str, bytes], args: Optional[Sequence[Any]] = None, update_log: bool = True,
        decode_values: bool = False,
    ) -> Any:
        """Call a database function; a list of byte strings (deserialized values with
        ``decode_values``), or None when it failed.

        ``update_log=False`` sets RDBMONOULOG (opts bit 0): the call is not written to the
        server's update log.
        """
        return self._run(_ops.misc(self._codec, cmd, args, update_log, decode_values))

    def script(
        self,
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
    ) -> Any:
        """Call the Lua function ``name(key, value)`` of the server's ``-ext`` script.

        Returns the bytes it returned (deserialized when ``decode_result``).  ScriptError
        when the function is missing, fails, or returns nil/false (the protocol cannot tell
        these apart).
        """
        return self._run(_ops.script(
            self._codec, name, key, value, lock_records, lock_all, encode_value, decode_result, decode_value,
            as_list, as_dict, as_int,
        ))

    _script = script  # what ``db.lua.name(...)`` calls

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

    def restore(self, path: Union[str, bytes], timestamp: Any, options: int = 0) -> bool:
        """Replay the update logs in directory ``path`` from ``timestamp`` (microseconds since
        the epoch, or a local-time ``datetime``) on."""
        return self._run(_ops.restore(self._codec, path, timestamp, options))

    def set_master(self, host: Union[str, bytes], port: int, timestamp: Any, options: int = 0) -> bool:
        """Replicate from the master ``host:port`` starting at ``timestamp`` (as ``restore``)."""
        return self._run(_ops.set_master(self._codec, host, port, timestamp, options))

    def clear_cache(self) -> bool:
        """Drop the server's record cache (misc ``cacheclear``)."""
        return self._run(_ops.clear_cache(self._codec))

    def defragment(self, nsteps: Optional[int] = None) -> bool:
        """Defragment the database file (misc ``defrag``), ``nsteps`` steps or all."""
        return self._run(_ops.defragment(self._codec, nsteps))

    def copy(self, path: Union[str, bytes]) -> bool:
        """Copy the database file to ``path`` on the server's machine."""
        return self._run(_ops.copy(self._codec, path))

    def genuid(self) -> int:
        """A new unique ID (table databases)."""
        return self._run(_ops.genuid(self._codec))

    # -- ranges and iteration -------------------------------------------------------------

    def get_range(
        self, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0,
        decode_values: bool = True,
    ) -> Dict[Any, Any]:
        """B+ tree: the records with ``start <= key < stop`` (``max_keys`` 0 = all).  A dict
        holds one value per key; ``get_rangelist`` keeps every record of a duplicate key."""
        return self._run(_ops.get_range(self._codec, start, stop, max_keys, decode_values))

    def get_rangelist(
        self, start: Optional[Key] = None, stop: Optional[Key] = None, max_keys: int = 0,
        decode_values: bool = True,
    ) -> List[Tuple[Any, Any]]:
        """Like ``get_range``, as a list of ``(key, value)`` (duplicate keys included)."""
        return self._run(_ops.get_rangelist(self._codec, start, stop, max_keys, decode_values))

    def match_prefix(self, prefix: Key, max_keys: Optional[int] = 1024) -> List[Any]:
        """Keys starting with ``prefix`` (at most ``max_keys``; None = all)."""
        return self._run(_ops.match_prefix(self._codec, prefix, max_keys))

    def match_regex(self, regex: Union[str, bytes], max_keys: Optional[int] = 1024) -> List[Any]:
        """Keys matching the POSIX extended ``regex`` (at most ``max_keys`` records; None =
        all), each key once."""
        return self._run(_ops.match_regex(self._codec, regex, max_keys))

    def match_regexlist(
        self, regex: Union[str, bytes], max_keys: Optional[int] = None, decode_values: bool = True
    ) -> List[Tuple[Any, Any]]:
        """The records whose key matches ``regex``, as ``(key, value)`` pairs."""
        return self._run(_ops.match_regexlist(self._codec, regex, max_keys, decode_values))

    def iter_from(self, start_key: Key) -> Dict[Any, Any]:
        """The records from ``start_key`` to the end of the database, in iteration order.

        Uses the server's one shared iterator (as every Tokyo Tyrant client does).
        """
        return self._run(_ops.iter_from(self._codec, start_key))

    def keys(self) -> List[Any]:
        """Every record's key, in the database's order (a B+ tree key with duplicate records
        comes once per record; ``keys_fast`` gives each key once, in one request)."""
        return self._run(_ops.keys(self._codec))

    def keys_fast(self) -> List[Any]:
        """Every distinct key, in one request (``fwmkeys``)."""
        return self._run(_ops.keys_fast(self._codec))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def items(self, start_key: Optional[Key] = None) -> List[Tuple[Any, Any]]:
        """Every record as ``(key, value)``, in the database's order, duplicates included
        (B+ tree: misc ``range`` in chunks; others: ``fwmkeys`` + ``mget``).  From
        ``start_key`` on when given (walking the server's one shared iterator)."""
        return self._run(_ops.items(self._codec, start_key))

    def items_fast(self) -> List[Tuple[Any, Any]]:
        """B+ tree: every record in one request (ServerError on other databases)."""
        return self._run(_ops.items_fast(self._codec))

    def values(self) -> List[Any]:
        """Every record's value, in the database's order."""
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


def refines_clone(method: Callable[..., None]) -> Callable[..., Any]:
    """Run a query-building ``method`` on ``self.clone()`` and return the clone: the query it
    is called on stays as it was (coleifer/kt's queries behave this way)."""

    @functools.wraps(method)
    def refine(self: Any, *args: Any, **kwargs: Any) -> Any:
        twin = self.clone()
        method(twin, *args, **kwargs)
        return twin

    return refine


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

    def clone(self) -> QueryBuilder:
        """A copy; ``filter``/``order_by``/``limit``/``offset`` return one (the query they are
        called on is left as it was, as in coleifer/kt), so a base query can be refined twice."""
        twin = QueryBuilder()
        twin._conditions = list(self._conditions)
        twin._orderings = list(self._orderings)
        twin._limit, twin._offset = self._limit, self._offset
        return twin

    @refines_clone
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

    @refines_clone
    def order_by(self, column: Union[str, bytes], ordering: Optional[int] = None) -> QueryBuilder:
        """Order the results by ``column`` (ORDER_STR_ASC unless told otherwise)."""
        ordering = ORDER_STR_ASC if ordering is None else check_int(ordering, "ordering")
        if ordering not in _ORDERS:
            raise ValueError(f"unknown ordering {ordering!r}; use the ORDER_* constants")
        self._orderings.append(("setorder", _text(column, "column"), ordering))

    @refines_clone
    def limit(self, limit: Optional[int] = None) -> QueryBuilder:
        if limit is not None and check_int(limit, "limit") < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        self._limit = limit

    @refines_clone
    def offset(self, offset: Optional[int] = None) -> QueryBuilder:
        if offset is not None and check_int(offset, "offset") < 0:
            raise ValueError(f"offset must be >= 0 or None, not {offset}")
        self._offset = offset

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
