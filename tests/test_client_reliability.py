"""Issue 9, client side: no write applied twice, fork safety, whole-request timeouts,
oversized input refused before sending, setnr that holds no connection.

Everything runs against real server processes (bundled, and the real ones when
KTSERVER/TTSERVER are set) through tests/faultproxy.py, or against small scripted peers
for replies no healthy server sends (a byte-dripping peer, a truncated ``%f``).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from typing import Callable, List

import pytest

from faultproxy import FaultProxy
from kt import KT_NONE
from kt.errors import ServerConnectionError, ServerError, ServerTimeoutError
from kt.kyototycoon import KyotoTycoon
from kt.protocol.kt_binary import DATA_MAX_SIZE
from kt.tokyotyrant import TokyoTyrant
from kt.transport import ConnectionDroppedError


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def target(any_server):
    """(client class, running server) for each product and flavour."""
    return (KyotoTycoon if any_server.product == "kt" else TokyoTyrant), any_server


def _counter(cls, client, key: str) -> int:
    """The raw counter: KT stores 8 bytes big-endian, TT 4 bytes in host (little) order."""
    raw = client.get_raw(key)
    if raw is None:
        return 0
    return int.from_bytes(raw, "big" if cls is KyotoTycoon else "little", signed=True)


# -- point 1: no write applied twice ---------------------------------------------------------


def _run_increments(incr: Callable[[], int], calls: int):
    returned: List[int] = []
    failures: List[BaseException] = []
    for _ in range(calls):
        try:
            returned.append(incr())
        except ServerConnectionError as exc:
            failures.append(exc)
    return returned, failures


def test_increments_through_reply_drops_are_applied_exactly_once(target):
    """5% of replies dropped after the server executed the increment: every call is applied
    once, and each call whose reply was lost raises ConnectionDroppedError (before the fix:
    the pool resent them and the counter ran ahead of the calls)."""
    cls, server = target
    key = _key("incr-drop")
    calls = 2000
    with FaultProxy(server.host, server.port, seed=9, drop_reply=0.05) as proxy:
        client = cls(host=proxy.host, port=proxy.port, timeout=10)
        try:
            returned, failures = _run_increments(lambda: client.incr(key, 1), calls)
        finally:
            client.close()
        dropped = proxy.counts["drop_reply"]
    final = _counter(cls, server.client(), key)
    assert dropped > 20  # the proxy really dropped replies
    assert all(isinstance(exc, ConnectionDroppedError) for exc in failures), failures[:3]
    assert all("unknown" in str(exc) for exc in failures)
    assert len(failures) == dropped
    assert final == calls, f"{final - calls} increments applied twice"
    assert returned == sorted(set(returned)) and returned[-1] <= calls


def test_increments_through_request_drops_count_only_successes(target):
    """Requests dropped before reaching the server: the counter equals the number of calls
    that returned, and every other call raised ConnectionDroppedError."""
    cls, server = target
    key = _key("incr-reqdrop")
    with FaultProxy(server.host, server.port, seed=3, drop_request=0.05) as proxy:
        client = cls(host=proxy.host, port=proxy.port, timeout=10)
        try:
            returned, failures = _run_increments(lambda: client.incr(key, 1), 1000)
        finally:
            client.close()
    assert failures and all(isinstance(exc, ConnectionDroppedError) for exc in failures)
    assert _counter(cls, server.client(), key) == len(returned)
    assert returned == list(range(1, len(returned) + 1))


def test_appended_tokens_are_never_doubled(target):
    cls, server = target
    key = _key("append-drop")
    tokens = [f"t{i};" for i in range(300)]
    ok, unknown = [], []
    with FaultProxy(server.host, server.port, seed=5, drop_reply=0.05, drop_request=0.02) as proxy:
        client = cls(host=proxy.host, port=proxy.port, timeout=10, serializer=KT_NONE)
        try:
            for token in tokens:
                try:
                    client.append(key, token.encode())
                    ok.append(token)
                except ConnectionDroppedError:
                    unknown.append(token)
        finally:
            client.close()
    assert unknown
    stored = server.client(serializer=KT_NONE).get(key).decode().split(";")[:-1]
    stored = [token + ";" for token in stored]
    assert len(stored) == len(set(stored)), "a token was appended twice"
    assert set(ok) <= set(stored) <= set(tokens)
    assert stored == [t for t in tokens if t in set(stored)]  # in call order


def test_reads_are_still_resent_after_a_drop(target):
    """Idempotent requests keep the transparent resend: a read whose request was lost on a
    reused connection is sent again and answers correctly."""
    cls, server = target
    key = _key("read-drop")
    server.client().set(key, "value")
    with FaultProxy(server.host, server.port, seed=11, drop_request=0.1) as proxy:
        client = cls(host=proxy.host, port=proxy.port, timeout=10)
        failures = 0
        try:
            for _ in range(500):
                try:
                    assert client.get(key) == "value"
                except ConnectionDroppedError:
                    failures += 1
        finally:
            client.close()
        dropped = proxy.counts["drop_request"]
    assert dropped > 20
    assert failures < dropped / 3  # most drops were recovered by the resend


# -- point 2: fork safety ------------------------------------------------------------------


def _hammer(client, tag: str, rounds: int) -> int:
    """set/get our own keys; the number of wrong answers (errors count as wrong)."""
    wrong = 0
    for i in range(rounds):
        key = f"fork-{tag}-{i % 50}"
        value = f"{tag}:{i}"
        try:
            if i % 2 and hasattr(client, "setnr"):  # TT: no-reply writes are fork-safe too
                client.setnr(key, value)
            else:
                client.set(key, value)
            if client.get(key) != value:
                wrong += 1
        except Exception:
            wrong += 1
    return wrong


def _fork_and_hammer(client, rounds: int, child_extra: Callable[[], int] = lambda: 0):
    """Use ``client`` in parent and child at the same time; (parent_wrong, child_status)."""
    tag = uuid.uuid4().hex[:8]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 99
        try:
            os.close(read_fd)
            wrong = _hammer(client, tag + "c", rounds) + child_extra()
            os.write(write_fd, struct.pack(">I", wrong))
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    parent_wrong = _hammer(client, tag + "p", rounds)
    _, status = os.waitpid(pid, 0)
    data = os.read(read_fd, 4)
    os.close(read_fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    child_wrong = struct.unpack(">I", data)[0]
    return parent_wrong, child_wrong


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_client_used_in_both_processes_after_fork(target):
    _, server = target
    client = server.client(timeout=10)
    for i in range(8):  # several pooled connections, all inherited by the child
        client.set(f"warm-{i}", "x")
    if hasattr(client, "setnr"):
        client.setnr("warm-nr", "y")  # the parent's pending no-reply connection, inherited too
    assert client._pool.idle >= 1
    parent_wrong, child_wrong = _fork_and_hammer(client, 1500)
    assert (parent_wrong, child_wrong) == (0, 0)
    assert client.get("warm-0") == "x"  # the parent's connections survived the child


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_cursor_opened_before_fork_refuses_in_child_and_lives_on_in_parent(kt_servers):
    client = kt_servers.client(timeout=10)
    prefix = _key("forkcur")
    client.set_bulk({f"{prefix}-{i}": str(i) for i in range(3)}, db=1)  # db 1: B+ tree, ordered
    cursor = client.cursor(db=1)
    assert cursor.jump(f"{prefix}-0")
    assert cursor.key() == f"{prefix}-0"

    def child_uses_cursor() -> int:
        try:
            cursor.key()
        except ServerConnectionError as exc:
            return 0 if "parent process" in str(exc) else 1
        return 1  # it read through the parent's socket

    parent_wrong, child_wrong = _fork_and_hammer(client, 300, child_uses_cursor)
    assert (parent_wrong, child_wrong) == (0, 0)
    assert cursor.get(step=True) == (f"{prefix}-0", "0")  # the parent's cursor is untouched
    assert cursor.key() == f"{prefix}-1"
    cursor.close()


# -- point 7: timeout bounds the whole request -----------------------------------------------


class DripPeer:
    """Answers every request with a long reply, one byte every ``interval`` seconds."""

    def __init__(self, reply: bytes, interval: float = 0.5) -> None:
        self.reply = reply
        self.interval = interval
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in self.reply:
                    conn.sendall(bytes([byte]))
                    if self._stop.wait(self.interval):
                        return
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.mark.parametrize("cls", [KyotoTycoon, TokyoTyrant])
def test_a_dripping_peer_cannot_stretch_the_timeout(cls):
    """One byte every 0.5 s of an endless-looking reply: get(timeout=1) gives up after ~1 s
    (before: each byte restarted the per-read timeout, so the call took the whole drip)."""
    if cls is KyotoTycoon:  # get_bulk reply announcing one 100-byte record
        reply = bytes([0xBA]) + struct.pack(">IHIIq", 1, 0, 1, 100, -1) + b"k" + b"v" * 100
    else:  # get reply: code 0, size 100
        reply = b"\x00" + struct.pack(">I", 100) + b"v" * 100
    peer = DripPeer(reply)
    client = cls(port=peer.port, timeout=1)
    try:
        started = time.monotonic()
        with pytest.raises(ServerTimeoutError):
            client.get("key")
        elapsed = time.monotonic() - started
    finally:
        client.close()
        peer.close()
    assert 0.9 <= elapsed < 2.5, elapsed


# -- point 7 / 6: input the server would choke on is refused before sending -----------------


def test_kt_values_over_256_mib_are_refused_before_sending(kt_server):
    big = b"a" * (DATA_MAX_SIZE + 1)  # the one large allocation of this test
    with FaultProxy(kt_server.host, kt_server.port) as proxy:
        client = KyotoTycoon(host=proxy.host, port=proxy.port, serializer=KT_NONE, timeout=10)
        try:
            for call in (
                lambda: client.set("big", big),
                lambda: client.set_bulk({"big": big}),
                lambda: client.add("big", big),
                lambda: client.append("big", big),
                lambda: client.get(big),
            ):
                with pytest.raises(ValueError, match="256 MiB"):
                    call()
            assert proxy.counts["requests"] == 0  # nothing reached the server
            client.set("small", b"ok")  # the client is fine afterwards
            assert client.get("small") == b"ok"
        finally:
            client.close()


def test_kt_incr_rejects_numbers_beyond_64_bits_before_sending(kt_servers):
    key = _key("incr-range")
    with FaultProxy(kt_servers.host, kt_servers.port) as proxy:
        client = KyotoTycoon(host=proxy.host, port=proxy.port, timeout=10)
        try:
            for n in (2**63, -(2**63), 2**64, -(2**70)):
                with pytest.raises(ValueError, match="2\\*\\*63"):
                    client.incr(key, n)
            assert proxy.counts["requests"] == 0
            assert client.incr(key, 2**63 - 1) == 2**63 - 1
            assert client.incr(key, -(2**63 - 1)) == 0
        finally:
            client.close()


class ScriptedHttpPeer:
    """Answers every HTTP request with the same TSV body (a reply no healthy bundled server
    produces, e.g. ktserver's ``%f`` cut short with ``*``)."""

    def __init__(self, body: bytes) -> None:
        self.response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/tab-separated-values\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(self.response)
                    conn.recv(65536)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


def test_truncated_increment_double_result_is_a_kt_error():
    peer = ScriptedHttpPeer(b"num\t" + b"9" * 100 + b"*\n")
    client = KyotoTycoon(port=peer.port, timeout=5)
    try:
        with pytest.raises(ServerError, match="could not format") as info:
            client.incr_double("k", 1e300)
        assert not isinstance(info.value, ValueError)
    finally:
        client.close()
        peer.close()


def test_real_ktserver_huge_increment_double_is_a_kt_error(real_kt_server):
    """ktserver 0.9.56 formats 1e300 with %f into a fixed buffer and ends it with "*"."""
    client = real_kt_server.client()
    key = _key("incrd-huge")
    with pytest.raises(ServerError, match="could not format"):
        client.incr_double(key, 1e300)
    assert len(client.get_raw(key)) == 16  # stored: the increment happened


# -- point 7: setnr holds no pooled connection ------------------------------------------------


def test_setnr_from_32_threads_does_not_exhaust_a_small_pool(tt_servers):
    client = tt_servers.client(max_connections=4, connect_timeout=2, timeout=10)
    prefix = _key("setnr32")
    done = threading.Barrier(33, timeout=30)
    errors: List[BaseException] = []
    seen = {}

    def worker(i: int) -> None:
        try:
            client.setnr(f"{prefix}-{i}", f"v{i}")
            done.wait()  # stay alive, holding whatever setnr kept, until all 32 have written
            done.wait()
            seen[i] = client.get(f"{prefix}-{i}")  # the thread's own later read
        except BaseException as exc:
            errors.append(exc)
            done.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    try:
        done.wait()  # before the fix: threads 5..32 waited for a connection, then failed
        assert client.pool.size <= 4
        assert client.get(f"{prefix}-0") == "v0"  # another thread can still get a connection
        done.wait()
    finally:
        for thread in threads:
            thread.join(30)
    assert not errors, errors[:3]
    assert seen == {i: f"v{i}" for i in range(32)}


def test_setnr_then_read_from_the_same_thread_sees_the_write(tt_servers):
    """8 threads on a 2-connection pool: each setnr is followed by the same thread's get,
    which must return that value (the write travels ahead of it on the same connection, or
    was answered for already)."""
    client = tt_servers.client(max_connections=2, timeout=10)
    stale: List[tuple] = []
    errors: List[BaseException] = []

    def worker(t: int) -> None:
        key = _key(f"setnr-order-{t}")
        try:
            for i in range(300):
                client.setnr(key, str(i))
                if i % 3 == 0:
                    client.setnr(key, str(i) + "b")  # two in a row stay in order too
                    expected = str(i) + "b"
                else:
                    expected = str(i)
                got = client.get(key)
                if got != expected:
                    stale.append((t, i, got))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert not stale, stale[:5]
    assert client.pool.size <= 2
