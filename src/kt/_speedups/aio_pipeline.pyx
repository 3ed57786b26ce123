# cython: language_level=3
"""C version of kt.aio's per-reply loop for pipelined single-record KT gets.

``resolve_gets`` is the twin of ``kt.aio.transport._py_resolve_gets`` (identical effects and
result): it answers the waiters at the head of a connection's queue whose parser is the
single-get parser, one reply each, straight from the receive buffer, and stops at the first
waiter of another kind, an incomplete reply, or a reply the parser would not answer plainly
(an error byte, a foreign magic, an oversized record): those are left to the transport's
general loop, which gives them the parser's own errors.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t


cdef enum:
    KT_DATA_MAX = 1 << 28
    KT_MAGIC_GET_BULK = 0xBA


cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


def resolve_gets(object waiting, bytes buf, Py_ssize_t pos, object parse):
    """Resolve the head waiters of ``waiting`` (a deque of transport waiters) that use
    ``parse`` from the replies in ``buf`` from ``pos``; returns the position after the last
    reply used.  A cancelled caller's reply is read and dropped; a waiter's ``finish`` step
    shapes its value (its exception goes to the caller's future)."""
    cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(buf), end
    cdef uint32_t hits, ksiz, vsiz
    popleft = waiting.popleft
    while waiting:
        waiter = waiting[0]
        if type(waiter) is not tuple or PyTuple_GET_SIZE(waiter) < 3 or <object>PyTuple_GET_ITEM(waiter, 1) is not parse:
            break
        if pos < 0 or size - pos < 5 or d[pos] != KT_MAGIC_GET_BULK:
            break
        hits = _u32(d + pos + 1)
        if hits == 0:
            value = None
            end = pos + 5
        elif hits == 1:
            if size - pos < 23:
                break
            ksiz = _u32(d + pos + 7)
            vsiz = _u32(d + pos + 11)
            if ksiz > KT_DATA_MAX or vsiz > KT_DATA_MAX:
                break
            end = pos + 23 + ksiz + vsiz
            if end > size:
                break
            value = PyBytes_FromStringAndSize(<const char*>d + end - vsiz, vsiz)
        else:
            break
        popleft()
        pos = end
        future = <object>PyTuple_GET_ITEM(waiter, 0)
        if future.done():  # a cancelled caller: its reply is dropped
            continue
        finish = <object>PyTuple_GET_ITEM(waiter, 2)
        if finish is not None:  # the operation's finishing step (e.g. the serializer)
            try:
                value = finish(value)
            except Exception as exc:
                future.set_exception(exc)
                continue
        future.set_result(value)
    return pos
