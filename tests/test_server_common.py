"""kt.server.common: option parsing, logging levels and the threaded listener (real sockets)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from kt.server.common import (
    LOG_ERROR,
    LOG_SYSTEM,
    EventLoopServer,
    Logger,
    Offload,
    OptionSpec,
    ThreadedServer,
    UsageError,
    ineffective_options,
    kinds_from_options,
    parse_options,
)
from kt_server_harness import recv_idle, wait_until

SPECS = {"-port": OptionSpec(True), "-le": OptionSpec(False), "-bgs": OptionSpec(True, effective=False)}


def test_first_positional_ends_options_like_ktserver():
    opts, rest = parse_options(["-port", "1", "-le", "a.kch", "-port", "2"], SPECS)
    assert opts == {"-port": "1", "-le": True} and rest == ["a.kch", "-port", "2"]
    opts, rest = parse_options(["-le", "--", "-port"], SPECS)
    assert opts == {"-le": True} and rest == ["-port"]
    opts, rest = parse_options(["a", "-le"], SPECS, stop_at_positional=False)
    assert opts == {"-le": True} and rest == ["a"]


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="unknown option: -nope"):
        parse_options(["-nope"], SPECS)
    with pytest.raises(UsageError, match="needs a value"):
        parse_options(["-port"], SPECS)
    assert ineffective_options({"-bgs": "x", "-le": True}, SPECS) == ["-bgs"]


def test_log_levels(tmp_path):
    assert kinds_from_options({"-le": True}) == LOG_ERROR
    assert kinds_from_options({"-lz": True}) == 0
    path = tmp_path / "x.log"
    logger = Logger(str(path), kinds_from_options({"-ls": True}))
    logger.info("hidden")
    logger.system("shown")
    logger.log(LOG_SYSTEM, "forced", force=True)
    logger.close()
    text = path.read_text()
    assert "hidden" not in text and ": [SYSTEM]: shown\n" in text and "forced" in text


def _echo(conn):
    while conn.fill():
        conn.send(bytes(conn.buf))
        conn.buf.clear()


def _echo_once(sock, data=b"ping"):
    sock.sendall(data)
    return sock.recv(100)


def test_sigterm_during_the_main_threads_wait_stops_the_server():
    """The SIGTERM handler runs in the main thread, which may be inside ``_stopping.wait``
    holding the event's lock: a handler that set the event there deadlocked the server
    (about 1 in 30 stops).  Here the handler is called while that lock is held."""
    import signal

    server = ThreadedServer(_echo, port=0, logger=Logger(kinds=0))
    server.bind()
    handler_returned = []

    def call_handler_under_the_lock() -> None:
        deadline = time.monotonic() + 10
        while signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler, None):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        handler = signal.getsignal(signal.SIGTERM)
        with server._stopping._cond:
            call = threading.Thread(target=handler, args=(signal.SIGTERM, None), daemon=True)
            call.start()
            call.join(2.0)
            handler_returned.append(not call.is_alive())

    helper = threading.Thread(target=call_handler_under_the_lock)
    helper.start()
    started = time.monotonic()
    status = server.run()  # in the main thread, so it installs its signal handlers
    helper.join(10)
    assert handler_returned == [True]
    assert status == 0 and time.monotonic() - started < 5


def test_connection_bound_and_clean_stop():
    server = ThreadedServer(_echo, port=0, max_connections=2, logger=Logger(kinds=0))
    host, port = server.bind()
    closed = []
    thread = threading.Thread(target=lambda: closed.append(server.run(on_close=lambda: closed.append("db"))))
    thread.start()
    try:
        first = socket.create_connection((host, port), timeout=5)
        second = socket.create_connection((host, port), timeout=5)
        assert _echo_once(first) == b"ping" and _echo_once(second) == b"ping"
        third = socket.create_connection((host, port), timeout=5)
        data, eof = recv_idle(third, 2.0)
        assert eof and data == b""  # over the bound: closed at once
        assert _echo_once(first, b"still") == b"still"
        first.close()
        assert wait_until(lambda: server.connection_count == 1)
        fourth = socket.create_connection((host, port), timeout=5)
        assert _echo_once(fourth) == b"ping"
    finally:
        server.stop()
        thread.join(15)
    assert closed == ["db", 0]
    data, eof = recv_idle(second, 2.0)
    assert eof  # idle clients were shut down on stop


class _LineHandler:
    """A tiny line protocol for EventLoopServer: "ping" inline, "slow N" offloaded, "quit"."""

    def open(self, conn):
        conn.session = "open"

    def close(self, conn):
        conn.session = None

    def step(self, conn, eof):
        end = conn.buf.find(b"\n")
        if end < 0:
            return (b"partial\n", False) if eof else None
        line = bytes(conn.buf[:end])
        conn.consume(end + 1)
        if line.startswith(b"slow "):
            delay = float(line[5:])
            return Offload(lambda: (time.sleep(delay) or b"slow done\n", True))
        if line == b"quit":
            return b"bye\n", False
        return line + b"\n", True


def test_event_loop_server_orders_replies_and_offloads_blocking_work():
    server = EventLoopServer(_LineHandler(), port=0, timeout=1.0, logger=Logger(kinds=0), workers=2)
    host, port = server.bind()
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        slow = socket.create_connection((host, port), timeout=5)
        fast = socket.create_connection((host, port), timeout=5)
        slow.sendall(b"slow 0.8\nafter\n")  # pipelined: "after" must wait for the slow reply
        time.sleep(0.1)
        started = time.monotonic()
        fast.sendall(b"ping\n")
        assert fast.recv(100) == b"ping\n"
        assert time.monotonic() - started < 0.5  # not stalled by the offloaded request
        reader = b""
        while reader.count(b"\n") < 2:
            reader += slow.recv(100)
        assert reader == b"slow done\nafter\n"
        fast.sendall(b"quit\n")
        assert fast.recv(100) == b"bye\n" and fast.recv(100) == b""
        idle = socket.create_connection((host, port), timeout=5)
        idle.sendall(b"half a line")
        data, eof = recv_idle(idle, 3.0)  # idle timeout: answered as at EOF, then closed
        assert data == b"partial\n" and eof
    finally:
        server.stop()
        thread.join(15)
