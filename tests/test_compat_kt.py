"""KyotoTycoon and Cursor: the methods and arguments coleifer/kt 0.9.6 had, on the bundled
and the real ktserver.  Scenarios follow kt's own tests (basic operations, no-reply writes,
bytes access, cursors, multiple databases), plus what the seed adds.
"""

from __future__ import annotations

import datetime
import threading

import pytest

from kt import KT_NONE, KyotoTycoon
from kt.client import ScriptRunner


@pytest.fixture
def db(kt_servers):
    client = kt_servers.client()
    client.clear(db=0)
    client.clear(db=1)
    return client


def test_basic_operations_as_in_kt(db):
    assert len(db) == 0
    db.set("k1", "v1")
    assert db.get("k1") == "v1" and db.get("kx") is None
    assert db.set_bulk({"k1": "v1-x", "k2": "v2", "k3": "v3"}) == 3
    assert db.get_bulk(["k1", "k2", "k3", "kx"]) == {"k1": "v1-x", "k2": "v2", "k3": "v3"}
    assert db.remove("k1") == 1 and db.remove("k1") == 0
    db["k1"] = "v1"
    assert db.exists("k1") and db.length("k1") == 2
    assert db.remove_bulk(["k1", "k3", "kx"]) == 2 and db.remove_bulk([]) == 0
    assert db.remove_bulk(["k2"]) == 1
    assert not db.exists("k1") and db.length("k1") is None
    db.append("key", "abc")
    db.append("key", "def")
    assert db["key"] == "abcdef"
    assert db.replace("key", "xyz") and db.seize("key") == "xyz" and not db.seize("key")
    assert not db.replace("key", "abc") and db.add("key", "foo") and not db.add("key", "bar")
    assert db.cas("key", "foo", "baz") and not db.cas("key", "foo", "bar") and db["key"] == "baz"
    assert "key" in db and "other" not in db and len(db) == db.count() == 1
    db["k1"] = "v1"
    db.update({"k2": "v2", "k3": "v3"})
    assert db.pop("k1") == "v1" and db.pop("k1") is None
    assert sorted(db) == sorted(db.keys()) == ["k2", "k3", "key"]  # iterating gives the keys
    del db["k3"]
    assert sorted(db.keys_nonlazy()) == ["k2", "key"]
    assert sorted(db.values()) == ["baz", "v2"]
    assert db.incr("n") == 1 and db.incr("n", 3) == 4
    assert db.incr_double("nd", 2.5) == 2.5


def test_no_reply_writes_are_seen_by_the_next_read(db):
    assert db.set("k1", "v1", no_reply=True) is None
    assert db.get("k1") == "v1"
    assert db.remove("k1", no_reply=True) is None
    assert db.get("k1") is None
    assert db.set_bulk({"k1": "v1", "k2": "v2"}, no_reply=True) is None
    assert db.get_bulk(["k1", "k2"]) == {"k1": "v1", "k2": "v2"}
    assert db.remove_bulk(["k1"], no_reply=True) is None
    assert db.get("k1") is None
    assert db.set_bytes("kb", b"\xff", no_reply=True) is None
    assert db.get_bytes("kb") == b"\xff"


def test_no_reply_holds_no_connection(kt_servers):
    """More threads than pool connections, each writing with no_reply then reading back."""
    db = kt_servers.client(max_connections=2)
    db.clear()
    errors = []

    def work(i):
        try:
            for j in range(20):
                db.set(f"t{i}-{j}", str(j), no_reply=True)
                assert db.get(f"t{i}-{j}") == str(j)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert db.count() == 160


def test_bytes_access_and_decode_switches(db):
    db["k1"] = b"v1"
    db["k2"] = b"\xff\x00\xff"
    assert db.get_bytes("k1") == b"v1" and db.get_bytes("k2") == b"\xff\x00\xff"
    assert db.get_bulk(["k1", "k2"], decode_values=False) == {"k1": b"v1", "k2": b"\xff\x00\xff"}
    assert db.set_bytes("k3", b"raw") == 1 and db.get("k3") == "raw"
    assert db.add("k4", "plain", encode_value=False) and db.get_bytes("k4") == b"plain"
    assert db.seize("k4", decode_value=False) == b"plain"


def test_bulk_details_across_databases(db):
    assert db.set_bulk_raw([(0, "a", "va", None), (1, "b", "vb", 3600)]) == 2
    assert db.get("a") == "va" and db.get("b", db=1) == "vb"
    details = db.get_bulk_details(["a", "zz"])
    assert details == [(0, "a", "va", None)]
    raw = db.get_bulk_raw_details([(0, "a"), (1, "b")], decode_values=False)
    assert [(d, k, v) for d, k, v, _ in raw] == [(0, "a", b"va"), (1, "b", b"vb")]
    xt = raw[1][3]
    assert xt is not None and abs(xt - (datetime.datetime.now().timestamp() + 3600)) < 120
    assert db.remove_bulk_raw([(0, "a"), (1, "b"), (1, "zz")]) == 2
    assert db.remove_bulk_raw([]) == 0


def test_script_arguments_and_lua_helper(kt_servers_lua):
    db = kt_servers_lua.client()
    db.clear()
    assert isinstance(db.lua, ScriptRunner)
    assert db.lua.hmset(table_key="h", a="1") == {"num": "1"}
    assert db.script("hgetall", {"table_key": "h"}, decode_values=False) == {"a": b"1"}
    assert db.script("hset", {"table_key": "h", "key": "b", "value": "2"}, no_reply=True) is None
    assert db.lua.hget(table_key="h", key="b") == {"value": "2"}
    assert db.lua.hgetall({"table_key": "h"}) == {"a": "1", "b": "2"}


def test_cursor_compat(db):
    db.set_database(1)
    db.update({"k1": "v1", "k2": "v2", "k3": "v3", "k4": "v4"})
    cursor = db.cursor()
    assert not cursor.is_valid()
    assert list(cursor) == [("k1", "v1"), ("k2", "v2"), ("k3", "v3"), ("k4", "v4")]
    assert cursor.jump("k2") and cursor.is_valid()
    assert next(cursor) == ("k2", "v2") and cursor.next() == ("k3", "v3")
    assert cursor.seize() == ("k4", "v4")
    assert cursor.seize() is None and not cursor.is_valid()
    with pytest.raises(StopIteration):
        next(cursor)
    cursor.close()


def test_open_close_and_pool_controls(kt_servers):
    db = KyotoTycoon(kt_servers.host, kt_servers.port, connection_pool=True)
    try:
        assert db.open() is True
        db.set("k", "v")
        assert db.close_idle(0) >= 1  # the connection used above was idle
        assert db.close_idle(3600) == 0
        db.close_all()
        assert db.get("k") == "v"  # usable again after closing
        db.close(allow_reuse=False)
        assert db.get("k") == "v"
    finally:
        db.close()


def test_ulog_methods_need_an_update_log(db):
    from kt.errors import ServerError

    with pytest.raises(ServerError):
        db.ulog_list()  # the shared test servers run without -ulog


@pytest.mark.parametrize("flavour", ["bundled", "real"])
def test_ulog_list_and_remove(flavour, tmp_path):
    from conftest import _start
    from kt import EmbeddedServer

    running = _start(EmbeddedServer, flavour, server_args=["-ulog", str(tmp_path), "-sid", "1"])
    try:
        db = running.client()
        db.set("k", "v")
        entries = db.ulog_list()
        assert entries and all(isinstance(size, int) and isinstance(ts, datetime.datetime)
                               for _path, size, ts in entries)
        assert entries[0][0].startswith(str(tmp_path))
        assert db.ulog_remove(datetime.datetime.now()) is True
    finally:
        running.close_clients()
        running.embedded.stop()


def test_kt_none_refuses_text_values(kt_servers):
    db = kt_servers.client(serializer=KT_NONE)
    with pytest.raises(TypeError):
        db.set("k", "text")
    db.set("k", b"bytes")
    assert db.get("k") == b"bytes"


def test_encode_value_switches(db):
    db.set_bytes("k", b"a")
    assert db.append("k", b"b", encode_value=False) and db.get_bytes("k") == b"ab"
    assert db.replace("k", "c", encode_value=False) and db.get_bytes("k") == b"c"
    assert db.cas("k", b"c", b"d", encode_value=False) and db.get("k") == "d"
    assert db.set_bulk({"x": b"\x00\xff"}, encode_values=False) == 1
    assert db.get_bulk(["x"], decode_values=False) == {"x": b"\x00\xff"}
    assert db.set_bulk({"y": "1"}, db=1, expire_time=60, no_reply=True) is None
    assert db.get_bulk_details(["y"], db=1)[0][:3] == (1, "y", "1")
    db.close_all()
    assert db.get("k") == "d"


@pytest.mark.parametrize("kind", ["kt", "tt"])
def test_an_idle_thread_after_no_reply_holds_no_connection(kind, kt_servers, tt_servers):
    """One pooled connection; a thread writes with no_reply and then idles: others proceed."""
    server = kt_servers if kind == "kt" else tt_servers
    db = server.client(max_connections=1, connect_timeout=1.0)
    wrote, finish = threading.Event(), threading.Event()

    def writer():
        db.set("idle-writer", "v", no_reply=True)
        wrote.set()
        finish.wait(10)  # alive and idle, holding its thread-local state

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wrote.wait(10)
        assert db.get("idle-writer") == "v"  # would wait 1 s and fail if the connection were pinned
    finally:
        finish.set()
        thread.join(10)
