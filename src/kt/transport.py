"""The one socket layer shared by the Kyoto Tycoon and Tokyo Tyrant clients (sync).

Clients build request bytes with a sans-IO codec and hand them here together with the
codec's reply parser (``parse(buf, pos) -> (result, end) | None``, see docs/internals.md).
This module owns every socket; nothing else opens one.

API (other modules code against exactly these names)

``Connection(host, port, timeout=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT)``
    One TCP connection (TCP_NODELAY), opened lazily on first use and re-opened on the next
    use after it was closed.  ``timeout`` bounds each whole request -- from the first byte
    sent to the last byte of the reply, however the peer spreads them out (None: wait
    forever); ``connect_timeout`` bounds connecting.  A Connection serves one thread at a
    time (the Pool hands each one to a single caller).

    * ``request(data, parse) -> result``: send ``data``, read exactly one reply and return
      what ``parse`` made of it.  Bytes left over after the reply are a ProtocolError (a
      request/response peer never sends them).  ``replies`` counts the replies read.
    * ``send(data)``: send a request that has no reply (TT ``putnr``).
    * ``connect()``, ``close()``, ``closed``, ``is_stale()`` (peer already hung up),
      ``inherited`` / ``forget()`` (see fork safety below).

    Any exception or timeout part-way through a request closes the socket, so the next call
    can never read an old reply.  A ``ServerError`` raised by the parser for a complete,
    well-formed error reply is the one exception: the stream is in sync, the socket stays.
    Socket failures become ``ServerConnectionError`` / ``ServerTimeoutError`` naming the
    address; EOF mid-reply is a ``ServerConnectionError``.  When the peer hung up or reset
    the connection before any reply byte arrived the error is ``ConnectionDroppedError``
    (a ``ServerConnectionError``): the request was never answered -- but it may have been
    carried out.

``Pool(host, port, timeout=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT, max_size=DEFAULT_MAX_SIZE)``
    Thread-safe, bounded set of Connections to one server (``max_size`` defaults to
    DEFAULT_MAX_SIZE = 32; idle ones are reused LIFO).  When ``max_size`` connections
    are checked out a caller waits up to ``connect_timeout`` seconds, then gets
    ``ServerConnectionError("... pool exhausted ...")``.

    * ``request(data, parse, *, idempotent=False)``, ``send(data, *, idempotent=False)``:
      check out, use, check in (a connection that failed is discarded, never checked in).
    * ``pipeline(no_reply, data, parse, *, idempotent=False)``: send every request in
      ``no_reply`` (no replies expected, e.g. TT ``putnr``) and then ``data`` on the same
      connection, in one write, and return ``data``'s parsed reply; the server has processed
      the no-reply requests by then.
    * ``connection()``: context manager pinning one Connection to the caller (cursors keep
      server-side state per connection); the connection is discarded if the block raises a
      connection/protocol/socket error.  ``acquire()`` / ``release(conn)`` do the same for
      objects whose life is not a ``with`` block.
    * ``reclaim(conn, replies)``: take back the very connection that carried no-reply
      requests, unless it has answered anything since (then they were processed).
    * ``checkin()``: return the calling thread's innermost ``connection()`` pin to the pool
      early (no-op when it holds none); the block must not use that connection afterwards.
    * ``close()``: close every idle connection; checked-out ones are closed when released.
      The pool stays usable (the next call connects again).

    No write is applied twice.  A request is resent only when the caller says it is
    ``idempotent`` (repeating it cannot change the stored state or the reply: reads, plain
    overwrites...; each client documents its table, see docs/reliability.md): then, when a
    connection taken from the idle pool fails with EOF/ECONNRESET/EPIPE before any reply
    byte, it is sent once more on a fresh connection (after a server restart the next call
    succeeds).  For any other request an idle connection is first checked without blocking
    (one peek; a peer that already hung up is replaced before anything is sent), and a drop
    after sending raises ``ConnectionDroppedError`` saying the outcome is unknown.  A resent
    request gets a fresh ``timeout``, so an idempotent call can take up to twice as long.

Fork safety
    A pool created before ``os.fork()`` may be used in both processes.  The child, right
    after the fork, forgets every pooled connection and any Connection notices on its next
    use that its socket belongs to another process: the child closes only its own copy of
    the descriptor (no ``shutdown()``, nothing is sent), so the parent's connections are
    untouched, and the child connects afresh.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

from kt.errors import (
    ConnectionDroppedError,
    KyotoTycoonError,
    ProtocolError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_SIZE",
    "Connection",
    "ConnectionDroppedError",
    "Parser",
    "Pool",
    "current_pid",
    "outcome_unknown",
]

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_SIZE = 32
RECV_SIZE = 65536
_SEND_CHUNK = 65536  # larger requests are sent piecewise against the deadline

Parser = Callable[[Any, int], Optional[Tuple[Any, int]]]

_DROP_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN})
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_MSG_PEEK = getattr(socket, "MSG_PEEK", 0)
_PEEK_FLAGS = int(_MSG_DONTWAIT) | int(_MSG_PEEK)  # an int: or-ing the enum costs microseconds
_POLL = getattr(select, "poll", None)  # a poll(0) per check is the cheapest staleness test
# A read timeout as SO_RCVTIMEO on a blocking socket costs nothing per call; Python's own
# socket timeout adds a poll() before every recv.  Windows wants a DWORD, so it uses the latter.
_USE_SOCKOPT_TIMEOUT = sys.platform.startswith(("linux", "darwin", "freebsd"))


# -- fork safety: the process that owns the sockets ---------------------------------------
#
# A forked child inherits the parent's file descriptors, so both processes would read and
# write the same TCP streams and get each other's replies.  The hook below runs in the child
# right after os.fork(): every pool forgets its connections, and a Connection whose socket
# was opened by another process forgets that socket on its next use.  "Forget" closes the
# child's copy of the descriptor only: the parent still holds its own, so the kernel sends
# nothing to the server (no shutdown(), no FIN) and the parent's connection is untouched.

_pid = os.getpid()
_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()
    for pool in list(_pools):
        pool._forget_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def current_pid() -> int:
    """The pid this module last saw (updated in a forked child before any other code runs)."""
    return _pid


def _check_timeout(name: str, value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
    return float(value)


class Connection:
    """One TCP connection speaking request/response; see the module docstring."""

    __slots__ = (
        "host", "port", "timeout", "connect_timeout", "address", "generation", "replies",
        "_sock", "_pid", "_timeout_changed", "_poller",
    )

    def __init__(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer in 1..65535, not {port!r}")
        self.host = host or "127.0.0.1"
        self.port = port
        self.timeout = _check_timeout("timeout", timeout)
        self.connect_timeout = _check_timeout("connect_timeout", connect_timeout)
        self.address = f"{self.host}:{port}"
        self.generation = 0  # set by Pool: connections of an older generation are closed
        self.replies = 0  # replies read so far: a later one proves earlier no-reply sends were processed
        self._sock: Optional[socket.socket] = None
        self._pid = _pid  # the process that opened _sock
        self._timeout_changed = False  # a deadline shortened the socket's timeout
        self._poller: Any = None  # select.poll() watching _sock, for is_stale()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "open"
        return f"<Connection {self.address} {state}>"

    @property
    def closed(self) -> bool:
        return self._sock is None or self._pid != _pid

    @property
    def inherited(self) -> bool:
        """True when the socket was opened by another process (this one is a forked child)."""
        return self._sock is not None and self._pid != _pid

    def forget(self) -> None:
        """Drop the socket without a word to the peer: close this process's descriptor only.

        For a socket inherited across fork the parent's descriptor keeps the connection open,
        so nothing is sent (``close()`` is the same call; the name says why it is safe).
        """
        self.close()

    def connect(self) -> socket.socket:
        """Open the socket now (requests do this on demand)."""
        if self._sock is not None:
            if self._pid == _pid:
                return self._sock
            self.forget()  # inherited from the parent process: never use it
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        except socket.timeout:
            raise ServerTimeoutError(
                f"connecting to {self.address} timed out after {self.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise ServerConnectionError(f"cannot connect to {self.address}: {_describe(exc)}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _set_timeout(sock, self.timeout)
        except OSError as exc:
            sock.close()
            raise ServerConnectionError(f"cannot configure socket to {self.address}: {exc}") from exc
        self._sock = sock
        self._pid = _pid
        self._timeout_changed = False
        if _POLL is not None:
            self._poller = _POLL()
            self._poller.register(sock, select.POLLIN)
        return sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._poller = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def request(self, data: bytes, parse: Parser) -> Any:
        """Send ``data`` and return ``parse``'s result for the one reply.

        ``timeout`` bounds the whole exchange, from sending to the reply's last byte.
        """
        sock = self._sock
        if sock is None or self._pid != _pid:
            sock = self.connect()
        started = time.monotonic()
        try:
            if len(data) > _SEND_CHUNK and self.timeout is not None:
                self._send_by_deadline(sock, data, started + self.timeout)
            else:
                sock.sendall(data)
            chunk = sock.recv(RECV_SIZE)
            if len(chunk) == RECV_SIZE:
                chunk = _take_queued(sock, chunk)
            if chunk:
                parsed = parse(chunk, 0)
                if parsed is not None and parsed[1] == len(chunk):
                    if self._timeout_changed:
                        self._restore_timeout(sock)
                    self.replies += 1
                    return parsed[0]
                result = self._read_rest(sock, chunk, parsed, parse, started)
                self.replies += 1
                return result
            raise ConnectionDroppedError(f"{self.address} closed the connection before replying")
        except ServerError:
            # A complete error reply: the stream is in sync.  Bytes already pending (or EOF)
            # would mean it was not, so then the socket goes (one cheap peek, error path only).
            self.replies += 1
            if not self.is_stale() and self._timeout_changed:
                self._restore_timeout(sock)
            raise
        except BaseException as exc:
            self.close()
            _reraise(exc, self)

    def send(self, data: bytes) -> None:
        """Send a request that has no reply (bounded by ``timeout`` as a whole)."""
        sock = self._sock
        if sock is None or self._pid != _pid:
            sock = self.connect()
        try:
            if len(data) > _SEND_CHUNK and self.timeout is not None:
                self._send_by_deadline(sock, data, time.monotonic() + self.timeout)
                self._restore_timeout(sock)
            else:
                sock.sendall(data)
        except BaseException as exc:
            self.close()
            _reraise(exc, self)

    def is_stale(self) -> bool:
        """True when the peer already hung up (checked without blocking); closes it then.

        A write to such a socket is accepted by the kernel and silently lost, so no-reply
        requests check this first.  Unexpected pending bytes also make it stale, and so does
        a socket inherited from the parent process.
        """
        sock = self._sock
        if sock is None:
            return False
        if self._pid != _pid:
            self.forget()
            return True
        poller = self._poller
        if poller is not None:
            if not poller.poll(0):  # readable would mean EOF, a reset or unexpected bytes
                return False
        elif not _MSG_DONTWAIT:
            return False
        else:
            try:
                sock.recv(1, _PEEK_FLAGS)
            except BlockingIOError:
                return False
            except OSError:
                pass
        self.close()
        return True

    # -- deadlines: ``timeout`` bounds a whole request, not each socket call -------------------

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        return remaining

    def _wait_at_most(self, sock: socket.socket, deadline: Optional[float]) -> None:
        """Make the next blocking socket call give up at ``deadline``."""
        if deadline is not None:
            _set_timeout(sock, self._remaining(deadline))
            self._timeout_changed = True

    def _restore_timeout(self, sock: socket.socket) -> None:
        _set_timeout(sock, self.timeout)
        self._timeout_changed = False

    def _send_by_deadline(self, sock: socket.socket, data: bytes, deadline: float) -> None:
        """``sendall`` for large requests: a peer that reads slowly cannot stretch it."""
        with memoryview(data) as view:
            sent, total = 0, len(view)
            while sent < total:
                self._wait_at_most(sock, deadline)
                sent += sock.send(view[sent : sent + _SEND_CHUNK * 16])

    def _read_rest(
        self, sock: socket.socket, first: bytes, parsed: Any, parse: Parser, started: float
    ) -> Any:
        """Slow path: the first chunk held part of a reply (or more than one)."""
        deadline = None if self.timeout is None else started + self.timeout
        try:
            result = self._read_more(sock, first, parsed, parse, deadline)
        except (socket.timeout, BlockingIOError):
            raise
        except OSError as exc:  # some reply bytes arrived: never a "dropped before reply"
            raise ServerConnectionError(
                f"connection to {self.address} failed mid-reply: {_describe(exc)}"
            ) from exc
        if self._timeout_changed:
            self._restore_timeout(sock)
        return result

    def _read_more(
        self, sock: socket.socket, first: bytes, parsed: Any, parse: Parser, deadline: Optional[float]
    ) -> Any:
        if parsed is not None:
            raise ProtocolError(
                f"{self.address} sent {len(first) - parsed[1]} unexpected bytes after the reply"
            )
        buf = bytearray(max(RECV_SIZE * 4, len(first) * 4))
        buf[: len(first)] = first
        filled = len(first)
        while True:
            if len(buf) - filled < RECV_SIZE:
                buf.extend(bytes(len(buf)))  # double: few re-parses of a growing reply
            with memoryview(buf) as view:
                self._wait_at_most(sock, deadline)
                got = sock.recv_into(view[filled:])
                if not got:
                    raise ServerConnectionError(
                        f"{self.address} closed the connection mid-reply ({filled} bytes received)"
                    )
                filled += got
                # Take everything already queued before parsing again.
                while _MSG_DONTWAIT and len(buf) - filled >= RECV_SIZE:
                    try:
                        got = sock.recv_into(view[filled:], 0, _MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        break
                    if not got:
                        break  # EOF: the blocking recv reports it if the reply is incomplete
                    filled += got
                data = bytes(view[:filled])
            parsed = parse(data, 0)
            if parsed is not None:
                if parsed[1] != filled:
                    raise ProtocolError(
                        f"{self.address} sent {filled - parsed[1]} unexpected bytes after the reply"
                    )
                return parsed[0]


def _take_queued(sock: socket.socket, chunk: bytes) -> bytes:
    """A full first chunk: add what is already queued, so a large reply is parsed once whole
    rather than once per 64 KiB (a 1000-record get_bulk parsed its first half twice)."""
    if not _MSG_DONTWAIT:
        return chunk
    try:
        more = sock.recv(RECV_SIZE * 16, _MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return chunk
    return chunk + more if more else chunk


def _set_timeout(sock: socket.socket, timeout: Optional[float]) -> None:
    """Bound each blocking send/recv of ``sock`` by ``timeout`` seconds (None: no bound)."""
    if timeout is None or not _USE_SOCKOPT_TIMEOUT:
        sock.settimeout(timeout)
        return
    if sock.gettimeout() is not None:
        sock.settimeout(None)
    seconds = int(timeout)
    micros = int((timeout - seconds) * 1_000_000)
    if seconds == 0 and micros == 0:
        micros = 1
    timeval = struct.pack("ll", seconds, micros)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def outcome_unknown(exc: ConnectionDroppedError) -> ConnectionDroppedError:
    """The error for a request that was sent, not answered, and must not be resent."""
    return ConnectionDroppedError(
        f"{exc}; the request had been sent and is not safe to repeat, so it was not resent: "
        "whether the server applied it is unknown"
    )


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _reraise(exc: BaseException, conn: Connection) -> None:
    """Map a failure part-way through a request to kt's errors (socket already closed)."""
    if isinstance(exc, KyotoTycoonError) or not isinstance(exc, OSError):
        raise exc
    if isinstance(exc, (socket.timeout, BlockingIOError)):
        raise ServerTimeoutError(
            f"no reply from {conn.address} within {conn.timeout}s (connection closed)"
        ) from exc
    if exc.errno in _DROP_ERRNOS:
        raise ConnectionDroppedError(f"{conn.address} dropped the connection: {_describe(exc)}") from exc
    raise ServerConnectionError(f"connection to {conn.address} failed: {_describe(exc)}") from exc


class Pool:
    """Thread-safe, bounded pool of Connections to one server; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive integer, not {max_size!r}")
        # Validate everything now rather than on the first request.
        probe = Connection(host, port, timeout, connect_timeout)
        self.host = probe.host
        self.port = port
        self.timeout = probe.timeout
        self.connect_timeout = probe.connect_timeout
        self.address = probe.address
        self.max_size = max_size
        self._idle: List[Connection] = []  # LIFO; list.append/pop are atomic
        self._cond = threading.Condition(threading.Lock())
        self._count = 0  # connections in existence (idle + checked out)
        self._waiters = 0
        self._generation = 0
        self._born = 0  # generation of this process's first connections (see _forget_inherited)
        self._pins: dict = {}  # thread id -> stack of pinned connections
        _pools.add(self)

    def __repr__(self) -> str:
        return f"<Pool {self.address} {self._count}/{self.max_size} connections, {len(self._idle)} idle>"

    @property
    def size(self) -> int:
        """Connections currently in existence (idle and checked out)."""
        return self._count

    @property
    def idle(self) -> int:
        return len(self._idle)

    # -- checkout / checkin -------------------------------------------------------------

    def _checkout(self) -> Tuple[Connection, bool]:
        """Slow path: (connection, came_from_idle); creates one or waits for a free slot."""
        with self._cond:
            # Count ourselves as a waiter before looking at the idle list: a release that
            # appends after our look then sees us and notifies (no lost wake-up).
            self._waiters += 1
            try:
                deadline = None
                while True:
                    try:
                        return self._idle.pop(), True
                    except IndexError:
                        pass
                    if self._count < self.max_size:
                        self._count += 1
                        break
                    if deadline is None:
                        wait = self.connect_timeout
                        deadline = time.monotonic() + wait if wait is not None else float("inf")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ServerConnectionError(
                            f"pool exhausted: all {self.max_size} connections to {self.address} "
                            f"stayed checked out for {self.connect_timeout}s"
                        )
                    self._cond.wait(None if remaining == float("inf") else remaining)
            finally:
                self._waiters -= 1
        conn = Connection(self.host, self.port, self.timeout, self.connect_timeout)
        conn.generation = self._generation
        return conn, False

    def acquire(self) -> Connection:
        """Check a connection out (the caller must ``release`` it)."""
        try:
            return self._idle.pop()
        except IndexError:
            return self._checkout()[0]

    def release(self, conn: Connection) -> None:
        """Check a connection back in; a closed or outdated one is discarded."""
        if conn._sock is not None and conn.generation == self._generation:
            self._idle.append(conn)
            if self._waiters:
                with self._cond:
                    self._cond.notify()
        else:
            self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        conn.close()
        with self._cond:
            if conn.generation >= self._born:  # not one counted by the parent process
                self._count -= 1
            self._cond.notify()

    def _fresh(self) -> Connection:
        """A new connection in place of a discarded one (no slot is taken or freed)."""
        conn = Connection(self.host, self.port, self.timeout, self.connect_timeout)
        conn.generation = self._generation
        return conn

    # -- requests -------------------------------------------------------------------------

    def request(self, data: bytes, parse: Parser, *, idempotent: bool = False) -> Any:
        """Send one request on a pooled connection and return its parsed reply.

        ``idempotent``: repeating the request cannot change its outcome (stored state and
        reply), so it is resent once when a reused connection turns out dead.  Otherwise an
        idle connection is checked before sending and a drop after sending raises
        ``ConnectionDroppedError`` (outcome unknown).
        """
        try:
            conn = self._idle.pop()
            reused = True
        except IndexError:
            conn, reused = self._checkout()
        if reused and not idempotent and conn.is_stale():
            conn = self._fresh()  # the peer hung up while it was idle: nothing was sent yet
            reused = False
        try:
            result = conn.request(data, parse)
        except ConnectionDroppedError as exc:
            if not (reused and idempotent):
                self._discard(conn)
                if idempotent:
                    raise
                raise outcome_unknown(exc) from exc
            conn.close()
            conn = self._fresh()  # keeps the slot
            try:
                result = conn.request(data, parse)
            except BaseException:
                self.release(conn)
                raise
        except BaseException:
            self.release(conn)
            raise
        if conn.generation == self._generation:
            self._idle.append(conn)
            if self._waiters:
                with self._cond:
                    self._cond.notify()
        else:
            self._discard(conn)
        return result

    def send(self, data: bytes, *, idempotent: bool = False) -> None:
        """Send a no-reply request on a pooled connection (never sent twice unless idempotent)."""
        conn = self._acquire_live()
        try:
            try:
                conn.send(data)
            except ConnectionDroppedError as exc:
                if not idempotent:
                    raise outcome_unknown(exc) from exc
                conn = self._replace(conn)
                conn.send(data)
        finally:
            self.release(conn)

    def pipeline(
        self, no_reply: Iterable[bytes], data: bytes, parse: Parser, *, idempotent: bool = False
    ) -> Any:
        """Send ``no_reply`` requests, then ``data``, on one connection; return ``data``'s reply.

        ``idempotent`` must hold for every request of the batch to allow one resend.
        """
        payload = b"".join(no_reply) + data
        conn = self._acquire_live()
        try:
            try:
                return conn.request(payload, parse)
            except ConnectionDroppedError as exc:
                if not idempotent:
                    raise outcome_unknown(exc) from exc
                conn = self._replace(conn)
                return conn.request(payload, parse)
        finally:
            self.release(conn)

    def _replace(self, conn: Connection) -> Connection:
        conn.close()
        return self._fresh()

    def _acquire_live(self) -> Connection:
        """A connection whose peer has not hung up (a write to a dead one is silently lost)."""
        conn = self.acquire()
        if conn.is_stale():
            conn = self._fresh()
        return conn

    def reclaim(self, conn: Connection, replies: int) -> Optional[Connection]:
        """Check out ``conn`` itself if it may still carry unprocessed no-reply requests.

        ``replies`` is ``conn.replies`` right after those requests were sent.  Returns ``conn``
        (checked out: ``release`` it) while that is still the count; None once ``conn``
        answered a later request (a server handles one connection's requests in order, so
        the no-reply ones were processed) or was closed (nothing more can be learned).
        While another thread uses ``conn`` this waits for that (bounded by ``timeout``, or
        ``connect_timeout``), then answers None if it is still out.
        """
        deadline = None
        while conn.replies == replies and not conn.closed and conn.generation == self._generation:
            try:
                self._idle.remove(conn)  # atomic; identity comparison
                return conn
            except ValueError:
                pass
            now = time.monotonic()
            if deadline is None:
                wait = self.timeout or self.connect_timeout
                deadline = now + (wait if wait is not None else 60.0)
            elif now >= deadline:
                return None
            with self._cond:
                self._waiters += 1  # so a release notifies
                try:
                    self._cond.wait(min(0.01, deadline - now))
                finally:
                    self._waiters -= 1
        return None

    def _forget_inherited(self) -> None:
        """In a forked child: drop every connection of the parent without touching its sockets.

        Runs right after fork, while the child has a single thread, so the lock (which another
        parent thread may have held at fork time) is simply replaced.
        """
        idle = self._idle
        self._idle = []
        self._cond = threading.Condition(threading.Lock())
        self._count = 0
        self._waiters = 0
        self._generation += 1
        self._born = self._generation
        self._pins = {}
        for conn in idle:
            conn.forget()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Pin one connection to the caller for the ``with`` block."""
        conn = self.acquire()
        stack = self._pins.setdefault(threading.get_ident(), [])
        stack.append(conn)
        try:
            yield conn
        except (ServerConnectionError, ProtocolError, OSError):
            conn.close()
            raise
        finally:
            try:
                stack.remove(conn)
            except ValueError:
                pass  # checkin() already returned it
            else:
                self.release(conn)
            if not stack:
                self._pins.pop(threading.get_ident(), None)

    def checkin(self) -> None:
        """Return the calling thread's pinned connection to the pool (no-op without one)."""
        stack = self._pins.get(threading.get_ident())
        if stack:
            self.release(stack.pop())

    def close(self) -> None:
        """Close idle connections now; checked-out ones are closed when released."""
        idle = []
        with self._cond:
            self._generation += 1
            while True:
                try:
                    idle.append(self._idle.pop())
                except IndexError:
                    break
            self._count -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()
