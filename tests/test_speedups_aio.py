"""kt.aio's compiled reply loop (``kt._speedups.aio_pipeline``) against its pure-Python twin.

``resolve_gets`` answers the pipelined single gets at the head of a connection's queue from
one receive buffer.  Both versions get the same queue (hits, misses, cancelled callers,
finishing steps that shape or raise, waiters of another kind) and the same buffer (whole,
cut at every byte, with error bytes and foreign replies in it); they must stop at the same
position, leave the same waiters queued and answer every future the same way.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any, Iterator, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kt import _native
from kt.aio import transport
from kt.protocol import kt_binary

native = _native.load("aio_pipeline")
needs_native = pytest.mark.skipif(native is None, reason="aio_pipeline not built (or KT_PURE_PYTHON=1)")
RESOLVERS = [transport._py_resolve_gets] + ([] if native is None else [native.resolve_gets])

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GET = kt_binary.parse_get_value_reply
OTHER = kt_binary.parse_set_bulk_reply


def _reversed(value: Optional[bytes]) -> Any:
    return None if value is None else value[::-1]


def _failing(value: Optional[bytes]) -> Any:
    raise ValueError(f"cannot finish {value!r}")


FINISHES = {"none": None, "shape": _reversed, "raise": _failing}

# One queued request and the reply the server sends for it.
hit = st.tuples(st.just("hit"), st.binary(max_size=12), st.binary(max_size=40))
miss = st.tuples(st.just("miss"), st.just(b""), st.just(b""))
odd = st.tuples(st.sampled_from(["error", "two", "other", "oversized"]), st.just(b""), st.just(b""))
entry = st.tuples(
    st.one_of(hit, hit, miss, odd), st.sampled_from(sorted(FINISHES)), st.booleans()  # cancelled
)


def reply_for(kind: str, key: bytes, value: bytes) -> bytes:
    if kind == "hit":
        return kt_binary.encode_get_bulk_reply([(0, key, value, 1 << 40)])
    if kind == "miss":
        return b"\xba\x00\x00\x00\x00"
    if kind == "error":
        return b"\xbf"
    if kind == "two":
        return kt_binary.encode_get_bulk_reply([(0, b"a", b"1", 0), (0, b"b", b"2", 0)])
    if kind == "oversized":
        return b"\xba\x00\x00\x00\x01" + struct.pack(">HIIq", 0, 1, (1 << 28) + 1, 0) + b"k" * 30
    return kt_binary.encode_set_bulk_reply(1)  # "other": a set's reply, for a set's waiter


def queue(loop: asyncio.AbstractEventLoop, entries: List[Tuple[Any, str, bool]]) -> deque:
    waiting: deque = deque()
    for (kind, _key, _value), finish, cancelled in entries:
        future = loop.create_future()
        if cancelled:
            future.cancel()
        parse = OTHER if kind == "other" else GET
        waiting.append((future, parse, FINISHES[finish], b"request", True, 0.0, False))
    return waiting


def state(future: asyncio.Future) -> Any:
    if not future.done():
        return "pending"
    if future.cancelled():
        return "cancelled"
    exc = future.exception()
    if exc is not None:
        return ("raised", type(exc), str(exc))
    return ("result", future.result())


def run(resolve: Any, entries: List[Tuple[Any, str, bool]], buf: bytes, pos: int) -> Tuple[Any, ...]:
    loop = asyncio.new_event_loop()
    try:
        waiting = queue(loop, entries)
        futures = [w[0] for w in waiting]
        end = resolve(waiting, buf, pos, GET)
        return end, len(waiting), [w[0] for w in waiting] == futures[len(futures) - len(waiting):], [
            state(f) for f in futures
        ]
    finally:
        loop.close()


def cuts(buf: bytes, limit: int = 60) -> Iterator[int]:
    if len(buf) <= limit:
        yield from range(len(buf) + 1)
    else:
        yield from range(0, len(buf) + 1, max(1, len(buf) // limit))
        yield len(buf)


@needs_native
@FAST
@given(st.lists(entry, max_size=12))
def test_resolve_gets_matches_its_twin(entries: List[Tuple[Any, str, bool]]) -> None:
    buf = b"".join(reply_for(*e[0]) for e in entries)
    for cut in cuts(buf):
        assert run(native.resolve_gets, entries, buf[:cut], 0) == run(
            transport._py_resolve_gets, entries, buf[:cut], 0
        ), cut
    junk = b"\x00\x01\x02" + buf + b"more"
    assert run(native.resolve_gets, entries, junk, 3) == run(transport._py_resolve_gets, entries, junk, 3)


@pytest.mark.parametrize("resolve", RESOLVERS)
def test_resolve_gets_answers_a_run_and_stops_at_the_unusual(resolve: Any) -> None:
    entries = [
        (("hit", b"k1", b"v1"), "none", False),
        (("miss", b"", b""), "shape", False),
        (("hit", b"k2", b"v2"), "none", True),  # cancelled: read and dropped
        (("hit", b"k3", b"v3"), "shape", False),
        (("hit", b"k4", b"v4"), "raise", False),
        (("error", b"", b""), "none", False),  # left for the general loop
        (("hit", b"k5", b"v5"), "none", False),
    ]
    buf = b"".join(reply_for(*e[0]) for e in entries)
    end, left, same_order, states = run(resolve, entries, buf, 0)
    assert buf[end:end + 1] == b"\xbf" and left == 2 and same_order
    assert states[:5] == [
        ("result", b"v1"), ("result", None), "cancelled", ("result", b"3v"),
        ("raised", ValueError, "cannot finish b'v4'"),
    ]
    assert states[5:] == ["pending", "pending"]


def test_the_transport_uses_the_compiled_loop_when_built() -> None:
    expected = transport._py_resolve_gets if native is None else native.resolve_gets
    assert transport._resolve_gets is expected
