"""The one socket layer shared by the Kyoto Tycoon and Tokyo Tyrant clients (sync).

Clients build request bytes with a sans-IO codec and hand them here together with the
codec's reply parser (``parse(buf, pos) -> (result, end) | None``, see docs/internals.md).
This module owns every socket; nothing else opens one.

API (other modules code against exactly these names)

``Connection(host, port, timeout=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT)``
    One TCP connection (TCP_NODELAY), opened lazily on first use and re-opened on the next
    use after it was closed.  ``timeout`` bounds each wait for reply bytes (None: wait
    forever); ``connect_timeout`` bounds connecting.  A Connection serves one thread at a
    time (the Pool hands each one to a single caller).

    * ``request(data, parse) -> result``: send ``data``, read exactly one reply and return
      what ``parse`` made of it.  Bytes left over after the reply are a ProtocolError (a
      request/response peer never sends them).
    * ``send(data)``: send a request that has no reply (TT ``putnr``).
    * ``connect()``, ``close()``, ``closed``, ``is_stale()`` (peer already hung up).

    Any exception or timeout part-way through a request closes the socket, so the next call
    can never read an old reply.  A ``ServerError`` raised by the parser for a complete,
    well-formed error reply is the one exception: the stream is in sync, the socket stays.
    Socket failures become ``ServerConnectionError`` / ``ServerTimeoutError`` naming the
    address; EOF mid-reply is a ``ServerConnectionError``.  When the peer hung up or reset
    the connection before any reply byte arrived the error is ``ConnectionDroppedError``
    (a ``ServerConnectionError``): the request was never answered, so a pool may retry it.

``Pool(host, port, timeout=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT, max_size=DEFAULT_MAX_SIZE)``
    Thread-safe, bounded set of Connections to one server (``max_size`` defaults to
    DEFAULT_MAX_SIZE = 32; idle ones are reused LIFO).  When ``max_size`` connections
    are checked out a caller waits up to ``connect_timeout`` seconds, then gets
    ``ServerConnectionError("... pool exhausted ...")``.

    * ``request(data, parse)``, ``send(data)``: check out, use, check in (a connection that
      failed is discarded, never checked in).
    * ``pipeline(no_reply, data, parse)``: send every request in ``no_reply`` (no replies
      expected, e.g. TT ``putnr``) and then ``data`` on the same connection, in one write, and
      return ``data``'s parsed reply; the server has processed the no-reply requests by then.
    * ``connection()``: context manager pinning one Connection to the caller (cursors keep
      server-side state per connection); the connection is discarded if the block raises a
      connection/protocol/socket error.  ``acquire()`` / ``release(conn)`` do the same for
      objects whose life is not a ``with`` block.
    * ``checkin()``: return the calling thread's innermost ``connection()`` pin to the pool
      early (no-op when it holds none); the block must not use that connection afterwards.
    * ``close()``: close every idle connection; checked-out ones are closed when released.
      The pool stays usable (the next call connects again).
    * After a server restart the next call succeeds: a connection taken from the idle pool
      that fails with EOF/ECONNRESET/EPIPE before any reply byte arrived is replaced by a
      fresh one and the request is sent once more (the old server never answered it).  Any
      other failure raises.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

from kt.errors import (
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
]

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_SIZE = 32
RECV_SIZE = 65536

Parser = Callable[[Any, int], Optional[Tuple[Any, int]]]

_DROP_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN})
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_MSG_PEEK = getattr(socket, "MSG_PEEK", 0)
# A read timeout as SO_RCVTIMEO on a blocking socket costs nothing per call; Python's own
# socket timeout adds a poll() before every recv.  Windows wants a DWORD, so it uses the latter.
_USE_SOCKOPT_TIMEOUT = sys.platform.startswith(("linux", "darwin", "freebsd"))


class ConnectionDroppedError(ServerConnectionError):
    """The peer closed or reset the connection before any byte of the reply arrived."""


def _check_timeout(name: str, value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
    return float(value)


class Connection:
    """One TCP connection speaking request/response; see the module docstring."""

    __slots__ = ("host", "port", "timeout", "connect_timeout", "address", "generation", "_sock")

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
        self._sock: Optional[socket.socket] = None

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "open"
        return f"<Connection {self.address} {state}>"

    @property
    def closed(self) -> bool:
        return self._sock is None

    def connect(self) -> socket.socket:
        """Open the socket now (requests do this on demand)."""
        if self._sock is not None:
            return self._sock
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
            self._apply_read_timeout(sock)
        except OSError as exc:
            sock.close()
            raise ServerConnectionError(f"cannot configure socket to {self.address}: {exc}") from exc
        self._sock = sock
        return sock

    def _apply_read_timeout(self, sock: socket.socket) -> None:
        timeout = self.timeout
        if timeout is None or not _USE_SOCKOPT_TIMEOUT:
            sock.settimeout(timeout)
            return
        sock.settimeout(None)
        seconds = int(timeout)
        micros = int((timeout - seconds) * 1_000_000)
        if seconds == 0 and micros == 0:
            micros = 1
        timeval = struct.pack("ll", seconds, micros)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def request(self, data: bytes, parse: Parser) -> Any:
        """Send ``data`` and return ``parse``'s result for the one reply."""
        sock = self._sock
        if sock is None:
            sock = self.connect()
        try:
            sock.sendall(data)
            chunk = sock.recv(RECV_SIZE)
            if len(chunk) == RECV_SIZE:
                chunk = _take_queued(sock, chunk)
            if chunk:
                parsed = parse(chunk, 0)
                if parsed is not None and parsed[1] == len(chunk):
                    return parsed[0]
                return self._read_rest(sock, chunk, parsed, parse)
            raise ConnectionDroppedError(f"{self.address} closed the connection before replying")
        except ServerError:
            # A complete error reply: the stream is in sync.  Bytes already pending (or EOF)
            # would mean it was not, so then the socket goes (one cheap peek, error path only).
            self.is_stale()
            raise
        except BaseException as exc:
            self.close()
            _reraise(exc, self)

    def send(self, data: bytes) -> None:
        """Send a request that has no reply."""
        sock = self._sock
        if sock is None:
            sock = self.connect()
        try:
            sock.sendall(data)
        except BaseException as exc:
            self.close()
            _reraise(exc, self)

    def is_stale(self) -> bool:
        """True when the peer already hung up (checked without blocking); closes it then.

        A write to such a socket is accepted by the kernel and silently lost, so no-reply
        requests check this first.  Unexpected pending bytes also make it stale.
        """
        sock = self._sock
        if sock is None:
            return False
        if not _MSG_DONTWAIT:
            return False
        try:
            sock.recv(1, _MSG_DONTWAIT | _MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            pass
        self.close()
        return True

    def _read_rest(self, sock: socket.socket, first: bytes, parsed: Any, parse: Parser) -> Any:
        """Slow path: the first chunk held part of a reply (or more than one)."""
        try:
            return self._read_more(sock, first, parsed, parse)
        except (socket.timeout, BlockingIOError):
            raise
        except OSError as exc:  # some reply bytes arrived: never a "dropped before reply"
            raise ServerConnectionError(
                f"connection to {self.address} failed mid-reply: {_describe(exc)}"
            ) from exc

    def _read_more(self, sock: socket.socket, first: bytes, parsed: Any, parse: Parser) -> Any:
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
        self._pins: dict = {}  # thread id -> stack of pinned connections

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
            self._count -= 1
            self._cond.notify()

    def _fresh(self) -> Connection:
        """A new connection in place of a discarded one (no slot is taken or freed)."""
        conn = Connection(self.host, self.port, self.timeout, self.connect_timeout)
        conn.generation = self._generation
        return conn

    # -- requests -------------------------------------------------------------------------

    def request(self, data: bytes, parse: Parser) -> Any:
        """Send one request on a pooled connection and return its parsed reply."""
        try:
            conn = self._idle.pop()
            reused = True
        except IndexError:
            conn, reused = self._checkout()
        try:
            result = conn.request(data, parse)
        except ConnectionDroppedError:
            if not reused:
                self._discard(conn)
                raise
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

    def send(self, data: bytes) -> None:
        """Send a no-reply request on a pooled connection."""
        conn = self._acquire_live()
        try:
            conn.send(data)
        finally:
            self.release(conn)

    def pipeline(self, no_reply: Iterable[bytes], data: bytes, parse: Parser) -> Any:
        """Send ``no_reply`` requests, then ``data``, on one connection; return ``data``'s reply."""
        payload = b"".join(no_reply) + data
        conn = self._acquire_live()
        try:
            return conn.request(payload, parse)
        finally:
            self.release(conn)

    def _acquire_live(self) -> Connection:
        """A connection whose peer has not hung up (a write to a dead one is silently lost)."""
        conn = self.acquire()
        if conn.is_stale():
            conn = self._fresh()
        return conn

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
