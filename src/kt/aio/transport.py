"""The asyncio socket layer: pipelined connections and a small pool of them.

API (the asyncio clients code against exactly these names)

``AsyncConnection``  (an ``asyncio.Protocol``; made by ``AsyncPool``)
    One TCP connection carrying many requests at once.  ``submit(data, parse, idempotent,
    finish)`` queues ``data`` for writing and returns a future of ``parse``'s result for its
    reply, passed through ``finish`` when given (the operation's finishing step).
    Requests queued in one event-loop turn go out in one write at the turn's end (a turn
    queuing many writes them every ``_WRITE_EVERY``, so the server starts on the first ones
    while the rest are built); replies are matched to
    requests in order (both servers answer a connection's requests in order).  A reply
    whose caller was cancelled is still read, then dropped, so it never reaches anyone else.
    ``send(data)`` writes a request that has no reply (TT ``putnr``).

    Failure rules (as in ``kt.transport``): a parser error other than a complete error reply
    (``ServerError`` with ``end``), EOF, a socket error or a timeout closes the connection and
    fails every request still waiting on it, at once:

    * the request whose reply is late: ``ServerTimeoutError``;
    * the requests written behind it: ``ServerConnectionError`` (sent, outcome unknown);
    * EOF/reset before a request's first reply byte: ``ConnectionDroppedError``, which the
      pool answers by resending the request on a fresh connection when it is idempotent.

``AsyncPool(host, port, coalesce_gets=True, timeout=None, connect_timeout=5.0, max_size=4)``
    Up to ``max_size`` connections; a request goes to an idle connection, else to a new one
    while below ``max_size``, else to the connection with the fewest requests in flight.
    ``timeout`` bounds each reply (from the moment the request is queued); ``connect_timeout``
    bounds connecting.  ``submit(data, parse, idempotent=False, finish=None)`` returns a
    future of the parsed reply at once (no coroutine per request: the hot path; the
    connection's own ``submit`` runs through it); ``request(...)`` is the
    same as a coroutine.  ``pin()`` returns one connection for a caller that keeps server-side
    state on it (KT cursors); ``close()`` closes every connection (the pool reconnects on
    demand).  A request that lost its connection before any reply byte is queued once more on
    another connection when it is idempotent or was never written.  The pool
    notices a fork (pid change) or a different event loop and starts over with new
    connections, leaving the old sockets to their owner.

    ``coalesce_gets``: KT single-record ``get`` requests queued on one connection in the same
    event-loop turn are sent as one binary ``get_bulk`` and each caller gets its own value
    (missing keys included); nothing else is ever merged.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections import deque
from functools import partial
from typing import Any, Callable, Deque, List, Optional, Tuple

from kt import transport as _kt_transport
from kt._native import load
from kt.errors import ProtocolError, ServerConnectionError, ServerError, ServerTimeoutError
from kt.protocol import kt_binary
from kt.transport import ConnectionDroppedError, Pool, current_pid

__all__ = ["AsyncConnection", "AsyncPool", "DEFAULT_ASYNC_MAX_SIZE", "NeverSentError"]

DEFAULT_ASYNC_MAX_SIZE = 4
Parser = Callable[[Any, int], Optional[Tuple[Any, int]]]
Finish = Optional[Callable[[Any], Any]]  # an operation's finishing step (kt.ops.Plan.finish)

# A turn queuing many requests on one connection writes them every this many, not all at its
# end: the server starts answering while the rest are still being built (measured best of
# 2..32 against the real ktserver: 1 conn +10-25% gets/s, less client CPU; bench/README.md).
_WRITE_EVERY = 16
_LARGE = 1 << 20  # a partial reply larger than this switches to collecting chunks
try:
    import fcntl
    import termios

    _FIONREAD: Optional[int] = termios.FIONREAD
except ImportError:  # pragma: no cover - not POSIX: always re-parse
    _FIONREAD = None
_GET_ONE = kt_binary.parse_get_value_reply
_running_loop = asyncio._get_running_loop  # public get_running_loop() minus the raise: hot path
_GET_ONE_HEAD = 9 + 2 + 4  # magic, flags, count | dbidx, ksiz: then the key
_BULK_HEAD = struct.Struct(">BII")  # a binary bulk request's head: magic, flags, count


class NeverSentError(ConnectionDroppedError):
    """The connection failed before this request was written: safe to send elsewhere."""


# One request queued or written on a connection, waiting for its reply: a plain tuple (a
# class instance costs several times as much to make, and this is made once per request).
#   (future, parse, finish, data, idempotent, deadline, retried)
# ``finish`` shapes the parsed reply before the caller sees it; ``deadline`` is the loop time
# its reply is due by (0.0: none); ``retried``: already resent once after a dropped connection.
_Waiter = Tuple[asyncio.Future, Parser, Finish, bytes, bool, float, bool]


class AsyncConnection(asyncio.Protocol):
    """One pipelined connection; see the module docstring."""

    def __init__(self, pool: AsyncPool) -> None:
        self.pool = pool
        self.address = pool.address
        self.timeout = pool.timeout
        self.loop = pool.loop
        self._new_future = pool.loop.create_future
        self.transport: Optional[asyncio.Transport] = None
        self.closed = False
        self.waiting: Deque[_Waiter] = deque()
        self._outbox: List[bytes] = []
        self._unsent = 0  # the last this-many waiters are still in the outbox
        self._gets: List[_Waiter] = []  # coalescing: KT gets of this turn
        self._flush_scheduled = False
        self._deadline = 0.0  # this turn's requests are due by then (one clock read per turn)
        self._started = False  # some byte of the first waiter's reply has arrived
        self._buf = b""
        self._chunks: List[bytes] = []  # large-reply mode (see data_received)
        self._size = self._tried = 0
        self._fd = -1
        self._timer: Optional[asyncio.TimerHandle] = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.load} in flight"
        return f"<AsyncConnection {self.address} {state}>"

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self._gets)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._fd = sock.fileno()
            except OSError:
                pass

    def _more_pending(self) -> bool:
        """True when the kernel already holds more bytes of this connection (FIONREAD)."""
        if _FIONREAD is None or self._fd < 0:
            return False
        try:
            pending = fcntl.ioctl(self._fd, _FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(pending, sys.byteorder) > 0

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed:
            reason = f": {exc}" if exc else ""
            self._fail(None, f"{self.address} closed the connection{reason}")

    def eof_received(self) -> bool:
        self._fail(None, f"{self.address} closed the connection")
        return False

    def data_received(self, data: bytes) -> None:
        if self._chunks:  # a large reply is arriving: collect, parse again only when it may be whole
            self._chunks.append(data)
            self._size += len(data)
            if self._size < 2 * self._tried and self._more_pending():
                return  # more bytes are already queued: data_received will run again
            buf = b"".join(self._chunks)
            self._chunks = []
        else:
            buf = self._buf + data if self._buf else data
        pos = 0
        waiting = self.waiting
        popleft = waiting.popleft
        try:
            while waiting:
                waiter = waiting[0]
                if waiter[1] is _GET_ONE:  # a run of single gets: answered in one call
                    end = _resolve_gets(waiting, buf, pos, _GET_ONE)
                    if end != pos:
                        pos = end
                        continue
                try:
                    parsed = waiter[1](buf, pos)
                except ServerError as exc:
                    if exc.end is None:
                        raise  # a complete reply of unknown length: the stream is lost
                    popleft()
                    self._started = False
                    if not waiter[0].done():
                        waiter[0].set_exception(exc)
                    pos = exc.end
                    continue
                if parsed is None:
                    if len(buf) > pos:
                        self._started = True
                    break
                result, pos = parsed
                popleft()
                future = waiter[0]
                if not future.done():  # a cancelled caller's reply is dropped here
                    if waiter[2] is None:
                        future.set_result(result)
                    else:
                        _answer(future, waiter[2], result)
            else:
                self._started = False
                if pos < len(buf):
                    raise ProtocolError(f"{self.address} sent {len(buf) - pos} bytes nobody asked for")
        except Exception as exc:
            self._fail(exc, "")
            return
        self._buf = buf[pos:] if pos < len(buf) else b""
        if len(self._buf) > _LARGE:
            # Joining and re-parsing a growing reply on every read would be quadratic: collect
            # the chunks instead and parse once it doubled or the socket has nothing more.
            self._chunks, self._buf = [self._buf], b""
            self._size = self._tried = len(self._chunks[0])
        if pos and waiting:
            self._started = len(buf) > pos
        # The deadline timer is not moved here: when it fires, it re-arms for the waiter then
        # first in line (one timer per connection, not one reschedule per read).

    # -- requests ------------------------------------------------------------------------

    def submit(
        self, data: bytes, parse: Parser, idempotent: bool = False, finish: Finish = None
    ) -> asyncio.Future:
        """Queue a request; the future gets its parsed reply, through ``finish`` when given
        (or its error)."""
        return self.pool.submit(data, parse, idempotent, finish, self)

    def enqueue(self, waiter: _Waiter) -> None:
        """Queue a waiter made elsewhere (a resent request, keeping its first deadline)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
            if self.timeout:
                self._deadline = self.loop.time() + self.timeout
        if self.pool.coalesce_gets and waiter[1] is _GET_ONE:
            self._gets.append(waiter)
        else:
            self._queue(waiter)

    def _queue(self, waiter: _Waiter) -> None:
        self.waiting.append(waiter)
        self._outbox.append(waiter[3])
        self._unsent += 1
        if self._timer is None and waiter[5]:
            self._arm()

    def send(self, data: bytes) -> None:
        """A request with no reply: goes out in order with the others."""
        self._outbox.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._gets:
            self._merge_gets()
        if self.closed or self.transport is None:
            return  # _fail already answered the waiters; the pool flushes once connected
        if self._outbox:
            data = b"".join(self._outbox) if len(self._outbox) > 1 else self._outbox[0]
            self._outbox.clear()
            self._unsent = 0
            self.transport.write(data)

    def _merge_gets(self) -> None:
        callers, self._gets = self._gets, []
        if len(callers) == 1:
            self._queue(callers[0])
            return
        # A get_one request is a get_bulk of one record: [head:9][dbidx:2][ksiz:4][key], so
        # the merged request is a new head and the callers' records as they are.
        body = b"".join([waiter[3][9:] for waiter in callers])
        data = _BULK_HEAD.pack(kt_binary.MAGIC_GET_BULK, 0, len(callers)) + body
        # One database for all (the usual case): the reply's (key, value) pairs suffice.
        db = callers[0][3][9:11]
        one_db = all([waiter[3][9:11] == db for waiter in callers])
        parse = kt_binary.parse_get_bulk_pairs if one_db else kt_binary.parse_get_bulk_reply
        future = self._new_future()
        future.add_done_callback(partial(_split_bulk, callers=callers))
        self._queue((future, parse, None, data, True, callers[0][5], False))

    # -- timeouts and failure ------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.waiting and self.waiting[0][5]:
            self._timer = self.loop.call_at(self.waiting[0][5], self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self.waiting or self.closed:
            return
        head = self.waiting[0]
        if self.loop.time() + 0.001 < head[5]:
            self._arm()
            return
        self._fail(
            ServerTimeoutError(f"no reply from {self.address} within {self.timeout}s (connection closed)"),
            "",
        )

    def _fail(self, exc: Optional[BaseException], dropped: str, every: bool = False) -> None:
        """Close, and answer every waiting request: ``exc`` for the first (for all with
        ``every``), then by what is known of the rest; unanswered ones may go elsewhere."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.abort()
        self._buf = b""
        self._chunks = []
        self._outbox.clear()
        waiting = list(self.waiting)
        sent = len(waiting) - self._unsent
        waiting.extend(self._gets)
        self.waiting.clear()
        self._gets = []
        self.pool._discard(self)
        timed_out = isinstance(exc, ServerTimeoutError)
        for index, waiter in enumerate(waiting):
            future = waiter[0]
            if future.done():
                continue
            if exc is not None and (every or index == 0):
                error: BaseException = exc
            elif index >= sent:
                error = NeverSentError(f"connection to {self.address} failed before sending")
            elif exc is None and not (index == 0 and self._started):
                error = ConnectionDroppedError(f"{dropped} before replying")
            elif timed_out:
                error = ServerTimeoutError(
                    f"connection to {self.address} closed: an earlier request on it got no reply "
                    f"within {self.timeout}s; this one was sent, its outcome is unknown"
                )
            else:
                cause = "an earlier request on it failed" if exc is not None else dropped
                error = ServerConnectionError(
                    f"connection to {self.address} closed ({cause}); the request was sent, "
                    "its outcome is unknown"
                )
            if isinstance(error, ConnectionDroppedError) and not waiter[6] and (
                waiter[4] or isinstance(error, NeverSentError)
            ):
                # once: the old server never answered it
                self.pool._requeue(waiter[:6] + (True,))
            else:
                future.set_exception(error)

    def close(self) -> None:
        closed = ServerConnectionError(f"connection to {self.address} closed by the client")
        self._fail(closed, "", every=True)


def _split_bulk(future: asyncio.Future, callers: List[_Waiter]) -> None:
    """Hand each coalesced get its own value (None for a key the server did not return)."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        for waiter in callers:
            if not waiter[0].done():
                waiter[0].set_exception(exc)
        return
    # A caller's record is its request from byte 9 on: [dbidx:2][ksiz:4][key].
    records = future.result()
    if records and len(records[0]) == 2:  # parse_get_bulk_pairs: all callers use one database
        get = dict(records).get
        values = [get(waiter[3][_GET_ONE_HEAD:]) for waiter in callers]
    else:
        get = {(db, key): value for db, key, value, _xt in records}.get
        values = [get((int.from_bytes(w[3][9:11], "big"), w[3][_GET_ONE_HEAD:])) for w in callers]
    for waiter, value in zip(callers, values):
        caller = waiter[0]
        if not caller.done():
            if waiter[2] is None:
                caller.set_result(value)
            else:
                _answer(caller, waiter[2], value)


def _py_resolve_gets(waiting: Deque[_Waiter], buf: bytes, pos: int, parse: Parser) -> int:
    """Answer the head waiters of ``waiting`` that use ``parse`` (the single-get parser) from
    the replies in ``buf`` from ``pos``; returns the position after the last reply used.

    Stops at a waiter of another kind, an incomplete reply, or one ``parse`` raises for
    (left to ``data_received``'s general loop, which reports it).  A cancelled caller's reply
    is read and dropped.  The compiled twin: ``kt._speedups.aio_pipeline.resolve_gets``."""
    while waiting:
        waiter = waiting[0]
        if waiter[1] is not parse:
            break
        try:
            parsed = parse(buf, pos)
        except Exception:
            break
        if parsed is None:
            break
        waiting.popleft()
        value, pos = parsed
        future = waiter[0]
        if future.done():
            continue
        if waiter[2] is None:
            future.set_result(value)
        else:
            _answer(future, waiter[2], value)
    return pos


_native = load("aio_pipeline")
_resolve_gets = _py_resolve_gets if _native is None else _native.resolve_gets


def _answer(future: asyncio.Future, finish: Callable[[Any], Any], result: Any) -> None:
    """Resolve a future with its finished result (or the finishing step's error)."""
    try:
        result = finish(result)
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class AsyncPool:
    """A bounded set of pipelined connections to one server; see the module docstring."""

    def __init__(self, host: str, port: int, coalesce_gets: bool = True, **settings: Any) -> None:
        """``settings``: ``timeout``, ``connect_timeout``, ``max_size`` as ``kt.transport.Pool``
        takes them (``max_size`` defaults to DEFAULT_ASYNC_MAX_SIZE here)."""
        settings.setdefault("max_size", DEFAULT_ASYNC_MAX_SIZE)
        spec = Pool(host, port, **settings)  # the sync pool validates the settings, once
        self.host, self.port, self.address = spec.host, spec.port, spec.address
        self.timeout, self.connect_timeout, self.max_size = spec.timeout, spec.connect_timeout, spec.max_size
        self.coalesce_gets = coalesce_gets
        self.loop: Any = None
        self._pid = 0
        self._conns: List[AsyncConnection] = []
        # The connection while it is the only one there may be (max_size 1): submit's fast path.
        self._only: Optional[AsyncConnection] = None

    def __repr__(self) -> str:
        return f"<AsyncPool {self.address} {len(self._conns)}/{self.max_size} connections>"

    @property
    def size(self) -> int:
        return len(self._conns)

    def _pick(self) -> AsyncConnection:
        """An idle connection, else a new one while below max_size, else the least loaded."""
        if self.loop is not _running_loop() or self._pid != current_pid():
            if _running_loop() is None:
                asyncio.get_running_loop()  # raises the usual RuntimeError
            # A forked child or another event loop: the old connections are not ours to use.
            self.loop = asyncio.get_running_loop()
            self._pid = current_pid()
            self._conns = []
            self._only = None
        conns = self._conns
        if len(conns) == 1 and self.max_size == 1:
            return conns[0]  # the only connection there may be: no load to compare
        best = None
        least = 0
        for conn in conns:
            load = len(conn.waiting) + len(conn._gets)  # conn.load, inlined: once per request
            if not load:
                return conn
            if best is None or load < least:
                best, least = conn, load
        if best is None or len(conns) < self.max_size:
            return self._open()
        return best

    def _open(self) -> AsyncConnection:
        conn = AsyncConnection(self)
        self._conns.append(conn)
        if self.max_size == 1:
            self._only = conn
        self.loop.create_task(self._connect(conn))
        return conn

    async def _connect(self, conn: AsyncConnection) -> None:
        try:
            connect = self.loop.create_connection(lambda: conn, self.host, self.port)
            try:
                await asyncio.wait_for(connect, self.connect_timeout)
            except asyncio.TimeoutError:
                raise ServerTimeoutError(
                    f"connecting to {self.address} timed out after {self.connect_timeout}s"
                ) from None
            except OSError as exc:
                reason = exc.strerror or exc
                raise ServerConnectionError(f"cannot connect to {self.address}: {reason}") from exc
        except Exception as exc:
            conn._fail(exc, "", every=True)
            return
        if conn.closed:  # closed by the client (or a timeout) while connecting
            if conn.transport is not None:
                conn.transport.abort()
            return
        conn._flush()

    def _discard(self, conn: AsyncConnection) -> None:
        if self._only is conn:
            self._only = None
        try:
            self._conns.remove(conn)
        except ValueError:
            pass

    def _requeue(self, waiter: _Waiter) -> None:
        try:
            conn = self._pick()
        except RuntimeError:  # no running event loop any more
            waiter[0].set_exception(ServerConnectionError(f"connection to {self.address} lost"))
        else:
            conn.enqueue(waiter)

    def submit(
        self, data: bytes, parse: Parser, idempotent: bool = False, finish: Finish = None,
        conn: Optional[AsyncConnection] = None,
    ) -> asyncio.Future:
        """Queue one request (on ``conn`` when given, else on the connection ``_pick`` would
        choose); returns a future of its parsed (and finished) reply.  This runs once per
        request, so it holds the connection's queueing itself (one Python call, not three)."""
        if conn is None:
            conn = self._only
            if conn is None or self.loop is not _running_loop() or self._pid != _kt_transport._pid:
                conn = self._pick()
        future = conn._new_future()
        if not conn._flush_scheduled:  # the turn's first request: one write, one clock read
            conn._flush_scheduled = True
            conn.loop.call_soon(conn._flush)
            if conn.timeout:
                conn._deadline = conn.loop.time() + conn.timeout
        waiter = (future, parse, finish, data, idempotent, conn._deadline, False)
        # AsyncConnection.enqueue() and _queue(), inlined.
        if parse is _GET_ONE and self.coalesce_gets:
            conn._gets.append(waiter)
        else:
            conn.waiting.append(waiter)
            outbox = conn._outbox
            outbox.append(data)
            conn._unsent += 1
            if conn._timer is None and conn._deadline:
                conn._arm()
            if len(outbox) >= _WRITE_EVERY and conn.transport is not None:
                conn._flush()
        return future

    async def request(self, data: bytes, parse: Parser, idempotent: bool = False) -> Any:
        """Send one request and return its parsed reply (see the module docstring)."""
        return await self._pick().submit(data, parse, idempotent)

    def send(self, data: bytes) -> AsyncConnection:
        """Queue a no-reply request (it goes out with this turn's other requests); returns
        the connection that carries it (a later request on it sees the write done)."""
        conn = self._pick()
        conn.send(data)
        return conn

    def pin(self) -> AsyncConnection:
        """A connection for a caller keeping server-side state on it (it stays shared)."""
        return self._pick()

    def close(self) -> None:
        """Close every connection; requests in flight fail; the pool reconnects on demand."""
        conns, self._conns = self._conns, []
        self._only = None
        if self._pid == current_pid():
            for conn in conns:
                conn.close()
