"""The bundled KT server as a process: concurrency, durability, hostile input, options.

Every test talks to a real ``python -m kt.server kt`` process over real sockets.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional

import pytest

from kt.protocol import kt_binary as kb
from kt.protocol import kt_rpc
from kt_server_harness import (
    ResponseReader,
    ServerProcess,
    recv_exact,
    recv_http_response,
    recv_idle,
    server_closed,
    split_http,
    wait_until,
)

NO_XT = 0x7FFFFFFFFFFFFFFF


def _set_one(sock, key: bytes, value: bytes, dbidx: int = 0) -> int:
    sock.sendall(kb.encode_set_bulk([(dbidx, key, value, NO_XT)]))
    hits, _ = kb.parse_set_bulk_reply(recv_exact(sock, 5))
    return hits


def _get_many(sock, keys, dbidx: int = 0) -> dict:
    sock.sendall(kb.encode_get_bulk([(dbidx, k) for k in keys]))
    buf = b""
    while True:
        parsed = kb.parse_get_bulk_reply(buf)
        if parsed is not None:
            return {key: value for _db, key, value, _xt in parsed[0]}
        chunk = sock.recv(1 << 16)
        assert chunk, "server closed during get_bulk"
        buf += chunk


def _rpc(sock, procedure: str, params: dict, *, extra_headers: bytes = b"") -> tuple:
    body = kt_rpc.encode_tsv(list(params.items()))
    request = (b"POST /rpc/%s HTTP/1.1\r\nContent-Type: text/tab-separated-values\r\n"
               b"Content-Length: %d\r\n%s\r\n" % (procedure.encode(), len(body), extra_headers)) + body
    sock.sendall(request)
    raw = recv_http_response(sock, timeout=10)
    status, headers, resp_body = split_http(raw)
    ctype = dict(headers).get(b"Content-Type", b"").decode()
    return int(status.split()[1]), dict(kt_rpc.decode_tsv_pairs(resp_body, ctype or None))


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(["-tout", "10", "*", "%"], tmp_path)
    yield srv
    srv.terminate()


def test_sixteen_concurrent_clients_lose_nothing(server):
    per_client = 150
    errors = []

    def writer(n: int) -> None:
        try:
            with server.connect() as sock:
                for i in range(per_client):
                    key = b"c%02d-%04d" % (n, i)
                    if i % 3 == 0:
                        status, _ = _rpc(sock, "set", {b"key": key, b"value": key[::-1]})
                        assert status == 200
                    else:
                        assert _set_one(sock, key, key[::-1]) == 1
        except Exception as exc:  # collected and reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    keys = [b"c%02d-%04d" % (n, i) for n in range(16) for i in range(per_client)]
    with server.connect() as sock:
        found = _get_many(sock, keys)
        status, out = _rpc(sock, "status", {})
    assert status == 200
    assert len(found) == len(keys)
    assert all(found[k] == k[::-1] for k in keys)
    assert int(out[b"count"]) == len(keys)


def _write_keys(srv: ServerProcess, count: int) -> list:
    keys = [b"durable-%05d" % i for i in range(count)]
    with srv.connect() as sock:
        for key in keys:
            assert _set_one(sock, key, b"v" + key) == 1
    return keys


def test_file_db_keeps_acknowledged_writes_across_sigterm(tmp_path):
    db = str(tmp_path / "casket.kch")
    srv = ServerProcess([db], tmp_path)
    try:
        keys = _write_keys(srv, 300)
    finally:
        rc = srv.terminate()
    assert rc == 0
    srv = ServerProcess([db], tmp_path, log_name="second.log")
    try:
        with srv.connect() as sock:
            found = _get_many(sock, keys)
    finally:
        srv.terminate()
    assert found == {k: b"v" + k for k in keys}


def test_file_db_keeps_writes_across_sigkill_after_synchronize(tmp_path):
    db = str(tmp_path / "casket.kct")
    srv = ServerProcess([db], tmp_path)
    try:
        keys = _write_keys(srv, 300)
        with srv.connect() as sock:
            status, _ = _rpc(sock, "synchronize", {b"hard": b""})
        assert status == 200
    finally:
        srv.kill()
    srv = ServerProcess([db], tmp_path, log_name="second.log")
    try:
        with srv.connect() as sock:
            found = _get_many(sock, keys)
    finally:
        srv.terminate()
    assert found == {k: b"v" + k for k in keys}


HOSTILE_INPUTS = [
    b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /" + b"b" * 9000 + b" HTTP/1.1\r\n\r\n",
    b"POST /rpc/set HTTP/1.1\r\nContent-Length: 268435457\r\n\r\n",
    b"POST /rpc/set HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc",
    b"POST /rpc/set HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort",
    b"\x00\x01\x02\x03",
    b"\xb8\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xba\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff",
    b"\xb4\x00\x00\x00\x00\x7f\xff\xff\xff\x00\x00\x00\x01",
    b"\xb1\x00",
    b"\r\n\r\n\r\n",
    b"GET\0 /x HTTP/1.1\r\n\r\n",
    b"FOO /rpc/echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
]


def test_hostile_input_never_disturbs_other_clients(server):
    rng = random.Random(1234)
    inputs = list(HOSTILE_INPUTS) + [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
                                      for _ in range(40)]
    with server.connect() as good:
        assert _set_one(good, b"good", b"1") == 1
        for n, data in enumerate(inputs):
            with server.connect(timeout=5) as bad:
                bad.sendall(data)
                if n % 2:
                    bad.shutdown(socket.SHUT_WR)
                recv_idle(bad, 0.05)
            # the well-behaved client keeps being served, even while hostile peers linger
            assert _get_many(good, [b"good"]) == {b"good": b"1"}
        status, out = _rpc(good, "echo", {b"still": b"here"})
        assert status == 200 and out == {b"still": b"here"}
        # no handler is left hanging on a hostile peer: only this connection remains
        assert wait_until(lambda: _rpc(good, "report", {})[1][b"serv_conn_count"] == b"1", 10)
    assert server.proc.poll() is None


def test_body_over_limit_answers_413_and_closes(server):
    with server.connect() as sock:
        sock.sendall(b"PUT /k HTTP/1.1\r\nContent-Length: 268435457\r\n\r\n")
        raw = recv_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
        assert b"Connection: close\r\n" in raw
        assert raw.endswith(b"413 Request Entity Too Large (request entity too large)\n")
        assert server_closed(sock)


def test_truncated_body_at_eof_answers_400(server):
    with server.connect() as sock:
        sock.sendall(b"POST /rpc/void HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        raw = recv_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert raw.endswith(b"400 Bad Request (receiving data failed)\n")


def test_chunked_request_body(server):
    body = b"key\tck\nvalue\tchunky\n"
    with server.connect() as sock:
        sock.sendall(b"POST /rpc/set HTTP/1.1\r\nContent-Type: text/tab-separated-values\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (7, body[:7]) + b"%x\r\n%s\r\n" % (len(body) - 7, body[7:])
                     + b"0\r\n\r\n")
        raw = recv_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
        status, out = _rpc(sock, "get", {b"key": b"ck"})
        assert status == 200 and out[b"value"] == b"chunky"


def test_get_with_body_is_not_read_as_body(server):
    """GET bodies are not consumed by ktserver: the bytes are parsed as the next request."""
    with server.connect() as sock:
        follow = b"GET /rpc/void HTTP/1.1\r\n\r\n"
        sock.sendall(b"GET /rpc/void HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(follow) + follow)
        reader = ResponseReader(sock)
        first = reader.http_response()
        second = reader.http_response()
        assert first.startswith(b"HTTP/1.1 200 OK") and second.startswith(b"HTTP/1.1 200 OK")


def test_head_rpc_has_no_content_length_or_body(server):
    with server.connect() as sock:
        sock.sendall(b"HEAD /rpc/echo?a=1 HTTP/1.1\r\n\r\n")
        raw = recv_http_response(sock, head=True)
        assert b"Content-Length" not in raw and raw.endswith(b"\r\n\r\n")
        assert b"Content-Type: text/tab-separated-values\r\n" in raw
        sock.sendall(b"GET /rpc/void HTTP/1.1\r\n\r\n")
        assert recv_http_response(sock).startswith(b"HTTP/1.1 200 OK")


def test_wait_blocks_only_its_own_client(server):
    started = time.monotonic()
    result = {}

    def waiter():
        with server.connect(timeout=15) as sock:
            result["reply"] = _rpc(sock, "void", {b"WAIT": b"never", b"WAITTIME": b"1.5"})
            result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    with server.connect() as sock:
        for i in range(20):
            assert _set_one(sock, b"w%d" % i, b"x") == 1
    served_at = time.monotonic() - started
    thread.join(15)
    assert served_at < 1.5
    status, out = result["reply"]
    assert status == 503 and out[b"ERROR"] == b"the condition timed out"
    assert result["elapsed"] >= 1.4


def test_idle_timeout_closes_quiet_connections(tmp_path):
    srv = ServerProcess(["-tout", "0.5", "*"], tmp_path)
    try:
        with srv.connect() as sock:
            data, eof = recv_idle(sock, 3.0)
            assert eof and data == b""
    finally:
        srv.terminate()


def test_pid_file_every_ktserver_option_and_clean_exit(tmp_path):
    pid_file = tmp_path / "kt.pid"
    args = ["-tout", "5", "-th", "2", "-li", "-ulim", "1m", "-uasi", "1", "-sid", "3", "-oat",
            "-asi", "10", "-ash", "-bgs", str(tmp_path), "-bgsi", "60", "-bgsc", "zlib", "-pid",
            str(pid_file), "-cmd", str(tmp_path), "-riv", "0.1", "-plex", "x", "*"]
    srv = ServerProcess(args, tmp_path)
    try:
        assert int(pid_file.read_text()) == srv.proc.pid
        with srv.connect() as sock:
            assert _rpc(sock, "void", {})[0] == 200
        log = srv.log_text()
        assert "-uasi" in log and "no effect" in log
    finally:
        rc = srv.terminate()
    assert rc == 0
    assert not pid_file.exists()


def test_first_positional_argument_ends_options(tmp_path):
    """ktserver's argbrk: "-port" after a database name is itself a database name."""
    srv = ServerProcess(["*", "%"], tmp_path)
    try:
        with srv.connect() as sock:
            status, out = _rpc(sock, "status", {b"DB": b"%"})
            assert status == 200
    finally:
        srv.terminate()
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "kt.server", "kt", "-port", "0", "-log",
                           str(tmp_path / "x.log"), "*", "-tout", "3"], env=env, timeout=30,
                          capture_output=True)
    assert proc.returncode != 0


def test_sigint_stops_the_server_cleanly(tmp_path):
    srv = ServerProcess([str(tmp_path / "a.kch")], tmp_path)
    with srv.connect() as sock:
        assert _set_one(sock, b"k", b"v") == 1
        srv.proc.send_signal(signal.SIGINT)
        srv.proc.wait(15)
    assert srv.proc.returncode == 0
    assert "finished" in srv.log_text()


def test_big_set_bulk_arriving_in_small_segments(server):
    """A 100k-record set_bulk trickling in 4 KiB segments is answered once, with every record."""
    records = [(0, b"bulk%06d" % i, b"v%d" % i, NO_XT) for i in range(100000)]
    request = kb.encode_set_bulk(records)
    with server.connect(timeout=60) as sock:
        for start in range(0, len(request), 4096):
            sock.sendall(request[start:start + 4096])
        hits, _ = kb.parse_set_bulk_reply(recv_exact(sock, 5, timeout=60))
        assert hits == len(records)
        found = _get_many(sock, [b"bulk000000", b"bulk099999"])
        assert found == {b"bulk000000": b"v0", b"bulk099999": b"v99999"}


@pytest.mark.parametrize("request_bytes", [
    kb.encode_set_bulk([(0, b"k%d" % i, b"v" * i, 5) for i in range(30)]),
    kb.encode_get_bulk([(1, b"abc"), (0, b"")]),
    kb.encode_remove_bulk([(0, b"x" * 300)]),
    kb.encode_play_script(b"echo", [(b"a", b"1"), (b"bb", b"")]),
    kb.encode_replication(5, 3),
    b"\xb8\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x10\x00\x00\x01",
])
def test_scan_request_agrees_with_parse_request_on_every_prefix(request_bytes):
    state = None
    for n in range(len(request_bytes) + 1):
        decidable, state = kb.scan_request(request_bytes[:n], 0, state)
        assert decidable == (kb.parse_request(request_bytes[:n], 0, False) is not None)
        if decidable:
            state = None


class _Frames:
    """Reads replication frames from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.started = False

    def next(self, timeout: float = 5.0):
        self.sock.settimeout(timeout)
        while True:
            parsed = kb.parse_replication_frame(self.buf, 0, self.started)
            if parsed is not None:
                frame, end = parsed
                del self.buf[:end]
                self.started = True
                return frame
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the replication stream"
            self.buf += chunk


def test_replication_stream_with_ulog(tmp_path):
    srv = ServerProcess(["-ulog", str(tmp_path / "ulog"), "-sid", "1", "*"], tmp_path)
    try:
        with srv.connect() as writer, srv.connect() as slave:
            assert _rpc(writer, "set", {b"key": b"r1", b"value": b"v1"})[0] == 200
            slave.sendall(kb.encode_replication(0, 7))
            frames = _Frames(slave)
            assert frames.next().kind == "ack"
            record = frames.next()
            assert record.kind == "record" and record.ts > 0
            message = bytes(record.message)
            assert message[:5] == b"\x00\x01\x00\x00\xa1"  # origin sid 1, DB 0, USET
            assert message[-9:] == b"r1" + b"\xff" * 5 + b"v1"  # key, XTMAX header, value
            nop = frames.next()
            assert nop.kind == "nop" and nop.ts >= record.ts
            slave.sendall(kb.REPLICATION_ACK)
            assert _rpc(writer, "remove", {b"key": b"r1"})[0] == 200
            frame = frames.next()
            while frame.kind == "nop":
                slave.sendall(kb.REPLICATION_ACK)
                frame = frames.next()
            assert frame.kind == "record" and bytes(frame.message) == b"\x00\x01\x00\x00\xa2\x02r1"
            # a slave asking with WHITESID for another origin gets no records, only "caught up"
            with srv.connect() as white:
                white.sendall(kb.encode_replication(0, 7, white_sid=True))
                white_frames = _Frames(white)
                assert white_frames.next().kind == "ack"
                assert white_frames.next().kind == "nop"
        assert _rpc_once(srv, "ulog_list")[0] == 200
    finally:
        rc = srv.terminate()
    assert rc == 0


def test_replication_slave_that_does_not_answer_nop_is_dropped(tmp_path):
    srv = ServerProcess(["-ulog", str(tmp_path / "ulog"), "-sid", "1", "*"], tmp_path)
    try:
        with srv.connect() as slave:
            slave.sendall(kb.encode_replication(0, 7))
            frames = _Frames(slave)
            assert frames.next().kind == "ack"
            assert frames.next().kind == "nop"
            slave.sendall(b"\x00")  # anything but 0xB1
            assert server_closed(slave, wait=3)
        assert _rpc_once(srv, "void")[0] == 200
    finally:
        srv.terminate()


def _rpc_once(srv: ServerProcess, procedure: str, params: Optional[dict] = None) -> tuple:
    with srv.connect() as sock:
        return _rpc(sock, procedure, params or {})


def test_sigusr1_and_sighup_do_not_kill_the_server(server):
    for signum in (signal.SIGUSR1, signal.SIGHUP):
        server.proc.send_signal(signum)
    assert wait_until(lambda: "restarting is not supported" in server.log_text())
    assert server.proc.poll() is None
    assert _rpc_once(server, "void")[0] == 200


def test_daemon_mode_detaches_and_stops_on_sigterm(tmp_path):
    log, pid_file = tmp_path / "d.log", tmp_path / "d.pid"
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "kt.server", "kt", "-dmn", "-port", "0", "-log", str(log),
                           "-pid", str(pid_file), str(tmp_path / "d.kch")], env=env, timeout=30)
    assert proc.returncode == 0  # the parent returns at once
    assert wait_until(lambda: pid_file.exists() and log.exists() and "listening on" in log.read_text(), 20)
    port = int(re.search(r"listening on \S+:(\d+)", log.read_text()).group(1))
    pid = int(pid_file.read_text())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert _set_one(sock, b"dk", b"dv") == 1
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not pid_file.exists(), 20)
    assert "finished" in log.read_text()


def test_daemon_mode_wants_absolute_paths(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kt.server", "kt", "-dmn", "-port", "0", "-log",
                           "rel.log", "*"], cwd=str(tmp_path), timeout=30, capture_output=True)
    assert proc.returncode == 1 and b"only absolute path" in proc.stderr


def test_big_chunked_rest_put_in_small_chunks(server):
    """16 MiB in 4 KiB chunks (4096 chunks): stored whole, answered once."""
    value = bytes(range(256)) * (16 * 4096)
    chunks = b"".join(b"1000\r\n" + value[i:i + 4096] + b"\r\n" for i in range(0, len(value), 4096))
    with server.connect(timeout=60) as sock:
        sock.sendall(b"PUT /bigkey HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        reader = ResponseReader(sock, timeout=60)
        assert reader.http_response().startswith(b"HTTP/1.1 201 Created\r\n")
        sock.sendall(b"GET /bigkey HTTP/1.1\r\n\r\n")
        raw = reader.http_response()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(value)


def test_pipelined_mixed_requests_are_answered_in_order(server):
    """Binary and HTTP requests pipelined in one write come back complete and in order."""
    get = kb.encode_get_bulk([(0, b"pipe")])
    http_void = b"GET /rpc/void HTTP/1.1\r\n\r\n"
    with server.connect() as sock:
        assert _set_one(sock, b"pipe", b"line") == 1
        sock.sendall((get + http_void) * 50 + kb.encode_set_bulk([(0, b"p2", b"x" * 70000, NO_XT)] * 100)
                     + get)
        one_get = kb.encode_get_bulk_reply([(0, b"pipe", b"line", (1 << 40) - 1)])
        reader = ResponseReader(sock, timeout=20)
        for _ in range(50):
            while len(reader.buf) < len(one_get):
                assert reader._more()
            assert bytes(reader.buf[:len(one_get)]) == one_get
            del reader.buf[:len(one_get)]
            assert reader.http_response().startswith(b"HTTP/1.1 200 OK\r\n")
        while len(reader.buf) < 5 + len(one_get):
            assert reader._more()
        assert bytes(reader.buf) == kb.encode_set_bulk_reply(100) + one_get
