"""kt.embedded and the conftest fixtures, against real server processes.

The bundled servers are started for real; while a bundled server's own modules are still
missing its tests skip with that reason (see conftest.py), and run once it exists.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time

import pytest

import kt
from conftest import _INCOMPLETE_MARK
from kt.embedded import PORT_RANGE, EmbeddedServer, EmbeddedServerError, EmbeddedTokyoTyrantServer
from kt.errors import ServerConnectionError
from kt.transport import Connection


def run_or_skip(server) -> None:
    """Start a bundled server; skip only while its modules are not written yet."""
    try:
        assert server.run() is True
    except EmbeddedServerError as exc:
        if _INCOMPLETE_MARK in str(exc):
            pytest.skip(f"bundled {server.product} server not complete yet")
        raise


def answers(server) -> bool:
    """One real request through the transport, using the server's own probe."""
    conn = Connection(server.host, server.port, timeout=5)
    try:
        return bool(conn.request(server.probe_request, server.parse_probe_reply))
    finally:
        conn.close()


def listen_addresses(port: int):
    """Local addresses listening on ``port`` (Linux /proc), e.g. {'127.0.0.1'}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("cls", [EmbeddedServer, EmbeddedTokyoTyrantServer])
def test_run_stop_lifecycle(cls):
    server = cls(server=None)
    assert server.bundled
    run_or_skip(server)
    try:
        assert server.running
        assert PORT_RANGE[0] <= server.port <= PORT_RANGE[1]
        assert server.host == "127.0.0.1"
        assert answers(server)
        assert server.run() is True  # already running: no second process
        pid = server.pid
        if sys.platform.startswith("linux"):
            assert listen_addresses(server.port) == {"127.0.0.1"}
    finally:
        assert server.stop() is True
    assert not server.running
    assert refused(server.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    assert server.stop() is False


@pytest.mark.parametrize("cls", [EmbeddedServer, EmbeddedTokyoTyrantServer])
def test_context_manager_and_fixed_port(cls):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with cls(server=None, port=port) as server:
        if not server.running:
            pytest.skip("bundled server not complete yet")
        assert server.port == port
        assert answers(server)
    assert refused(port)


def test_two_servers_get_different_ports():
    a = EmbeddedTokyoTyrantServer(server=None)
    b = EmbeddedTokyoTyrantServer(server=None)
    run_or_skip(a)
    try:
        run_or_skip(b)
        try:
            assert a.port != b.port
            assert answers(a) and answers(b)
        finally:
            b.stop()
    finally:
        a.stop()


def test_port_taken_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = EmbeddedTokyoTyrantServer(server=None, port=port)
        with pytest.raises(EmbeddedServerError) as info:
            server.run()
        if _INCOMPLETE_MARK in str(info.value):
            pytest.skip("bundled tt server not complete yet")
    assert "exited with status" in str(info.value)
    assert not server.running


def test_missing_executable_path_is_rejected(tmp_path):
    with pytest.raises(EmbeddedServerError, match="not an executable"):
        EmbeddedServer(server=str(tmp_path / "no-such-ktserver"))


def test_unknown_name_falls_back_to_bundled():
    server = EmbeddedServer(server="no-such-ktserver-on-path-xyz")
    assert server.bundled
    assert server.command(12345)[:4] == [sys.executable, "-m", "kt.server", "kt"]
    tt = EmbeddedTokyoTyrantServer(server="no-such-ttserver-on-path-xyz")
    assert tt.command(12345)[3] == "tt"


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "fake-server"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_failing_binary_error_carries_its_output(tmp_path):
    binary = _script(tmp_path, 'echo "fatal: cannot open database $*" >&2\nexit 3\n')
    server = EmbeddedServer(server=binary, port=23456, database="x.kch")
    assert not server.bundled
    assert server.command(23456) == [binary, "-host", "127.0.0.1", "-port", "23456", "-ls", "x.kch"]
    with pytest.raises(EmbeddedServerError) as info:
        server.run()
    message = str(info.value)
    assert "exited with status 3" in message
    assert "fatal: cannot open database -host 127.0.0.1 -port 23456 -ls x.kch" in message


def test_silent_binary_times_out_and_is_killed(tmp_path):
    binary = _script(tmp_path, "echo started; exec sleep 30\n")
    server = EmbeddedTokyoTyrantServer(server=binary)
    server.start_timeout = 0.5
    started = time.monotonic()
    with pytest.raises(EmbeddedServerError) as info:
        server.run()
    assert time.monotonic() - started < 10
    assert "did not answer" in str(info.value) and "started" in str(info.value)
    assert not server.running


def test_bad_arguments():
    with pytest.raises(ValueError, match="port"):
        EmbeddedServer(server=None, port=70000)
    with pytest.raises(ValueError, match="database"):
        EmbeddedServer(server=None, database=[])
    with pytest.raises(ValueError, match="one database"):
        EmbeddedTokyoTyrantServer(server=None, database=["*", "+"])


def test_client_requires_running_server():
    with pytest.raises(EmbeddedServerError, match="not running"):
        EmbeddedServer(server=None).client  # noqa: B018


def test_public_names():
    assert kt.EmbeddedServer is EmbeddedServer
    assert kt.EmbeddedTokyoTyrantServer is EmbeddedTokyoTyrantServer


# -- the client property (needs the client classes) -----------------------------------------


def test_kt_client_property():
    pytest.importorskip("kt.kyototycoon", reason="kt.kyototycoon (KyotoTycoon) not written yet")
    with EmbeddedServer(server=None) as server:
        if not server.running:
            pytest.skip("bundled kt server not complete yet")
        client = server.client
        assert client is server.client
        assert client.set("k1", "v1") == 1
        assert client.get("k1") == "v1"
    with pytest.raises(ServerConnectionError):
        client.get("k1")


def test_tt_client_property():
    pytest.importorskip("kt.tokyotyrant", reason="kt.tokyotyrant (TokyoTyrant) not written yet")
    with EmbeddedTokyoTyrantServer(server=None) as server:
        client = server.client
        assert client.set("k1", "v1") is True
        assert client.get("k1") == "v1"


# -- the conftest fixtures -------------------------------------------------------------------


def test_fixture_kt_server(kt_server):
    assert kt_server.databases == ["*", "%"]
    assert kt_server.flavour == "bundled"
    assert answers(kt_server.embedded)


def test_fixture_kt_server_file(kt_server_file):
    assert kt_server_file.databases[0].endswith(".kch")
    assert answers(kt_server_file.embedded)
    assert os.path.exists(kt_server_file.databases[0])


@pytest.mark.parametrize("name", ["tt_server_hash", "tt_server_btree", "tt_server_table"])
def test_fixture_tt_servers(request, name):
    running = request.getfixturevalue(name)
    assert answers(running.embedded)
    if name != "tt_server_hash":
        assert os.path.exists(running.databases[0])


def test_fixture_kt_servers(kt_servers):
    assert answers(kt_servers.embedded)
    if kt_servers.flavour == "real":
        assert not kt_servers.embedded.bundled


def test_fixture_tt_servers_param(tt_servers):
    assert answers(tt_servers.embedded)


def test_random_port_taken_meanwhile_is_retried():
    """The port chosen can be taken before the server binds it: run() picks another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        server = EmbeddedTokyoTyrantServer(server=None)
        real_free_port = server._free_port
        offered = iter([busy])
        server._free_port = lambda: next(offered, None) or real_free_port()
        run_or_skip(server)
        try:
            assert server.port != busy
            assert answers(server)
        finally:
            server.stop()
