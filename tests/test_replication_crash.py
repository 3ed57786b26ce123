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


def _start_slave(cls, binary, master, database: str, rts_path) -> object:
    slave = cls(server=binary, database=database,
                server_args=["-sid", "2", "-mhost", master.host, "-mport", str(master.port),
                             "-rts", str(rts_path)])
    slave.run()
    return slave


def _kill_repeatedly_then_converge(cls, binary, master, tmp_path, database: str, keys: list) -> None:
    """Start the slave, kill -9 it at a random moment once it has begun replaying, KILLS times
    (at least one kill before it caught up); then the last one must reach the master's values."""
    rng = random.Random(9)
    want = _raw_values(master, keys)
    slaves = []

    def state(slave) -> str:
        got = _raw_values(slave, keys)
        return "done" if got == want else ("empty" if not got else "partial")

    try:
        kills_during_catch_up = 0
        for _ in range(KILLS + 1):
            slave = _start_slave(cls, binary, master, database, tmp_path / "slave.rts")
            slaves.append(slave)
            if len(slaves) > KILLS:
                break
            deadline = time.monotonic() + 20
            while state(slave) == "empty" and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.1))
            kills_during_catch_up += state(slave) != "done"
            _kill(slave)
        assert kills_during_catch_up > 0, "the slave caught up before any kill: nothing was tested"
        deadline = time.monotonic() + 60
        while state(slave) != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _raw_values(slave, keys) == want
    finally:
        for server in slaves:
            server.stop()


def _raw_values(server, keys: list) -> dict:
    client = server.make_client(timeout=10)
    try:
        return client.get_bulk_raw(keys)
    finally:
        client.close()


_TTSERVER_WINDOW = pytest.mark.xfail(
    reason="ttserver rewrites its RTS file right after applying each update; a kill between the "
           "two replays that update (seen: one increment doubled in 6 kills)", strict=False)


@pytest.mark.parametrize("flavour", ["bundled", pytest.param("real", marks=_TTSERVER_WINDOW)])
def test_tt_slave_killed_while_catching_up_converges(tmp_path, flavour):
    binary = _binary(flavour, "TTSERVER")
    ulog = tmp_path / "ulog"
    ulog.mkdir()
    master = EmbeddedTokyoTyrantServer(server=binary, database="*",
                                       server_args=["-ulog", str(ulog), "-sid", "1"])
    master.run()
    try:
        requests = []
        for i in range(6000):
            requests.append((tt.encode_putcat(f"app-{i % 7}".encode(), f"<{i}>".encode()), 1))
            requests.append((tt.encode_addint(f"cnt-{i % 5}".encode(), 1 + i % 3), 5))
        _tt_pipeline(master.host, master.port, requests)
        keys = [f"app-{i}".encode() for i in range(7)] + [f"cnt-{i}".encode() for i in range(5)]
        _kill_repeatedly_then_converge(EmbeddedTokyoTyrantServer, binary, master, tmp_path,
                                       str(tmp_path / "slave.tch"), keys)
    finally:
        master.stop()


@pytest.mark.parametrize("flavour", ["bundled", "real"])
def test_kt_slave_killed_while_catching_up_converges(tmp_path, flavour):
    binary = _binary(flavour, "KTSERVER")
    master = EmbeddedServer(server=binary, database="*",
                            server_args=["-ulog", str(tmp_path / "ulog"), "-sid", "1"])
    master.run()
    try:
        kt = master.make_client(timeout=10)
        for i in range(1500):
            kt.append(f"app-{i % 7}", f"<{i}>")
            kt.incr(f"cnt-{i % 5}", 1 + i % 3)
        keys = [f"app-{i}" for i in range(7)] + [f"cnt-{i}" for i in range(5)]
        _kill_repeatedly_then_converge(EmbeddedServer, binary, master, tmp_path,
                                       str(tmp_path / "slave.kch"), keys)
    finally:
        master.stop()


def _logged_timestamps(host: str, port: int, count: int) -> list:
    """Timestamps of the first ``count`` updates in a TT master's log (read as a slave would)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        stream = tt_replication.read_stream(sock, 1, 99)
        next(stream)  # the master's server ID
        return [item.ts for _, item in zip(range(count), stream)]


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
        slave = _start_slave(EmbeddedTokyoTyrantServer, None, master, db, rts_path)
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
        slave = _start_slave(EmbeddedServer, None, master, str(tmp_path / "slave.kch"), rts_path)
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
