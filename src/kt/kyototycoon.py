"""The Kyoto Tycoon client: ``KyotoTycoon`` and its server-side ``Cursor``.

Single-record and bulk get/set/remove travel over KT's binary protocol (the fastest path the
server offers); everything else is a TSV-RPC call over HTTP/1.1 keep-alive on the same pooled
connections.  Keys are encoded by :func:`kt.serializers.encode_key` and decoded with
``decode_keys``; values go through the client's serializer; ``expire_time`` goes through
:mod:`kt.expiry` only.  Logical outcomes (missing key, failed add/cas...) are return values;
any other failure raises :class:`kt.errors.ServerError` carrying the server's ERROR text.

Only requests whose repetition cannot change the outcome (stored state and reply) are resent
after a dropped connection (``idempotent=True`` below; the table is in docs/reliability.md):
reads, ``set``, ``set_bulk``, ``replace``, ``clear``, ``vacuum``, ``synchronize`` without a
command.  Any other write that loses its connection after being sent raises
``ConnectionDroppedError``: it may or may not have been applied.
"""

from __future__ import annotations

import functools
import itertools
import threading
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from kt.errors import ScriptError, ServerConnectionError, ServerError
from kt.expiry import NO_EXPIRY_XT, ExpireTime, to_binary_xt, to_xt
from kt.protocol import http, kt_rpc
from kt.protocol.kt_binary import (
    DATA_MAX_SIZE,
    MAGIC_GET_BULK,
    MAGIC_REMOVE_BULK,
    encode_get_one,
    encode_key_bulk,
    encode_play_script,
    encode_remove_bulk,
    encode_set_bulk_items,
    encode_set_one,
    parse_get_bulk_pairs,
    parse_get_value_reply,
    parse_play_script_reply,
    parse_remove_bulk_reply,
    parse_set_bulk_reply,
)
from kt.serializers import KT_BINARY, KT_NONE, encode_key, key_decoder, resolve_serializer
from kt.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_SIZE, Connection, Pool

__all__ = ["KyotoTycoon", "Cursor"]

_parse_response = http.parse_response
_rpc_result = kt_rpc.parse_rpc_response
_build_rpc = kt_rpc.build_rpc_request
_INT64_LIMIT = 1 << 63


def _key(key: Any) -> bytes:
    return key.encode("utf-8") if type(key) is str else encode_key(key)


def _text(value: Any, what: str) -> bytes:
    """A non-key, non-value RPC argument (prefix, regex, script name...) as bytes."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def _check_db(db: Any) -> int:
    if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db <= 0xFFFF:
        raise TypeError(f"db must be a database index (int 0..65535), not {db!r}")
    return db


def _rpc_call(
    request: Any, data: bytes, procedure: str, allow_logical: bool
) -> Tuple[bool, Dict[bytes, bytes]]:
    response = request(data, _parse_response)
    status, output = _rpc_result(response)
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


def _check_body_size(data: bytes, procedure: str) -> None:
    """ktserver answers 413 and hangs up on a body over 256 MiB: refuse before sending."""
    _check_size(len(data) - data.index(b"\r\n\r\n") - 4, procedure)


def _check_size(size: int, procedure: str) -> None:
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


class KyotoTycoon:
    """Client for one Kyoto Tycoon server (thread-safe; connections are pooled).

    ``timeout`` bounds each whole request, from sending to the reply's last byte (None: wait
    forever); ``connect_timeout`` bounds connecting; ``max_connections`` bounds the pool.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 1978,
        serializer: Any = KT_BINARY,
        decode_keys: bool = True,
        timeout: Optional[float] = None,
        default_db: int = 0,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._pool = Pool(
            host, port, timeout=timeout, connect_timeout=connect_timeout, max_size=max_connections
        )
        self._request = self._pool.request  # bound once: the hot paths call it per operation
        self._request_idempotent = functools.partial(self._pool.request, idempotent=True)
        self.host = self._pool.host
        self.port = port
        self.timeout = timeout
        self._host_header = f"{self.host}:{port}"
        self._serializer = resolve_serializer(serializer)
        self._encode_value = self._serializer.encode
        self._decode_value = self._serializer.decode
        # Serializers that store bytes unchanged: bulk paths skip calling them for bytes.
        self._bytes_pass_through = self._serializer in (KT_BINARY, KT_NONE)
        self._raw_values = self._serializer is KT_NONE
        self.decode_keys = decode_keys
        self._decode_key = key_decoder(decode_keys)
        self.default_db = _check_db(default_db)

    def __repr__(self) -> str:
        return f"<KyotoTycoon {self.host}:{self.port} db={self.default_db} {self._serializer.name}>"

    # -- connection management -----------------------------------------------------------

    def checkin(self) -> None:
        """Return the calling thread's pinned connection to the pool for re-use."""
        self._pool.checkin()

    def close(self) -> None:
        """Close the idle connections (the client stays usable: it reconnects on demand)."""
        self._pool.close()

    def __enter__(self) -> KyotoTycoon:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_database(self, db: int) -> KyotoTycoon:
        """Make ``db`` the database used when a call passes ``db=None``."""
        self.default_db = _check_db(db)
        return self

    def _db(self, db: Optional[int]) -> int:
        return self.default_db if db is None else _check_db(db)

    def _rpc(
        self,
        procedure: str,
        params: List[Tuple[bytes, bytes]],
        db: Optional[int] = None,
        allow_logical: bool = True,
        use_db: bool = True,
        idempotent: bool = False,
    ) -> Tuple[bool, Dict[bytes, bytes]]:
        if use_db:
            dbidx = self.default_db if db is None else _check_db(db)
            if dbidx:
                params.append((b"DB", b"%d" % dbidx))
        data = _build_rpc(procedure, params, self._host_header)
        if len(data) > DATA_MAX_SIZE:
            _check_body_size(data, procedure)
        request = self._request_idempotent if idempotent else self._request
        return _rpc_call(request, data, procedure, allow_logical)

    # -- binary protocol: single records ------------------------------------------------

    def get_raw(self, key: Any, db: Optional[int] = None) -> Optional[bytes]:
        """The stored bytes of ``key``, or None when it does not exist."""
        return self._request(
            encode_get_one(
                self.default_db if db is None else _check_db(db),
                key.encode("utf-8") if type(key) is str else encode_key(key),
            ),
            parse_get_value_reply,
            idempotent=True,
        )

    def get(self, key: Any, db: Optional[int] = None) -> Any:
        """The deserialized value of ``key``, or None when it does not exist."""
        value = self._request(
            encode_get_one(
                self.default_db if db is None else _check_db(db),
                key.encode("utf-8") if type(key) is str else encode_key(key),
            ),
            parse_get_value_reply,
            idempotent=True,
        )
        if value is None or self._raw_values:
            return value
        return self._decode_value(value)

    def set(self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None) -> int:
        """Store ``value`` (overwriting); returns the number of records set (1)."""
        data = encode_set_one(
            self.default_db if db is None else _check_db(db),
            key.encode("utf-8") if type(key) is str else encode_key(key),
            value if (type(value) is bytes and self._bytes_pass_through) else self._encode_value(value),
            NO_EXPIRY_XT if expire_time is None else to_binary_xt(expire_time),
        )
        return self._request(data, parse_set_bulk_reply, idempotent=True)  # same value, same reply (1)

    def remove(self, key: Any, db: Optional[int] = None) -> int:
        """Remove ``key``; returns the number of records removed (0 or 1)."""
        data = encode_remove_bulk(((self._db(db), _key(key)),))
        return self._request(data, parse_remove_bulk_reply)

    # -- binary protocol: bulk ----------------------------------------------------------

    def get_bulk_raw(self, keys: Iterable[Any], db: Optional[int] = None) -> Dict[Any, bytes]:
        """``{key: raw bytes}`` for every key that exists."""
        data = encode_key_bulk(MAGIC_GET_BULK, keys, self._db(db), encode_key)
        pairs = self._request(data, parse_get_bulk_pairs, idempotent=True)
        return self._bulk_result(pairs, True)

    def get_bulk(self, keys: Iterable[Any], db: Optional[int] = None) -> Dict[Any, Any]:
        """``{key: value}`` for every key that exists."""
        data = encode_key_bulk(MAGIC_GET_BULK, keys, self._db(db), encode_key)
        pairs = self._request(data, parse_get_bulk_pairs, idempotent=True)
        return self._bulk_result(pairs, self._raw_values)

    def _bulk_result(self, pairs: List[Tuple[bytes, bytes]], raw: bool) -> Dict[Any, Any]:
        if self.decode_keys:
            try:  # fast path: every key is UTF-8 text
                if raw:
                    return {key.decode("utf-8"): value for key, value in pairs}
                decode_value = self._decode_value
                return {key.decode("utf-8"): decode_value(value) for key, value in pairs}
            except UnicodeDecodeError:
                pass
        decode_key = self._decode_key
        if raw:
            return {decode_key(key): value for key, value in pairs}
        decode_value = self._decode_value
        return {decode_key(key): decode_value(value) for key, value in pairs}

    def set_bulk(
        self,
        __data: Optional[Mapping[Any, Any]] = None,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
        **kwargs: Any,
    ) -> int:
        """Store every pair of ``__data`` and ``kwargs``; returns the number stored."""
        items: Any = __data.items() if __data else ()
        if kwargs:
            items = [*items, *kwargs.items()]
        data = encode_set_bulk_items(
            items, self._db(db), to_binary_xt(expire_time), encode_key, self._encode_value,
            bytes_pass_through=self._bytes_pass_through,
        )
        if len(data) == 9:
            return 0  # nothing to store
        return self._request(data, parse_set_bulk_reply, idempotent=True)

    update = set_bulk

    def remove_bulk(self, keys: Iterable[Any], db: Optional[int] = None) -> int:
        """Remove every key; returns the number actually removed."""
        data = encode_key_bulk(MAGIC_REMOVE_BULK, keys, self._db(db), encode_key)
        if len(data) == 9:
            return 0
        return self._request(data, parse_remove_bulk_reply)

    def script(
        self, name: Any, __data: Optional[Mapping[Any, Any]] = None, encode_values: bool = True, **kwargs: Any
    ) -> Dict[Any, Any]:
        """Run the server-side Lua procedure ``name`` (binary play_script) and return its output.

        With ``encode_values`` the input values are serialized and the output values
        deserialized with the client's serializer; otherwise values are bytes (str is sent
        as UTF-8) and the output values are returned as bytes.
        """
        encode_value = self._encode_value if encode_values else (lambda v: _text(v, "script value"))
        records = []
        for source in (__data or {}, kwargs):
            records.extend([(_key(k), encode_value(v)) for k, v in source.items()])
        proc = _text(name, "script name")
        try:
            output = self._request(encode_play_script(proc, records), parse_play_script_reply)
        except ScriptError:
            raise
        except ServerError as exc:
            raise ScriptError(
                f"the scripting procedure {proc.decode('utf-8', 'replace')!r} failed, is missing, or "
                "scripting is disabled on the server",
                code=exc.code,
                procedure="play_script",
            ) from exc
        decode_key = self._decode_key
        if encode_values:
            decode_value = self._decode_value
            return {decode_key(k): decode_value(v) for k, v in output}
        return {decode_key(k): v for k, v in output}

    # -- HTTP RPC: record operations ----------------------------------------------------

    def _store(
        self,
        procedure: str,
        key: Any,
        value: Any,
        db: Optional[int],
        expire_time: ExpireTime,
        idempotent: bool = False,
    ) -> bool:
        encoded = self._encode_value(value)
        _check_size(len(encoded), procedure)  # before building a request of that size
        params = [(b"key", _key(key)), (b"value", encoded)]
        xt = to_xt(expire_time)
        if xt is not None:
            params.append((b"xt", b"%d" % xt))
        return self._rpc(procedure, params, db, idempotent=idempotent)[0]

    def add(self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None) -> bool:
        """Store only if ``key`` does not exist (expired counts as absent)."""
        return self._store("add", key, value, db, expire_time)

    def replace(self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None) -> bool:
        """Store only if ``key`` exists."""
        return self._store("replace", key, value, db, expire_time, idempotent=True)

    def append(self, key: Any, value: Any, db: Optional[int] = None, expire_time: ExpireTime = None) -> bool:
        """Append the serialized ``value`` to the stored bytes (creates a missing key)."""
        return self._store("append", key, value, db, expire_time)

    def exists(self, key: Any, db: Optional[int] = None) -> bool:
        """True when ``key`` exists (and has not expired)."""
        return self._rpc("check", [(b"key", _key(key))], db, idempotent=True)[0]

    check = exists

    def seize(self, key: Any, db: Optional[int] = None) -> Any:
        """Get and remove ``key`` atomically; None when it does not exist."""
        ok, output = self._rpc("seize", [(b"key", _key(key))], db)
        return self._decode_value(output[b"value"]) if ok else None

    pop = seize

    def cas(
        self,
        key: Any,
        old_val: Any,
        new_val: Any,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
    ) -> bool:
        """Compare-and-swap: ``old_val`` None means "must not exist", ``new_val`` None removes."""
        params = [(b"key", _key(key))]
        if old_val is not None:
            params.append((b"oval", self._encode_value(old_val)))
        if new_val is not None:
            params.append((b"nval", self._encode_value(new_val)))
        xt = to_xt(expire_time)
        if xt is not None:
            params.append((b"xt", b"%d" % xt))
        return self._rpc("cas", params, db)[0]

    def _increment(
        self, procedure: str, key: Any, num: bytes, orig: Any, db: Optional[int], expire_time: ExpireTime
    ) -> Optional[bytes]:
        params = [(b"key", _key(key)), (b"num", num)]
        if orig is not None:
            params.append((b"orig", orig if isinstance(orig, bytes) else str(orig).encode("ascii")))
        xt = to_xt(expire_time)
        if xt is not None:
            params.append((b"xt", b"%d" % xt))
        ok, output = self._rpc(procedure, params, db)
        if not ok:
            raise ServerError(kt_rpc.error_message(output, 450), code=450, procedure=procedure)
        return output[b"num"]

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
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if not -_INT64_LIMIT < n < _INT64_LIMIT:
            raise ValueError(f"n must satisfy |n| < 2**63 (the server's 64-bit counter), not {n}")
        return int(self._increment("increment", key, b"%d" % n, orig, db, expire_time))

    def incr_double(
        self,
        key: Any,
        n: float = 1.0,
        orig: Optional[float] = None,
        db: Optional[int] = None,
        expire_time: ExpireTime = None,
    ) -> float:
        """Add ``n`` to the fixed-point number at ``key``; returns the new value."""
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise TypeError(f"n must be a number, not {type(n).__name__}")
        num = self._increment("increment_double", key, repr(float(n)).encode(), orig, db, expire_time)
        try:
            return float(num)
        except ValueError:  # ktserver cuts a %f longer than its buffer and ends it with "*"
            raise ServerError(
                f"the new value was stored but the server could not format it: {num[:40]!r}...",
                code=200,
                procedure="increment_double",
            ) from None

    # -- HTTP RPC: database operations --------------------------------------------------

    def clear(self, db: Optional[int] = None) -> bool:
        """Remove every record of the database."""
        return self._rpc("clear", [], db, allow_logical=False, idempotent=True)[0]

    def status(self, db: Optional[int] = None) -> Dict[str, str]:
        """The database's status fields (count, size, path, type...)."""
        return _as_text_dict(self._rpc("status", [], db, allow_logical=False, idempotent=True)[1])

    def report(self) -> Dict[str, str]:
        """The server-wide report (every database, counters, versions)."""
        return _as_text_dict(
            self._rpc("report", [], use_db=False, allow_logical=False, idempotent=True)[1]
        )

    def synchronize(
        self, hard: bool = False, command: Optional[str] = None, db: Optional[int] = None
    ) -> bool:
        """Flush the database to its file (``hard``: to the device); run ``command`` after."""
        params = []
        if hard:
            params.append((b"hard", b""))
        if command is not None:
            params.append((b"command", _text(command, "command")))
        return self._rpc("synchronize", params, db, idempotent=command is None)[0]

    def vacuum(self, step: int = 0, db: Optional[int] = None) -> bool:
        """Purge expired records (``step`` > 0: only that many steps)."""
        params = [(b"step", b"%d" % step)] if step else []
        return self._rpc("vacuum", params, db, allow_logical=False, idempotent=True)[0]

    def count(self, db: Optional[int] = None) -> int:
        """Number of records in the database (expired but unpurged ones included)."""
        return int(self.status(db)["count"])

    def __len__(self) -> int:
        return self.count()

    @property
    def size(self) -> int:
        """Size in bytes of the default database, as its status reports."""
        return int(self.status()["size"])

    @property
    def path(self) -> str:
        """Path (or name) of the default database, as its status reports."""
        return self.status()["path"]

    def _match(self, procedure: str, params: List[Tuple[bytes, bytes]], max_keys: Optional[int], db) -> list:
        if max_keys is not None:
            params.append((b"max", b"%d" % max_keys))
        output = self._rpc(procedure, params, db, allow_logical=False, idempotent=True)[1]
        decode_key = self._decode_key
        return [decode_key(k) for k in _ranked_keys(output)]

    def match_prefix(self, prefix: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> list:
        """Keys starting with ``prefix`` (in the server's order), at most ``max_keys``."""
        return self._match("match_prefix", [(b"prefix", _key(prefix))], max_keys, db)

    def match_regex(self, regex: Any, max_keys: Optional[int] = None, db: Optional[int] = None) -> list:
        """Keys matching the POSIX extended ``regex`` (unanchored), at most ``max_keys``."""
        return self._match("match_regex", [(b"regex", _text(regex, "regex"))], max_keys, db)

    def match_similar(
        self,
        origin: Any,
        distance: Optional[int] = None,
        max_keys: Optional[int] = None,
        db: Optional[int] = None,
    ) -> list:
        """Keys within edit ``distance`` (default 1) of ``origin``, nearest first."""
        params = [(b"origin", _key(origin))]
        if distance is not None:
            params.append((b"range", b"%d" % distance))
        if isinstance(origin, str):
            params.append((b"utf", b""))  # distance in characters, not bytes
        return self._match("match_similar", params, max_keys, db)

    # -- cursors and iteration ------------------------------------------------------------

    def cursor(self, db: Optional[int] = None, cursor_id: Optional[int] = None) -> Cursor:
        """A server-side cursor over ``db`` (pinned to one pooled connection until closed)."""
        return Cursor(self, db=db, cursor_id=cursor_id)

    def keys(self, db: Optional[int] = None) -> Iterator[Any]:
        """Every key of the database, lazily, in the database's order."""
        with self.cursor(db) as cur:
            if not cur.jump():
                return
            while True:
                key = cur.key(step=True)
                if key is None:
                    return
                yield key

    def values(self, db: Optional[int] = None) -> Iterator[Any]:
        """Every value of the database, lazily."""
        with self.cursor(db) as cur:
            if not cur.jump():
                return
            while True:
                value = cur.value(step=True)
                if value is None:
                    return
                yield value

    def items(self, db: Optional[int] = None) -> Iterator[Tuple[Any, Any]]:
        """Every ``(key, value)`` of the database, lazily."""
        with self.cursor(db) as cur:
            if not cur.jump():
                return
            while True:
                item = cur.get(step=True)
                if item is None:
                    return
                yield item

    # -- mapping protocol -----------------------------------------------------------------

    @staticmethod
    def _split_key(key_or_keydb: Any) -> Tuple[Any, Optional[int]]:
        if isinstance(key_or_keydb, tuple):
            if len(key_or_keydb) != 2:
                raise TypeError("use db[key] or db[key, db_index]")
            return key_or_keydb[0], key_or_keydb[1]
        return key_or_keydb, None

    def __getitem__(self, key_or_keydb: Any) -> Any:
        key, db = self._split_key(key_or_keydb)
        return self.get(key, db)

    def __setitem__(self, key_or_keydb: Any, value_or_valueexpire: Any) -> None:
        key, db = self._split_key(key_or_keydb)
        if isinstance(value_or_valueexpire, tuple) and len(value_or_valueexpire) == 2:
            value, expire_time = value_or_valueexpire
        else:
            value, expire_time = value_or_valueexpire, None
        self.set(key, value, db, expire_time)

    def __delitem__(self, key_or_keydb: Any) -> None:
        key, db = self._split_key(key_or_keydb)
        self.remove(key, db)

    def __contains__(self, key_or_keydb: Any) -> bool:
        key, db = self._split_key(key_or_keydb)
        return self.exists(key, db)


_cursor_ids = itertools.count(1)


class Cursor:
    """A Kyoto Tycoon cursor: server-side state, so it keeps one connection for its life.

    Methods answer False/None when the cursor is not positioned or walked off the end;
    ``jump_back``/``step_back`` raise ServerError (501) on databases that cannot go backwards
    (every hash-type database).  Iterating yields ``(key, value)`` pairs from the current
    position (from the first record when the cursor is not positioned).  ``close()`` (or
    leaving a ``with`` block) deletes the server-side cursor and returns the connection.
    One cursor may be shared between threads: its calls are serialized.
    """

    def __init__(self, client: KyotoTycoon, db: Optional[int] = None, cursor_id: Optional[int] = None):
        self._client = client
        self.db = client._db(db)
        self.cursor_id = next(_cursor_ids) if cursor_id is None else int(cursor_id)
        self._cur = b"%d" % self.cursor_id
        self._lock = threading.Lock()
        self._conn: Optional[Connection] = client._pool.acquire()
        self._created = False  # the server creates it on first use
        self._positioned = False

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else ("positioned" if self._positioned else "unpositioned")
        return f"<Cursor {self.cursor_id} db={self.db} {state}>"

    def _call(self, procedure: str, params: List[Tuple[bytes, bytes]]) -> Tuple[bool, Dict[bytes, bytes]]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ValueError("operation on a closed cursor")
            if conn.inherited:
                self._forked(conn)
            params.append((b"CUR", self._cur))
            if self.db:
                params.append((b"DB", b"%d" % self.db))
            data = _build_rpc(procedure, params, self._client._host_header)
            self._created = True
            ok, output = _rpc_call(conn.request, data, procedure, True)
            return ok, output

    def _forked(self, conn: Connection) -> None:
        """This process is a fork of the one that opened the cursor's connection."""
        conn.forget()  # never read the parent's replies; the parent's cursor is untouched
        if self._created:
            raise ServerConnectionError(
                f"cursor {self.cursor_id} lives on a connection of the parent process (it was "
                "used before os.fork()); open a new cursor in this process"
            )

    def _move(self, procedure: str, params: List[Tuple[bytes, bytes]]) -> bool:
        ok = self._call(procedure, params)[0]
        self._positioned = ok
        return ok

    def jump(self, key: Any = None) -> bool:
        """Go to the first record (``key`` None) or the first record >= ``key``."""
        return self._move("cur_jump", [] if key is None else [(b"key", _key(key))])

    def jump_back(self, key: Any = None) -> bool:
        """Go to the last record (``key`` None) or the last record <= ``key`` (tree DBs only)."""
        return self._move("cur_jump_back", [] if key is None else [(b"key", _key(key))])

    def step(self) -> bool:
        """Move to the next record; False at the end."""
        return self._move("cur_step", [])

    def step_back(self) -> bool:
        """Move to the previous record; False at the start (tree DBs only)."""
        return self._move("cur_step_back", [])

    def _read(self, procedure: str, step: bool) -> Optional[Dict[bytes, bytes]]:
        ok, output = self._call(procedure, [(b"step", b"")] if step else [])
        if not ok:
            self._positioned = False
            return None
        return output

    def key(self, step: bool = False) -> Any:
        """The current key (None when not positioned); ``step`` moves on afterwards."""
        output = self._read("cur_get_key", step)
        return None if output is None else self._client._decode_key(output[b"key"])

    def value(self, step: bool = False) -> Any:
        """The current value (None when not positioned); ``step`` moves on afterwards."""
        output = self._read("cur_get_value", step)
        return None if output is None else self._client._decode_value(output[b"value"])

    def get(self, step: bool = False) -> Optional[Tuple[Any, Any]]:
        """``(key, value)`` of the current record, or None; ``step`` moves on afterwards."""
        output = self._read("cur_get", step)
        if output is None:
            return None
        client = self._client
        return client._decode_key(output[b"key"]), client._decode_value(output[b"value"])

    def set_value(self, value: Any, step: bool = False, expire_time: ExpireTime = None) -> bool:
        """Replace the current record's value (and expiry); ``step`` moves on afterwards."""
        params = [(b"value", self._client._encode_value(value))]
        if step:
            params.append((b"step", b""))
        xt = to_xt(expire_time)
        if xt is not None:
            params.append((b"xt", b"%d" % xt))
        return self._call("cur_set_value", params)[0]

    def remove(self) -> bool:
        """Remove the current record; the cursor moves to the next one."""
        return self._call("cur_remove", [])[0]

    def seize(self) -> Optional[Tuple[Any, Any]]:
        """Get and remove the current record (the cursor moves on); None when not positioned."""
        ok, output = self._call("cur_seize", [])
        if not ok:
            self._positioned = False
            return None
        client = self._client
        return client._decode_key(output[b"key"]), client._decode_value(output[b"value"])

    def __iter__(self) -> Iterator[Tuple[Any, Any]]:
        if not self._positioned and not self.jump():
            return
        while True:
            item = self.get(step=True)
            if item is None:
                return
            yield item

    def close(self) -> None:
        """Delete the server-side cursor and give the connection back to the pool."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                if self._created and not conn.closed:  # (closed too when inherited across fork)
                    data = _build_rpc("cur_delete", [(b"CUR", self._cur)], self._client._host_header)
                    try:
                        conn.request(data, _parse_response)
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
