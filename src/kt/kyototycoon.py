"""The Kyoto Tycoon client: ``KyotoTycoon`` and its server-side ``Cursor``.

Single-record and bulk get/set/remove travel over KT's binary protocol (the fastest path the
server offers); everything else is a TSV-RPC call over HTTP/1.1 keep-alive on the same pooled
connections.  Keys are encoded by :func:`kt.serializers.encode_key` and decoded with
``decode_keys``; values go through the client's serializer; ``expire_time`` goes through
:mod:`kt.expiry` only.  Logical outcomes (missing key, failed add/cas...) are return values;
any other failure raises :class:`kt.errors.ServerError` carrying the server's ERROR text.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from kt.errors import ServerConnectionError
from kt.expiry import ExpireTime
from kt.ops import Plan, run
from kt.ops import kt as _ops
from kt.ops.codec import Codec, check_db
from kt.pooled import PooledClient
from kt.serializers import KT_BINARY, Serializer
from kt.transport import DEFAULT_CONNECT_TIMEOUT, Connection, Pool

__all__ = ["KyotoTycoon", "Cursor"]


class KyotoTycoonBase:
    """What the sync and the asyncio KyotoTycoon share: settings, Codec, default database.

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
        default_db: int = 0,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_connections: Optional[int] = None,
        connection_pool: bool = True,
    ) -> None:
        """``connection_pool`` is accepted for coleifer/kt code; connections are always pooled."""
        size = {} if max_connections is None else {"max_size": max_connections}
        self._pool = self._transport(host, port, timeout=timeout, connect_timeout=connect_timeout, **size)
        self.host = self._pool.host
        self.port = port
        self.timeout = timeout
        self._codec = Codec(serializer, decode_keys, default_db, f"{self.host}:{port}")
        self.decode_keys = decode_keys
        self._bind()

    def _bind(self) -> None:
        self._run = partial(run, self._pool.request)  # bound once: every operation goes through it

    def __repr__(self) -> str:
        name, codec = type(self).__name__, self._codec
        return f"<{name} {self.host}:{self.port} db={codec.default_db} {codec.serializer.name}>"

    @property
    def serializer(self) -> Serializer:
        """The value serializer (``KT_BINARY``, ``KT_JSON``... or a custom pair)."""
        return self._codec.serializer

    @property
    def default_db(self) -> int:
        return self._codec.default_db

    @default_db.setter
    def default_db(self, db: int) -> None:
        self._codec.default_db = check_db(db)

    def set_database(self, db: int) -> Any:
        """Make ``db`` the database used when a call passes ``db=None``."""
        self.default_db = db
        return self


class KyotoTycoon(KyotoTycoonBase, PooledClient):
    """Client for one Kyoto Tycoon server (thread-safe; connections are pooled).

    ``timeout`` bounds each whole request, from sending to the reply's last byte (None: wait
    forever); ``connect_timeout`` bounds connecting; ``max_connections`` bounds the pool
    (default 32).  Every method runs one operation of :mod:`kt.ops.kt` (the asyncio client
    runs the same ones).
    """

    def _bind(self) -> None:
        self._init_no_reply(self._pool)  # kt.pooled: no-reply writes, close/checkin/open/lua

    # -- connection management (close, checkin, open, close_idle, lua: kt.pooled) -------

    def __iter__(self) -> Iterator[Any]:
        """The keys of the default database (``list(db)``)."""
        return self.keys()

    def _rpc(self, procedure: str, params: List[Tuple[bytes, bytes]], db: Optional[int] = None) -> bool:
        """Call any RPC procedure: True on success, False on a logical failure (450)."""
        return self._run(_ops.rpc(self._codec, procedure, params, db))

    # -- binary protocol: single records ------------------------------------------------

    def get_raw(self, key: Any, db: Optional[int] = None) -> Optional[bytes]:
        """The stored bytes of ``key``, or None when it does not exist."""
        return self._run(_ops.get_raw(self._codec, key, db))

    get_bytes = get_raw

    def get(self, key: Any, db: Optional[int] = None) -> Any:
        """The deserialized value of ``key``, or None when it does not exist."""
        return self._run(_ops.get(self._codec, key, db))

    def set(
        self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
        no_reply: bool = False,
    ) -> Optional[int]:
        """Store ``value`` (overwriting); returns the number of records set (1).

        ``no_reply``: sent with the binary protocol's no-reply flag; returns None at once
        (a later call from the same thread sees the write, see :mod:`kt.noreply`)."""
        if no_reply:
            return self._run_or_send(_ops.set_no_reply(self._codec, key, value, db, expire_time))
        return self._run(_ops.set(self._codec, key, value, db, expire_time))

    def set_bytes(
        self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
        no_reply: bool = False,
    ) -> Optional[int]:
        """``set`` of bytes (or text, as UTF-8) without the serializer."""
        if no_reply:
            return self._run_or_send(_ops.set_no_reply(self._codec, key, value, db, expire_time, False))
        return self._run(_ops.set_bytes(self._codec, key, value, db, expire_time))

    def remove(self, key: Any, db: Optional[int] = None, no_reply: bool = False) -> Optional[int]:
        """Remove ``key``; returns the number of records removed (0 or 1); None with ``no_reply``."""
        return self._run_or_send(_ops.remove(self._codec, key, db, no_reply))

    # -- binary protocol: bulk ----------------------------------------------------------

    def get_bulk_raw(self, keys: Iterable[Any], db: Optional[int] = None) -> Dict[Any, bytes]:
        """``{key: raw bytes}`` for every key that exists."""
        return self._run(_ops.get_bulk_raw(self._codec, keys, db))

    def get_bulk(
        self, keys: Iterable[Any], db: Optional[int] = None, decode_values: bool = True
    ) -> Dict[Any, Any]:
        """``{key: value}`` for every key that exists (values as bytes unless ``decode_values``)."""
        return self._run(_ops.get_bulk(self._codec, keys, db, decode_values))

    def get_bulk_details(
        self, keys: Iterable[Any], db: Optional[int] = None, decode_values: bool = True
    ) -> List[Tuple[int, Any, Any, Optional[int]]]:
        """``[(db, key, value, expire_time)]`` for the keys that exist; ``expire_time`` is the
        stored expiry in epoch seconds, None for none."""
        return self._run(_ops.get_bulk_details(self._codec, keys, db, decode_values))

    def get_bulk_raw_details(
        self, db_key_list: Iterable[Tuple[int, Any]], decode_values: bool = True
    ) -> List[Tuple[int, Any, Any, Optional[int]]]:
        """Like ``get_bulk_details`` for ``(db, key)`` pairs, across databases."""
        return self._run(_ops.get_bulk_raw_details(self._codec, db_key_list, decode_values))

    def set_bulk(
        self,
        __data: Optional[Mapping[Any, Any]] = None,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
        no_reply: bool = False,
        encode_values: bool = True,
        **kwargs: Any,
    ) -> Optional[int]:
        """Store every pair of ``__data`` and ``kwargs``; returns the number stored (None with
        ``no_reply``); ``encode_values=False`` sends bytes/text without the serializer."""
        return self._run_or_send(
            _ops.set_bulk(self._codec, __data, db, expire_time, no_reply, encode_values, **kwargs)
        )

    update = set_bulk

    def set_bulk_raw(
        self, data: Iterable[Tuple[int, Any, Any, ExpireTime]], no_reply: bool = False,
        encode_values: bool = True,
    ) -> Optional[int]:
        """Store ``(db, key, value, expire_time)`` records across databases."""
        return self._run_or_send(_ops.set_bulk_raw(self._codec, data, no_reply, encode_values))

    def remove_bulk(
        self, keys: Iterable[Any], db: Optional[int] = None, no_reply: bool = False
    ) -> Optional[int]:
        """Remove every key; returns the number actually removed (None with ``no_reply``)."""
        return self._run_or_send(_ops.remove_bulk(self._codec, keys, db, no_reply))

    def remove_bulk_raw(
        self, db_key_list: Iterable[Tuple[int, Any]], no_reply: bool = False
    ) -> Optional[int]:
        """Remove ``(db, key)`` pairs across databases; the number removed."""
        return self._run_or_send(_ops.remove_bulk_raw(self._codec, db_key_list, no_reply))

    def script(
        self, name: Any, __data: Optional[Mapping[Any, Any]] = None, encode_values: bool = True,
        decode_values: Optional[bool] = None, no_reply: bool = False, **kwargs: Any
    ) -> Optional[Dict[Any, Any]]:
        """Run the server-side Lua procedure ``name`` (binary play_script) and return its output.

        With ``encode_values`` the input values are serialized and the output values
        deserialized with the client's serializer; otherwise values are bytes (str is sent
        as UTF-8) and the output values are returned as bytes.  ScriptError when the
        procedure fails, is missing, or scripting is disabled.
        """
        return self._run_or_send(
            _ops.script(self._codec, name, __data, encode_values, decode_values, no_reply, **kwargs)
        )

    _script = script  # what ``db.lua.name(...)`` calls

    # -- HTTP RPC: record operations ----------------------------------------------------

    def add(
        self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
        encode_value: bool = True,
    ) -> bool:
        """Store only if ``key`` does not exist (expired counts as absent)."""
        return self._run(_ops.add(self._codec, key, value, db, expire_time, encode_value))

    def replace(
        self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
        encode_value: bool = True,
    ) -> bool:
        """Store only if ``key`` exists."""
        return self._run(_ops.replace(self._codec, key, value, db, expire_time, encode_value))

    def append(
        self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None,
        encode_value: bool = True,
    ) -> bool:
        """Append the serialized ``value`` to the stored bytes (creates a missing key)."""
        return self._run(_ops.append(self._codec, key, value, db, expire_time, encode_value))

    def exists(self, key: Any, db: Optional[int] = None) -> bool:
        """True when ``key`` exists (and has not expired)."""
        return self._run(_ops.exists(self._codec, key, db))

    check = exists

    def length(self, key: Any, db: Optional[int] = None) -> Optional[int]:
        """Size in bytes of the value at ``key``; None when it does not exist."""
        return self._run(_ops.length(self._codec, key, db))

    def seize(self, key: Any, db: Optional[int] = None, decode_value: bool = True) -> Any:
        """Get and remove ``key`` atomically; None when it does not exist."""
        return self._run(_ops.seize(self._codec, key, db, decode_value))

    pop = seize

    def cas(
        self,
        key: Any,
        old_val: Any,
        new_val: Any,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
        encode_value: bool = True,
    ) -> bool:
        """Compare-and-swap: ``old_val`` None means "must not exist", ``new_val`` None removes."""
        return self._run(_ops.cas(self._codec, key, old_val, new_val, db, expire_time, encode_value))

    def incr(
        self,
        key: Any,
        n: int = 1,
        orig: Optional[int] = None,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
    ) -> int:
        """Add ``n`` to the 8-byte integer at ``key`` (``orig`` if missing); returns the new value.

        Raises ServerError (450) when the stored value is not an 8-byte integer.
        """
        return self._run(_ops.incr(self._codec, key, n, orig, db, expire_time))

    def incr_double(
        self,
        key: Any,
        n: float = 1.0,
        orig: Optional[float] = None,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
    ) -> float:
        """Add ``n`` to the fixed-point number at ``key``; returns the new value."""
        return self._run(_ops.incr_double(self._codec, key, n, orig, db, expire_time))

    # -- HTTP RPC: database operations --------------------------------------------------

    def clear(self, db: Optional[int] = None) -> bool:
        """Remove every record of the database."""
        return self._run(_ops.clear(self._codec, db))

    def status(self, db: Optional[int] = None) -> Dict[str, str]:
        """The database's status fields (count, size, path, type...)."""
        return self._run(_ops.status(self._codec, db))

    def report(self) -> Dict[str, str]:
        """The server-wide report (every database, counters, versions)."""
        return self._run(_ops.report(self._codec))

    def synchronize(
        self, hard: bool = False, command: Optional[str] = None, db: Optional[int] = None
    ) -> bool:
        """Flush the database to its file (``hard``: to the device); run ``command`` after."""
        return self._run(_ops.synchronize(self._codec, hard, command, db))

    def vacuum(self, step: int = 0, db: Optional[int] = None) -> bool:
        """Purge expired records (``step`` > 0: only that many steps)."""
        return self._run(_ops.vacuum(self._codec, step, db))

    def ulog_list(self) -> List[Tuple[str, int, Any]]:
        """The server's update-log files: ``[(path, size, datetime of its last record)]``
        (ServerError when the server runs without ``-ulog``)."""
        return self._run(_ops.ulog_list(self._codec))

    def ulog_remove(self, max_dt: Any = None) -> bool:
        """Remove the update-log files older than ``max_dt`` (a datetime; default now)."""
        return self._run(_ops.ulog_remove(self._codec, max_dt))

    def count(self, db: Optional[int] = None) -> int:
        """Number of records in the database (expired but unpurged ones included)."""
        return self._run(_ops.count(self._codec, db))

    def __len__(self) -> int:
        return self.count()

    @property
    def size(self) -> int:
        """Size in bytes of the default database, as its status reports."""
        return self._run(_ops.size(self._codec))

    @property
    def path(self) -> str:
        """Path (or name) of the default database, as its status reports."""
        return self._run(_ops.path(self._codec))

    def match_prefix(self, prefix: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> list:
        """Keys starting with ``prefix`` (in the server's order), at most ``max_keys``."""
        return self._run(_ops.match_prefix(self._codec, prefix, max_keys, db))

    def match_regex(self, regex: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> list:
        """Keys matching the POSIX extended ``regex`` (unanchored), at most ``max_keys``."""
        return self._run(_ops.match_regex(self._codec, regex, max_keys, db))

    def match_similar(
        self,
        origin: Any,
        distance: Optional[int] = None,
        max_keys: Optional[int] = None,
        db: Optional[int] = None,
    ) -> list:
        """Keys within edit ``distance`` (default 1) of ``origin``, nearest first."""
        return self._run(_ops.match_similar(self._codec, origin, distance, max_keys, db))

    # -- cursors and iteration ------------------------------------------------------------

    def cursor(self, db: Optional[int] = None, cursor_id: Optional[int] = None) -> Cursor:
        """A server-side cursor over ``db`` (pinned to one pooled connection until closed)."""
        return Cursor(self, db=db, cursor_id=cursor_id)

    def keys(self, db: Optional[int] = None) -> Iterator[Any]:
        """Every key of the database, lazily, in the database's order."""
        return self._walk(db, _ops.cur_key)

    def keys_nonlazy(self, db: Optional[int] = None) -> List[Any]:
        """Every key of the database in one request (a list)."""
        return self._run(_ops.keys_nonlazy(self._codec, db))

    def values(self, db: Optional[int] = None) -> Iterator[Any]:
        """Every value of the database, lazily."""
        return self._walk(db, _ops.cur_value)

    def items(self, db: Optional[int] = None) -> Iterator[Tuple[Any, Any]]:
        """Every ``(key, value)`` of the database, lazily."""
        return self._walk(db, _ops.cur_get)

    def _walk(self, db: Optional[int], read: Any) -> Iterator[Any]:
        with self.cursor(db) as cur:
            yield from cur._walk(read)

    # -- mapping protocol -----------------------------------------------------------------

    def __getitem__(self, key_or_keydb: Any) -> Any:
        key, db = _ops.split_key(key_or_keydb)
        return self.get(key, db)

    def __setitem__(self, key_or_keydb: Any, value_or_valueexpire: Any) -> None:
        key, db = _ops.split_key(key_or_keydb)
        if isinstance(value_or_valueexpire, tuple) and len(value_or_valueexpire) == 2:
            value, expire_time = value_or_valueexpire
        else:
            value, expire_time = value_or_valueexpire, None
        self.set(key, value, db, expire_time)

    def __delitem__(self, key_or_keydb: Any) -> None:
        key, db = _ops.split_key(key_or_keydb)
        self.remove(key, db)

    def __contains__(self, key_or_keydb: Any) -> bool:
        key, db = _ops.split_key(key_or_keydb)
        return self.exists(key, db)


class CursorBase:
    """What the sync and the asyncio cursor share: the client's codec and the cursor's state."""

    def __init__(self, client: Any, db: Optional[int] = None, cursor_id: Optional[int] = None):
        self._client = client
        self._codec = client._codec
        self._state = _ops.CursorState(self._codec, db, cursor_id)

    @property
    def cursor_id(self) -> int:
        return self._state.cursor_id

    @property
    def db(self) -> int:
        return self._state.db

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        else:
            state = "positioned" if self._state.positioned else "unpositioned"
        return f"<{type(self).__name__} {self.cursor_id} db={self.db} {state}>"


class Cursor(CursorBase):
    """A Kyoto Tycoon cursor: server-side state, so it keeps one connection for its life.

    Methods answer False/None when the cursor is not positioned or walked off the end;
    ``jump_back``/``step_back`` raise ServerError (501) on databases that cannot go backwards
    (every hash-type database).  Iterating yields ``(key, value)`` pairs from the current
    position (from the first record when the cursor is not positioned).  ``close()`` (or
    leaving a ``with`` block) deletes the server-side cursor and returns the connection.
    One cursor may be shared between threads: its calls are serialized.
    """

    def __init__(self, client: KyotoTycoon, db: Optional[int] = None, cursor_id: Optional[int] = None):
        super().__init__(client, db, cursor_id)
        self._lock = threading.Lock()
        self._conn: Optional[Connection] = client._pool.acquire()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _run(self, plan: Plan) -> Any:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ValueError("operation on a closed cursor")
            if conn.inherited:
                self._forked(conn)
            return plan.finish(conn.request(plan.data, plan.parse))

    def _forked(self, conn: Connection) -> None:
        """This process is a fork of the one that opened the cursor's connection."""
        conn.forget()  # never read the parent's replies; the parent's cursor is untouched
        if self._state.created:
            raise ServerConnectionError(
                f"cursor {self.cursor_id} lives on a connection of the parent process (it was "
                "used before os.fork()); open a new cursor in this process"
            )

    def jump(self, key: Any = None) -> bool:
        """Go to the first record (``key`` None) or the first record >= ``key``."""
        return self._run(_ops.cur_jump(self._codec, self._state, key))

    def jump_back(self, key: Any = None) -> bool:
        """Go to the last record (``key`` None) or the last record <= ``key`` (tree DBs only)."""
        return self._run(_ops.cur_jump_back(self._codec, self._state, key))

    def step(self) -> bool:
        """Move to the next record; False at the end."""
        return self._run(_ops.cur_step(self._codec, self._state))

    def step_back(self) -> bool:
        """Move to the previous record; False at the start (tree DBs only)."""
        return self._run(_ops.cur_step_back(self._codec, self._state))

    def key(self, step: bool = False) -> Any:
        """The current key (None when not positioned); ``step`` moves on afterwards."""
        return self._run(_ops.cur_key(self._codec, self._state, step))

    def value(self, step: bool = False) -> Any:
        """The current value (None when not positioned); ``step`` moves on afterwards."""
        return self._run(_ops.cur_value(self._codec, self._state, step))

    def get(self, step: bool = False) -> Optional[Tuple[Any, Any]]:
        """``(key, value)`` of the current record, or None; ``step`` moves on afterwards."""
        return self._run(_ops.cur_get(self._codec, self._state, step))

    def set_value(self, value: Any, step: bool = False, expire_time: ExpireTime = None) -> bool:
        """Replace the current record's value (and expiry); ``step`` moves on afterwards."""
        return self._run(_ops.cur_set_value(self._codec, self._state, value, step, expire_time))

    def remove(self) -> bool:
        """Remove the current record; the cursor moves to the next one."""
        return self._run(_ops.cur_remove(self._codec, self._state))

    def seize(self) -> Optional[Tuple[Any, Any]]:
        """Get and remove the current record (the cursor moves on); None when not positioned."""
        return self._run(_ops.cur_seize(self._codec, self._state))

    def _walk(self, read: Any, from_start: bool = True) -> Iterator[Any]:
        """Yield ``read`` results stepping forward, until the cursor walks off the end."""
        if (from_start or not self._state.positioned) and not self.jump():
            return
        while True:
            item = self._run(read(self._codec, self._state, True))
            if item is None:
                return
            yield item

    def __iter__(self) -> Iterator[Tuple[Any, Any]]:
        return self._walk(_ops.cur_get, from_start=False)

    def is_valid(self) -> bool:
        """True while the cursor is positioned on a record (after a successful move or read)."""
        return self._state.positioned

    def __next__(self) -> Tuple[Any, Any]:
        """The current ``(key, value)``, stepping on; StopIteration once not positioned."""
        item = self.get(step=True) if self._state.positioned else None
        if item is None:
            raise StopIteration
        return item

    next = __next__

    def close(self) -> None:
        """Delete the server-side cursor and give the connection back to the pool."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                plan = _ops.cur_delete(self._codec, self._state)
                if plan is not None and not conn.closed:  # (closed too when inherited across fork)
                    try:
                        conn.request(plan.data, plan.parse)
                    except Exception:
                        conn.close()  # never hand back a connection in an unknown state
            finally:
                self._client._pool.release(conn)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            # Abandoned without close(): drop the connection (and with it the server cursor).
            self._conn = None
            conn.close()
            try:
                self._client._pool.release(conn)
            except Exception:
                pass
