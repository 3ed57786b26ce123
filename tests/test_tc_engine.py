"""Tokyo Cabinet engine binding (kt.server.engines.tc) against the real library."""

from __future__ import annotations

import struct

import pytest

from kt.server.engines.tc import TokyoCabinetDB, library_version

KINDS = ["*", "+", "db.tch", "db.tcb", "db.tct", "db.tcf"]


def _open(tmp_path, kind: str) -> TokyoCabinetDB:
    name = kind if kind in ("*", "+") else str(tmp_path / kind)
    return TokyoCabinetDB(name)


def test_library_version_names_tokyo_cabinet():
    assert library_version().count(".") == 2


@pytest.mark.parametrize("kind", KINDS)
def test_basic_records_every_type(tmp_path, kind):
    with _open(tmp_path, kind) as db:
        value = b"c\0v" if kind.endswith(".tct") else b"v1"
        assert db.put(b"1", value)
        assert db.get(b"1") == value
        assert db.putkeep(b"1", value) is False
        assert db.get(b"9") is None
        assert db.vsiz(b"9") == -1
        assert db.rnum() == 1
        assert db.out(b"1") and not db.out(b"1")
        assert db.rnum() == 0


@pytest.mark.parametrize("kind", ["*", "+", "db.tch", "db.tcb"])
def test_putshl_and_counters_store_native_values(tmp_path, kind):
    with _open(tmp_path, kind) as db:
        assert db.putshl(b"s", b"12345", 4) and db.get(b"s") == b"12345"  # new key: as is
        assert db.putshl(b"s", b"ab", 4) and db.get(b"s") == b"45ab"
        assert db.putshl(b"s", b"x", 0) and db.get(b"s") == b""
        assert db.addint(b"n", 5) == 5 and db.addint(b"n", -7) == -2
        assert db.get(b"n") == struct.pack("<i", -2)
        assert db.addint(b"s", 1) is None  # not a 4-byte value
        assert db.adddouble(b"d", 1.25) == 1.25
        assert db.get(b"d") == struct.pack("<d", 1.25)


def test_tree_orders_keys_and_misc_range(tmp_path):
    with _open(tmp_path, "+") as db:
        for key in (b"delta", b"alpha", b"charlie", b"bravo"):
            db.put(key, key.upper())
        assert db.fwmkeys(b"", 2) == [b"alpha", b"bravo"]
        assert db.iterinit()
        keys = []
        while (key := db.iternext()) is not None:
            keys.append(key)
        assert keys == [b"alpha", b"bravo", b"charlie", b"delta"]
        assert db.misc(b"range", [b"b", b"0", b"d"]) == [b"bravo", b"BRAVO", b"charlie", b"CHARLIE"]
        assert db.misc(b"nosuch") is None


def test_table_search_with_index_survives_reopen(tmp_path):
    path = str(tmp_path / "t.tct")
    with TokyoCabinetDB(path + "#idx=name:lex") as db:
        assert db.misc(b"put", [b"1", b"name", b"alice"]) == []
        assert db.misc(b"put", [b"2", b"name", b"bob"]) == []
    with TokyoCabinetDB(path) as db:
        result = db.misc(b"search", [b"hint", b"addcond\0name\x000\0bob"])
        assert result[0] == b"2"
        assert b'using an index: "name"' in result[1]
        assert db.type_name == "table" and db.path() == path


def test_misc_error_reports_last_error_on_file_db(tmp_path):
    with _open(tmp_path, "db.tcb") as db:
        db.get(b"missing")
        assert db.misc(b"error") == [b"22: no record found"]


def test_bad_database_name_raises_engine_error(tmp_path):
    from kt.errors import EngineError

    with pytest.raises(EngineError):
        TokyoCabinetDB(str(tmp_path / "x.unknown"))


def test_closed_database_refuses_calls(tmp_path):
    from kt.errors import EngineError

    db = _open(tmp_path, "*")
    assert db.close() and db.close()
    with pytest.raises(EngineError):
        db.get(b"k")


def test_multiple_database_skeleton(tmp_path):
    path = str(tmp_path / "m.tch")
    with TokyoCabinetDB(path, multiple=4) as db:  # ttserver -mul 4
        for i in range(100):
            assert db.put(b"k%d" % i, b"v")
        assert db.rnum() == 100 and db.type_name == "skeleton"
    assert len(list((tmp_path / "m.tch").iterdir())) == 4
    with TokyoCabinetDB(path, multiple=4) as db:
        assert db.get(b"k99") == b"v"


def test_table_empty_primary_key_fails_instead_of_aborting(tmp_path):
    """Tokyo Cabinet's table engine aborts the process (an assertion; ttserver dies with it) on a
    misc put/putkeep/putcat/putlist or putshl with an empty primary key: ours fails the call."""
    with _open(tmp_path, "db.tct") as db:
        for name in (b"put", b"putkeep", b"putcat"):
            assert db.misc(name, [b"", b"col", b"1"]) is None
        # putlist stops at the failing pair, like every other failure of a table putlist
        assert db.misc(b"putlist", [b"k1", b"a\0x", b"", b"a\0y", b"k3", b"a\0z"]) is None
        assert db.get(b"k1") == b"a\0x" and db.get(b"k3") is None
        assert db.putshl(b"", b"v", 4) is False
        assert db.rnum() == 1
        # keys that are not empty still work, and so do empty keys on the other types
        assert db.misc(b"put", [b"k2", b"col", b"2"]) == []
    with _open(tmp_path, "db.tch") as hash_db:
        assert hash_db.misc(b"put", [b"", b"v"]) == []
        assert hash_db.get(b"") == b"v"
