"""``kt.aio.KyotoTycoon`` and ``kt.aio.Cursor``: the sync client's methods, awaitable.

Every operation comes from :mod:`kt.ops.kt`, exactly as in :class:`kt.KyotoTycoon`; the
coroutine methods are derived from the sync class (:mod:`kt.aio._facade`), so names,
arguments, defaults, docstrings and results are the same.  Requests travel over
:class:`kt.aio.transport.AsyncPool`: many in flight per connection (pipelining).
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from typing import Any, AsyncIterator, List, Optional, Tuple

from kt import kyototycoon as _sync
from kt.aio._facade import AsyncLifecycle, AsyncNoReply, coroutines
from kt.aio.transport import AsyncConnection, AsyncPool
from kt.errors import ServerConnectionError
from kt.ops import Plan, arun, finished
from kt.ops import kt as _ops

__all__ = ["KyotoTycoon", "Cursor"]

# Sync methods that are not one operation each (written below for asyncio), or make no sense
# without a blocking socket.
_OWN = {"checkin", "close", "cursor", "keys", "values", "items", "set_database", "default_db", "serializer"}
_OWN |= {"close_all", "close_idle", "lua", "open"}  # kt 0.9.6's controls: kt.aio._facade.AsyncNoReply


class KyotoTycoon(AsyncLifecycle, AsyncNoReply, _sync.KyotoTycoonBase):
    """asyncio client for one Kyoto Tycoon server: ``kt.KyotoTycoon``'s methods, awaitable.

    ``await db.get(key)``, ``await db.set(key, value)``, ``async with KyotoTycoon(...) as db``,
    ``async for key in db.keys()``; ``size`` and ``path`` are awaitable properties.  Inside a
    running loop a one-round-trip method queues its request at the call and returns an
    ``asyncio.Future`` of the result (kt.aio._facade); the others are coroutines.  Dict-style
    access (``db[key]``, ``db[key] = value``, ``del db[key]``, ``key in db``, ``len(db)``) is
    absent: Python cannot await those.  The constructor takes ``kt.KyotoTycoon``'s arguments.
    Concurrent calls share up to ``max_connections`` connections (default 4), several requests
    in flight on each; ``timeout`` bounds each reply (``kt.ServerTimeoutError``; the connection
    is closed and the calls queued on it fail at once).  With ``coalesce_gets`` (the default)
    the single gets queued on one connection in one event-loop turn go out as one binary
    ``get_bulk`` and each caller gets its own value (same results as one by one, measured
    faster: bench/README.md); ``coalesce_gets=False`` sends each get alone.
    """

    _transport = AsyncPool

    def __init__(self, *args: Any, coalesce_gets: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool.coalesce_gets = coalesce_gets

    def _bind(self) -> None:
        self._submit = self._pool.submit
        self._arun = partial(arun, self._submit)
        self._bind_no_reply()

    async def _rpc(self, procedure: str, params: List[Tuple[bytes, bytes]], db: Optional[int] = None) -> bool:
        """Call any RPC procedure: True on success, False on a logical failure (450)."""
        return await self._arun(_ops.rpc(self._codec, procedure, params, db))

    def cursor(self, db: Optional[int] = None, cursor_id: Optional[int] = None) -> Cursor:
        """A server-side cursor over ``db``, pinned to one connection until closed."""
        return Cursor(self, db=db, cursor_id=cursor_id)

    async def keys(self, db: Optional[int] = None) -> AsyncIterator[Any]:
        """Every key of the database, lazily, in the database's order (``async for``)."""
        async with self.cursor(db) as cur:
            async for key in cur._walk(_ops.cur_key):
                yield key

    async def values(self, db: Optional[int] = None) -> AsyncIterator[Any]:
        """Every value of the database, lazily (``async for``)."""
        async with self.cursor(db) as cur:
            async for value in cur._walk(_ops.cur_value):
                yield value

    async def items(self, db: Optional[int] = None) -> AsyncIterator[Tuple[Any, Any]]:
        """Every ``(key, value)`` of the database, lazily (``async for``)."""
        async with self.cursor(db) as cur:
            async for item in cur._walk(_ops.cur_get):
                yield item


for _name, _method in coroutines(
    _sync.KyotoTycoon, _ops, [n for n in dir(_sync.KyotoTycoon) if n[0] != "_" and n not in _OWN]
).items():
    setattr(KyotoTycoon, _name, _method)


class Cursor(_sync.CursorBase):
    """An asyncio Kyoto Tycoon cursor: ``kt.Cursor``'s methods as coroutines.

    Pinned to one pooled connection for its life (the server keeps cursor state per
    connection); other calls may share that connection.  ``async with`` / ``await close()``
    deletes the server-side cursor; ``async for`` yields ``(key, value)`` pairs from the
    current position.  Calls on one cursor are serialized.
    """

    def __init__(self, client: KyotoTycoon, db: Optional[int] = None, cursor_id: Optional[int] = None):
        super().__init__(client, db, cursor_id)
        self._conn: Optional[AsyncConnection] = None
        self._closed = False
        self._lock: Optional[asyncio.Lock] = None
        self._pid = os.getpid()

    @property
    def closed(self) -> bool:
        return self._closed

    async def _arun(self, plan: Plan) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise ValueError("operation on a closed cursor")
            if self._pid != os.getpid():
                raise ServerConnectionError(
                    f"cursor {self.cursor_id} belongs to the parent process (made before os.fork()); "
                    "open a new cursor in this process"
                )
            conn = self._conn
            if conn is None:
                conn = self._conn = self._client._pool.pin()
            elif conn.closed:
                raise ServerConnectionError(
                    f"the connection of cursor {self.cursor_id} was closed; the server-side cursor is gone"
                )
            return finished(plan, await conn.submit(plan.data, plan.parse))

    async def _walk(self, read: Any, from_start: bool = True) -> AsyncIterator[Any]:
        """Yield ``read`` results stepping forward, until the cursor walks off the end."""
        if from_start or not self._state.positioned:
            if not await self.jump():  # type: ignore[attr-defined]
                return
        step = self._state
        while True:
            item = await self._arun(read(self._codec, step, True))
            if item is None:
                return
            yield item

    def __aiter__(self) -> AsyncIterator[Tuple[Any, Any]]:
        return self._walk(_ops.cur_get, from_start=False)

    async def is_valid(self) -> bool:
        """True while the cursor is positioned on a record (after a successful move or read)."""
        return self._state.positioned

    async def next(self) -> Tuple[Any, Any]:
        """The current ``(key, value)``, stepping on; StopAsyncIteration once not positioned."""
        item = await self.get(step=True) if self._state.positioned else None  # type: ignore[attr-defined]
        if item is None:
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        """Delete the server-side cursor; its connection stays with the pool."""
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        plan = _ops.cur_delete(self._codec, self._state)
        if conn is not None and plan is not None and not conn.closed and self._pid == os.getpid():
            try:
                await conn.submit(plan.data, plan.parse)
            except Exception:
                conn.close()  # never leave a connection in an unknown state

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


_CURSOR_OPS = ("jump", "jump_back", "step", "step_back", "key", "value", "get", "set_value", "remove")
_CURSOR_OPS += ("seize",)
for _name, _method in coroutines(_sync.Cursor, _ops, _CURSOR_OPS, prefix="cur_", state="_state").items():
    setattr(Cursor, _name, _method)
KyotoTycoon._script = KyotoTycoon.script  # type: ignore[attr-defined]  # what ``db.lua.name`` calls
