"""kt.ReplicationClient against servers with an update log (bundled; real ones when set).

The client connects like a replication slave and must yield exactly the updates written
after its start timestamp, as typed entries, and resume from the last one it handed out.
"""

from __future__ import annotations

import os

import pytest

from kt import (
    KT_JSON,
    EmbeddedServer,
    EmbeddedTokyoTyrantServer,
    KyotoTycoon,
    ReplicationClient,
    TokyoTyrant,
    UpdateEntry,
)
from kt.errors import ServerConnectionError, ServerError


def _flavours(variable):
    yield pytest.param(None, id="bundled")
    yield pytest.param(
        os.environ.get(variable),
        id="real",
        marks=pytest.mark.skipif(not os.environ.get(variable), reason=f"{variable} is not set"),
    )


@pytest.fixture(scope="module", params=list(_flavours("KTSERVER")))
def kt_master(request, tmp_path_factory):
    ulog = tmp_path_factory.mktemp("kt-ulog")
    server = EmbeddedServer(request.param, database=["*", "%"], server_args=["-ulog", str(ulog), "-sid", "1"])
    server.run()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=list(_flavours("TTSERVER")))
def tt_master(request, tmp_path_factory):
    ulog = tmp_path_factory.mktemp("tt-ulog")
    server = EmbeddedTokyoTyrantServer(
        request.param, database="*", server_args=["-ulog", str(ulog), "-sid", "1"]
    )
    server.run()
    yield server
    server.stop()


def _drain(rc, **kwargs):
    return list(rc.updates(idle_timeout=0.6, **kwargs))


def test_kt_entries_resume_and_filters(kt_master):
    kt = KyotoTycoon(kt_master.host, kt_master.port)
    rc = ReplicationClient(kt_master.host, kt_master.port, sid=99)
    start = rc.timestamp()
    assert _drain(rc, start_ts=start) == []  # nothing written after now
    kt.set("a", "1")
    kt.set("b", "2", expire_time=3600)
    kt.remove("a")
    kt.set_bulk({"c": "3"}, db=1)
    kt.clear(db=1)
    entries = _drain(rc)
    assert [(e.op, e.key, e.value, e.db, e.sid) for e in entries] == [
        ("set", "a", b"1", 0, 1),
        ("set", "b", b"2", 0, 1),
        ("remove", "a", None, 0, 1),
        ("set", "c", b"3", 1, 1),
        ("clear", None, None, 1, 1),
    ]
    assert entries[0].xt is None and abs(entries[1].xt - (start // 10**9 + 3600)) <= 5
    assert all(isinstance(e, UpdateEntry) for e in entries)
    assert [e.ts for e in entries] == sorted(e.ts for e in entries) and rc.last_ts >= entries[-1].ts
    # resuming from an entry's timestamp yields exactly the later ones
    assert [e.key for e in _drain(rc, start_ts=entries[2].ts)] == ["c", None]
    kt.set("d", "4")
    assert [(e.op, e.key) for e in _drain(rc)] == [("set", "d")]  # from last_ts by default
    # a slave never gets its own updates back; only_origin asks for just one origin
    assert _drain(ReplicationClient(kt_master.host, kt_master.port, sid=1), start_ts=start) == []
    picked = _drain(ReplicationClient(kt_master.host, kt_master.port, only_origin=1), start_ts=start)
    assert [e.key for e in picked][:2] == ["a", "b"]


def test_follow_resumes_after_a_lost_connection(kt_master):
    kt = KyotoTycoon(kt_master.host, kt_master.port)
    rc = ReplicationClient(kt_master.host, kt_master.port, sid=98)
    stream = rc.follow(start_ts=rc.timestamp(), retry_interval=0.05)
    kt.set("f1", "1")
    assert next(stream)[1:3] == ("set", "f1")
    rc.close()  # the connection drops under the running stream
    kt.set("f2", "2")
    assert next(stream)[1:3] == ("set", "f2")  # reconnected after f1, nothing repeated
    stream.close()


def test_kt_values_decoded_with_a_serializer(kt_master):
    kt = KyotoTycoon(kt_master.host, kt_master.port, serializer=KT_JSON)
    rc = ReplicationClient(kt_master.host, kt_master.port, serializer=KT_JSON, decode_keys=False)
    rc.last_ts = rc.timestamp()
    kt.set(b"\xffk", {"n": [1, 2]})
    assert [(e.key, e.value) for e in _drain(rc)] == [(b"\xffk", {"n": [1, 2]})]


def test_kt_server_without_update_log_refuses(kt_server):
    rc = ReplicationClient(kt_server.host, kt_server.port)
    with pytest.raises(ServerError, match="refused replication"):
        _drain(rc)


def test_tt_entries(tt_master):
    tt = TokyoTyrant(tt_master.host, tt_master.port)
    rc = ReplicationClient(tt_master.host, tt_master.port, sid=99, server="tt")
    rc.last_ts = rc.timestamp()
    tt.set("a", "1")
    tt.add("a", "x")  # fails: logged by the server, skipped here
    tt.append("a", "2")
    tt.incr("n", 5)
    tt.set_bulk({"b": "3"})
    tt.remove("a")
    tt.clear()
    entries = _drain(rc)
    assert [(e.op, e.key, e.value) for e in entries] == [
        ("set", "a", b"1"),
        ("append", "a", b"2"),
        ("incr", "n", 5),
        ("misc", None, None),
        ("remove", "a", None),
        ("clear", None, None),
    ]
    assert entries[3].args == [b"putlist", b"b", b"3"]
    assert all(e.sid == 1 for e in entries)
    assert [e.op for e in _drain(rc, start_ts=entries[3].ts)] == ["remove", "clear"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="server must be"):
        ReplicationClient(server="redis")
    with pytest.raises(ValueError, match="sid"):
        ReplicationClient(sid=0)
    with pytest.raises(ValueError, match="only_origin"):
        ReplicationClient(server="tt", only_origin=1)
    with pytest.raises(ValueError, match="start_ts"):
        next(ReplicationClient().updates(start_ts=-1))


def test_a_closed_port_is_a_connection_error():
    from replicated import free_ports

    rc = ReplicationClient("127.0.0.1", free_ports(1)[0], connect_timeout=1)
    with pytest.raises(ServerConnectionError):
        _drain(rc)
