"""TokyoTyrant and QueryBuilder: the methods and arguments coleifer/kt 0.9.6 had, on the
bundled and the real ttserver; and B+ tree databases with duplicate keys, where every
listing must give every record (issue 11, point 5).
"""

from __future__ import annotations

import datetime

import pytest

from kt import TT_TABLE, QueryBuilder, TokyoTyrant
from kt.client import ScriptRunner
from kt.errors import ServerError
from kt.tokyotyrant import OP_NUM_GE, OP_STR_EQ


@pytest.fixture
def db(tt_servers):
    client = tt_servers.client()
    client.clear()
    return client


@pytest.fixture
def tree(tt_servers_btree):
    client = tt_servers_btree.client()
    client.clear()
    yield client
    client.clear()


def test_basic_operations_as_in_kt(db):
    assert len(db) == 0
    db.set("k1", "v1")
    assert db.get("k1") == "v1" and db.get("kx") is None
    assert db.set_bulk({"k1": "v1-x", "k2": "v2", "k3": "v3"})
    assert db.get_bulk(["k1", "k2", "k3", "kx"]) == {"k1": "v1-x", "k2": "v2", "k3": "v3"}
    assert db.remove("k1") == 1 and db.remove("k1") == 0
    assert db.length("k2") == 2
    assert db.seize("k2") == "v2" and db.seize("k2") is None and "k2" not in db
    assert db.pop("k3") == "v3"
    db.set("kb", b"\xff\x00")
    assert db.get_bytes("kb") == b"\xff\x00"
    assert db.get_bulk(["kb"], decode_values=False) == {"kb": b"\xff\x00"}
    assert db.seize("kb", decode_value=False) == b"\xff\x00"


def test_no_reply_and_raw_writes(db):
    assert db.set("k1", "v1", no_reply=True) is None
    assert db.get("k1") == "v1"
    assert db.set_bulk({"k2": "v2", "k3": "v3"}, no_reply=True) is None
    assert db.get_bulk(["k2", "k3"]) == {"k2": "v2", "k3": "v3"}
    assert db.set_bytes("k4", b"raw") is True and db.get("k4") == "raw"
    assert db.update({"k5": "v5"}, no_reply=True) is None and db.get("k5") == "v5"
    assert db.add("k6", "x", encode_value=False) and db.append("k6", "y", encode_value=False)
    assert db.get("k6") == "xy"


def test_misc_helpers(db, tree):
    db.set_bulk({"a": "1", "b": "2"})
    assert db.misc("getlist", ["a", "b"], update_log=False, decode_values=True) == ["a", "1", "b", "2"]
    assert db.get_part("a", decode_value=False) == b"1"
    tree.set("k", "v")
    assert tree.clear_cache() is True  # a B+ tree file has a cache to drop
    assert tree.defragment() is True and tree.defragment(5) is True
    assert tree.get("k") == "v"


def test_restore_and_set_master_reach_the_server(db, tmp_path):
    # No update log to replay and no master to follow: the server answers failure.
    assert db.restore(str(tmp_path / "none"), 0) is False
    assert db.restore(str(tmp_path / "none"), datetime.datetime(2020, 1, 1)) is False


def test_script_arguments(tt_servers_lua):
    db = tt_servers_lua.client()
    db.clear()
    db.set_bulk({"a": "1", "b": "22"})
    assert isinstance(db.lua, ScriptRunner)
    assert db.script("match_pattern", "[ab]", decode_value=True, as_dict=True) == {"a": "1", "b": "22"}
    assert db.script("match_pattern", "[ab]", as_dict=True) == {b"a": b"1", b"b": b"22"}
    assert db.script("split", "x y", " ", as_list=True) == [b"x", b"y"]
    assert db.script("queue_size", "q", as_int=True) == 0
    assert db.script("seize", "a", decode_result=True) == "1"  # the seed's name for decode_value
    assert db.lua.lock("x") is True


def test_table_searches_and_querybuilder_clone(tt_servers_table):
    db = tt_servers_table.client(serializer=TT_TABLE)
    db.clear()
    db.set_bulk({"u1": {"name": "a", "age": "3"}, "u2": {"name": "b", "age": "7"}})
    base = QueryBuilder().filter("age", OP_NUM_GE, 1)
    adults = base.filter("age", OP_NUM_GE, 5)
    assert base.clone().execute(db) == ["u1", "u2"]  # base unchanged by deriving adults
    assert base.execute(db) == ["u1", "u2"] and adults.execute(db) == ["u2"]
    assert base.filter("name", OP_STR_EQ, "a").get(db) == [("u1", {"name": "a", "age": "3"})]
    db.clear()


# -- B+ trees with duplicate keys (point 5) ---------------------------------------------


def _fill_duplicates(tree):
    tree.set("a", "a0")
    for value in ("v1", "v2", "v3"):
        assert tree.setdup("k1", value)
    tree.set("z", "z0")


def test_duplicates_every_listing_gives_every_record(tree):
    _fill_duplicates(tree)
    assert len(tree) == 5
    assert tree.items() == [("a", "a0"), ("k1", "v1"), ("k1", "v2"), ("k1", "v3"), ("z", "z0")]
    assert tree.keys() == ["a", "k1", "k1", "k1", "z"]
    assert list(tree) == tree.keys()
    assert tree.values() == ["a0", "v1", "v2", "v3", "z0"]
    assert tree.items_fast() == tree.items()
    assert tree.keys_fast() == ["a", "k1", "z"]  # one request: each key once
    assert tree.get_rangelist("k1", "z") == [("k1", "v1"), ("k1", "v2"), ("k1", "v3")]
    assert tree.items("k1") == [("k1", "v1"), ("k1", "v2"), ("k1", "v3"), ("z", "z0")]
    assert tree.match_regexlist("^k") == [("k1", "v1"), ("k1", "v2"), ("k1", "v3")]
    # keys answers: each matching key once
    assert tree.match_prefix("k") == ["k1"]
    assert tree.match_regex("^k") == ["k1"]
    # dicts hold one value per key: the last record's, as kt's dicts did
    assert tree.get_range("a", "z") == {"a": "a0", "k1": "v3"}
    assert tree.iter_from("k1") == {"k1": "v3", "z": "z0"}


def test_duplicates_across_chunk_boundaries(tree, monkeypatch):
    import kt.ops.tt as ops

    monkeypatch.setattr(ops, "ITEMS_CHUNK", 2)
    tree.set("a", "a0")
    for i in range(5):
        tree.setdup("m", f"m{i}")
    tree.set("z", "z0")
    expected = [("a", "a0")] + [("m", f"m{i}") for i in range(5)] + [("z", "z0")]
    assert tree.items() == expected
    assert tree.keys() == [k for k, _ in expected]


def test_listings_on_a_hash_database(db):
    db.set_bulk({"x": "1", "y": "2"})
    assert sorted(db.items()) == [("x", "1"), ("y", "2")]
    assert sorted(db.keys()) == sorted(db.keys_fast()) == ["x", "y"]
    with pytest.raises(ServerError):
        db.items_fast()  # ranges need a B+ tree


def test_connection_pool_keyword(tt_servers):
    db = TokyoTyrant(tt_servers.host, tt_servers.port, connection_pool=True)
    try:
        assert db.open() is True
        db.set("k", "v")
        assert db.close_idle(0) >= 1
        db.close_all()
        assert db.get("k") == "v"
    finally:
        db.close()


def test_set_master_and_restore_answers(tree, tmp_path):
    # setmst only records the master (replication starts in the background): accepted
    assert tree.set_master("127.0.0.1", 1, 0) is True
    assert tree.set_master("", 0, datetime.datetime(2020, 1, 1)) is True  # no master again
    assert tree.restore(str(tmp_path), 0) is True  # an (empty) update-log directory
    with pytest.raises(TypeError):
        tree.set_master("127.0.0.1", "1978", 0)


def test_encode_and_decode_switches(tree):
    assert tree.setdup("d", "x", encode_value=False) and tree.setdupback("d", b"w", encode_value=False)
    assert tree.get_rangelist("d", decode_values=False) == [("d", b"w"), ("d", b"x")]
    assert tree.get_range("d", decode_values=False) == {"d": b"x"}
    assert tree.match_regexlist("^d$", decode_values=False) == [("d", b"w"), ("d", b"x")]
    assert tree.set_bulk({"e": b"\xff"}, encode_values=False) and tree.get_bytes("e") == b"\xff"
    assert tree.addshl("e", "ab", 2, encode_value=False) and tree.get_bytes("e") == b"ab"
