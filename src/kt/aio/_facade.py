"""Derive the asyncio façades from the sync ones: the same names, signatures and docstrings.

A sync client method is one line, ``return self._run(ops.NAME(self._codec, *args))``; its
coroutine twin is ``return await self._arun(ops.NAME(self._codec, *args))``.

Speed: a method whose operation is one round trip, called inside a running loop, queues its
request at once and returns the request's future instead of a coroutine (``await`` and
``gather`` take either; a coroutine would cost a Task per call under ``gather``, about as much
CPU as the whole rest of a pipelined get).  So the request is queued when the method is
called, not when it is awaited; bad input still raises where the result is awaited.
Outside a running loop the method returns a coroutine (``asyncio.run(db.get(k))`` works).
Python 3.12+ marks these methods as coroutine functions (``inspect.markcoroutinefunction``).  Instead of a
second hand-written copy, :func:`coroutines` makes those twins from the sync class and the
operations module, so the two can never drift apart (tests compare the signatures too).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from functools import partial
from types import GeneratorType
from typing import Any, Callable, Dict, Iterable, Optional

from kt.ops import arun

_running_loop = asyncio._get_running_loop
_markcoroutinefunction = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+


def _twin(name: str, op: Callable[..., Any], sync_method: Callable[..., Any], state: Optional[str]) -> Any:
    if state is None:

        async def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
            plan = op(self._codec, *args, **kwargs)
            if plan is None:  # a no-reply call with nothing to send
                return None
            if type(plan) is GeneratorType:
                return await self._arun(plan)
            data, parse, finish, idempotent = plan
            if parse is None:  # a no-reply request (kt 0.9.6's no_reply=True)
                await self._send_no_reply(data)
                return None
            return await self._submit(data, parse, idempotent, finish)

        method = _queueing_method(name, op, slow, inspect.signature(sync_method))
        method._kt_returns_awaitable = True  # type: ignore[attr-defined]
        if _markcoroutinefunction is not None:
            _markcoroutinefunction(method)

    else:

        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await self._arun(op(self._codec, getattr(self, state), *args, **kwargs))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = sync_method.__doc__
    method.__signature__ = inspect.signature(sync_method)  # type: ignore[attr-defined]
    return method


# The method a one-round-trip operation gets: inside a running loop it queues the request now
# and returns its future (no coroutine, so ``gather`` makes no Task for it: the hot path).  It
# is generated with the sync method's own parameters, because forwarding ``*args, **kwargs``
# cost about a third of the method's time (as dataclasses generates __init__).
_QUEUEING_METHOD = """
def {name}({params}):
    if _kt_running_loop() is None:
        return _kt_slow({args})
    try:
        _kt_plan = _kt_op(self._codec, {op_args})
    except Exception as _kt_exc:  # bad input: raised where the caller awaits
        return _kt_failed(_kt_exc)
    if type(_kt_plan) is _kt_generator or _kt_plan is None or _kt_plan[1] is None:
        return _kt_from_plan(self, _kt_plan)
    _kt_data, _kt_parse, _kt_finish, _kt_idempotent = _kt_plan
    return self._submit(_kt_data, _kt_parse, _kt_idempotent, _kt_finish)
"""


def _queueing_method(name: str, op: Callable[..., Any], slow: Any, signature: inspect.Signature) -> Any:
    """The hot-path method for ``op`` with the parameters of ``signature`` (self first)."""
    namespace: Dict[str, Any] = {
        "_kt_running_loop": _running_loop, "_kt_slow": slow, "_kt_op": op, "_kt_failed": _failed,
        "_kt_generator": GeneratorType, "_kt_from_plan": _from_plan,
    }
    params, args = [], []
    star = False
    for param in signature.parameters.values():
        kind, pname = param.kind, param.name
        if kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{name}: positional-only parameters are not supported")
        if kind is param.VAR_POSITIONAL:
            params.append(f"*{pname}")
            args.append(f"*{pname}")
            star = True
            continue
        if kind is param.VAR_KEYWORD:
            params.append(f"**{pname}")
            args.append(f"**{pname}")
            continue
        if kind is param.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        if param.default is param.empty:
            params.append(pname)
        else:
            namespace[f"_kt_default_{pname}"] = param.default
            params.append(f"{pname}=_kt_default_{pname}")
        args.append(f"{pname}={pname}" if kind is param.KEYWORD_ONLY else pname)
    source = _QUEUEING_METHOD.format(
        name=name, params=", ".join(params), args=", ".join(args), op_args=", ".join(args[1:])
    )
    exec(source, namespace)  # noqa: S102 - generated from a signature, no outside input
    return namespace[name]


async def _failed(exc: Exception) -> Any:
    raise exc


async def _from_plan(client: Any, plan: Any) -> Any:
    """The rarer shapes of an operation: several round trips, none, or no reply."""
    if plan is None:
        return None
    if type(plan) is GeneratorType:
        return await client._arun(plan)
    await client._send_no_reply(plan[0])
    return None


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


class AsyncNoReply:
    """No-reply requests for the asyncio clients: queued on a connection that the same task's
    later requests then use, so they see the write (a connection's requests run in order)."""

    _pool: Any
    _submit: Any

    def _bind_no_reply(self) -> None:
        # Set per task by a no-reply call: the connection its next request must use.
        self._pending: contextvars.ContextVar[Optional[Any]] = contextvars.ContextVar(
            f"kt.aio-{type(self).__name__}-{id(self)}-pending", default=None
        )

    def _submit_pending(self, data: bytes, parse: Any, idempotent: bool = False, finish: Any = None) -> Any:
        """The pool's submit, but on this task's no-reply connection while it has one open
        (until ``checkin()``: requests queued together right after the write, e.g. several
        gets gathered, must all follow it, and a future-returning call has no Task of its own
        whose context could forget the connection for it alone)."""
        conn = self._pending.get()
        if conn is not None:
            if not conn.closed:
                return conn.submit(data, parse, idempotent, finish)
        return self._pool.submit(data, parse, idempotent, finish)

    async def _send_no_reply(self, data: bytes) -> None:
        conn = self._pending.get()
        if conn is None or conn.closed:
            conn = self._pool.send(data)
        else:
            conn.send(data)
        self._pending.set(conn)
        self._submit = self._submit_pending  # from now on requests look for it
        self._arun = partial(arun, self._submit)

    async def checkin(self) -> None:
        """Forget this task's no-reply connection (the next request may go anywhere)."""
        self._pending.set(None)

    # -- coleifer/kt's connection controls, for asyncio ---------------------------------

    async def open(self) -> bool:
        """Connect now (one cheap request); True once a connection answered."""
        await self.count()  # type: ignore[attr-defined]
        return True

    async def close_all(self) -> None:
        """Same as ``close``."""
        await self.close()  # type: ignore[attr-defined]

    async def close_idle(self, cutoff: int = 60) -> int:
        """Close the connections (asyncio connections are shared, never idle-pinned);
        how many were open."""
        count = self._pool.size
        await self.close()  # type: ignore[attr-defined]
        return count

    @property
    def lua(self) -> Any:
        """``await db.lua.name(...)``: calls the server-side Lua function ``name``."""
        from kt.lua import ScriptRunner

        return ScriptRunner(self)
