"""``kt.aio.TokyoTyrant``: the sync Tokyo Tyrant client's methods, awaitable.

Every operation comes from :mod:`kt.ops.tt`, exactly as in :class:`kt.TokyoTyrant`; the
coroutine methods are derived from the sync class (:mod:`kt.aio._facade`).
``kt.QueryBuilder``'s ``execute``/``get``/``count``/``delete`` return an awaitable when given
this client (they call its ``search``).
"""

from __future__ import annotations

from functools import partial
from typing import Any, AsyncIterator, Dict, Optional

from kt import tokyotyrant as _sync
from kt.aio._facade import AsyncLifecycle, AsyncNoReply, coroutines
from kt.aio.transport import AsyncPool
from kt.ops import arun
from kt.ops import tt as _ops

__all__ = ["TokyoTyrant"]

_OWN = {"checkin", "close", "pool", "serializer", "setnr", "setnr_bulk"}
_OWN |= {"close_all", "close_idle", "lua", "open"}  # kt 0.9.6's controls: kt.aio._facade.AsyncNoReply


class TokyoTyrant(AsyncLifecycle, AsyncNoReply, _sync.TokyoTyrantBase):
    """asyncio client for a Tokyo Tyrant server: ``kt.TokyoTyrant``'s methods, awaitable.

    ``await tt.get(key)``, ``async with TokyoTyrant(...) as tt``, ``async for key in tt``;
    ``size`` and ``error`` are awaitable properties.  Dict-style access (``tt[key]``,
    ``tt[key] = value``, ``del tt[key]``, ``key in tt``, ``len(tt)``, slices) is absent: Python
    cannot await those.  The constructor takes ``kt.TokyoTyrant``'s arguments; concurrent
    calls share up to ``max_connections`` connections (default 4), several requests in
    flight on each; ``timeout`` bounds each reply.  ``setnr``/``setnr_bulk`` return once the
    write is queued; the same task's later requests go on the same connection (until
    ``checkin()``), so they see the write.  Inside a running loop a one-round-trip method
    queues its request at the call and returns an ``asyncio.Future`` of the result.
    """

    _transport = AsyncPool

    def _bind(self) -> None:
        self._submit = self._pool.submit
        self._arun = partial(arun, self._submit)
        self._bind_no_reply()

    async def setnr(self, key: Any, value: Any) -> None:
        """Store without waiting for (or getting) any reply."""
        await self._send_no_reply(_ops.setnr(self._codec, key, value).data)

    async def setnr_bulk(self, __data: Optional[Dict[Any, Any]] = None, **kwargs: Any) -> None:
        """Store many records with no-reply puts, all in one write."""
        plan = _ops.setnr_bulk(self._codec, __data, **kwargs)
        if plan is not None:
            await self._send_no_reply(plan.data)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for key in await self.keys():  # type: ignore[attr-defined]
            yield key


for _name, _method in coroutines(
    _sync.TokyoTyrant, _ops, [n for n in dir(_sync.TokyoTyrant) if n[0] != "_" and n not in _OWN]
).items():
    setattr(TokyoTyrant, _name, _method)
TokyoTyrant._script = TokyoTyrant.script  # type: ignore[attr-defined]  # what ``db.lua.name`` calls
