"""Plumbing shared by the bundled KT and TT servers: options, logging, listening, shutdown.

Two listeners share one lifecycle (bind, ``run``, signals, PID file, clean shutdown):

* :class:`EventLoopServer` (the KT and TT servers): one epoll loop serves every connection and runs
  the quick requests inline; requests that may block (KT ``WAIT``, ``synchronize``, big bulk
  operations, Lua) run in a pool of worker threads, streams (replication) get their own
  thread.  On the 2-core test box it served 2.5-5x more requests/s than a thread per
  connection at 4 and 16 connections (no context switch and GIL hand-off per request) and
  ~10% fewer at 1 connection (``bench/bench_kt_server.py``).
* :class:`ThreadedServer`: one thread per connection running a blocking ``handler(conn)``;
  the simplest model for sequential handler code.

API (used by ``kt_server`` and ``tt_server``):

``OptionSpec(takes_value, effective=True, default=None)`` and
``parse_options(argv, specs, stop_at_positional=True) -> (options, positionals)``
    Real-server style options (``-port 1978``).  ``options`` maps the option name (with its
    dash) to its string value, or ``True`` for flags.  The first non-option argument ends
    option parsing when ``stop_at_positional`` (ktserver's ``argbrk``); ``--`` always does.
    Unknown options and missing values raise :class:`UsageError`.
    ``ineffective_options(options, specs)`` lists the given options that have no effect yet
    (for a warning line each).

``Logger(path=None, kinds=LOG_ALL, style="kt")``
    ``debug/info/system/error(msg)``; ``path`` None or ``"-"`` = stdout.  ``kinds_from_options``
    maps ``-li/-ls/-le/-lz`` (ktserver) to a kinds mask.  ``style="tt"`` writes ttserver's
    tab-separated lines.

``Connection``
    One accepted client: ``sock``, ``peer`` (text), ``buf`` (bytearray of received, unconsumed
    bytes), ``fill() -> bool`` (receive more; False at EOF; raises ``socket.timeout`` after the
    idle timeout), ``consume(n)``, ``send(data)``, ``shutdown_write()``.

``daemonize()``
    ``-dmn``: double fork, new session, cwd ``/``, standard streams on /dev/null.

``ThreadedServer(handler, host="127.0.0.1", port=0, timeout=30.0, max_connections=None,
logger=None)``
    ``handler(conn: Connection)`` runs in the connection's own thread and returns when the
    connection should be closed (the server closes the socket).  ``bind()`` resolves and
    binds (``port=0`` picks a free port); ``address`` is
    the bound ``(host, port)``.  ``run(pid_file=None, on_stop=None, on_close=None) -> int``
    is the blocking main-thread entry point: it installs SIGTERM/SIGINT handlers, writes the
    PID file, then serves (logging ``listening on HOST:PORT`` whatever the log levels, after the
    signal handlers are in place, so a caller may signal as soon as it sees the line) until a
    signal or ``stop()``, then closes the listener, calls ``on_stop()`` (wake blocked
    requests), half-closes every client so idle readers see EOF,
    waits for the handlers, and finally calls ``on_close()`` (sync/close the databases).
    Connections over ``max_connections`` are closed at once and logged.

``EventLoopServer(handler, workers=16, **same keywords)``
    Same lifecycle; ``handler`` has ``open(conn)``, ``close(conn)`` and
    ``step(conn, eof) -> None | (reply, keep) | Offload(run) | HandOver(run) | AGAIN`` (see the
    class).
"""

from __future__ import annotations

import collections
import errno
import os
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

__all__ = [
    "UsageError",
    "OptionSpec",
    "parse_options",
    "ineffective_options",
    "LOG_DEBUG",
    "LOG_INFO",
    "LOG_SYSTEM",
    "LOG_ERROR",
    "LOG_ALL",
    "kinds_from_options",
    "Logger",
    "Connection",
    "ThreadedServer",
    "EventLoopServer",
    "Offload",
    "HandOver",
    "AGAIN",
    "daemonize",
]


# ---------------------------------------------------------------------------- options

class UsageError(Exception):
    """The command line cannot be parsed (unknown option, missing value)."""


class OptionSpec(NamedTuple):
    takes_value: bool
    effective: bool = True
    default: Optional[str] = None


def parse_options(argv: Iterable[str], specs: Mapping[str, OptionSpec], *,
                  stop_at_positional: bool = True) -> Tuple[Dict[str, object], List[str]]:
    """Split ``argv`` into ``({"-opt": value or True}, [positional, ...])``."""
    args = list(argv)
    options: Dict[str, object] = {}
    positionals: List[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if positionals and stop_at_positional:
            positionals.append(arg)
            continue
        if arg == "--":
            positionals.extend(args[i:])
            break
        if arg.startswith("-") and len(arg) > 1:
            spec = specs.get(arg)
            if spec is None:
                raise UsageError(f"unknown option: {arg}")
            if spec.takes_value:
                if i >= len(args):
                    raise UsageError(f"option {arg} needs a value")
                options[arg] = args[i]
                i += 1
            else:
                options[arg] = True
        else:
            positionals.append(arg)
    return options, positionals


def ineffective_options(options: Mapping[str, object], specs: Mapping[str, OptionSpec]) -> List[str]:
    """The given options that are accepted for compatibility but change nothing yet."""
    return [name for name in options if not specs[name].effective]


# ---------------------------------------------------------------------------- logging

LOG_DEBUG, LOG_INFO, LOG_SYSTEM, LOG_ERROR = 1, 2, 4, 8
LOG_ALL = LOG_DEBUG | LOG_INFO | LOG_SYSTEM | LOG_ERROR
_KIND_NAMES = {LOG_DEBUG: "DEBUG", LOG_INFO: "INFO", LOG_SYSTEM: "SYSTEM", LOG_ERROR: "ERROR"}


def kinds_from_options(options: Mapping[str, object]) -> int:
    """ktserver's ``-li`` / ``-ls`` / ``-le`` / ``-lz`` (last one checked wins like ktserver)."""
    kinds = LOG_ALL
    if options.get("-li"):
        kinds = LOG_INFO | LOG_SYSTEM | LOG_ERROR
    if options.get("-ls"):
        kinds = LOG_SYSTEM | LOG_ERROR
    if options.get("-le"):
        kinds = LOG_ERROR
    if options.get("-lz"):
        kinds = 0
    return kinds


def _local_timestamp(now: float) -> str:
    tm = time.localtime(now)
    offset = tm.tm_gmtoff or 0
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        zone = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    frac = int((now - int(now)) * 1e6)
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{frac:06d}" + zone


class Logger:
    """Thread-safe line logger in ktserver's (``style="kt"``) or ttserver's format."""

    def __init__(self, path: Optional[str] = None, kinds: int = LOG_ALL, style: str = "kt"):
        self.kinds = kinds
        self.style = style
        self._lock = threading.Lock()
        self._own = bool(path) and path != "-"
        self._stream = open(path, "a", encoding="utf-8", errors="replace") if self._own else sys.stdout

    def log(self, kind: int, message: str, force: bool = False) -> None:
        """Write one line when ``kind`` is enabled (``force``: whatever the levels say)."""
        if not (force or self.kinds & kind):
            return
        now = time.time()
        if self.style == "tt":
            line = f"{_local_timestamp(now)}\t{_KIND_NAMES[kind]}\t{message}\n"
        else:
            line = f"{_local_timestamp(now)}: [{_KIND_NAMES[kind]}]: {message}\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def debug(self, message: str) -> None:
        self.log(LOG_DEBUG, message)

    def info(self, message: str) -> None:
        self.log(LOG_INFO, message)

    def system(self, message: str) -> None:
        self.log(LOG_SYSTEM, message)

    def error(self, message: str) -> None:
        self.log(LOG_ERROR, message)

    def close(self) -> None:
        with self._lock:
            if self._own:
                self._stream.close()
                self._own = False


# ---------------------------------------------------------------------------- daemon mode

def daemonize() -> None:
    """``-dmn``: detach from the terminal (double fork, new session, cwd "/", std streams on
    /dev/null); the original process exits 0 like the real servers' parent does."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


# ---------------------------------------------------------------------------- connections

_RECV_SIZE = 1 << 16
_SIGNAL_POLL = 0.1  # seconds: how soon the main thread acts on SIGTERM/SIGINT (see ThreadedServer.run)


class Connection:
    """One accepted client socket with its receive buffer."""

    __slots__ = ("sock", "peer", "buf", "server", "session", "state", "out", "busy", "eof", "last",
                 "closing", "closed", "__weakref__")

    def __init__(self, sock: socket.socket, peer: str, server: Optional[ThreadedServer] = None):
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.server = server
        self.session = None  # the handler's per-connection state (e.g. KT cursors)
        self.state = None  # the handler's parse state for a request still arriving
        # event-loop bookkeeping (EventLoopServer)
        self.out = bytearray()
        self.busy = False
        self.eof = False
        self.last = 0.0
        self.closing = False
        self.closed = False

    def fill(self) -> bool:
        """Receive more bytes into ``buf``; False at EOF (or a reset connection)."""
        try:
            data = self.sock.recv(_RECV_SIZE)
        except socket.timeout:
            raise
        except OSError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def consume(self, n: int) -> None:
        if n >= len(self.buf):
            self.buf.clear()
        else:
            del self.buf[:n]

    def send(self, data) -> bool:
        """Send everything; False when the peer is gone."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _default_max_connections() -> int:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 4096
        return max(16, min(4096, soft - 64))
    except (ImportError, ValueError, OSError):
        return 1024


class ThreadedServer:
    """TCP listener that runs ``handler(conn)`` in one thread per connection."""

    def __init__(self, handler: Callable[[Connection], None], *, host: str = "127.0.0.1",
                 port: int = 0, timeout: float = 30.0, max_connections: Optional[int] = None,
                 logger: Optional[Logger] = None, backlog: int = 1024):
        self.handler = handler
        self.host = host
        self.port = port
        self.timeout = timeout if timeout and timeout > 0 else None
        self.max_connections = max_connections or _default_max_connections()
        self.logger = logger or Logger(kinds=LOG_SYSTEM | LOG_ERROR)
        self.backlog = backlog
        self.address: Optional[Tuple[str, int]] = None
        self._family = socket.AF_INET
        self._listener: Optional[socket.socket] = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._clients: Dict[Connection, threading.Thread] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def bind(self) -> Tuple[str, int]:
        """Resolve ``host``, bind and listen (``serve_forever`` logs ``listening on HOST:PORT``)."""
        infos = socket.getaddrinfo(self.host or None, self.port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
        family, socktype, proto, _canon, sockaddr = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(self.backlog)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        bound = sock.getsockname()
        self.address = (bound[0], bound[1])
        self._family = family
        return self.address

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def stop(self) -> None:
        """Ask ``serve_forever``/``run`` to return (thread- and signal-safe)."""
        self._stopping.set()
        listener = self._listener
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve_forever(self) -> None:
        """Accept connections until ``stop()``."""
        if self._listener is None:
            self.bind()
        listener = self._listener
        host, port = self.address
        if self._family == socket.AF_INET6:
            host = f"[{host}]"
        # Logged here, once connections are accepted and (under run()) the signal handlers are
        # in place; forced: with -port 0 this line is how a caller learns the port.
        self.logger.log(LOG_SYSTEM, f"listening on {host}:{port}", force=True)
        while not self._stopping.is_set():
            try:
                sock, addr = listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    break
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.logger.error(f"accept failed: {exc}")
                    time.sleep(0.1)
                continue
            self._start_client(sock, addr)

    def _start_client(self, sock: socket.socket, addr) -> None:
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        with self._lock:
            too_many = len(self._clients) >= self.max_connections
        if too_many or self._stopping.is_set():
            self.logger.error(f"connection refused: too many connections: {peer}")
            sock.close()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        sock.settimeout(self.timeout)
        conn = Connection(sock, peer, self)
        thread = threading.Thread(target=self._run_client, args=(conn,), name=f"conn-{peer}", daemon=True)
        with self._lock:
            self._clients[conn] = thread
        thread.start()

    def _run_client(self, conn: Connection) -> None:
        self.logger.info(f"connected: expr={conn.peer}")
        try:
            self.handler(conn)
        except socket.timeout:
            self.logger.info(f"timed out: expr={conn.peer}")
        except Exception as exc:  # a handler bug must not kill the server
            self.logger.error(f"unexpected error on {conn.peer}: {type(exc).__name__}: {exc}")
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            with self._lock:
                self._clients.pop(conn, None)
            self.logger.info(f"disconnecting: expr={conn.peer}")

    def shutdown_clients(self, join_timeout: float = 10.0) -> None:
        """Half-close every client (readers see EOF) and wait for the handlers to finish."""
        with self._lock:
            items = list(self._clients.items())
        for conn, _thread in items:
            try:
                conn.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + join_timeout
        for _conn, thread in items:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._clients)
        for conn in left:  # still busy: cut them off
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except OSError:
                pass

    def run(self, *, pid_file: Optional[str] = None, on_stop: Optional[Callable[[], None]] = None,
            on_close: Optional[Callable[[], None]] = None) -> int:
        """Serve until SIGTERM/SIGINT (main thread only) or ``stop()``; then shut down cleanly.

        Returns the exit status.
        """
        if self._listener is None:
            self.bind()
        previous = {}
        caught: List[int] = []

        def on_signal(signum, _frame):
            # Only record it: the handler runs in the main thread, possibly inside
            # ``self._stopping.wait`` holding the event's lock, so ``stop()`` (which sets the
            # event) would deadlock here; the loop below calls it.  No logging either.
            caught.append(signum)

        def on_restart_signal(signum, _frame):
            caught.append(-signum)  # ktserver restarts in place; we keep running (logged)

        if threading.current_thread() is threading.main_thread():  # else: stop() ends it
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, on_signal)
            for name in ("SIGUSR1", "SIGHUP"):
                signum = getattr(signal, name, None)
                if signum is not None:
                    previous[signum] = signal.signal(signum, on_restart_signal)
        if pid_file:
            with open(pid_file, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        acceptor = threading.Thread(target=self.serve_forever, name="acceptor", daemon=True)
        acceptor.start()
        status = 0
        try:
            while not self._stopping.wait(_SIGNAL_POLL):
                if any(n > 0 for n in caught):
                    break
                while caught and caught[0] < 0:
                    self.logger.system(f"caught the signal {-caught.pop(0)}: restarting is not "
                                       "supported, the server keeps running")
                if not acceptor.is_alive() and not self._stopping.is_set():  # a signal may land here
                    status = 1
                    break
        finally:
            for signum in [n for n in caught if n > 0][:1]:
                self.logger.system(f"caught the signal: {signum}")
            self.logger.system("stopping the server")
            self.stop()
            acceptor.join(5.0)
            self.close()
            if on_stop is not None:
                try:
                    on_stop()
                except Exception as exc:
                    self.logger.error(f"stopping failed: {exc}")
            self.shutdown_clients()
            if on_close is not None:
                try:
                    on_close()
                except Exception as exc:
                    self.logger.error(f"closing the databases failed: {exc}")
                    status = 1
            if pid_file:
                try:
                    os.remove(pid_file)
                except OSError:
                    pass
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.logger.system("the server finished")
        return status


# ---------------------------------------------------------------------------- event loop

class Offload:
    """A step result: run ``run()`` in a worker thread (it may block); it returns ``(reply, keep)``."""

    __slots__ = ("run",)

    def __init__(self, run: Callable[[], Tuple[bytes, bool]]):
        self.run = run


class HandOver:
    """A step result: ``run(conn)`` takes the connection over in blocking mode in its own thread
    (a stream such as KT replication); the connection is closed when it returns."""

    __slots__ = ("run",)

    def __init__(self, run: Callable[[Connection], None]):
        self.run = run


class _Again:
    """The type of :data:`AGAIN`."""

    def __repr__(self) -> str:
        return "AGAIN"


AGAIN = _Again()
"""A step result: progress was made on a request that is not done; step the connection again
after the other ready connections had their turn (a long request is handled in slices, so no
connection holds the loop for long)."""

_READ_CAP = 16 << 20  # bytes read from one connection per readiness event


class EventLoopServer(ThreadedServer):
    """One epoll loop for every connection; blocking requests go to worker threads.

    Why: on a small box a thread per connection pays a context switch and a GIL hand-off per
    request; one loop serving all ready sockets measured 3-6x more requests/s at 4 and 16
    connections (``bench/bench_kt_server.py``).  ``handler`` is an object with
    ``open(conn)``, ``close(conn)`` and ``step(conn, eof)``: ``step`` handles one request from
    ``conn.buf`` and returns None (need more bytes), ``(reply, keep)``, :class:`Offload`,
    :class:`HandOver` or :data:`AGAIN`.  A connection with a request in a worker is not read until
    it is done, so replies keep their order.  ``timeout`` closes connections idle that long (a
    partial request is first stepped with ``eof=True``, so it gets the reply the protocol gives
    at EOF).
    """

    def __init__(self, handler, *, workers: int = 16, **kwargs):
        super().__init__(handler, **kwargs)
        self.workers = max(1, workers)
        self._selector: Optional[selectors.BaseSelector] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._done: collections.deque = collections.deque()
        self._pool = None
        self._handovers: List[threading.Thread] = []
        self._again: collections.deque = collections.deque()  # connections to step once more

    def stop(self) -> None:
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:
            try:
                wake.send(b"x")
            except OSError:
                pass

    # -- the loop -------------------------------------------------------------------------

    def serve_forever(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if self._listener is None:
            self.bind()
        listener = self._listener
        listener.setblocking(False)
        sel = self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="worker")
        host, port = self.address
        if self._family == socket.AF_INET6:
            host = f"[{host}]"
        self.logger.log(LOG_SYSTEM, f"listening on {host}:{port}", force=True)
        next_sweep = time.monotonic() + 1.0
        while not self._stopping.is_set():
            try:
                events = sel.select(0 if self._again else 1.0)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            for key, mask in events:
                data = key.data
                if data == "accept":
                    self._accept_ready(listener)
                elif data == "wake":
                    self._drain_wake()
                else:
                    self._on_event(data, mask)
            self._finish_offloads()
            for _ in range(len(self._again)):
                conn = self._again.popleft()
                if not conn.closed and not conn.busy:
                    self._process(conn)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self._sweep_idle(now)

    def _accept_ready(self, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.logger.error(f"accept failed: {exc}")
                return
            peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
            with self._lock:
                too_many = len(self._clients) >= self.max_connections
            if too_many:
                self.logger.error(f"connection refused: too many connections: {peer}")
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = Connection(sock, peer, self)
            conn.last = time.monotonic()
            with self._lock:
                self._clients[conn] = None
            self.logger.info(f"connected: expr={peer}")
            try:
                self.handler.open(conn)
            except Exception as exc:
                self.logger.error(f"opening a session failed: {exc}")
                self._close(conn)
                continue
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _on_event(self, conn: Connection, mask: int) -> None:
        if conn.closed:
            return
        if mask & selectors.EVENT_WRITE:
            if not self._flush(conn):
                return
        if mask & selectors.EVENT_READ and not conn.busy:
            got = 0
            while got < _READ_CAP:
                try:
                    data = conn.sock.recv(_RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    data = b""
                if not data:
                    conn.eof = True
                    break
                conn.buf += data
                got += len(data)
                if len(data) < _RECV_SIZE:
                    break  # most likely all there is; epoll reports the socket again otherwise
            conn.last = time.monotonic()
        self._process(conn)

    def _process(self, conn: Connection) -> None:
        """Handle every complete request in ``conn.buf`` (in order) until one must wait.

        Replies of pipelined requests are sent together in one ``send``.
        """
        pending: List[bytes] = []
        try:
            while not conn.closed and not conn.busy and not conn.out and not conn.closing:
                # a request under way (conn.state) is stepped at EOF even with nothing buffered
                if not conn.buf and (conn.state is None or not conn.eof):
                    if conn.eof:
                        conn.closing = True
                    return
                try:
                    result = self.handler.step(conn, conn.eof)
                except Exception as exc:  # a handler bug must not kill the loop
                    self.logger.error(f"unexpected error on {conn.peer}: {type(exc).__name__}: {exc}")
                    conn.closing = True
                    return
                if result is None:
                    if conn.eof:
                        conn.closing = True
                    return
                if result is AGAIN:
                    self._again.append(conn)
                    return
                if isinstance(result, Offload):
                    self._emit(conn, pending)
                    if conn.closed:
                        return
                    conn.busy = True
                    self._set_interest(conn, 0)
                    self._pool.submit(self._run_offload, conn, result)
                    return
                if isinstance(result, HandOver):
                    self._emit(conn, pending)
                    if not conn.closed:
                        self._hand_over(conn, result)
                    return
                reply, keep = result
                if reply:
                    pending.append(reply)
                if not keep:
                    conn.closing = True
        finally:
            self._emit(conn, pending)
            if conn.closing and not conn.out and not conn.busy and not conn.closed:
                self._close(conn)

    def _emit(self, conn: Connection, pending: List[bytes]) -> None:
        if pending and not conn.closed:
            self._write(conn, pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    def _run_offload(self, conn: Connection, job: Offload) -> None:
        try:
            result = job.run()
        except Exception as exc:
            self.logger.error(f"unexpected error on {conn.peer}: {type(exc).__name__}: {exc}")
            result = (b"", False)
        self._done.append((conn, result))
        self._wake()

    def _finish_offloads(self) -> None:
        while self._done:
            conn, (reply, keep) = self._done.popleft()
            conn.busy = False
            if conn.closed:
                continue
            if conn.closing:  # the server is stopping: give the reply, then close
                keep = False
            conn.last = time.monotonic()
            if reply:
                self._write(conn, reply)
            if not keep:
                conn.closing = True
            if not conn.closed:
                self._set_interest(conn, selectors.EVENT_WRITE if conn.out else selectors.EVENT_READ)
                self._process(conn)

    def _hand_over(self, conn: Connection, job: HandOver) -> None:
        self._set_interest(conn, 0)
        conn.busy = True
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(self.timeout)
        except OSError:
            pass

        def run() -> None:
            try:
                job.run(conn)
            except socket.timeout:
                self.logger.info(f"timed out: expr={conn.peer}")
            except Exception as exc:
                self.logger.error(f"unexpected error on {conn.peer}: {type(exc).__name__}: {exc}")
            finally:
                conn.busy = False
                self._done.append((conn, (b"", False)))
                self._wake()

        thread = threading.Thread(target=run, name=f"stream-{conn.peer}", daemon=True)
        self._handovers = [t for t in self._handovers if t.is_alive()] + [thread]
        thread.start()

    def _write(self, conn: Connection, data: bytes) -> None:
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        if sent < len(data):
            conn.out += memoryview(data)[sent:]
            self._set_interest(conn, selectors.EVENT_WRITE)

    def _flush(self, conn: Connection) -> bool:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._close(conn)
            return False
        del conn.out[:sent]
        conn.last = time.monotonic()
        if not conn.out:
            if conn.closing:
                self._close(conn)
                return False
            self._set_interest(conn, selectors.EVENT_READ)
        return True

    def _set_interest(self, conn: Connection, events: int) -> None:
        sel = self._selector
        try:
            if events:
                try:
                    sel.modify(conn.sock, events, conn)
                except KeyError:
                    sel.register(conn.sock, events, conn)
            else:
                sel.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _sweep_idle(self, now: float) -> None:
        if self.timeout is None:
            return
        with self._lock:
            conns = list(self._clients)
        for conn in conns:
            if conn.busy or conn.closed or now - conn.last < self.timeout:
                continue
            self.logger.info(f"timed out: expr={conn.peer}")
            if (conn.buf or conn.state is not None) and not conn.out:  # partial request: answer as at EOF
                conn.eof = True
                self._process(conn)
            if not conn.closed:
                self._close(conn)

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        if conn.busy:  # a worker still owns it; closed when it reports back
            conn.closing = True
            return
        conn.closed = True
        self._set_interest(conn, 0)
        try:
            self.handler.close(conn)
        except Exception as exc:
            self.logger.error(f"closing a session failed: {exc}")
        try:
            conn.sock.close()
        except OSError:
            pass
        with self._lock:
            self._clients.pop(conn, None)
        self.logger.info(f"disconnecting: expr={conn.peer}")

    # -- shutdown -------------------------------------------------------------------------

    def shutdown_clients(self, join_timeout: float = 10.0) -> None:
        """After the loop ended: let workers finish, send what is pending, close everything."""
        deadline = time.monotonic() + join_timeout
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        with self._lock:
            conns = list(self._clients)
        while any(c.busy for c in conns) and time.monotonic() < deadline:
            time.sleep(0.02)
        for thread in self._handovers:
            thread.join(max(0.0, deadline - time.monotonic()))
        for conn, (reply, _keep) in list(self._done):
            if reply and not conn.closed:
                conn.out += reply
        self._done.clear()
        for conn in conns:
            conn.busy = False
            if conn.out and not conn.closed:
                try:
                    conn.sock.setblocking(True)
                    conn.sock.settimeout(1.0)
                    conn.sock.sendall(conn.out)
                except OSError:
                    pass
            self._close(conn)
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
        if self._selector is not None:
            self._selector.close()
