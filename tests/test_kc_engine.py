"""Kyoto Cabinet binding: every database type ktserver accepts, opened through the real library."""

from __future__ import annotations

import pytest

from kt.server.engines import kc

MEMORY_TYPES = ["*", "%", ":", "-", "+"]
FILE_TYPES = ["db.kch", "db.kct", "db.kcd", "db.kcf"]
TREE_TYPES = {"%", "+", "db.kct", "db.kcf"}


@pytest.fixture(params=MEMORY_TYPES + FILE_TYPES)
def db(request, tmp_path):
    name = request.param if request.param in MEMORY_TYPES else str(tmp_path / request.param)
    handle = kc.KCDB(name)
    handle.kind = request.param
    yield handle
    handle.close()


def test_record_operations(db):
    assert db.get(b"k") is None
    db.set(b"k", b"v\x00\xff")
    assert db.get(b"k") == b"v\x00\xff"
    assert db.check(b"k") == 3
    assert db.check(b"nope") == -1
    assert db.add(b"k", b"x") is False
    assert db.add(b"k2", b"x") is True
    assert db.replace(b"missing", b"x") is False
    assert db.replace(b"k2", b"y") is True
    db.append(b"k2", b"z")
    assert db.get(b"k2") == b"yz"
    assert db.count() == 2
    assert db.seize(b"k2") == b"yz"
    assert db.get(b"k2") is None
    assert db.remove(b"k") is True
    assert db.remove(b"k") is False
    assert db.count() == 0
    db.set(b"a", b"1")
    db.clear()
    assert db.count() == 0
    db.synchronize(hard=False)


def test_accept_visitor_read_modify_write(db):
    seen = []

    def visitor(key, value):
        seen.append((key, value))
        return (value or b"") + b"+"

    db.accept(b"k", visitor)
    db.accept(b"k", visitor)
    assert seen == [(b"k", None), (b"k", b"+")]
    assert db.get(b"k") == b"++"
    db.accept(b"k", lambda k, v: kc.REMOVE)
    assert db.get(b"k") is None
    db.accept(b"k", lambda k, v: kc.NOP)
    assert db.get(b"k") is None


def test_visitor_exception_propagates_and_leaves_record(db):
    db.set(b"k", b"v")

    def boom(key, value):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        db.accept(b"k", boom)
    assert db.get(b"k") == b"v"


def test_cursor_walk_and_back_support(db):
    keys = [b"a", b"b", b"c"]
    for k in keys:
        db.set(k, k.upper())
    cur = db.cursor()
    assert cur.jump()
    walked = []
    while True:
        rec = cur.get(step=True)
        if rec is None:
            break
        walked.append(rec)
    assert sorted(walked) == [(k, k.upper()) for k in keys]
    if db.kind in TREE_TYPES:
        assert walked == [(k, k.upper()) for k in keys]
        assert cur.jump_back()
        assert cur.get_key() == b"c"
        assert cur.step_back()
        assert cur.get_key() == b"b"
        assert cur.jump(b"bb") and cur.get_key() == b"c"
    else:
        with pytest.raises(kc.KCError) as info:
            cur.jump_back()
        assert info.value.code == kc.NOIMPL
    assert cur.jump()
    first = cur.get_key()
    assert cur.set_value(b"new")
    assert db.get(first) == b"new"
    assert cur.remove()
    assert db.get(first) is None
    assert db.count() == 2
    cur.close()


def test_match_searches(db):
    for k in [b"apple", b"apricot", b"banana", b"band", b"Apple"]:
        db.set(k, b"v")
    assert sorted(db.match_prefix(b"ap")) == [b"apple", b"apricot"]
    if db.kind in TREE_TYPES:
        assert db.match_prefix(b"ap") == [b"apple", b"apricot"]
    assert len(db.match_prefix(b"ap", 1)) == 1
    assert sorted(db.match_regex(b"an")) == [b"banana", b"band"]
    assert db.match_similar(b"band", 1) == [b"band"]
    with pytest.raises(kc.KCError) as info:
        db.match_regex(b"(")
    assert info.value.code == kc.LOGIC


def test_status_and_path(db):
    status = db.status()
    assert status["count"] == "0"
    assert int(status["realtype"]) in {16, 17, 24, 32, 33, 48, 49, 64, 65}
    assert db.path().endswith(db.kind if db.kind in MEMORY_TYPES else db.kind)


def test_tuning_options_are_parsed(tmp_path):
    db = kc.KCDB(str(tmp_path / "t.kch#bnum=1000#ktopts=p#ktcapcnt=5"))
    assert db.status()["bnum"] == "1000"
    db.close()
    cache = kc.KCDB("*#capcnt=10")
    assert cache.status()["capcnt"] == "10"
    cache.close()


def test_file_database_survives_reopen(tmp_path):
    path = str(tmp_path / "p.kct")
    with kc.KCDB(path) as db:
        for i in range(100):
            db.set(b"k%03d" % i, b"v%d" % i)
    with kc.KCDB(path) as db:
        assert db.count() == 100
        assert db.get(b"k042") == b"v42"


def test_bad_name_and_closed_use():
    with pytest.raises(kc.EngineError, match="unknown database type"):
        kc.KCDB("x.unknown")
    db = kc.KCDB("*")
    db.close()
    with pytest.raises(kc.EngineError, match="closed"):
        db.get(b"k")


def test_transaction_rollback(tmp_path):
    with kc.KCDB(str(tmp_path / "t.kch")) as db:
        db.set(b"keep", b"1")
        db.begin_transaction()
        db.set(b"gone", b"2")
        db.end_transaction(commit=False)
        assert db.get(b"gone") is None
        assert db.get(b"keep") == b"1"
