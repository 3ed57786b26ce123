"""TimedDB: Kyoto Tycoon's expiring-record layer on the real Kyoto Cabinet engine."""

from __future__ import annotations

import struct
import time

import pytest

from kt.server import timeddb
from kt.server.engines import kc
from kt.server.timeddb import INT64MAX, INT64MIN, XTMAX, TimedDB, modify_exptime

ALL_TYPES = ["*", "%", ":", "-", "+", "t.kch", "t.kct", "t.kcd", "t.kcf"]


@pytest.fixture(params=ALL_TYPES)
def tdb(request, tmp_path):
    spec = request.param if "." not in request.param else str(tmp_path / request.param)
    db = TimedDB(spec)
    yield db
    db.close()


def past() -> int:
    return -(int(time.time()) - 100)  # absolute epoch 100 s ago


def test_modify_exptime_rules():
    assert modify_exptime(10, 1000) == 1010
    assert modify_exptime(-2000000000, 1000) == 2000000000
    assert modify_exptime(INT64MAX, 1000) == XTMAX
    assert modify_exptime(INT64MIN, 1000) == XTMAX
    assert modify_exptime(0, 1000) == 1000


def test_records_are_stored_with_a_5_byte_xt_header(tdb):
    tdb.set(b"k", b"v", 100)
    raw = tdb.db.get(b"k")
    assert len(raw) == 6 and raw[5:] == b"v"
    xt = int.from_bytes(raw[:5], "big")
    assert abs(xt - (time.time() + 100)) < 3
    tdb.set(b"n", b"v")
    assert tdb.db.get(b"n")[:5] == b"\xff" * 5
    assert tdb.get(b"n") == (b"v", XTMAX)


def test_expired_records_are_invisible_but_counted(tdb):
    tdb.set(b"old", b"v", past())
    assert tdb.get(b"old") is None
    assert tdb.check(b"old") is None
    assert tdb.seize(b"old") is None
    assert tdb.count() == 1
    with pytest.raises(kc.KCError) as info:
        tdb.replace(b"old", b"x")
    assert info.value.code == kc.NOREC
    with pytest.raises(kc.KCError) as info:
        tdb.remove(b"old")
    assert (info.value.code, info.value.message) == (kc.NOREC, "no record")
    assert tdb.count() == 0  # remove purged it anyway
    tdb.set(b"old", b"v", past())
    tdb.add(b"old", b"new")
    assert tdb.get(b"old") == (b"new", XTMAX)
    tdb.set(b"old", b"v", past())
    tdb.append(b"old", b"+")
    assert tdb.get(b"old") == (b"+", XTMAX)


def test_add_replace_append_cas(tdb):
    tdb.add(b"k", b"1")
    with pytest.raises(kc.KCError) as info:
        tdb.add(b"k", b"2")
    assert (info.value.code, info.value.message) == (kc.DUPREC, "record duplication")
    tdb.replace(b"k", b"3", 1000)
    assert tdb.get(b"k")[0] == b"3"
    tdb.append(b"k", b"4")
    assert tdb.get(b"k") == (b"34", XTMAX)  # append resets xt to the given one (none)
    with pytest.raises(kc.KCError) as info:
        tdb.cas(b"k", None, b"x")
    assert (info.value.code, info.value.message) == (kc.LOGIC, "status conflict")
    tdb.cas(b"k", b"34", b"5")
    assert tdb.get(b"k")[0] == b"5"
    tdb.cas(b"k", b"5", None)
    assert tdb.get(b"k") is None
    tdb.cas(b"new", None, b"n")
    assert tdb.get(b"new")[0] == b"n"
    tdb.cas(b"none", None, None)
    assert tdb.get(b"none") is None


def test_increment_rules(tdb):
    assert tdb.increment(b"n", 5) == 5
    assert tdb.increment(b"n", -7) == -2
    assert tdb.get(b"n")[0] == struct.pack(">q", -2)
    assert tdb.increment(b"n", 0) == -2
    with pytest.raises(kc.KCError):
        tdb.increment(b"fresh", 1, INT64MIN)
    assert tdb.increment(b"n", 100, INT64MAX) == 100
    assert tdb.increment(b"o", 1, 10) == 11
    tdb.set(b"text", b"abc")
    with pytest.raises(kc.KCError) as info:
        tdb.increment(b"text", 1)
    assert (info.value.code, info.value.message) == (kc.LOGIC, "logical inconsistency")
    tdb.set(b"x", struct.pack(">q", 3), 1000)
    tdb.increment(b"x", 0)
    assert tdb.get(b"x")[1] != XTMAX  # num == 0 does not write (xt untouched)


def test_increment_double_floor_layout(tdb):
    assert tdb.increment_double(b"d", 1.5) == 1.5
    assert tdb.increment_double(b"d", 2.25) == 3.75
    assert tdb.increment_double(b"d", -5.5) == -1.75
    assert tdb.get(b"d")[0].hex() == "fffffffffffffffe0000e35fa931a000"
    with pytest.raises(kc.KCError):
        tdb.increment_double(b"no", 1, float("-inf"))


def test_cursor_skips_expired_records(tdb):
    tdb.set(b"a", b"1")
    tdb.set(b"b", b"2", past())
    tdb.set(b"c", b"3")
    cur = tdb.cursor()
    assert cur.jump()
    seen = []
    while True:
        rec = cur.get(step=True)
        if rec is None:
            break
        seen.append(rec[0])
    assert sorted(seen) == [b"a", b"c"]
    cur.close()


def test_cursor_set_value_remove_seize_on_tree():
    tdb = TimedDB("%")
    for k in b"abcde":
        tdb.set(bytes([k]), bytes([k]).upper())
    cur = tdb.cursor()
    assert cur.jump(b"b")
    assert cur.remove()
    assert cur.get()[0] == b"c"
    assert cur.seize()[:2] == (b"c", b"C")
    assert cur.get()[0] == b"d"
    assert cur.set_value(b"D2", -2000000000, step=True)
    assert tdb.get(b"d") == (b"D2", 2000000000)
    assert cur.get()[0] == b"e"
    assert cur.jump_back(b"cc") and cur.get()[0] == b"a"
    assert not cur.jump(b"zzz")
    cur.close()
    tdb.close()


def test_vacuum_and_incremental_expirer_purge():
    tdb = TimedDB("%")
    for i in range(50):
        tdb.set(b"x%02d" % i, b"v", past())
    tdb.set(b"live", b"v")
    tdb.vacuum()
    assert tdb.count() == 1
    for i in range(50):
        tdb.set(b"y%02d" % i, b"v", past())
    for _ in range(400):  # writes drive the expirer
        tdb.set(b"live", b"v")
    assert tdb.count() < 51
    tdb.close()


def test_capacity_by_count_evicts():
    tdb = TimedDB("%#ktcapcnt=10")
    for i in range(200):
        tdb.set(b"k%03d" % i, b"v")
    assert tdb.count() <= 20
    assert tdb.status()["ktcapcnt"] == "10"
    tdb.close()


@pytest.mark.parametrize("name", ["p.kch", "p.kct", "p.kcd", "p.kcf"])
def test_persistent_option_stores_raw_values(tmp_path, name):
    spec = str(tmp_path / (name + "#ktopts=p"))
    tdb = TimedDB(spec)
    tdb.set(b"k", b"v", 1)
    assert tdb.db.get(b"k") == b"v"
    assert tdb.get(b"k") == (b"v", INT64MAX)
    assert tdb.status()["ktopts"] == "2"
    tdb.close()
    again = TimedDB(str(tmp_path / name))  # the option lives in the database's opaque region
    assert again.persistent and again.get(b"k") == (b"v", INT64MAX)
    again.close()


@pytest.mark.parametrize("name", ["f.kch", "f.kct"])
def test_file_written_through_timeddb_keeps_records_and_xt(tmp_path, name):
    spec = str(tmp_path / name)
    tdb = TimedDB(spec)
    expected = {}
    for i in range(300):
        xt = -(2000000000 + i) if i % 2 else INT64MAX
        tdb.set(b"key%d" % i, b"value%d" % i, xt)
        expected[b"key%d" % i] = (b"value%d" % i, 2000000000 + i if i % 2 else XTMAX)
    tdb.close()
    tdb = TimedDB(spec)
    assert tdb.count() == 300
    for key, rec in expected.items():
        assert tdb.get(key) == rec
    tdb.close()


def test_update_trigger_messages():
    messages = []
    tdb = TimedDB("*", update_trigger=messages.append)
    tdb.set(b"r1", b"v1", -2000000000)
    tdb.remove(b"r1")
    tdb.clear()
    assert messages == [
        bytes.fromhex("A1 02 07 7231 0077359400 7631"),
        bytes.fromhex("A2 02 7231"),
        bytes.fromhex("A5"),
    ]
    tdb.close()


def test_atoi_like_kc():
    assert timeddb.atoi("1abc") == 1
    assert timeddb.atoi("  -42x") == -42
    assert timeddb.atoi("") == 0
    assert timeddb.atoi("abc") == 0
    assert timeddb.atoix("2k") == 2048
    assert timeddb.db_name_of("/data/phone.kch#bnum=9") == "phone.kch"


@pytest.mark.parametrize("spec", ALL_TYPES)
def test_match_functions_agree_with_kc_and_are_binary_safe(spec, tmp_path):
    spec = spec if "." not in spec else str(tmp_path / spec)
    tdb = TimedDB(spec)
    for k in [b"apple", b"apricot", b"banana", b"band", b"bandana", b"Apple", b"ap", b"bond"]:
        tdb.set(k, b"v")
    for prefix, mx in [(b"ap", -1), (b"ban", 2), (b"", -1), (b"zz", -1), (b"a", 1)]:
        assert tdb.match_prefix(prefix, mx) == tdb.db.match_prefix(prefix, mx)
    cases = [(b"band", 1, -1), (b"band", 2, 2), (b"appl", 1, -1), (b"x", 3, -1), (b"ba", 9, 3)]
    for origin, rng, mx in cases:
        assert tdb.match_similar(origin, rng, False, mx) == tdb.db.match_similar(origin, rng, False, mx)
    tdb.set(b"b\x00nd", b"v")  # KC's C API would cut this key at the NUL
    assert b"b\x00nd" in tdb.match_prefix(b"b\x00")
    assert tdb.match_similar(b"b\x00nd", 0) == [b"b\x00nd"]
    tdb.close()


def test_atomic_bulk_operations(tdb):
    assert tdb.set_bulk({b"a": b"1", b"b\x00": b"2", b"c": b"3"}, -2000000000, atomic=True) == 3
    assert tdb.get(b"b\x00") == (b"2", 2000000000)
    tdb.set(b"old", b"v", past())
    assert tdb.get_bulk([b"a", b"b\x00", b"old", b"none"], atomic=True) == {b"a": b"1", b"b\x00": b"2"}
    assert tdb.remove_bulk([b"a", b"none", b"old"], atomic=True) == 1
    assert tdb.get(b"a") is None and tdb.db.get(b"old") is None


def _cursor_keys(tdb) -> list:
    cur = tdb.db.cursor()
    keys = []
    if cur.jump():
        while True:
            key = cur.get_key(True)
            if key is None:
                break
            keys.append(key)
    cur.close()
    return keys


@pytest.mark.parametrize("keys", [
    [b"k%03d" % i for i in range(300)],  # ascending: KC's own bulk call
    [b"k%03d" % ((i * 37) % 300) for i in range(300)] + [b"k005"],  # any order, a repeat
])
def test_set_many_matches_one_set_per_record(keys, tmp_path):
    """Same records, values, xt and (hash DB) cursor order as a set per record."""
    one, many = TimedDB("*"), TimedDB("*")
    records = [(key, b"v%d" % i, -2000000000 if i % 3 else INT64MAX) for i, key in enumerate(keys)]
    for key, value, xt in records:
        one.set(key, value, xt)
    many.set_many(records)
    assert _cursor_keys(many) == _cursor_keys(one)
    assert [many.db.get(k) for k in keys] == [one.db.get(k) for k in keys]
    one.close()
    many.close()


def test_get_many_remove_many_and_expired_records(tdb):
    tdb.set_many([(b"a", b"1", INT64MAX), (b"big", b"x" * 40000, 60), (b"old", b"v", past())])
    now = int(time.time())
    found = tdb.get_many([b"a", b"none", b"big", b"old", b"a"])
    assert found[0] == (b"1", XTMAX) and found[1] is None and found[3] is None
    assert found[2][0] == b"x" * 40000 and now + 59 <= found[2][1] <= now + 61
    assert found[4] == found[0]
    assert tdb.remove_many([b"a", b"a", b"old", b"none", b"big"]) == 2  # expired counts as absent
    assert tdb.count() == 0


def test_no_sweep_until_a_record_can_expire():
    tdb = TimedDB("*")
    for i in range(100):
        tdb.set(b"k%d" % i, b"v")
    assert not tdb._xtrecs and tdb.get(b"k1") == (b"v", XTMAX)
    tdb.set_many([(b"x%02d" % i, b"v", past()) for i in range(50)])
    assert tdb._xtrecs and tdb.get(b"x01") is None and tdb.count() == 150
    for _ in range(600):  # writes drive the expirer again: the expired records go
        tdb.set(b"live", b"v")
    assert tdb.count() < 150
    tdb.close()


def test_match_prefix_after_a_key_with_a_nul_byte():
    tdb = TimedDB("*")
    tdb.set_many([(b"ab", b"v", INT64MAX), (b"ac", b"v", INT64MAX)])
    assert sorted(tdb.match_prefix(b"a")) == [b"ab", b"ac"]  # KC's search (no NUL key yet)
    tdb.set_many([(b"a\x00z", b"v", INT64MAX)])
    assert sorted(tdb.match_prefix(b"a")) == [b"a\x00z", b"ab", b"ac"]  # whole, not cut at NUL
    tdb.close()


def test_batches_and_visitors_in_threads_do_not_deadlock():
    """Batches hold the GIL in C; visitor callbacks need it while KC holds a record lock."""
    import threading

    tdb = TimedDB("*")
    keys = [b"k%03d" % i for i in range(200)]
    tdb.set_many([(k, b"0", INT64MAX) for k in keys])
    errors = []

    def batches():
        try:
            for _ in range(50):
                tdb.set_many([(k, b"1", INT64MAX) for k in keys])
                assert len(tdb.get_many(keys)) == len(keys)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def visitors():
        try:
            for i in range(2000):
                tdb.increment(keys[i % 7] + b"n", 1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (batches, visitors, batches, visitors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and not errors
    per_thread = len(range(0, 2000, 7))  # increments of keys[0] + b"n" by each visitor thread
    assert tdb.get(keys[0] + b"n") == (struct.pack(">q", 2 * per_thread), XTMAX)
    tdb.close()
