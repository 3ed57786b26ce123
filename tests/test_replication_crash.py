"""Replication slaves killed with SIGKILL while catching up must converge to the master (issue 9.5).

The master holds updates that are *not* idempotent (appends, increments); the slave starts
from nothing, is killed -9 several times while it replays them and restarted on the same RTS
file and database file.  An update applied twice (the slave's position lost or written late)
shows as a longer value or a larger counter.  Bundled servers always; the real ones with
``TTSERVER`` / ``KTSERVER`` (the real slave against the real master).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time

import pytest

from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer
from kt.protocol import tt_binary as tt
from kt.server import tt_replication

KILLS = 6


def _binary(flavour: str, variable: str):
    if flavour == "bundled":
        return None
    binary = os.environ.get(variable)
    if not binary:
        pytest.skip(f"{variable} is not set (the path of a real server binary)")
    return binary


def _kill(server) -> None:
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop()


def _tt_pipeline(host: str, port: int, requests: list) -> None:
    """Send TT requests pipelined and wait for all their replies (putcat: 1 byte, addint: 5)."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"".join(req for req, _size in requests))
        want = sum(size for _req, size in requests)
        got = 0
        while got < want:
            chunk = sock.recv(1 << 16)
            assert chunk, "the master closed the connection"
            got += len(chunk)


def _kill_while_catching_up(start_slave, state, rng: random.Random):
    """Start the slave, kill -9 it at a random moment once it has begun replaying, KILLS times;
    returns the slave started last and how many kills hit it before it had caught up."""
    kills_during_catch_up = 0
    for _ in range(KILLS):
        slave = start_slave()
        deadline = time.monotonic() + 20
        while state(slave) == "empty" and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))
        caught_up = state(slave) == "done"
        _kill(slave)
        kills_during_catch_up += not caught_up
    return start_slave(), kills_during_catch_up


def _state(got: dict, want: dict) -> str:
    return "done" if got == want else ("empty" if not got else "partial")


_TTSERVER_WINDOW = pytest.mark.xfail(
    reason="ttserver rewrites its RTS file right after applying each update; a kill between the "
           "two replays that update (seen: one increment doubled in 6 kills)", strict=False)


@pytest.mark.parametrize("flavour", ["bundled", pytest.param("real", marks=_TTSERVER_WINDOW)])
def test_tt_slave_killed_while_catching_up_converges(tmp_path, flavour):
    binary = _binary(flavour, "TTSERVER")
    rng = random.Random(9)
    ulog = tmp_path / "ulog"
    ulog.mkdir()
    master = EmbeddedTokyoTyrantServer(server=binary, database="*",
                                       server_args=["-ulog", str(ulog), "-sid", "1"])
    master.run()
    slaves = []
    try:
        requests = []
        for i in range(6000):
            requests.append((tt.encode_putcat(f"app-{i % 7}".encode(), f"<{i}>".encode()), 1))
            requests.append((tt.encode_addint(f"cnt-{i % 5}".encode(), 1 + i % 3), 5))
        _tt_pipeline(master.host, master.port, requests)
        want = master.make_client(timeout=10).get_bulk_raw(
            [f"app-{i}".encode() for i in range(7)] + [f"cnt-{i}".encode() for i in range(5)])

        def start_slave():
            slave = EmbeddedTokyoTyrantServer(
                server=binary, database=str(tmp_path / "slave.tch"),
                server_args=["-sid", "2", "-mhost", master.host, "-mport", str(master.port),
                             "-rts", str(tmp_path / "slave.rts")])
            slave.run()
            slaves.append(slave)
            return slave

        def state(slave) -> str:
            client = slave.make_client(timeout=10)
            try:
                return _state(client.get_bulk_raw(list(want)), want)
            finally:
                client.close()

        slave, kills = _kill_while_catching_up(start_slave, state, rng)
        assert kills > 0, "the slave caught up before any kill: nothing was tested"
        deadline = time.monotonic() + 60
        while state(slave) != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        client = slave.make_client(timeout=10)
        got = client.get_bulk_raw(list(want))
        client.close()
        assert got == want
    finally:
        for server in slaves + [master]:
            server.stop()


@pytest.mark.parametrize("flavour", ["bundled", "real"])
def test_kt_slave_killed_while_catching_up_converges(tmp_path, flavour):
    binary = _binary(flavour, "KTSERVER")
    rng = random.Random(9)
    master = EmbeddedServer(server=binary, database="*",
                            server_args=["-ulog", str(tmp_path / "ulog"), "-sid", "1"])
    master.run()
    slaves = []
    try:
        kt = master.make_client(timeout=10)
        for i in range(1500):
            kt.append(f"app-{i % 7}", f"<{i}>")
            kt.incr(f"cnt-{i % 5}", 1 + i % 3)
        keys = [f"app-{i}" for i in range(7)] + [f"cnt-{i}" for i in range(5)]
        want = kt.get_bulk_raw(keys)

        def start_slave():
            slave = EmbeddedServer(
                server=binary, database=str(tmp_path / "slave.kch"),
                server_args=["-sid", "2", "-mhost", master.host, "-mport", str(master.port),
                             "-rts", str(tmp_path / "slave.rts")])
            slave.run()
            slaves.append(slave)
            return slave

        def state(slave) -> str:
            client = slave.make_client(timeout=10)
            try:
                return _state(client.get_bulk_raw(keys), want)
            finally:
                client.close()

        slave, kills = _kill_while_catching_up(start_slave, state, rng)
        assert kills > 0, "the slave caught up before any kill: nothing was tested"
        deadline = time.monotonic() + 60
        while state(slave) != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        client = slave.make_client(timeout=10)
        got = client.get_bulk_raw(keys)
        client.close()
        assert got == want
    finally:
        for server in slaves + [master]:
            server.stop()


def _logged_timestamps(host: str, port: int, count: int) -> list:
    """Timestamps of the first ``count`` updates in a TT master's log (read as a slave would)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(tt.encode_repl(1, 99))
        buf = bytearray()
        found: list = []
        master_sid = None
        while len(found) < count:
            parsed = tt.parse_repl_sid(buf, 0) if master_sid is None else tt.parse_repl_item(buf, 0)
            if parsed is None:
                chunk = sock.recv(1 << 16)
                assert chunk
                buf += chunk
                continue
            item, end = parsed
            del buf[:end]
            if master_sid is None:
                master_sid = item
            elif item is not None:
                found.append(item.ts)
        return found


@pytest.mark.parametrize("applied", [True, False])
def test_tt_slave_resumes_an_update_cut_by_a_crash_exactly_once(tmp_path, applied):
    """The state a kill -9 leaves between applying an update and recording it: the RTS file says
    update 2 was pending.  Whether the database has it (``applied``) or not, the restarted slave
    ends with it applied once."""
    ulog = tmp_path / "ulog"
    ulog.mkdir()
    master = EmbeddedTokyoTyrantServer(server=None, database="*",
                                       server_args=["-ulog", str(ulog), "-sid", "1"])
    master.run()
    servers = [master]
    try:
        m = master.make_client(timeout=10)
        m.append("w", "a")
        m.append("w", "b")
        m.append("w", "c")
        ts1, ts2, _ts3 = _logged_timestamps(master.host, master.port, 3)
        db = str(tmp_path / "slave.tch")
        offline = EmbeddedTokyoTyrantServer(server=None, database=db)
        offline.run()
        offline.make_client(timeout=10).set("w", "ab" if applied else "a")
        offline.stop()
        rts_path = tmp_path / "slave.rts"
        rts_path.write_text(f"{ts1}\npending {ts2} {tt_replication.digest(b'a')}\n")
        slave = EmbeddedTokyoTyrantServer(
            server=None, database=db,
            server_args=["-sid", "2", "-mhost", master.host, "-mport", str(master.port),
                         "-rts", str(rts_path)])
        slave.run()
        servers.append(slave)
        s = slave.make_client(timeout=10)
        deadline = time.monotonic() + 10
        while s.get("w") in ("a", "ab") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert s.get("w") == "abc"
    finally:
        for server in servers:
            server.stop()


def test_kt_slave_records_its_position_with_each_record(tmp_path):
    """Killed -9 right after catching up, the bundled KT slave's RTS file already holds the last
    update's timestamp (ktserver writes it only when a session ends, so it replays everything,
    which converges because KT log records are idempotent)."""
    master = EmbeddedServer(server=None, database="*",
                            server_args=["-ulog", str(tmp_path / "ulog"), "-sid", "1"])
    master.run()
    servers = [master]
    try:
        kt = master.make_client(timeout=10)
        started = time.time()
        for i in range(50):
            kt.set(f"pos-{i}", "v")
        rts_path = tmp_path / "slave.rts"
        slave = EmbeddedServer(
            server=None, database=str(tmp_path / "slave.kch"),
            server_args=["-sid", "2", "-mhost", master.host, "-mport", str(master.port),
                         "-rts", str(rts_path)])
        slave.run()
        servers.append(slave)
        s = slave.make_client(timeout=10)
        deadline = time.monotonic() + 20
        while s.get("pos-49") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.get("pos-49") == "v"
        _kill(slave)
        stored = int(rts_path.read_bytes()[:20])
        assert stored / 1e9 >= started - 1, stored  # a timestamp from the writes above, not 0
    finally:
        for server in servers:
            server.stop()
