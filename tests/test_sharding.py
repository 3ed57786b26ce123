"""ShardedKyotoTycoon / ShardedTokyoTyrant against real server processes.

Three independent servers per product: keys must land on the server the ketama ring names
(checked with a plain client per server), bulk and whole-database operations must split and
merge, and operations without a sharded meaning must say what to do instead.  Failover is
checked on a dual-master pair (tests/replicated.py).
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("uhashring")

from kt import (  # noqa: E402
    KT_NONE,
    EmbeddedServer,
    EmbeddedTokyoTyrantServer,
    KyotoTycoon,
    ShardedKyotoTycoon,
    ShardedTokyoTyrant,
    TokyoTyrant,
    UnshardableOperation,
)
from kt.errors import ServerConnectionError  # noqa: E402
from kt.hashring import KetamaRing  # noqa: E402
from replicated import ReplicatedPair, flavours, start_all  # noqa: E402


@pytest.fixture(scope="module", params=list(flavours("KTSERVER")))
def kt_trio(request):
    servers = start_all([EmbeddedServer(request.param, database=["*", "%"]) for _ in range(3)])
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module", params=list(flavours("TTSERVER")))
def tt_trio(request):
    servers = start_all([EmbeddedTokyoTyrantServer(request.param, database="+") for _ in range(3)])
    yield servers
    for server in servers:
        server.stop()


def _names(servers):
    return [f"{s.host}:{s.port}" for s in servers]


@pytest.fixture
def skt(kt_trio):
    client = ShardedKyotoTycoon(_names(kt_trio))
    client.clear()
    client.clear(db=1)
    yield client
    client.close()


@pytest.fixture
def stt(tt_trio):
    client = ShardedTokyoTyrant(_names(tt_trio))
    client.clear()
    yield client
    client.close()


def _direct(servers, cls):
    return {f"{s.host}:{s.port}": cls(s.host, s.port) for s in servers}


# -- placement ----------------------------------------------------------------------------


def test_kt_keys_land_on_the_server_the_ring_names(skt, kt_trio):
    ring = KetamaRing({name: 1 for name in _names(kt_trio)})
    keys = [f"user:{i}" for i in range(300)] + [b"\xff\x00raw", "é"]
    for key in keys:
        skt.set(key, f"value of {key!r}")
    direct = _direct(kt_trio, KyotoTycoon)
    for key in keys:
        owner = ring.node_of(key.encode("utf-8") if isinstance(key, str) else key)
        assert skt.shard_for(key).name == owner
        for name, client in direct.items():
            assert (client.get(key) is not None) == (name == owner), (key, name)
    assert sorted(c.count() for c in direct.values()) != [0, 0, len(keys)]  # spread over servers
    assert sum(c.count() for c in direct.values()) == skt.count() == len(keys)


def test_kt_weights_and_mapping_configuration(kt_trio):
    names = _names(kt_trio)
    client = ShardedKyotoTycoon({names[0]: 5, names[1]: 1, names[2]: 1})
    assert client.ring.weights == {names[0]: 5, names[1]: 1, names[2]: 1}
    share = sum(client.shard_for(f"k{i}").name == names[0] for i in range(7000)) / 7000
    assert 0.6 < share < 0.82
    client.close()


def test_configuration_errors_are_named(kt_trio):
    name = _names(kt_trio)[0]
    with pytest.raises(ValueError, match="listed twice"):
        ShardedKyotoTycoon([name, name])
    with pytest.raises(ValueError, match="unknown shards"):
        ShardedKyotoTycoon([name], weights={"nowhere:1": 2})
    with pytest.raises(ValueError, match="host:port"):
        ShardedKyotoTycoon(["a:notaport"])
    with pytest.raises(TypeError, match="address"):
        ShardedKyotoTycoon([42])
    with pytest.raises(ValueError, match="non-empty"):
        ShardedKyotoTycoon([])
    with pytest.raises(ValueError, match="failover_after"):
        ShardedKyotoTycoon([name], failover_after=0)


# -- Kyoto Tycoon API ---------------------------------------------------------------------


def test_kt_single_key_operations_keep_the_client_api(skt):
    assert skt.set("a", "1") == 1
    assert skt.get("a") == "1" and skt.get_raw("a") == b"1"
    assert skt.add("a", "x") is False and skt.add("b", "2") is True
    assert skt.replace("b", "3") is True and skt.get("b") == "3"
    assert skt.append("b", "4") is True and skt.get("b") == "34"
    assert skt.exists("b") and skt.check("b") and "b" in skt
    assert skt.incr("n", 5) == 5 and skt.incr("n", -2) == 3
    assert skt.cas("a", "1", "9") is True and skt.get("a") == "9"
    assert skt.seize("a") == "9" and skt.get("a") is None
    skt["c"] = "5"
    skt["c", 1] = "in db 1"
    assert skt["c"] == "5" and skt["c", 1] == "in db 1"
    del skt["c"]
    assert skt.get("c") is None and skt.get("c", db=1) == "in db 1"
    assert skt.remove("nothing") == 0
    assert skt.get.__doc__ == KyotoTycoon.get.__doc__  # delegated, documented as the client's


def test_kt_bulk_operations_split_and_merge(skt, kt_trio):
    data = {f"bulk:{i}": f"v{i}" for i in range(500)}
    assert skt.set_bulk(data) == 500
    assert skt.get_bulk(list(data) + ["missing"]) == data
    assert skt.get_bulk_raw(["bulk:1"]) == {"bulk:1": b"v1"}
    counts = [KyotoTycoon(s.host, s.port).count() for s in kt_trio]
    assert sum(counts) == 500 and max(counts) < 500
    assert skt.set_bulk({"x": 1}, db=1, y=2) == 2 and skt.get_bulk(["x", "y"], db=1) == {"x": "1", "y": "2"}
    assert skt.remove_bulk(list(data)[:100] + ["missing"]) == 100
    assert skt.count() == 400 and len(skt) == 400 and skt.count(db=1) == 2
    assert skt.set_bulk({}) == 0 and skt.get_bulk([]) == {}


def test_kt_whole_database_operations_fan_out(skt, kt_trio):
    skt.set_bulk({f"p:{i:03d}": str(i) for i in range(60)})
    skt.set_bulk({"q:1": "x"})
    assert sorted(skt.match_prefix("p:")) == [f"p:{i:03d}" for i in range(60)]
    assert len(skt.match_prefix("p:", max_keys=7)) == 7
    assert sorted(skt.match_regex("^p:00")) == [f"p:00{i}" for i in range(10)]
    assert "p:001" in skt.match_similar("p:00x", distance=1)
    assert sorted(skt.keys()) == sorted(skt.match_prefix(""))
    assert dict(skt.items())["p:010"] == "10" and len(list(skt.values())) == 61
    status = skt.status()
    assert set(status) == set(_names(kt_trio)) and sum(int(s["count"]) for s in status.values()) == 61
    assert set(skt.report()) == set(_names(kt_trio))
    assert skt.size > 0
    assert skt.synchronize() is True and skt.vacuum() is True
    cursors = skt.cursors()
    assert set(cursors) == set(_names(kt_trio))
    walked = []
    for cursor in cursors.values():
        with cursor:
            walked.extend(key for key, _ in cursor)
    assert sorted(walked) == sorted(skt.keys())
    assert skt.clear() is True and skt.count() == 0


def test_kt_unshardable_operations_say_what_to_do(skt):
    with pytest.raises(UnshardableOperation, match="client_for"):
        skt.script("echo", {"a": "b"})
    with pytest.raises(UnshardableOperation, match="cursors"):
        skt.cursor()
    with pytest.raises(UnshardableOperation, match="status"):
        skt.path  # noqa: B018
    assert isinstance(UnshardableOperation("x"), NotImplementedError)
    skt.set("k", "v")
    assert skt.client_for("k").get("k") == "v"
    assert skt.client_for("k").match_prefix("") == ["k"]  # the one server that holds it


# -- Tokyo Tyrant API ---------------------------------------------------------------------


def test_tt_keys_land_on_the_ring_server_and_bulk_merges(stt, tt_trio):
    ring = KetamaRing({name: 1 for name in _names(tt_trio)})
    data = {f"t:{i:03d}": f"v{i}" for i in range(300)}
    assert stt.set_bulk(data) is True
    direct = _direct(tt_trio, TokyoTyrant)
    for key in list(data)[:60]:
        owner = ring.node_of(key.encode())
        for name, client in direct.items():
            assert (client.get(key) is not None) == (name == owner)
    assert stt.get_bulk(list(data)) == data
    assert stt.count() == len(stt) == 300 == sum(c.count() for c in direct.values())
    assert sorted(stt.keys()) == sorted(data) and sorted(stt) == sorted(data)
    assert sorted(stt.match_prefix("t:01", max_keys=None)) == [f"t:01{i}" for i in range(10)]
    assert len(stt.match_regex("^t:1", max_keys=5)) == 5
    assert dict(stt.items()) == data and sorted(stt.values()) == sorted(data.values())
    assert list(stt.get_range("t:010", "t:015")) == [f"t:01{i}" for i in range(5)]
    assert list(stt["t:100":"t:103"]) == ["t:100", "t:101", "t:102"]
    assert stt.remove_bulk(list(data)[:100]) is True and stt.count() == 200
    assert set(stt.status()) == set(_names(tt_trio)) and stt.size > 0


def test_tt_single_key_and_misc_operations(stt):
    assert stt.set("a", "1") is True and stt.get("a") == "1" and stt["a"] == "1"
    assert stt.add("a", "2") is False and stt.append("a", "2") is True and stt.get("a") == "12"
    assert stt.length("a") == 2 and stt.exists("a") and "a" in stt
    assert stt.incr("n", 3) == 3 and stt.incr_double("d", 1.5) == 1.5
    stt.setnr("nr", "x")
    assert stt.get("nr") == "x"
    keys = [f"m{i}" for i in range(40)]
    assert stt.misc("putlist", [x for k in keys for x in (k, k.upper())]) == []
    got = stt.misc("getlist", keys + ["missing"])
    assert dict(zip(got[::2], got[1::2])) == {k.encode(): k.upper().encode() for k in keys}
    assert stt.misc("put", ["one", "1"]) == [] and stt.misc("get", ["one"]) == [b"1"]
    assert stt.misc("outlist", keys) == [] and stt.get_bulk(keys) == {}
    with pytest.raises(UnshardableOperation, match="client_for"):
        stt.misc("iterinit")
    with pytest.raises(UnshardableOperation):
        stt.iter_from("a")
    with pytest.raises(UnshardableOperation):
        stt.script("anything")
    with pytest.raises(ValueError, match="no numbered databases"):
        stt.update({"a": 1}, db=1)
    del stt["a"]
    assert stt.get("a") is None


# -- failover -----------------------------------------------------------------------------


@pytest.fixture(params=list(flavours("KTSERVER")))
def kt_pair(tmp_path, request):
    pair = ReplicatedPair("kt", str(tmp_path / "pair"), server=request.param)
    pair.start()
    yield pair
    pair.stop()


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_failover_after_n_failures_and_back_after_health_check(kt_pair):
    client = ShardedKyotoTycoon(
        [tuple(kt_pair.addresses)],
        failover_after=2,
        recheck_interval=0.2,
        serializer=KT_NONE,
        connect_timeout=2,
    )
    shard = client.shards[0]
    try:
        client.set("k", b"before")
        replica = KyotoTycoon("127.0.0.1", kt_pair.ports[1], serializer=KT_NONE)
        _wait(lambda: replica.get("k") == b"before")
        kt_pair.kill(0)
        with pytest.raises(ServerConnectionError):
            client.get("k")  # failure 1 of 2: still on the primary, the error is the caller's
        assert shard.active_index == 0
        assert client.get("k") == b"before"  # failure 2: moved, and a read is retried there
        assert shard.active_index == 1
        assert client.incr("n", 2) == 2  # refused connection: safe to send even a non-idempotent call
        client.set("k", b"during")
        kt_pair.start(0)
        primary = KyotoTycoon("127.0.0.1", kt_pair.ports[0], serializer=KT_NONE)
        _wait(lambda: primary.get("k") == b"during")  # the primary pulled the outage's writes

        def back():
            client.get("k")
            return shard.active_index == 0

        _wait(back)
        assert client.get("k") == b"during" and client.incr("n", 1) == 3
    finally:
        client.close()


def test_kt_health_check_waits_for_catch_up(kt_pair):
    from kt.failover import KTCatchUpCheck, kt_health_check, kt_replication_position

    primary, replica = (KyotoTycoon("127.0.0.1", port) for port in kt_pair.ports)
    replica.set("x", "1")
    _wait(lambda: kt_health_check(primary, replica))
    kt_pair.kill(0)
    with pytest.raises(ServerConnectionError):
        KTCatchUpCheck()(primary, replica)  # a dead primary is not healthy
    replica.set_bulk({f"k{i}": "v" for i in range(30000)})
    assert kt_replication_position(replica, primary) is None  # its master is down: no position
    kt_pair.start(0)
    check = KTCatchUpCheck()
    assert check(primary, replica) is False  # 30k updates cannot have arrived yet
    _wait(lambda: check(primary, replica), timeout=60)
    assert primary.count() == 30001  # everything the replica logged before the check arrived
    applied, newest = kt_replication_position(primary, replica)
    assert applied >= newest > 0


@pytest.mark.parametrize("server", list(flavours("TTSERVER")))
def test_tt_failover_and_catch_up_check(tmp_path, server):
    from kt.failover import TTCatchUpCheck

    pair = ReplicatedPair("tt", str(tmp_path / "ttpair"), server=server)
    pair.start()
    client = ShardedTokyoTyrant([tuple(pair.addresses)], recheck_interval=0.2, serializer=KT_NONE)
    primary, replica = (TokyoTyrant("127.0.0.1", port, serializer=KT_NONE) for port in pair.ports)
    shard = client.shards[0]
    try:
        client.set("k", b"before")
        _wait(lambda: replica.get("k") == b"before")
        _wait(lambda: TTCatchUpCheck()(primary, replica))
        pair.kill(0)
        assert client.get("k") == b"before" and shard.active_index == 1
        client.set_bulk({f"k{i}": b"during" for i in range(30000)})
        pair.start(0)
        check = TTCatchUpCheck()
        assert check(primary, replica) is False  # 30k updates cannot have arrived yet
        _wait(lambda: check(primary, replica), timeout=60)
        assert primary.count() == 30001  # caught up: everything the replica had logged arrived

        def back():
            client.get("k")
            return shard.active_index == 0

        _wait(back)
        assert client.get_bulk(["k0", "k29999"]) == {"k0": b"during", "k29999": b"during"}
    finally:
        client.close()
        pair.stop()
