"""asyncio sharded clients: ``ShardedKyotoTycoon`` and ``ShardedTokyoTyrant`` over kt.aio clients.

They are :mod:`kt.sharding`'s classes with another driver: the ring, key placement, bulk
splitting, result merging and the failover decisions (:class:`kt.failover.Shard`) are the
sync ones; every operation builds the same plan, and here its per-shard calls run with
``asyncio.gather`` (``Shard.acall``) instead of a thread pool.  Methods are coroutines
(``await db.get(key)``), ``keys()``/``values()``/``items()`` are async iterators, ``size`` is an
awaitable property, and dict-style access is absent (Python cannot await it).  The failover
health check does blocking I/O, so it runs in the loop's default executor on blocking
clients of the same servers.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, List, NoReturn, Optional, Tuple

from kt import kyototycoon as _sync_kt
from kt import sharding as _sync
from kt import tokyotyrant as _sync_tt
from kt.aio.kyototycoon import KyotoTycoon
from kt.aio.tokyotyrant import TokyoTyrant
from kt.failover import Shard

__all__ = ["ShardedKyotoTycoon", "ShardedTokyoTyrant"]


def _not_awaitable(name: str) -> Any:
    def method(self: Any, *args: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} has no {name}: Python cannot await it")

    method.__name__ = name
    return method


class _AsyncDriver:
    """Runs the plans of :mod:`kt.sharding` with asyncio; closes clients with await."""

    shards: List[Shard]
    _blocking_class: Any = None  # blocking client class for the health check

    def _health_clients(self, addresses: List[Tuple[str, int]], kwargs: Dict[str, Any]) -> Optional[list]:
        timeouts = {k: kwargs[k] for k in ("timeout", "connect_timeout") if k in kwargs}
        return [self._blocking_class(host=h, port=p, **timeouts) for h, p in addresses]

    async def _execute(self, plan: Any) -> Any:
        """Every call of the plan concurrently; an error is raised after all have finished."""
        results = await asyncio.gather(
            *(shard.acall(fn, plan.retry_safe) for shard, fn in plan.calls), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return plan.merge(results)

    def _call_one(self, shard: Shard, fn: Any, retry_safe: bool) -> Any:
        return shard.acall(fn, retry_safe)

    async def close(self) -> None:
        """Close every client's connections (and the health check's blocking ones)."""
        await asyncio.gather(*(client.close() for shard in self.shards for client in shard.clients))
        for shard in self.shards:
            for client in shard.health_clients:
                client.close()

    async def checkin(self) -> None:
        await asyncio.gather(*(client.checkin() for shard in self.shards for client in shard.clients))

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __enter__(self) -> NoReturn:
        raise TypeError(f"use 'async with' with {type(self).__name__}")

    __exit__ = _not_awaitable("__exit__")
    __len__ = _not_awaitable("len(); await count()")
    __iter__ = _not_awaitable("iter(); use 'async for' over keys()")
    __getitem__ = _not_awaitable("db[key]; await get(key)")
    __setitem__ = _not_awaitable("db[key] = value; await set(key, value)")
    __delitem__ = _not_awaitable("del db[key]; await remove(key)")
    __contains__ = _not_awaitable("'key in db'; await exists(key)")


class ShardedKyotoTycoon(_AsyncDriver, _sync.ShardedKyotoTycoon):
    """:class:`kt.ShardedKyotoTycoon` over :class:`kt.aio.KyotoTycoon` clients (see the module
    docstring); keyword arguments go to every ``kt.aio.KyotoTycoon``."""

    _client_class = KyotoTycoon
    _blocking_class = _sync_kt.KyotoTycoon

    async def _walk(self, name: str, db: Optional[int]) -> AsyncIterator[Any]:
        for shard in self.shards:
            async for item in getattr(shard.active, name)(db):
                yield item

    def keys(self, db: Optional[int] = None) -> AsyncIterator[Any]:  # type: ignore[override]
        """Every key, shard after shard (each in its database's order)."""
        return self._walk("keys", db)

    def values(self, db: Optional[int] = None) -> AsyncIterator[Any]:  # type: ignore[override]
        return self._walk("values", db)

    def items(self, db: Optional[int] = None) -> AsyncIterator[Tuple[Any, Any]]:  # type: ignore[override]
        return self._walk("items", db)


class ShardedTokyoTyrant(_AsyncDriver, _sync.ShardedTokyoTyrant):
    """:class:`kt.ShardedTokyoTyrant` over :class:`kt.aio.TokyoTyrant` clients (see the module
    docstring); keyword arguments go to every ``kt.aio.TokyoTyrant``."""

    _client_class = TokyoTyrant
    _blocking_class = _sync_tt.TokyoTyrant
