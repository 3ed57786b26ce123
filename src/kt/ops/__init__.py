"""Operations: every client call written once, as data, with no I/O.

An operation is either

* a :class:`Plan` — one round trip: request bytes, the codec's reply parser, an optional
  ``finish`` that shapes the parsed reply into the caller's result, and whether repeating the
  request could change the stored state or the reply (``idempotent``; the transport resends
  only idempotent requests after a dropped connection); or
* a generator that yields plans and receives each plan's finished result (``send``) or its
  failure (``throw``), and returns the call's result (several round trips, e.g. TT ``items``).

``kt.ops.kt`` and ``kt.ops.tt`` hold the operations of the two servers; ``kt.ops.codec.Codec``
holds a client's key/value encoding.  The sync clients run operations with :func:`run` over
``kt.transport.Pool.request``; ``kt.aio`` runs the very same operations over its asyncio
transport.  Nothing here opens a socket, awaits or locks.
"""

from __future__ import annotations

from types import GeneratorType
from typing import Any, Callable, Generator, NamedTuple, Optional, Tuple, Union

__all__ = ["Plan", "Operation", "Parser", "Request", "arun", "finished", "nothing", "run"]

# parse(buf, pos) -> (result, end) | None: the sans-IO reply-parser contract (docs/internals.md).
Parser = Callable[[Any, int], Optional[Any]]


class Plan(NamedTuple):
    """One round trip: send ``data``, parse the reply with ``parse``, then ``finish`` it."""

    data: bytes
    parse: Parser
    finish: Optional[Callable[[Any], Any]] = None
    idempotent: bool = False


# The hot single-record operations build their plan as a bare 4-tuple in Plan's field order
# (a NamedTuple's constructor costs several times a tuple display); drivers unpack either.
Operation = Union[Plan, Tuple[bytes, Parser, Optional[Callable[[Any], Any]], bool], Generator[Plan, Any, Any]]
# request(data, parse, idempotent=...) -> parsed reply: Pool.request, or a pinned connection's.
Request = Callable[..., Any]


def nothing(result: Any) -> Generator[Plan, Any, Any]:
    """An operation with no round trip (e.g. an empty bulk call): it just returns ``result``."""
    return result
    yield  # a generator: drivers run it like any multi-step operation


def finished(plan: Plan, result: Any) -> Any:
    """``plan.finish(result)``, or ``result`` when the plan has no finishing step."""
    finish = plan[2]
    return result if finish is None else finish(result)


async def arun(request: Request, op: Operation) -> Any:
    """Run ``op`` under asyncio: ``await request(...)`` for each plan; returns the op's result.

    The twin of :func:`run` (the only other copy of the driving loop).
    """
    if type(op) is not GeneratorType:
        data, parse, finish, idempotent = op
        result = await request(data, parse, idempotent)
        return result if finish is None else finish(result)
    try:
        plan = next(op)
        while True:
            try:
                result = finished(plan, await request(plan[0], plan[1], plan[3]))
            except Exception as exc:
                plan = op.throw(exc)
            else:
                plan = op.send(result)
    except StopIteration as stop:
        return stop.value


def run(request: Request, op: Operation) -> Any:
    """Run ``op`` synchronously: each plan through ``request``; returns the op's result."""
    if type(op) is not GeneratorType:
        data, parse, finish, idempotent = op
        result = request(data, parse, idempotent=idempotent)
        return result if finish is None else finish(result)
    try:
        plan = next(op)
        while True:
            try:
                result = finished(plan, request(plan[0], plan[1], idempotent=plan[3]))
            except Exception as exc:
                plan = op.throw(exc)
            else:
                plan = op.send(result)
    except StopIteration as stop:
        return stop.value
