"""The shipped Lua scripts (kt/scripts/kt.lua and tt.lua), run by the bundled and the real
servers, called as coleifer/kt users call them: ``db.lua.<name>(...)`` / ``db.script(...)``
and through ``kt.queue.Queue``.  Scenarios follow kt's own scripting tests.
"""

from __future__ import annotations

import functools

import pytest

from kt import KT_NONE, KT_PICKLE, TT_TABLE
from kt.queue import Queue


@pytest.fixture
def kdb(kt_servers_lua):
    db = kt_servers_lua.client()
    db.clear(db=0)
    db.clear(db=1)
    return db


@pytest.fixture
def tdb(tt_servers_lua):
    db = tt_servers_lua.client()
    db.clear()
    return db


# -- kt.lua: sets, lists, hashes --------------------------------------------------------


def test_kt_sets(kdb):
    L = kdb.lua
    assert L.sadd(key="s1", value="foo") == {"num": "1"}
    assert L.sadd(key="s1", value="foo") == {"num": "0"}
    assert L.sadd(key="s1", value=b"\x01".join([b"bar", b"baz", b"nug"])) == {"num": "3"}
    assert L.scard(key="s1") == {"num": "4"}
    assert L.sismember(key="s1", value="bar") == {"num": "1"}
    assert L.sismember(key="s1", value="baze") == {"num": "0"}
    members = ["bar", "baz", "foo", "nug"]
    assert L.smembers(key="s1") == {m: "1" for m in members}
    popped = [L.spop(key="s1")["value"] for _ in range(4)]
    assert sorted(popped) == members
    assert L.spop(key="s1") == {"num": "0"}
    L.sadd(key="s1", value="\x01".join(members))
    assert L.srem(key="s1", value="nug") == {"num": "1"}
    assert L.srem(key="s1", value="nug") == {"num": "0"}
    L.sadd(key="s2", value="baze\x01foo\x01zai")
    assert L.sinter(key1="s1", key2="s2") == {"foo": "1"}
    assert L.sunion(key1="s1", key2="s2") == {m: "1" for m in ("bar", "baz", "baze", "foo", "zai")}
    assert L.sdiff(key1="s2", key2="s1") == {"baze": "1", "zai": "1"}
    assert L.sdiff(key1="s1", key2="s2", dest="s3") == {"bar": "1", "baz": "1"}
    assert L.smembers(key="s3") == {"bar": "1", "baz": "1"}


def test_kt_lists(kdb):
    L = kdb.lua
    assert L.lrpush(key="l1", value="i0") == {}
    for i in range(1, 5):
        L.lrpush(key="l1", value=f"i{i}")
    assert [L.lindex(key="l1", index=i) for i in range(5)] == [{"value": f"i{i}"} for i in range(5)]
    assert L.lindex(key="l1", index=6) == {}
    assert L.lindex(key="l1", index=-1) == {"value": "i4"}
    assert L.llen(key="l1") == {"num": "5"}
    assert L.lrpop(key="l1") == {"value": "i4"}
    assert L.lset(key="l1", index=2, value="i2-x") == {}
    assert L.lindex(key="l1", index=2) == {"value": "i2-x"}
    assert [L.lrpop(key="l1"), L.llpop(key="l1"), L.lrpop(key="l1"), L.llpop(key="l1")] == [
        {"value": "i3"}, {"value": "i0"}, {"value": "i2-x"}, {"value": "i1"}]
    assert L.llen(key="l1") == {"num": "0"}
    assert L.llpop(key="l1") == {} and L.lrpop(key="l1") == {}
    L.llpush(key="l2", value="b")
    L.llpush(key="l2", value="a")
    assert L.lrange(key="l2") == {"0": "a", "1": "b"}


def test_kt_list_ranges_and_insert(kdb):
    L = kdb.lua
    for i in range(5):
        L.lrpush(key="l1", value=f"i{i}")
    R = functools.partial(L.lrange, key="l1")
    everything = {str(i): f"i{i}" for i in range(5)}
    assert R() == R(start=0) == R(start=-5) == R(stop=5) == everything
    assert R(start=1, stop=4) == {"1": "i1", "2": "i2", "3": "i3"}
    assert R(stop=-3) == {"0": "i0", "1": "i1"}
    assert R(start=3, stop=-1) == {"3": "i3"}
    assert R(start=-2) == {"3": "i3", "4": "i4"}
    for start, stop in ((5, None), (-6, None), (0, 0), (-1, 3), (3, 2)):
        args = {"start": start} if stop is None else {"start": start, "stop": stop}
        assert R(**args) == {}
    L.linsert(key="l1", index=1, value="i0.5")
    L.linsert(key="l1", index=-1, value="i3.5")
    assert R() == {"0": "i0", "1": "i0.5", "2": "i1", "3": "i2", "4": "i3", "5": "i3.5", "6": "i4"}


def test_kt_hashes(kdb):
    L = kdb.lua
    assert L.hmset(table_key="h1", k1="v1", k2="v2", k3="v3") == {"num": "3"}
    assert L.hset(table_key="h1", key="k1", value="v1-x") == {"num": "1"}
    assert L.hget(table_key="h1", key="k1") == {"value": "v1-x"}
    assert L.hget(table_key="h1", key="kx") == {}
    assert L.hmget(table_key="h1", k1="", k2="", kx="") == {"k1": "v1-x", "k2": "v2"}
    assert L.hgetall(table_key="h1") == {"k1": "v1-x", "k2": "v2", "k3": "v3"}
    assert L.hdel(table_key="h1", key="k2") == {"num": "1"}
    assert L.hdel(table_key="h1", key="k2") == {"num": "0"}
    assert L.hmdel(table_key="h1", k1="", k3="") == {"num": "2"}
    assert L.hgetall(table_key="h1") == {}
    assert L.hsetnx(table_key="h1", key="k1", value="v1-y") == {"num": "1"}
    assert L.hsetnx(table_key="h1", key="k1", value="v1-z") == {"num": "0"}
    L.hsetnx(table_key="h1", key="k2", value="v2")
    assert L.hlen(table_key="h1") == {"num": "2"}
    assert L.hcontains(table_key="h1", key="k1") == {"num": "1"}
    assert L.hcontains(table_key="h1", key="kx") == {"num": "0"}
    assert L.hgetall(table_key="nope") == {}


def test_kt_missing_arguments_fail_cleanly(kdb):
    from kt.errors import ScriptError

    with pytest.raises(ScriptError):
        kdb.lua.hset(key="k", value="v")  # no table_key
    with pytest.raises(ScriptError):
        kdb.lua.queue_add(data="x")  # no queue


def test_kt_multiple_databases(kdb):
    L = kdb.lua
    for i in range(3):
        kdb.set(f"k{i}", f"v{i}", db=i % 2)
    assert L.list() == L.list(db=0) == {"k0": "v0", "k2": "v2"}
    assert L.list(db=1) == {"k1": "v1"}
    for i in range(5):
        L.sadd(key="s1", value=f"v{i}", db=i % 2)
    assert L.scard(key="s1", db=0) == {"num": "3"}
    assert L.scard(key="s1", db=1) == {"num": "2"}
    L.hmset(table_key="h1", k1="a", db=1)
    assert L.hgetall(table_key="h1") == {} and L.hgetall(table_key="h1", db=1) == {"k1": "a"}


def test_kt_records_helpers(kdb):
    assert kdb.script("get_range") == {}
    kdb.set_bulk({f"k{i}": f"v{i}" for i in range(11)})
    assert kdb.script("list") == {f"k{i}": f"v{i}" for i in range(11)}

    def rng(start, stop):
        params = {}
        if start:
            params["start"] = start
        if stop:
            params["stop"] = stop
        return kdb.script("get_range", params)

    assert rng("k8", None) == {"k8": "v8", "k9": "v9"}
    assert rng("k80", None) == {"k9": "v9"}
    assert rng(None, "k2") == {"k0": "v0", "k1": "v1", "k10": "v10", "k2": "v2"}
    assert rng("k10", "k3") == {"k10": "v10", "k2": "v2", "k3": "v3"}
    assert rng("a", "b") == rng("x", None) == rng(None, "a") == {}

    kdb.update(p1="0123456789", p2="")
    V = "0123456789"
    for start, stop, expected in ((0, None, V), (0, -1, V[:-1]), (1, 3, V[1:3]), (1, 30, V[1:]),
                                  (20, 30, ""), (-3, None, V[-3:]), (-5, -1, V[-5:-1]), (-20, -10, ""),
                                  (-20, None, V)):
        args = {"key": "p1", "start": start}
        if stop is not None:
            args["stop"] = stop
        assert kdb.script("get_part", args) == {"value": expected}
    assert kdb.script("get_part", key="p2", start=1, stop=-1) == {"value": ""}
    assert kdb.script("get_part", key="p3", start=0) == {}

    assert kdb.lua.move(src="p1", dest="p4") == {}
    assert kdb.get("p4") == V and kdb.get("p1") is None
    from kt.errors import ScriptError

    with pytest.raises(ScriptError):
        kdb.lua.move(src="p1", dest="p5")  # nothing to move
    hashed = kdb.lua.hash(abc="fnv", xyz="murmur")
    assert set(hashed) == {"abc", "xyz"} and all(v.isdigit() for v in hashed.values())
    assert hashed == kdb.lua.hash(abc="fnv", xyz="murmur")
    assert "version" in kdb.lua.jit_version()


def test_kt_hexastore(kdb):
    L = kdb.lua
    for s, p, o in (("charlie", "likes", "zaizee"), ("charlie", "likes", "huey"),
                    ("charlie", "likes", "mickey"), ("huey", "likes", "zaizee"), ("zaizee", "likes", "huey")):
        L.hx_add(s=s, p=p, o=o)
    assert kdb.count() == 15
    assert L.hx_query(s="charlie", p="likes") == {"o0": "huey", "o1": "mickey", "o2": "zaizee"}
    L.hx_remove(s="charlie", p="likes", o="mickey")
    assert L.hx_query(s="charlie", p="likes") == {"o0": "huey", "o1": "zaizee"}
    assert L.hx_query(o="zaizee") == {"s0": "charlie", "p0": "likes", "s1": "huey", "p1": "likes"}
    assert L.hx_query(s="charlie", o="huey") == {"p0": "likes"}
    assert L.hx_query(s="huey", p="likes", o="zaizee") == {"0": ""}


# -- kt.lua: queues ---------------------------------------------------------------------


def test_kt_queue_procedures(kdb):
    L = kdb.lua
    for i in range(5):
        L.queue_add(queue="tq", data=f"item-{i}")
    assert L.queue_size(queue="tq") == {"num": "5"}
    assert L.queue_pop(queue="tq") == {"0": "item-0"}
    assert L.queue_peek(queue="tq", n=2) == {"0": "item-1", "1": "item-2"}
    assert L.queue_pop(queue="tq", n=3) == {"0": "item-1", "1": "item-2", "2": "item-3"}
    assert L.queue_pop(queue="tq", n=3) == {"0": "item-4"}
    assert L.queue_pop(queue="tq") == L.queue_peek(queue="tq") == {}
    L.queue_add(queue="tq", data="y")
    L.queue_add(queue="tq", data="z")
    assert L.queue_clear(queue="tq") == {"num": "2"}
    assert L.queue_clear(queue="tq") == {"num": "0"}
    for i in range(6):
        L.queue_add(queue="tq", data=f"item-{i}")
    assert L.queue_rpeek(queue="tq", n=2) == {"0": "item-5", "1": "item-4"}
    assert L.queue_rpop(queue="tq", n=2) == {"0": "item-5", "1": "item-4"}
    assert L.queue_rpeek(queue="tq", n=9) == {"0": "item-3", "1": "item-2", "2": "item-1", "3": "item-0"}
    assert L.queue_rpop(queue="tq", n=9) == {"0": "item-3", "1": "item-2", "2": "item-1", "3": "item-0"}
    assert L.queue_rpop(queue="tq") == {}
    kdb.clear()
    assert L.queue_rpop(queue="tq") == L.queue_pop(queue="tq") == {}
    assert L.queue_madd(queue="tq", **{str(i): f"i{i % 2}" for i in range(5)}) == {"num": "5"}
    assert L.queue_remove(queue="tq", data="i1") == {"num": "2"}
    assert L.queue_remove(queue="tq", data="x") == {"num": "0"}
    assert L.queue_remove(queue="tq", data="i0", n=2) == {"num": "2"}
    assert L.queue_pop(queue="tq") == {"0": "i0"}
    for i in range(10):
        L.queue_add(queue="tq", data=f"i{i % 3}")
    assert L.queue_rremove(queue="tq", data="i0", n=3) == {"num": "3"}
    assert L.queue_peek(queue="tq", n=10) == {str(i): v for i, v in enumerate(
        ["i0", "i1", "i2", "i1", "i2", "i1", "i2"])}


@pytest.mark.parametrize("serializer", [None, KT_PICKLE])
def test_kt_queue_helper(kt_servers_lua, serializer):
    kwargs = {} if serializer is None else {"serializer": serializer}
    db = kt_servers_lua.client(**kwargs)
    db.clear()
    qa, qb = Queue(db, "qa"), Queue(db, "qb")
    for i in range(20):
        qa.add(f"i{i}")
        qb.add(f"i{i % 4}")
    assert len(qa) == len(qb) == qa.count() == 20
    assert qa.pop() == "i0" and qa.rpop() == "i19"
    assert qa.pop(n=3) == ["i1", "i2", "i3"]
    assert qa.rpop(n=3) == ["i18", "i17", "i16"]
    assert qa.peek(n=3) == ["i4", "i5", "i6"]
    assert qa.rpeek(n=3) == ["i15", "i14", "i13"]
    assert qb.remove("i1", n=4) == 4 and qb.rremove("i2", n=4) == 4 and len(qb) == 12
    assert qb.peek(20) == ["i0", "i2", "i3", "i0", "i3", "i0", "i3", "i0", "i3", "i0", "i1", "i3"]
    assert qb.remove("i3", n=5) == 5 and qb.remove("i0", n=10) == 5
    assert qb.pop() == "i2" and qb.pop() == "i1" and len(qb) == 0 and qb.pop() is None
    assert qa.remove("i7") == 1 and qa.remove("i7") == 0
    assert qa.pop(n=5) == ["i4", "i5", "i6", "i8", "i9"]
    assert qa.extend(["x", "y"]) == 2 and qa.rpeek() == "y"
    assert qa.clear() == 8 and len(qa) == 0
    with pytest.raises(ValueError):
        qa.pop(0)
    assert "qa" in repr(qa)


def test_kt_queue_is_per_database(kt_servers_lua):
    db = kt_servers_lua.client()
    db.clear(db=0)
    db.clear(db=1)
    on_tree, on_hash = Queue(db, "q"), Queue(db, "q", db=1)
    on_tree.add("a")
    assert on_tree.peek() == "a" and on_hash.peek() is None and len(on_hash) == 0
    assert db.get("q\t000000000001") == "a"
    assert Queue(db.set_database(1), "q").peek() is None  # the client's default database
    db.set_database(0)


# -- tt.lua -----------------------------------------------------------------------------


def test_tt_seize_and_match(tdb):
    tdb.update(k1="v1", k2="v2", k3="v3")
    assert tdb.script("seize", "k2") == b"v2"
    assert "k2" not in tdb
    assert tdb.script("seize", "k2") == b""
    assert tdb.script("seize", "k3", decode_value=True) == "v3"
    tdb.clear()
    tdb.update(key="value", key_a="a", key_b="bbb", ky_a="aa")

    def matches(procedure, text, limit=None):
        return tdb.script(procedure, text, limit, decode_value=True, as_dict=True)

    assert matches("match_pattern", "key*") == {"key": "value", "key_a": "a", "key_b": "bbb"}
    assert matches("match_pattern", "key_%a") == {"key_a": "a", "key_b": "bbb"}
    assert matches("match_pattern", "%d+") == {}
    assert matches("match_pattern", "key_%a", 1) == {"key_a": "a"}
    assert matches("match_similar", "ky_a") == {"ky_a": "aa"}
    assert matches("match_similar", "ky_a", 1) == {"key_a": "a", "ky_a": "aa"}
    assert matches("match_similar", "key", 2) == {"key": "value", "key_a": "a", "key_b": "bbb"}
    assert matches("match_similar_value", "a", 1) == {"key_a": "a", "ky_a": "aa"}
    assert tdb.lua.lock("k") is True and tdb.lua.unlock("k") is True


def test_tt_split_hash_and_eval(tdb):
    def split(text, delim):
        return tdb.script("split", text, delim, decode_value=True, as_list=True)

    assert split("aa bbb  ccc dd", " ") == ["aa", "bbb", "", "ccc", "dd"]
    assert split("fooXXbarXXbaz", "XX") == ["foo", "", "bar", "", "baz"]
    assert split("", "") == split("", " ") == []
    assert split(" ", " ") == [""]
    assert split("a b\tc", "") == ["a", "b", "c"]  # no delimiters given: whitespace, as documented
    tdb.update(k1="v1", k2="v2")
    L = tdb.lua
    assert L.hash("foo") == b"acbd18db4cc2f85cedef654fccc4a4d8"
    assert L.hash("foo", "crc32", as_int=True) == 2356372769
    assert L.hash("v1", "crc32", as_int=True) == 1768082613
    assert L.hash_key("k1", "crc32", as_int=True) == 1768082613
    assert L.hash_key("kx") == b""
    assert float(L.time()) > 1e9 and L.ptime() == b"ok" and len(L.getdate()) == 19
    L.script('function hello(name, val) return "hello " .. name end')
    assert L.hello("charlie") == b"hello charlie"


def test_tt_queue(tdb):
    L = tdb.lua
    for i in range(5):
        L.queue_add("tq", f"item-{i}")
    assert L.queue_size("tq", as_int=True) == 5
    assert L.queue_pop("tq", decode_value=True, as_list=True) == ["item-0"]
    assert L.queue_pop("tq", 3, decode_value=True, as_list=True) == ["item-1", "item-2", "item-3"]
    assert L.queue_pop("tq", 3, decode_value=True, as_list=True) == ["item-4"]
    assert L.queue_pop("tq", as_list=True) == []
    assert L.queue_pop("tq") == b""
    L.queue_add("tq", "item-x")
    assert L.queue_bpop("tq", as_list=True) == [b"item-x"]
    L.queue_add("tq", "y")
    L.queue_add("tq", "z")
    assert L.queue_clear("tq", as_int=True) == 2
    assert L.queue_clear("tq", as_int=True) == 0


def test_tt_table_columns(tt_servers_lua):
    raw = tt_servers_lua.client(serializer=KT_NONE)
    raw.clear()
    db = tt_servers_lua.client(serializer=TT_TABLE)
    db["t1"] = {"k1": "v1", "k2": "v2"}
    db["t2"] = {"k2": "v2", "k3": "v3"}
    assert db.script("seize", "t2", encode_value=False, decode_value=True) == {"k2": "v2", "k3": "v3"}
    assert db.script("seize", "t2", encode_value=False, decode_value=True) == {}
    assert db.script("table_get", "t1", "k2", encode_value=False) == b"v2"
    assert db.script("table_get", "t1", "kx", encode_value=False) == b""
    assert db.script("table_pop", "t1", "k2", encode_value=False) == b"v2"
    assert db.script("table_pop", "t1", "k2", encode_value=False) == b""
    assert db["t1"] == {"k1": "v1"}
    db["t1"] = {"k1": "v1", "k2": "v2"}
    assert db.script("table_update", "t1", {"k1": "v1-x", "k4": "v4"}) is True
    assert db["t1"] == {"k1": "v1-x", "k2": "v2", "k4": "v4"}
    assert db.script("table_update", "t3", {"k1": "v1z"}) is True
    assert db["t3"] == {"k1": "v1z"}
    assert raw.script("table_update", "t4", b"lonely") is False
