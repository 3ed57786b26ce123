"""The asyncio socket layer: pipelined connections and a small pool of them.

API (the asyncio clients code against exactly these names)

``AsyncConnection``  (an ``asyncio.Protocol``; made by ``AsyncPool``)
    One TCP connection carrying many requests at once.  ``submit(data, parse, deadline)``
    queues ``data`` for writing and returns a future of ``parse``'s result for its reply.
    Requests queued in one event-loop turn go out in one write; replies are matched to
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

``AsyncPool(host, port, coalesce_gets=False, timeout=None, connect_timeout=5.0, max_size=4)``
    Up to ``max_size`` connections; a request goes to an idle connection, else to a new one
    while below ``max_size``, else to the connection with the fewest requests in flight.
    ``timeout`` bounds each reply (from the moment the request is queued); ``connect_timeout``
    bounds connecting.  ``request(data, parse, idempotent=False)`` is a coroutine;
    ``pin()`` returns one connection for a caller that keeps server-side state on it (KT
    cursors); ``close()`` closes every connection (the pool reconnects on demand).  The pool
    notices a fork (pid change) or a different event loop and starts over with new
    connections, leaving the old sockets to their owner.

    ``coalesce_gets``: KT single-record ``get`` requests queued on one connection in the same
    event-loop turn are sent as one binary ``get_bulk`` and each caller gets its own value
    (missing keys included); nothing else is ever merged.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from kt.errors import ProtocolError, ServerConnectionError, ServerError, ServerTimeoutError
from kt.protocol import kt_binary
from kt.transport import ConnectionDroppedError, Pool

__all__ = ["AsyncConnection", "AsyncPool", "DEFAULT_ASYNC_MAX_SIZE", "NeverSentError"]

DEFAULT_ASYNC_MAX_SIZE = 4
Parser = Callable[[Any, int], Optional[Tuple[Any, int]]]

_GET_ONE = kt_binary.parse_get_value_reply
_GET_ONE_HEAD = 9 + 2 + 4  # magic, flags, count | dbidx, ksiz: then the key


class NeverSentError(ConnectionDroppedError):
    """The connection failed before this request was written: safe to send elsewhere."""


class _Waiter:
    """One request written (or about to be) on a connection, waiting for its reply."""

    __slots__ = ("parse", "future", "deadline", "started")

    def __init__(self, parse: Parser, future: asyncio.Future, deadline: float) -> None:
        self.parse = parse
        self.future = future
        self.deadline = deadline
        self.started = False  # some byte of this reply has arrived


class AsyncConnection(asyncio.Protocol):
    """One pipelined connection; see the module docstring."""

    def __init__(self, pool: AsyncPool) -> None:
        self.pool = pool
        self.address = pool.address
        self.timeout = pool.timeout
        self.loop = pool.loop
        self.transport: Optional[asyncio.Transport] = None
        self.closed = False
        self.waiting: Deque[_Waiter] = deque()
        self._outbox: List[bytes] = []
        self._unsent = 0  # the last this-many waiters are still in the outbox
        self._gets: List[Tuple[bytes, _Waiter]] = []  # coalescing: KT gets of this turn
        self._flush_scheduled = False
        self._buf = b""
        self._timer: Optional[asyncio.TimerHandle] = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.waiting)} in flight"
        return f"<AsyncConnection {self.address} {state}>"

    @property
    def load(self) -> int:
        return len(self.waiting)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed:
            reason = f": {exc}" if exc else ""
            self._fail(None, f"{self.address} closed the connection{reason}")

    def eof_received(self) -> bool:
        self._fail(None, f"{self.address} closed the connection")
        return False

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        waiting = self.waiting
        try:
            while waiting:
                waiter = waiting[0]
                try:
                    parsed = waiter.parse(buf, pos)
                except ServerError as exc:
                    if exc.end is None:
                        raise  # a complete reply of unknown length: the stream is lost
                    waiting.popleft()
                    if not waiter.future.done():
                        waiter.future.set_exception(exc)
                    pos = exc.end
                    continue
                if parsed is None:
                    if len(buf) > pos:
                        waiter.started = True
                    break
                result, pos = parsed
                waiting.popleft()
                if not waiter.future.done():  # a cancelled caller's reply is dropped here
                    waiter.future.set_result(result)
            if pos < len(buf) and not waiting:
                raise ProtocolError(f"{self.address} sent {len(buf) - pos} bytes nobody asked for")
        except Exception as exc:
            self._fail(exc, "")
            return
        self._buf = buf[pos:] if pos < len(buf) else b""
        if waiting:
            if pos:
                self._arm()
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- requests ------------------------------------------------------------------------

    def submit(self, data: bytes, parse: Parser) -> asyncio.Future:
        future = self.loop.create_future()
        waiter = _Waiter(parse, future, self.loop.time() + self.timeout if self.timeout else 0.0)
        if self.pool.coalesce_gets and parse is _GET_ONE:
            self._gets.append((data, waiter))
        else:
            self._queue(waiter, data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _queue(self, waiter: _Waiter, data: bytes) -> None:
        self.waiting.append(waiter)
        self._outbox.append(data)
        self._unsent += 1
        if self._timer is None and waiter.deadline:
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
            return  # _fail already answered the waiters; connect() writes on success
        if self._outbox:
            data = b"".join(self._outbox) if len(self._outbox) > 1 else self._outbox[0]
            self._outbox.clear()
            self._unsent = 0
            self.transport.write(data)

    def _merge_gets(self) -> None:
        gets, self._gets = self._gets, []
        if len(gets) == 1:
            data, waiter = gets[0]
            self._queue(waiter, data)
            return
        # A get_one request is a get_bulk of one record: [head:9][dbidx:2][ksiz:4][key].
        keys = [(int.from_bytes(data[9:11], "big"), data[_GET_ONE_HEAD:]) for data, _ in gets]
        callers = [waiter for _, waiter in gets]
        merged = _Waiter(kt_binary.parse_get_bulk_reply, self.loop.create_future(), callers[0].deadline)
        merged.future.add_done_callback(lambda f: _split_bulk(f, keys, callers))
        self._queue(merged, kt_binary.encode_get_bulk(keys))

    # -- timeouts and failure ------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.waiting and self.waiting[0].deadline:
            self._timer = self.loop.call_at(self.waiting[0].deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self.waiting or self.closed:
            return
        head = self.waiting[0]
        if self.loop.time() + 0.001 < head.deadline:
            self._arm()
            return
        self._fail(
            ServerTimeoutError(f"no reply from {self.address} within {self.timeout}s (connection closed)"),
            "",
        )

    def _fail(self, exc: Optional[BaseException], dropped: str) -> None:
        """Close, and answer every waiting request: ``exc`` for the first, then the rest."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.abort()
        self._buf = b""
        self._outbox.clear()
        waiting = list(self.waiting)
        sent = len(waiting) - self._unsent
        waiting.extend(waiter for _, waiter in self._gets)
        self.waiting.clear()
        self._gets = []
        timed_out = isinstance(exc, ServerTimeoutError)
        for index, waiter in enumerate(waiting):
            if waiter.future.done():
                continue
            if index >= sent:
                error: BaseException = NeverSentError(f"connection to {self.address} failed before sending")
            elif exc is not None and index == 0:
                error = exc
            elif exc is None and not waiter.started:
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
            waiter.future.set_exception(error)
        self.pool._discard(self)

    def close(self) -> None:
        self._fail(None, f"connection to {self.address} closed by the client")


def _split_bulk(future: asyncio.Future, keys: List[Tuple[int, bytes]], callers: List[_Waiter]) -> None:
    """Hand each coalesced get its own value (None for a key the server did not return)."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        for waiter in callers:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        return
    found: Dict[Tuple[int, bytes], bytes] = {(db, key): value for db, key, value, _xt in future.result()}
    for key, waiter in zip(keys, callers):
        if not waiter.future.done():
            waiter.future.set_result(found.get(key))


class AsyncPool:
    """A bounded set of pipelined connections to one server; see the module docstring."""

    def __init__(self, host: str, port: int, coalesce_gets: bool = False, **settings: Any) -> None:
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
        self._connecting: Dict[AsyncConnection, asyncio.Future] = {}

    def __repr__(self) -> str:
        return f"<AsyncPool {self.address} {len(self._conns)}/{self.max_size} connections>"

    @property
    def size(self) -> int:
        return len(self._conns)

    def _check_owner(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop or self._pid != os.getpid():
            # A forked child or another event loop: the old connections are not ours to use.
            self.loop = loop
            self._pid = os.getpid()
            self._conns = []
            self._connecting = {}

    async def _connection(self) -> AsyncConnection:
        if self._pid != os.getpid() or self.loop is not asyncio.get_running_loop():
            self._check_owner()
        conns = self._conns
        best = None
        for conn in conns:
            if not conn.waiting and conn not in self._connecting:
                best = conn
                break
            if best is None or conn.load < best.load:
                best = conn
        if best is None or (best.waiting or best in self._connecting) and len(conns) < self.max_size:
            best = self._open()
        pending = self._connecting.get(best)
        if pending is not None:
            await asyncio.shield(pending)
        return best

    def _open(self) -> AsyncConnection:
        conn = AsyncConnection(self)
        self._conns.append(conn)
        done = self.loop.create_future()
        self._connecting[conn] = done
        self.loop.create_task(self._connect(conn, done))
        return conn

    async def _connect(self, conn: AsyncConnection, done: asyncio.Future) -> None:
        try:
            connect = self.loop.create_connection(lambda: conn, self.host, self.port)
            try:
                await asyncio.wait_for(connect, self.connect_timeout)
            except asyncio.TimeoutError:
                raise ServerTimeoutError(
                    f"connecting to {self.address} timed out after {self.connect_timeout}s"
                ) from None
            except OSError as exc:
                raise ServerConnectionError(
                    f"cannot connect to {self.address}: {exc.strerror or exc}"
                ) from exc
        except BaseException as exc:
            self._connecting.pop(conn, None)
            conn.closed = True
            self._discard(conn)
            if not done.done():
                done.set_exception(exc)
                done.exception()  # retrieved: callers that gave up must not log it
            if not isinstance(exc, Exception):
                raise
            return
        self._connecting.pop(conn, None)
        done.set_result(None)
        if conn._outbox:
            conn._flush()

    def _discard(self, conn: AsyncConnection) -> None:
        try:
            self._conns.remove(conn)
        except ValueError:
            pass

    async def request(self, data: bytes, parse: Parser, idempotent: bool = False) -> Any:
        """Send one request and return its parsed reply (see the module docstring)."""
        conn = await self._connection()
        try:
            return await conn.submit(data, parse)
        except ConnectionDroppedError as exc:
            if not idempotent and not isinstance(exc, NeverSentError):
                raise
        conn = await self._connection()  # the old one is gone: a fresh one, once
        return await conn.submit(data, parse)

    async def send(self, data: bytes) -> AsyncConnection:
        """Queue a no-reply request (it goes out with this turn's other requests); returns
        the connection that carries it (a later request on it sees the write done)."""
        conn = await self._connection()
        conn.send(data)
        return conn

    async def pin(self) -> AsyncConnection:
        """A connection for a caller keeping server-side state on it (it stays shared)."""
        return await self._connection()

    def close(self) -> None:
        """Close every connection; requests in flight fail; the pool reconnects on demand."""
        conns, self._conns = self._conns, []
        if self._pid == os.getpid():
            for conn in conns:
                conn.close()
