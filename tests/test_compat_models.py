"""kt.models (coleifer/kt 0.9.6's model layer) on a table database, bundled and real ttserver.

Scenarios follow the spirit of kt's own model tests: CRUD through the class and the
instance, bulk helpers, every field type round-tripping, and queries built from field
expressions (string, numeric, date/time conditions, ordering, limits, deletes).
"""

from __future__ import annotations

import datetime

import pytest

from kt import KT_NONE
from kt.models import (
    BytesField,
    DateField,
    DateTimeField,
    Expression,
    FloatField,
    IntegerField,
    Model,
    ModelSearch,
    SearchField,
    TableDatabase,
    TextField,
    TimestampField,
    TokenField,
    deserialize_into_model,
    serialize_model,
)
from kt.tokyotyrant import OP_NEGATE, OP_NUM_GE, ORDER_NUM_DESC


@pytest.fixture
def db(tt_servers_table):
    client = tt_servers_table.client(serializer=KT_NONE)
    client.clear()
    yield client
    client.clear()


@pytest.fixture
def Base(db):
    class Base(Model):
        __database__ = db

    return Base


def test_table_database_is_a_raw_table_client(tt_servers_table):
    db = TableDatabase(tt_servers_table.host, tt_servers_table.port)
    try:
        db.clear()
        assert db.set("r", b"a\x00b")
        assert db.get("r") == b"a\x00b"
    finally:
        db.clear()
        db.close()


def test_crud_through_class_and_instance(Base, db):
    class User(Base):
        name = TextField()
        dob = TextField()
        status = IntegerField()

    User.create("u1", name="charlie", dob="1983-01-01", status=1)
    User.create("u3", name="mickey", dob="2009-05-01", status=3)
    u = User["u1"]
    assert (u.key, u.name, u.dob, u.status) == ("u1", "charlie", "1983-01-01", 1)
    assert repr(u) == "<User: u1>"

    u = User["u3"]
    u.status = 4
    assert u.save()
    assert User["u3"].status == 4

    User(key="u4", name="zaizee").save()
    u4 = User["u4"]
    assert u4.name == "zaizee" and u4.status is None and u4["name"] == "zaizee"
    assert u4.delete() == 1
    with pytest.raises(KeyError):
        User["u4"]
    with pytest.raises(ValueError):
        User(name="nokey").save()
    with pytest.raises(ValueError):
        User(name="nokey").delete()
    # the record really is a table record the server can search
    assert db.search([("addcond", "name", 0, "mickey")]) == ["u3"]


def test_class_item_access_and_bulk_helpers(Base, db):
    class KV(Base):
        value = TextField()
        status = IntegerField()

    for i in range(1, 5):
        KV[f"k{i}"] = {"value": f"v{i}", "status": i}
    assert [(m.key, m.status) for m in KV.get_list(["k1", "xx", "k4", "k3"])] == [
        ("k1", 1), ("k4", 4), ("k3", 3)]
    assert [m.key for m in KV["k4", "xx", "k2"]] == ["k4", "k2"]
    with pytest.raises(ValueError):
        KV["other"] = KV(key="k1", value="x")
    assert KV.delete_list(["k1", "kx", "k4", "k3"])
    assert len(db) == 1
    assert [(m.key, m.value) for m in KV.all()] == [("k2", "v2")]
    assert KV.count() == 1
    del KV["k2"]
    with pytest.raises(KeyError):
        KV["k2"]
    assert KV.create_list([KV(key=f"k{i}", status=i) for i in range(3)])
    del KV["k0", "k1"]
    assert [m.key for m in KV.all()] == ["k2"]


def test_every_field_type_round_trips(Base):
    class T(Base):
        bytes_field = BytesField()
        text_field = TextField()
        int_field = IntegerField()
        float_field = FloatField()
        dt_field = DateTimeField()
        d_field = DateField()
        ts_field = TimestampField()
        local_ts = TimestampField(utc=False)
        tk_field = TokenField()
        fts_field = SearchField()

    dt = datetime.datetime(2018, 1, 2, 3, 4, 5, 6789)
    d = datetime.date(2018, 12, 25)
    T.create(key="t1", bytes_field=b"\xfftest\xff", text_field="tést", int_field=7, float_field=3.14,
             dt_field=dt, d_field=d, ts_field=dt, local_ts=dt, tk_field="foo bar", fts_field="huey zaizee")
    t1 = T["t1"]
    assert t1.bytes_field == b"\xfftest\xff"
    assert (t1.text_field, t1.int_field, t1.float_field) == ("tést", 7, 3.14)
    assert (t1.dt_field, t1.d_field, t1.ts_field, t1.local_ts) == (dt, d, dt, dt)
    assert (t1.tk_field, t1.fts_field) == ("foo bar", "huey zaizee")
    # a date or whole seconds are accepted by a TimestampField too
    T.create(key="t3", ts_field=d, local_ts=86400)
    assert T["t3"].ts_field == datetime.datetime(2018, 12, 25)
    T.create(key="t2")
    t2 = T["t2"]
    assert all(getattr(t2, name) is None for name in T.__fields__ if name != "key")


def test_defaults_unknown_columns_and_serialization_helpers(Base, db):
    calls = []

    class D(Base):
        a = IntegerField(default=5)
        b = TextField(default=lambda: calls.append(1) or "made")

    d = D(key="d1")
    assert (d.a, d.b, calls) == (5, "made", [1])
    key, record = serialize_model(d)
    assert key == "d1" and record == b"a\x005\x00b\x00made\x00"
    db.set("d2", b"a\x009\x00extra\x00x\x00")
    d2 = D["d2"]
    assert (d2.a, d2.extra) == (9, "x")
    assert deserialize_into_model(D, "d3", {"a": "3"}).a == 3


def test_inherited_fields_are_bound_to_each_subclass(Base):
    class Parent(Base):
        name = TextField(index=True)

    class Child(Parent):
        age = IntegerField()

    assert Child.name is not Parent.name and Child.name.model is Child
    assert set(Child.__fields__) == {"key", "name", "age"}
    assert [f.name for f in Child.__indexes__] == ["name"]


def test_expressions_and_orderings():
    class E(Model):
        n = IntegerField()
        s = TextField()

    assert tuple(E.n >= 3) == tuple(Expression(E.n, OP_NUM_GE, 3))
    assert (E.s != "x").op & OP_NEGATE
    assert E.n.desc() == (E.n, ORDER_NUM_DESC)
    assert E.n.between(1, 2).rhs == (1, 2)
    # fields stay hashable although == builds an expression
    assert {E.n: 1}[E.n] == 1


def test_queries(Base):
    class User(Base):
        username = TextField()
        status = IntegerField(index=True)
        tags = TextField(index=True)

    for name, status, tags in [("huey", 1, "cat white"), ("mickey", 2, "dog black"),
                               ("zaizee", 1, "cat gray black"), ("scout", 2, "dog black white"),
                               ("pipey", 3, "bird red")]:
        User.create(name, username=name, status=status, tags=tags)
    User.create_indexes()
    User.create_indexes()  # safe: existing indexes are fine
    query = User.query().filter(User.status < 3, User.tags.contains_any("white")).order_by(User.status.desc())
    assert query.execute() == ["scout", "huey"]
    base = User.query().filter(User.status == 1)
    assert base.order_by(User.username).execute() == ["huey", "zaizee"]
    assert base.order_by(User.username.desc()).execute() == ["zaizee", "huey"]  # base unchanged
    assert list(base.order_by(User.username).limit(1)) == ["huey"]
    assert base.order_by(User.username).offset(1).execute() == ["zaizee"]
    assert isinstance(base, ModelSearch) and base.count() == 2
    User.optimize_indexes()
    User.drop_indexes()
    assert base.count() == 2


def test_query_get_delete_and_string_ops(Base):
    class KV(Base):
        value = TextField()
        status = IntegerField(index=True)

    KV.create_list([KV(key=f"k{i}", value=f"v{i}", status=i) for i in range(20)])
    q = KV.query().filter(KV.value.endswith("5")).order_by(KV.status)
    assert q.execute() == ["k5", "k15"] and q.count() == 2
    assert KV.query().filter(KV.value.startswith("v1"), KV.status < 13).order_by(KV.value).execute() == [
        "k1", "k10", "k11", "k12"]
    KV.query().filter(KV.value.endswith("9")).delete()
    for gone in ("k9", "k19"):
        with pytest.raises(KeyError):
            KV[gone]
    assert KV.query().count() == 18
    assert KV.query().filter(KV.value.contains_any_exact("v4", "v1", "v3")).order_by(
        KV.status.desc()).execute() == ["k4", "k3", "k1"]
    assert KV.query().filter(KV.status.between(12, 15)).order_by(KV.value).execute() == [
        "k12", "k13", "k14", "k15"]
    assert KV.query().filter(KV.status.matches_any(8, 10, 11, 12)).filter(KV.value != "v11").filter(
        KV.status != 10).order_by(KV.value).execute() == ["k12", "k8"]
    got = KV.query().filter(KV.status < 3).order_by(KV.status.desc()).get()
    assert [(m.key, m.value, m.status) for m in got] == [("k2", "v2", 2), ("k1", "v1", 1), ("k0", "v0", 0)]


def test_text_conditions(Base):
    class KV(Base):
        value = TextField()

    KV["k1"] = {"value": "baz zoo bar"}
    KV["k2"] = {"value": "foo bar baz"}
    KV["k3"] = {"value": "nug baze zoo"}

    def keys(expression):
        return KV.query().filter(expression).order_by(KV.value).execute()

    assert keys(KV.value.regex("^baz")) == ["k1"]
    assert keys(KV.value.regex("[bf]o{2}")) == ["k2"]
    assert keys(KV.value.contains("zoo")) == ["k1", "k3"]
    assert keys(KV.value.startswith("ba")) == ["k1"]
    assert keys(KV.value.endswith("oo")) == ["k3"]
    assert keys(KV.value.contains_all("bar", "baz")) == ["k1", "k2"]
    assert keys(KV.value.contains_any("zoo", "baz")) == ["k1", "k2", "k3"]
    assert keys(KV.value.contains_any_exact("bar", "baz")) == []
    assert keys(KV.value == "foo bar baz") == ["k2"]


def test_numeric_and_time_conditions(Base):
    class Event(Base):
        n = IntegerField()
        dt = DateTimeField(index=True)
        ts = TimestampField(index=True)

    moments = [datetime.datetime(2018, 1, 2, 3, 4, 5, 6789), datetime.datetime(2018, 1, 3, 2),
               datetime.datetime(2018, 2, 1), datetime.datetime(2018, 12, 1)]
    for i, moment in enumerate(moments, 1):
        Event.create(key=f"e{i}", n=i, dt=moment, ts=moment)

    def keys(expression):
        return Event.query().filter(expression).order_by(Event.dt).execute()

    def D(m=1, d=1):
        return datetime.datetime(2018, m, d)

    assert keys(Event.dt.startswith("2018-01")) == ["e1", "e2"]
    assert keys(Event.dt.endswith("000000")) == ["e2", "e3", "e4"]
    assert keys(Event.ts < D(m=2)) == ["e1", "e2"]
    assert keys(Event.ts == D(m=2)) == ["e3"]
    assert keys(Event.ts != D(m=2)) == ["e1", "e2", "e4"]
    assert keys(Event.ts.between(D(d=3), D(m=3))) == ["e2", "e3"]
    assert keys(Event.n > 2) == ["e3", "e4"]
    assert keys(Event.n.matches_any(4, 1)) == ["e1", "e4"]
