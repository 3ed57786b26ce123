"""Derive the asyncio façades from the sync ones: the same names, signatures and docstrings.

A sync client method is one line, ``return self._run(ops.NAME(self._codec, *args))``; its
coroutine twin is ``return await self._arun(ops.NAME(self._codec, *args))``.  Instead of a
second hand-written copy, :func:`coroutines` makes those twins from the sync class and the
operations module, so the two can never drift apart (tests compare the signatures too).
"""

from __future__ import annotations

import inspect
from types import GeneratorType
from typing import Any, Callable, Dict, Iterable, Optional


def _twin(name: str, op: Callable[..., Any], sync_method: Callable[..., Any], state: Optional[str]) -> Any:
    if state is None:

        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            plan = op(self._codec, *args, **kwargs)
            if type(plan) is GeneratorType:
                return await self._arun(plan)
            data, parse, finish, idempotent = plan  # arun's one-round-trip case, inlined: hot
            result = await self._submit(data, parse, idempotent)
            return result if finish is None else finish(result)

    else:

        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await self._arun(op(self._codec, getattr(self, state), *args, **kwargs))

    method.__name__ = name
    method.__doc__ = sync_method.__doc__
    method.__signature__ = inspect.signature(sync_method)  # type: ignore[attr-defined]
    return method


def coroutines(
    sync_class: type, ops: Any, names: Iterable[str], prefix: str = "", state: Optional[str] = None
) -> Dict[str, Any]:
    """``{name: coroutine method}`` running ``ops.<prefix><name>`` for each of ``names``.

    ``state``: the name of an attribute passed to the operation after the codec (a cursor's).
    Properties of the sync class become properties returning an awaitable.
    """
    methods: Dict[str, Any] = {}
    for name in names:
        attr = inspect.getattr_static(sync_class, name)
        op = getattr(ops, prefix + name)
        if isinstance(attr, property):
            coro = _twin(name, op, attr.fget, state)  # type: ignore[arg-type]
            methods[name] = property(coro, doc=attr.__doc__)
        else:
            methods[name] = _twin(name, op, attr, state)
    return methods


class AsyncLifecycle:
    """``close()`` as a coroutine and ``async with`` for the asyncio clients."""

    _pool: Any

    async def close(self) -> None:
        """Close every connection (calls in flight fail; the client reconnects on demand)."""
        self._pool.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
