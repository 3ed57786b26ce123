"""``kt.aio.TokyoTyrant``: the sync Tokyo Tyrant client's methods as coroutines.

Every operation comes from :mod:`kt.ops.tt`, exactly as in :class:`kt.TokyoTyrant`; the
coroutine methods are derived from the sync class (:mod:`kt.aio._facade`).
``kt.QueryBuilder``'s ``execute``/``get``/``count``/``delete`` return an awaitable when given
this client (they call its ``search``).
"""

from __future__ import annotations

import contextvars
from functools import partial
from typing import Any, AsyncIterator, Dict, Optional

from kt import tokyotyrant as _sync
from kt.aio._facade import coroutines
from kt.aio.transport import DEFAULT_ASYNC_MAX_SIZE, AsyncConnection, AsyncPool
from kt.ops import arun
from kt.ops import tt as _ops
from kt.ops.codec import Codec
from kt.serializers import KT_BINARY, Serializer
from kt.transport import DEFAULT_CONNECT_TIMEOUT

__all__ = ["TokyoTyrant"]

_OWN = {"checkin", "close", "pool", "serializer", "setnr", "setnr_bulk"}


class TokyoTyrant:
    """asyncio client for a Tokyo Tyrant server: ``kt.TokyoTyrant``'s methods as coroutines.

    ``await tt.get(key)``, ``async with TokyoTyrant(...) as tt``, ``async for key in tt``;
    ``size`` and ``error`` are awaitable properties.  Dict-style access (``tt[key]``,
    ``tt[key] = value``, ``del tt[key]``, ``key in tt``, ``len(tt)``, slices) is absent: Python
    cannot await those.  Concurrent calls share up to ``max_connections`` connections
    (default 4), several requests in flight on each; ``timeout`` bounds each reply.
    ``setnr``/``setnr_bulk`` return once the write is queued; the same task's next request
    goes on the same connection, so it sees the write.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 1978,
        serializer: Any = KT_BINARY,
        decode_keys: bool = True,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_ASYNC_MAX_SIZE,
    ) -> None:
        self._codec = Codec(serializer, decode_keys)
        self.decode_keys = decode_keys
        self._pool = AsyncPool(host, port, timeout, connect_timeout, max_connections)
        self._arun = partial(arun, self._pool.request)
        # Set per task by setnr: the connection its next request must use.
        self._pending: contextvars.ContextVar[Optional[AsyncConnection]] = contextvars.ContextVar(
            f"kt.aio.TokyoTyrant-{id(self)}-pending", default=None
        )
        self.host = self._pool.host
        self.port = port
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<aio.TokyoTyrant {self._pool.address} serializer={self._codec.serializer.name}>"

    @property
    def serializer(self) -> Serializer:
        return self._codec.serializer

    @property
    def pool(self) -> AsyncPool:
        return self._pool

    async def _request(self, data: bytes, parse: Any, idempotent: bool = False) -> Any:
        """The pool's request, but on this task's no-reply connection when it has one."""
        conn = self._pending.get()
        if conn is not None:
            self._pending.set(None)
            if not conn.closed:
                return await conn.submit(data, parse)
        return await self._pool.request(data, parse, idempotent)

    async def _send_no_reply(self, data: bytes) -> None:
        conn = self._pending.get()
        if conn is None or conn.closed:
            conn = await self._pool.send(data)
        else:
            conn.send(data)
        self._pending.set(conn)
        self._arun = partial(arun, self._request)  # from now on requests look for it

    async def setnr(self, key: Any, value: Any) -> None:
        """Store without waiting for (or getting) any reply."""
        await self._send_no_reply(_ops.setnr(self._codec, key, value).data)

    async def setnr_bulk(self, __data: Optional[Dict[Any, Any]] = None, **kwargs: Any) -> None:
        """Store many records with no-reply puts, all in one write."""
        plan = _ops.setnr_bulk(self._codec, __data, **kwargs)
        if plan is not None:
            await self._send_no_reply(plan.data)

    async def checkin(self) -> None:
        """Forget this task's no-reply connection (the next request may go anywhere)."""
        self._pending.set(None)

    async def close(self) -> None:
        """Close every connection (calls in flight fail; the client reconnects on demand)."""
        self._pool.close()

    async def __aenter__(self) -> TokyoTyrant:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        for key in await self.keys():  # type: ignore[attr-defined]
            yield key


for _name, _method in coroutines(
    _sync.TokyoTyrant, _ops, [n for n in dir(_sync.TokyoTyrant) if n[0] != "_" and n not in _OWN]
).items():
    setattr(TokyoTyrant, _name, _method)
