"""kt.transport against real local TCP servers that misbehave on purpose.

The server below speaks a tiny framed protocol (request: u32 length + payload; reply:
b"R" + u32 length + payload, or b"E" + u32 length + message for an error reply).  The
payload says how to misbehave, so one server covers echo, stall, EOF mid-reply, garbage,
trailing bytes, trickled and huge replies, and no-reply requests.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import List, Optional

import pytest

from kt.errors import ProtocolError, ServerConnectionError, ServerError, ServerTimeoutError
from kt.transport import Connection, ConnectionDroppedError, Pool

# -- the framed protocol --------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def reply(payload: bytes, kind: bytes = b"R") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def parse_reply(buf, pos=0):
    """Sans-IO parser following docs/internals.md."""
    if len(buf) - pos < 5:
        return None
    kind = buf[pos]
    if kind not in b"RE":
        raise ProtocolError(f"bad reply magic {kind:#x}")
    (size,) = struct.unpack_from(">I", buf, pos + 1)
    end = pos + 5 + size
    if len(buf) < end:
        return None
    body = bytes(buf[pos + 5 : end])
    if kind == ord("E"):
        raise ServerError(body.decode(), code=1)
    return body, end


# -- a misbehaving server ------------------------------------------------------------------


class FramedServer:
    """Threaded TCP server on 127.0.0.1; restartable on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.accepted = 0
        self.received: List[bytes] = []
        self.no_reply: List[bytes] = []
        self._stop = threading.Event()
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _recv_exact(self, conn: socket.socket, n: int) -> Optional[bytes]:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                head = self._recv_exact(conn, 4)
                if head is None:
                    return
                payload = self._recv_exact(conn, struct.unpack(">I", head)[0])
                if payload is None:
                    return
                self.received.append(payload)
                if not self._handle(conn, payload):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _handle(self, conn: socket.socket, payload: bytes) -> bool:
        """Answer one request; False closes the connection."""
        cmd, _, arg = payload.partition(b":")
        if cmd == b"echo":
            conn.sendall(reply(arg))
        elif cmd == b"delay":
            ms, _, rest = arg.partition(b":")
            if self._stop.wait(int(ms) / 1000):
                return False
            conn.sendall(reply(rest))
        elif cmd == b"stall":
            self._stop.wait(10)
            return False
        elif cmd == b"half":
            conn.sendall(reply(b"x" * 100)[:40])
            return False
        elif cmd == b"close":
            return False
        elif cmd == b"garbage":
            conn.sendall(b"\xff\x00garbage")
        elif cmd == b"extra":
            conn.sendall(reply(arg) + b"R\x00")
        elif cmd == b"err":
            conn.sendall(reply(arg, b"E"))
        elif cmd == b"big":
            conn.sendall(reply(b"b" * int(arg)))
        elif cmd == b"trickle":
            data = reply(b"0123456789" * 300)
            for i in range(0, len(data), 97):
                conn.sendall(data[i : i + 97])
                time.sleep(0.0005)
        elif cmd == b"drip":
            for byte in reply(b"d" * 25):
                if self._stop.wait(float(arg)):
                    return False
                conn.sendall(bytes([byte]))
        elif cmd == b"nr":
            self.no_reply.append(arg)
        elif cmd == b"nrlist":
            conn.sendall(reply(b",".join(self.no_reply)))
        else:
            conn.sendall(reply(b"unknown " + cmd, b"E"))
        return True

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._thread.join(2)


@pytest.fixture
def server():
    srv = FramedServer()
    yield srv
    srv.stop()


def echo(target, text: str) -> bytes:
    return target.request(frame(b"echo:" + text.encode()), parse_reply)


# -- Connection -----------------------------------------------------------------------------


def test_connection_round_trip_and_nodelay(server):
    conn = Connection("127.0.0.1", server.port)
    assert conn.closed
    assert echo(conn, "hello") == b"hello"
    assert not conn.closed
    assert conn._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert echo(conn, "again") == b"again"
    assert server.accepted == 1
    conn.close()
    assert conn.closed


def test_empty_host_means_loopback(server):
    conn = Connection("", server.port)
    assert echo(conn, "x") == b"x"
    assert conn.address == f"127.0.0.1:{server.port}"
    conn.close()


def test_timeout_closes_and_next_request_gets_its_own_reply(server):
    conn = Connection("127.0.0.1", server.port, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ServerTimeoutError) as info:
        conn.request(frame(b"delay:600:stale"), parse_reply)
    assert time.monotonic() - started < 2
    assert str(server.port) in str(info.value)
    assert conn.closed
    assert echo(conn, "fresh") == b"fresh"  # never b"stale"
    time.sleep(0.6)
    assert echo(conn, "fresh2") == b"fresh2"
    assert server.accepted == 2
    conn.close()


def test_eof_mid_reply_is_connection_error_not_dropped(server):
    conn = Connection("127.0.0.1", server.port)
    with pytest.raises(ServerConnectionError) as info:
        conn.request(frame(b"half"), parse_reply)
    assert not isinstance(info.value, ConnectionDroppedError)
    assert "mid-reply" in str(info.value)
    assert conn.closed


def test_close_before_reply_is_dropped(server):
    conn = Connection("127.0.0.1", server.port)
    with pytest.raises(ConnectionDroppedError):
        conn.request(frame(b"close"), parse_reply)
    assert conn.closed


def test_garbage_is_protocol_error_and_closes(server):
    conn = Connection("127.0.0.1", server.port)
    with pytest.raises(ProtocolError):
        conn.request(frame(b"garbage"), parse_reply)
    assert conn.closed
    assert echo(conn, "ok") == b"ok"


def test_trailing_bytes_are_protocol_error(server):
    conn = Connection("127.0.0.1", server.port)
    with pytest.raises(ProtocolError, match="unexpected bytes"):
        conn.request(frame(b"extra:abc"), parse_reply)
    assert conn.closed
    assert echo(conn, "ok") == b"ok"


def test_server_error_reply_keeps_connection(server):
    conn = Connection("127.0.0.1", server.port)
    with pytest.raises(ServerError, match="nope"):
        conn.request(frame(b"err:nope"), parse_reply)
    assert not conn.closed
    assert echo(conn, "ok") == b"ok"
    assert server.accepted == 1


def test_large_and_trickled_replies(server):
    conn = Connection("127.0.0.1", server.port)
    assert conn.request(frame(b"big:3000000"), parse_reply) == b"b" * 3000000
    assert conn.request(frame(b"trickle"), parse_reply) == b"0123456789" * 300
    assert echo(conn, "after") == b"after"


def test_refused_names_address():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conn = Connection("127.0.0.1", port, connect_timeout=1)
    with pytest.raises(ServerConnectionError, match=f"127.0.0.1:{port}"):
        echo(conn, "x")


def test_bad_arguments():
    with pytest.raises(ValueError, match="port"):
        Connection("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="timeout"):
        Connection("127.0.0.1", 1978, timeout=0)
    with pytest.raises(ValueError, match="max_size"):
        Pool("127.0.0.1", 1978, max_size=0)


def test_send_without_reply(server):
    conn = Connection("127.0.0.1", server.port)
    conn.send(frame(b"nr:a"))
    conn.send(frame(b"nr:b"))
    assert conn.request(frame(b"nrlist"), parse_reply) == b"a,b"


# -- Pool -------------------------------------------------------------------------------------


def test_pool_reuses_one_connection(server):
    pool = Pool("127.0.0.1", server.port)
    for i in range(20):
        assert echo(pool, str(i)) == str(i).encode()
    assert server.accepted == 1
    assert (pool.size, pool.idle) == (1, 1)
    pool.close()


def test_pool_timeout_then_next_call_gets_right_reply(server):
    pool = Pool("127.0.0.1", server.port, timeout=0.2)
    assert echo(pool, "warm") == b"warm"
    with pytest.raises(ServerTimeoutError):
        pool.request(frame(b"delay:500:stale"), parse_reply)
    assert pool.size == 0  # the timed-out connection was discarded
    assert echo(pool, "next") == b"next"
    time.sleep(0.5)
    assert echo(pool, "later") == b"later"
    pool.close()


def test_pool_stalled_server_times_out(server):
    pool = Pool("127.0.0.1", server.port, timeout=0.3)
    with pytest.raises(ServerTimeoutError):
        pool.request(frame(b"stall"), parse_reply)
    assert echo(pool, "alive") == b"alive"
    pool.close()


def test_pool_garbage_discards_connection(server):
    pool = Pool("127.0.0.1", server.port)
    with pytest.raises(ProtocolError):
        pool.request(frame(b"garbage"), parse_reply)
    assert pool.size == 0
    assert echo(pool, "fine") == b"fine"
    pool.close()


def test_pool_eof_mid_reply_is_not_retried(server):
    pool = Pool("127.0.0.1", server.port)
    assert echo(pool, "warm") == b"warm"
    with pytest.raises(ServerConnectionError):
        pool.request(frame(b"half"), parse_reply)
    assert server.received.count(b"half") == 1
    pool.close()


def test_drop_after_sending_is_resent_only_when_idempotent(server):
    """The server reads the request and hangs up without a reply: it may have acted on it."""
    pool = Pool("127.0.0.1", server.port)
    assert echo(pool, "warm") == b"warm"  # the next request goes on a reused connection
    with pytest.raises(ConnectionDroppedError, match="unknown"):
        pool.request(frame(b"close"), parse_reply)
    assert server.received.count(b"close") == 1  # sent once, never repeated
    assert echo(pool, "warm") == b"warm"
    with pytest.raises(ConnectionDroppedError):
        pool.request(frame(b"close"), parse_reply, idempotent=True)
    assert server.received.count(b"close") == 3  # resent once on a fresh connection
    assert pool.size == 0  # both failed connections were discarded
    pool.close()


def test_idle_connection_the_peer_closed_is_replaced_before_sending():
    first = FramedServer()
    pool = Pool("127.0.0.1", first.port)
    assert echo(pool, "x") == b"x"
    first.stop()
    second = FramedServer(first.port)
    try:
        time.sleep(0.05)  # let the FIN arrive
        pool.send(frame(b"nr:once"))
        assert pool.request(frame(b"nrlist"), parse_reply) == b"once"
        assert echo(pool, "write-like") == b"write-like"  # not idempotent, still no error
    finally:
        pool.close()
        second.stop()


def test_timeout_bounds_the_whole_reply_not_each_read(server):
    """A reply trickling in slower than the timeout allows as a whole times out."""
    conn = Connection("127.0.0.1", server.port, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ServerTimeoutError):
        conn.request(frame(b"drip:0.1"), parse_reply)  # 1 byte per 0.1 s of 30 bytes
    assert time.monotonic() - started < 1.0
    assert conn.closed
    assert echo(conn, "after") == b"after"
    conn.close()


def test_server_restart_next_call_reconnects():
    first = FramedServer()
    port = first.port
    pool = Pool("127.0.0.1", port)
    # three idle connections, all of which will be dead after the restart
    pins = [pool.acquire() for _ in range(3)]
    for conn in pins:
        assert echo(conn, "x") == b"x"
    for conn in pins:
        pool.release(conn)
    assert pool.idle == 3
    first.stop()
    second = FramedServer(port)
    try:
        for i in range(5):
            assert echo(pool, f"after{i}") == f"after{i}".encode()
        assert pool.size <= 3
        # a no-reply write on a dead idle connection would be lost: it must not be
        pool.send(frame(b"nr:kept"))
        assert pool.request(frame(b"nrlist"), parse_reply) == b"kept"
    finally:
        pool.close()
        second.stop()


def test_server_restart_no_reply_send_first():
    first = FramedServer()
    port = first.port
    pool = Pool("127.0.0.1", port)
    assert echo(pool, "x") == b"x"
    first.stop()
    second = FramedServer(port)
    try:
        time.sleep(0.05)  # let the FIN arrive
        pool.send(frame(b"nr:one"))
        assert pool.pipeline([frame(b"nr:two")], frame(b"nrlist"), parse_reply) == b"one,two"
    finally:
        pool.close()
        second.stop()


def test_server_down_raises(server):
    pool = Pool("127.0.0.1", server.port, connect_timeout=1)
    assert echo(pool, "x") == b"x"
    server.stop()
    with pytest.raises(ServerConnectionError):
        echo(pool, "y")
    with pytest.raises(ServerConnectionError, match="cannot connect"):
        echo(pool, "z")
    assert pool.size == 0


def test_pipeline_sends_no_reply_requests_first(server):
    pool = Pool("127.0.0.1", server.port)
    frames = [frame(b"nr:%d" % i) for i in range(100)]
    result = pool.pipeline(frames, frame(b"nrlist"), parse_reply)
    assert result == b",".join(b"%d" % i for i in range(100))
    assert server.accepted == 1
    pool.close()


def test_sixteen_threads_get_their_own_replies(server):
    pool = Pool("127.0.0.1", server.port, max_size=4)
    errors: List[str] = []
    peak = [0]

    def worker(n: int) -> None:
        for i in range(300):
            text = f"t{n}-{i}"
            got = echo(pool, text)
            if got != text.encode():
                errors.append(f"{text} got {got!r}")
            peak[0] = max(peak[0], pool.size)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert 1 <= peak[0] <= 4
    assert server.accepted <= 4
    pool.close()


def test_pool_bound_waits_then_exhausts(server):
    pool = Pool("127.0.0.1", server.port, max_size=2, connect_timeout=0.3)
    a, b = pool.acquire(), pool.acquire()
    echo(a, "a")
    echo(b, "b")
    started = time.monotonic()
    with pytest.raises(ServerConnectionError, match="pool exhausted"):
        pool.acquire()
    assert 0.25 <= time.monotonic() - started < 2
    # a release while someone waits hands the connection over
    threading.Timer(0.1, pool.release, args=(a,)).start()
    assert pool.acquire() is a
    pool.release(a)
    pool.release(b)
    assert (pool.size, pool.idle) == (2, 2)
    pool.close()


def test_waiter_gets_slot_of_discarded_connection(server):
    pool = Pool("127.0.0.1", server.port, max_size=1, connect_timeout=2)
    held = pool.acquire()
    echo(held, "x")
    held.close()  # as after a failure
    threading.Timer(0.1, pool.release, args=(held,)).start()
    conn = pool.acquire()
    assert conn is not held
    assert echo(conn, "y") == b"y"
    pool.release(conn)
    pool.close()


def test_connection_context_pins_and_checkin(server):
    pool = Pool("127.0.0.1", server.port)
    with pool.connection() as conn:
        assert echo(conn, "1") == b"1"
        assert pool.idle == 0
        assert echo(pool, "other") == b"other"  # another connection meanwhile
        assert pool.size == 2
        pool.checkin()
        assert pool.idle == 2
    assert (pool.size, pool.idle) == (2, 2)  # not released twice
    pool.checkin()  # nothing pinned: no-op
    assert (pool.size, pool.idle) == (2, 2)
    pool.close()


def test_connection_context_discards_on_error(server):
    pool = Pool("127.0.0.1", server.port)
    with pytest.raises(ServerTimeoutError):
        with pool.connection() as conn:
            raise ServerTimeoutError("simulated")
    assert conn.closed
    assert pool.size == 0
    with pytest.raises(ValueError):
        with pool.connection() as conn:
            echo(conn, "in use")
            raise ValueError("not a connection problem")
    assert not conn.closed
    assert (pool.size, pool.idle) == (1, 1)
    pool.close()


def test_close_closes_idle_now_and_busy_on_release(server):
    pool = Pool("127.0.0.1", server.port)
    busy = pool.acquire()
    echo(busy, "b")
    echo(pool, "idle")
    assert (pool.size, pool.idle) == (2, 1)
    pool.close()
    assert (pool.size, pool.idle) == (1, 0)
    assert not busy.closed
    pool.release(busy)
    assert busy.closed
    assert pool.size == 0
    assert echo(pool, "again") == b"again"  # usable after close
    pool.close()


def test_is_stale_detects_peer_hangup(server):
    conn = Connection("127.0.0.1", server.port)
    assert echo(conn, "x") == b"x"
    assert not conn.is_stale()
    server.stop()
    deadline = time.monotonic() + 2
    while not conn.is_stale() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert conn.closed


def test_contended_small_pool_never_exhausts_while_connections_return(server):
    """16 threads share 2 connections; every waiter is woken by a release in time."""
    pool = Pool("127.0.0.1", server.port, max_size=2, connect_timeout=5)
    errors: List[BaseException] = []
    sizes = set()

    def worker(n: int) -> None:
        try:
            for i in range(15):
                payload = b"delay:2:%d-%d" % (n, i)
                assert pool.request(frame(payload), parse_reply) == b"%d-%d" % (n, i)
                sizes.add(pool.size)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert max(sizes) <= 2
    assert server.accepted <= 2
    pool.close()
