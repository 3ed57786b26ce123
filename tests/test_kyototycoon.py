"""KyotoTycoon client against live servers (bundled always; the real ktserver when KTSERVER is set).

The session servers are shared, so every test first clears the two databases it uses
(db 0 = '*' cache hash, db 1 = '%' cache tree).
"""

from __future__ import annotations

import datetime
import gc
import time

import pytest

from kt import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, KT_PICKLE
from kt.errors import ServerConnectionError, ServerError
from kt.kyototycoon import Cursor, KyotoTycoon

SAMPLES = {
    "binary": (KT_BINARY, ["héllo wörld", b"\xff\x00\t\n raw", "", "tab\there\nnewline"]),
    "json": (KT_JSON, [{"a": [1, 2.5, None, "x"]}, "text", 42, [], {"nested": {"k": "\t\n"}}]),
    "msgpack": (KT_MSGPACK, [{"a": [1, b"bin\x00", "x"]}, 7, "ü", [True, None]]),
    "none": (KT_NONE, [b"\x00\t\n\r\xff", b"", b"plain", bytes(range(256))]),
    "pickle": (KT_PICKLE, [{1, 2, 3}, ("t", 1.5, "three"), {"d": b"\x00"}, None]),
}
KEYS = ["plain", "ключ", "tab\tkey", "nl\nkey", "sp ace", "x" * 300]


@pytest.fixture
def server(kt_servers):
    client = kt_servers.client()
    client.clear(db=0)
    client.clear(db=1)
    return kt_servers


@pytest.fixture
def db(server):
    return server.client()


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_value_method_with_every_serializer(server, kind):
    serializer, values = SAMPLES[kind]
    db = server.client(serializer=serializer)
    pairs = dict(zip(KEYS, values * 2))

    for key, value in pairs.items():
        assert db.set(key, value) == 1
        assert db.get(key) == value
        assert db.get_raw(key) == serializer.encode(value)
    assert db.get("missing") is None and db.get_raw("missing") is None
    assert db.get_bulk(list(pairs) + ["missing"]) == pairs
    assert db.get_bulk_raw(list(pairs)) == {k: serializer.encode(v) for k, v in pairs.items()}
    assert db.remove_bulk(list(pairs) + ["missing"]) == len(pairs)
    assert db.get_bulk(list(pairs)) == {}

    assert db.set_bulk(pairs) == len(pairs)
    assert db.get_bulk(list(pairs)) == pairs
    assert db.update({"u1": values[0]}, u2=values[1]) == 2
    assert db.set_bulk(kw=values[0]) == 1 and db["kw"] == values[0]
    assert db.get_bulk(["u1", "u2"]) == {"u1": values[0], "u2": values[1]}

    first, second = values[0], values[1]
    assert db.add("plain", second) is False and db["plain"] == first
    assert db.add("fresh", second) is True and db["fresh"] == second
    assert db.replace("absent", first) is False and "absent" not in db
    assert db.replace("fresh", first) is True and db["fresh"] == first
    assert db.cas("fresh", second, first) is False
    assert db.cas("fresh", first, second) is True and db["fresh"] == second
    assert db.cas("fresh", second, None) is True and db.get("fresh") is None
    assert db.cas("fresh", None, first) is True and db["fresh"] == first
    assert db.seize("fresh") == first and db.seize("fresh") is None
    assert db.pop("u1") == values[0] and "u1" not in db
    assert db.exists("u2") and not db.exists("u1")

    db["item"] = second
    assert db["item"] == second and ("item", 0) in db and ("item", 1) not in db
    db["item", 1] = (first, 3600)
    assert db["item", 1] == first and db.get("item", db=1) == first
    del db["item", 1]
    assert db.get("item", db=1) is None and db["item"] == second
    del db["item"]
    assert "item" not in db
    assert db.remove("item") == 0

    if kind in ("binary", "none"):
        db.set("app", first)
        assert db.append("app", second) is True
        assert db.get_raw("app") == serializer.encode(first) + serializer.encode(second)
        assert db.append("new-app", second) is True and db.get("new-app") == second

    # Cursor reads and writes go through the serializer too.
    db.clear(db=1)
    tree = server.client(serializer=serializer, default_db=1)
    tree.set_bulk({"a": first, "b": second})
    assert list(tree.items()) == [("a", first), ("b", second)]
    assert list(tree.values()) == [first, second]
    with tree.cursor() as cur:
        assert cur.jump("b") and cur.value() == second
        assert cur.set_value(first) and cur.get() == ("b", first)


def test_keys_are_text_or_bytes(server):
    text = server.client()
    raw = server.client(decode_keys=False)
    text.set_bulk({k: "v" for k in KEYS})
    assert sorted(text.keys()) == sorted(KEYS)
    assert sorted(raw.keys()) == sorted(k.encode() for k in KEYS)
    assert raw.get_bulk([b"plain"]) == {b"plain": "v"}
    text.set(b"\xff\xfe", "binary key")
    assert text.get(b"\xff\xfe") == "binary key"
    assert b"\xff\xfe" in text.match_prefix(b"\xff")
    with pytest.raises(TypeError):
        text.get(12)
    with pytest.raises(TypeError):
        text.get("k", db="zero")


def test_increments(db):
    assert db.incr("n") == 1
    assert db.incr("n", 41) == 42
    assert db.incr("n", -50) == -8
    assert db.get_raw("n") == (-8).to_bytes(8, "big", signed=True)
    assert db.incr("fresh", 5, orig=100) == 105
    assert db.incr("n", 0) == -8
    assert db.incr_double("d", 1.25) == 1.25
    assert db.incr_double("d", -3.5) == pytest.approx(-2.25)
    assert db.incr_double("d2", 0.5, orig=10.0) == 10.5
    db.set("text", "abc")
    with pytest.raises(ServerError) as info:
        db.incr("text")
    assert info.value.code == 450 and "logical inconsistency" in info.value.message
    with pytest.raises(ServerError):
        db.incr_double("text", 1.0)
    with pytest.raises(TypeError):
        db.incr("n", 1.5)


def test_database_operations(db, server):
    db.set_bulk({f"k{i}": str(i) for i in range(10)})
    db.set("only-in-1", "x", db=1)
    assert db.count() == 10 and len(db) == 10 and db.count(db=1) == 1
    status = db.status()
    assert status["count"] == "10" and int(status["size"]) == db.size > 0
    assert db.path == status["path"]
    assert db.status(db=1)["count"] == "1"
    report = db.report()
    assert report["db_total_count"] == "11" and "db_1" in report
    assert db.synchronize() is True and db.synchronize(hard=True) is True
    assert db.vacuum() is True and db.vacuum(step=2) is True
    assert db.clear() is True and len(db) == 0 and db.count(db=1) == 1
    with pytest.raises(ServerError) as info:
        db.synchronize(command="no-such-command")
    assert info.value.code == 500 and info.value.procedure == "synchronize"


def test_several_databases(server):
    db = server.client()
    assert db.set("k", "zero") == 1 and db.set("k", "one", db=1) == 1
    assert (db.get("k"), db.get("k", db=1), db["k", 1]) == ("zero", "one", "one")
    assert db.get_bulk(["k"], db=1) == {"k": "one"}
    db.set_database(1)
    assert db.get("k") == "one" and db.exists("k") and db.count() == 1
    assert db.add("k", "again") is False and db.seize("k") == "one"
    assert db.get("k", db=0) == "zero"
    other = server.client(default_db=1)
    assert other.get("k") is None
    assert db.status()["path"] != db.status(db=0)["path"]
    with pytest.raises(TypeError):
        KyotoTycoon(port=server.port, default_db=-1)


def test_match_ranks_and_limits(server):
    tree = server.client(default_db=1)
    names = ["apple", "apricot", "banana", "avocado", "apex", "b", "ap"]
    tree.set_bulk({n: "x" for n in names})
    assert tree.match_prefix("ap") == ["ap", "apex", "apple", "apricot"]
    assert tree.match_prefix("ap", max_keys=2) == ["ap", "apex"]
    assert tree.match_prefix("zzz") == []
    assert sorted(tree.match_regex("an+a$")) == ["banana"]
    assert sorted(tree.match_regex("^a.*o")) == ["apricot", "avocado"]
    assert tree.match_regex("^a", max_keys=1)[0] in names
    similar = tree.match_similar("ap", 2)
    assert similar[0] == "ap" and set(similar) == {"ap", "apex", "b"}
    assert tree.match_similar("aple") == ["apple"]  # default distance 1
    assert tree.match_similar("apple", 0) == ["apple"]
    with pytest.raises(ServerError) as info:
        tree.match_regex("(")
    assert info.value.code in (400, 450, 500)


def test_expiry(db):
    now = datetime.datetime.now(datetime.timezone.utc)
    db.set("short", "v", expire_time=1)
    db.set_bulk({"bulk-short": "v"}, expire_time=1)
    db.add("add-short", "v", expire_time=1)
    db.set("rep-short", "old")
    db.replace("rep-short", "v", expire_time=1)
    db.set("cas-short", "old")
    db.cas("cas-short", "old", "v", expire_time=1)
    db.incr("incr-short", 1, expire_time=1)
    db["item-short"] = ("v", 1)
    db.set("abs-short", "v", expire_time=now + datetime.timedelta(seconds=0.2))
    db.set("abs-long", "v", expire_time=now + datetime.timedelta(days=1))
    db.set("cur-short", "old", db=1)
    with db.cursor(db=1) as cur:
        assert cur.jump("cur-short") and cur.set_value("v", expire_time=1)
    db.set("long", "v", expire_time=3600)
    db.set("delta", "v", expire_time=datetime.timedelta(hours=1))
    db.set("never", "v")
    short = ["short", "bulk-short", "add-short", "rep-short", "cas-short", "incr-short", "item-short",
             "abs-short"]
    assert all(db.exists(k) for k in short) and db.exists("cur-short", db=1)
    time.sleep(2.3)  # xt is whole seconds: "1 s from now" ends at most 2 s from now
    alive = {"long": "v", "delta": "v", "never": "v", "abs-long": "v"}
    assert db.get_bulk(short + list(alive)) == alive
    assert db.get("cur-short", db=1) is None
    assert db.add("short", "again") is True  # an expired record counts as absent
    with pytest.raises(ValueError):
        db.set("k", "v", expire_time=-5)


def test_errors_carry_the_server_text(server):
    db = server.client()
    with db.cursor() as cur:  # db 0 is a hash database: no backward traversal
        db.set("a", "1")
        with pytest.raises(ServerError) as info:
            cur.jump_back()
        assert info.value.code == 501 and "not implemented" in info.value.message
        assert cur.jump() is True  # the cursor (and its connection) still work
    with pytest.raises(ServerError) as info:
        db._rpc("no_such_procedure", [])
    assert info.value.message == "not implemented: no_such_procedure" and info.value.code == 501


def test_script_without_scripting_is_a_script_error(server):
    from kt.errors import ScriptError

    db = server.client()
    if "-scr" in " ".join(server.embedded.command(server.port)):
        pytest.skip("this server runs a script")
    with pytest.raises(ScriptError):
        db.script("echo", {"a": "b"})
    assert db.set("after", "ok") == 1 and db.get("after") == "ok"


def test_cursor_walks_and_edits(server):
    tree = server.client(default_db=1)
    tree.set_bulk({k: k.upper() for k in ["a", "b", "c", "d", "e"]})
    cur = tree.cursor()
    assert isinstance(cur, Cursor) and cur.key() is None  # not positioned yet
    assert cur.jump() and cur.key() == "a" and cur.value() == "A" and cur.get() == ("a", "A")
    assert cur.step() and cur.key() == "b"
    assert cur.step_back() and cur.key() == "a"
    assert cur.jump("c") and cur.get(step=True) == ("c", "C") and cur.key() == "d"
    assert cur.jump_back() and cur.key() == "e"
    assert cur.jump_back("bb") and cur.key() == "b"
    # After a jump_back, Kyoto Cabinet steps backwards: get(step=True) walks towards the start.
    assert cur.get(step=True) == ("b", "B") and cur.key() == "a"
    assert cur.jump("b") and cur.set_value("B2", step=True) and cur.key() == "c" and tree["b"] == "B2"
    assert cur.remove() and cur.key() == "d" and tree.get("c") is None
    assert cur.seize() == ("d", "D") and cur.key() == "e" and "d" not in tree
    assert not cur.step() and cur.key() is None and cur.get() is None and cur.seize() is None
    assert list(cur) == [("a", "A"), ("b", "B2"), ("e", "E")]
    assert cur.jump("b") and list(cur) == [("b", "B2"), ("e", "E")]
    cur.close()
    cur.close()
    with pytest.raises(ValueError):
        cur.jump()
    with tree.cursor(cursor_id=424242) as named:
        assert named.cursor_id == 424242 and named.jump("e") and named.get() == ("e", "E")
    assert list(tree.keys()) == ["a", "b", "e"]
    tree.clear()
    assert list(tree.keys()) == [] and list(tree.items()) == [] and list(tree.values()) == []
    with tree.cursor() as empty:
        assert empty.jump() is False and list(empty) == []


def test_abandoned_iterators_and_cursors_give_their_connection_back(server):
    db = server.client(max_connections=2, connect_timeout=1)
    db.set_bulk({f"i{i}": "v" for i in range(5)})
    for _ in range(5):  # a pool of 2 connections would be exhausted by the second leak
        keys = db.keys()
        assert next(keys).startswith("i")
        del keys
        cursor = db.cursor()
        assert cursor.jump()
        del cursor
    gc.collect()
    assert db.get("i1") == "v"
    with db.cursor() as first, db.cursor() as second:
        assert first.jump() and second.jump()
        with pytest.raises(ServerConnectionError):
            db.cursor()  # both connections are pinned: the pool says so instead of hanging
    assert db.exists("i2")


def test_one_megabyte_values_over_both_protocols(server):
    db = server.client(serializer=KT_NONE, timeout=30)
    big = bytes(range(256)) * 4096
    assert db.set("big", big) == 1 and db.get("big") == big  # binary protocol
    assert db.append("big", b"\t\n" + big) is True  # HTTP RPC, Base64 body
    assert db.seize("big") == big + b"\t\n" + big
    assert db.add("big", big) is True and db.get_bulk(["big"]) == {"big": big}
    with db.cursor() as cur:
        assert cur.jump("big") and cur.value() == big
