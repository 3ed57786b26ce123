"""kt.aio.ShardedKyotoTycoon / ShardedTokyoTyrant against real server processes.

Three servers per product (bundled; the real ktserver / ttserver too when ``KTSERVER`` /
``TTSERVER`` is set): every key must land on the server the sync sharded client names, bulk
operations must split and merge, whole-database operations fan out; failover is checked on a
dual-master pair (tests/replicated.py) with ``kill -9``.  Plain ``asyncio.run`` per test.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

pytest.importorskip("uhashring")

import kt  # noqa: E402
import kt.aio  # noqa: E402
from kt import KT_NONE, EmbeddedServer, EmbeddedTokyoTyrantServer  # noqa: E402
from kt.errors import ServerConnectionError  # noqa: E402
from replicated import ReplicatedPair, flavours, start_all  # noqa: E402


@pytest.fixture(scope="module", params=list(flavours("KTSERVER")))
def kt_trio(request):
    servers = start_all([EmbeddedServer(request.param, database=["*", "%"]) for _ in range(3)])
    yield [f"{s.host}:{s.port}" for s in servers]
    for server in servers:
        server.stop()


@pytest.fixture(scope="module", params=list(flavours("TTSERVER")))
def tt_trio(request):
    servers = start_all([EmbeddedTokyoTyrantServer(request.param, database="*") for _ in range(3)])
    yield [f"{s.host}:{s.port}" for s in servers]
    for server in servers:
        server.stop()


def _direct(names, cls):
    return {name: cls(*name.split(":")[:1], int(name.split(":")[1]), serializer=KT_NONE) for name in names}


KEYS = [f"key-{i}" for i in range(300)]


def test_kt_single_keys_land_where_the_sync_client_puts_them(kt_trio):
    sync = kt.ShardedKyotoTycoon(kt_trio, serializer=KT_NONE)
    direct = _direct(kt_trio, kt.KyotoTycoon)
    sync.clear()

    async def main():
        async with kt.aio.ShardedKyotoTycoon(kt_trio, serializer=KT_NONE) as db:
            assert [db.shard_for(k).name for k in KEYS] == [sync.shard_for(k).name for k in KEYS]
            assert all(await asyncio.gather(*(db.set(k, k.encode() + b"!") for k in KEYS)))
            assert await db.get("key-7") == b"key-7!"
            assert await db.get("missing") is None
            assert await db.add("key-7", b"x") is False and await db.add("fresh", b"1") is True
            assert await db.incr("counter", 5) == 5 and await db.incr("counter", 2) == 7
            assert await db.remove("fresh") == 1 and await db.exists("fresh") is False
            with pytest.raises(TypeError, match="cannot await"):
                db["key-7"]
            with pytest.raises(TypeError, match="cannot await"):
                len(db)

    asyncio.run(main())
    for key in KEYS:  # on the ring's server, and only there
        owner = sync.shard_for(key).name
        assert direct[owner].get(key) == key.encode() + b"!"
        assert all(direct[name].get(key) is None for name in kt_trio if name != owner)
    assert sync.incr("counter", 0) == 7  # the sync client finds what the async one wrote
    sync.close()


def test_kt_bulk_split_merge_and_fan_out(kt_trio):
    direct = _direct(kt_trio, kt.KyotoTycoon)

    async def main():
        async with kt.aio.ShardedKyotoTycoon(kt_trio, serializer=KT_NONE) as db:
            await db.clear()
            await db.clear(db=1)
            data = {k: k.encode() for k in KEYS}
            assert await db.set_bulk(data) == len(KEYS)
            assert await db.set_bulk({"b1": b"x"}, db=1) == 1
            per_server = {name: 0 for name in kt_trio}
            for key in KEYS:
                per_server[db.shard_for(key).name] += 1
            assert all(per_server.values())  # 300 keys reach all three servers
            assert {name: c.count() for name, c in direct.items()} == per_server
            wanted = KEYS[::7] + ["nope"]
            assert await db.get_bulk(wanted) == {k: k.encode() for k in KEYS[::7]}
            assert await db.count() == len(KEYS) and await db.count(db=1) == 1
            assert sorted(await db.match_prefix("key-1")) == sorted(k for k in KEYS if k.startswith("key-1"))
            assert len(await db.match_prefix("key-", max_keys=10)) == 10
            assert sorted([k async for k in db.keys()]) == sorted(KEYS)
            status = await db.status()
            assert set(status) == set(kt_trio) and sum(int(s["count"]) for s in status.values()) == len(KEYS)
            assert await db.size == sum(int(s["size"]) for s in status.values())
            assert await db.remove_bulk(KEYS[:100] + ["nope"]) == 100
            assert await db.count() == 200
            assert await db.clear() is True and await db.count() == 0
            with pytest.raises(kt.UnshardableOperation):
                await db.script("echo")

    asyncio.run(main())


def test_tt_placement_bulk_misc_and_fan_out(tt_trio):
    sync = kt.ShardedTokyoTyrant(tt_trio, serializer=KT_NONE)
    direct = _direct(tt_trio, kt.TokyoTyrant)

    async def main():
        async with kt.aio.ShardedTokyoTyrant(tt_trio, serializer=KT_NONE) as db:
            await db.clear()
            assert [db.shard_for(k).name for k in KEYS] == [sync.shard_for(k).name for k in KEYS]
            assert await db.set_bulk({k: k.encode() for k in KEYS}) is True
            assert await db.set("one", b"1") is True and await db.get("one") == b"1"
            assert await db.get_bulk(["one", "key-3", "nope"]) == {"one": b"1", "key-3": b"key-3"}
            assert await db.count() == len(KEYS) + 1
            assert await db.misc("putlist", ["p1", "a", "p2", "b", "p3", "c"]) == []
            got = await db.misc("getlist", ["p1", "p2", "p3", "nope"])
            assert dict(zip(got[::2], got[1::2])) == {b"p1": b"a", b"p2": b"b", b"p3": b"c"}
            assert sorted(await db.match_prefix("key-2", max_keys=None)) == sorted(
                k for k in KEYS if k.startswith("key-2")
            )
            assert await db.remove_bulk(["p1", "p2", "p3"]) is True and await db.remove_bulk([]) is True
            assert await db.set_bulk({}) is True

    asyncio.run(main())
    for key in KEYS:
        assert direct[sync.shard_for(key).name].get(key) == key.encode()
    sync.close()


def test_tt_errors_come_after_every_part_ran(tt_trio):
    """One shard down: the other shards' parts of a bulk write are applied, then the error."""

    async def main():
        dead = "127.0.0.1:1"  # nobody listens there
        async with kt.aio.ShardedTokyoTyrant([*tt_trio, dead], serializer=KT_NONE, connect_timeout=2) as db:
            data = {k: b"v" for k in KEYS}
            with pytest.raises(ServerConnectionError):
                await db.set_bulk(data)
            alive = [k for k in KEYS if db.shard_for(k).name != dead]
            assert len(alive) < len(KEYS)
            async with kt.aio.ShardedTokyoTyrant(tt_trio, serializer=KT_NONE) as live:
                assert await live.get_bulk(alive) == {k: b"v" for k in alive}
                await live.clear()

    asyncio.run(main())


async def _eventually(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("product", ["kt", "tt"])
@pytest.mark.parametrize("real", [False, True], ids=["bundled", "real"])
def test_failover_to_the_replica_and_back(tmp_path, product, real, request):
    variable = "KTSERVER" if product == "kt" else "TTSERVER"
    if real and not os.environ.get(variable):
        pytest.skip(f"{variable} is not set")
    if real and product == "kt":
        # seen once in three runs: back on the restarted ktserver before it applied "during"
        request.applymarker(pytest.mark.xfail(reason="open: flaky against the real ktserver", strict=False))
    pair = ReplicatedPair(product, str(tmp_path / "pair"), server=os.environ.get(variable) if real else None)
    pair.start()
    cls = kt.aio.ShardedKyotoTycoon if product == "kt" else kt.aio.ShardedTokyoTyrant
    blocking = kt.KyotoTycoon if product == "kt" else kt.TokyoTyrant
    primary, replica = (blocking("127.0.0.1", port, serializer=KT_NONE) for port in pair.ports)

    async def main():
        shards = [tuple(pair.addresses)]
        async with cls(shards, recheck_interval=0.2, serializer=KT_NONE, connect_timeout=2) as db:
            shard = db.shards[0]
            await db.set("k", b"before")

            async def replicated():
                return replica.get("k") == b"before"

            await _eventually(replicated)
            pair.kill(0)
            assert await db.get("k") == b"before"  # refused: retried on the replica
            assert shard.active_index == 1
            # many concurrent calls during the outage: each gets its own key's value
            keys = [f"f{i}" for i in range(200)]
            assert all(await asyncio.gather(*(db.set(k, k.encode()) for k in keys)))
            values = await asyncio.gather(*(db.get(k) for k in keys))
            assert values == [k.encode() for k in keys]
            await db.set("k", b"during")
            pair.start(0)

            async def back():
                await db.get("k")
                return shard.active_index == 0

            await _eventually(back, timeout=60)
            assert await db.get("k") == b"during"  # the primary applied the outage's writes
            assert await db.get_bulk(keys) == {k: k.encode() for k in keys}

    try:
        asyncio.run(main())
    finally:
        primary.close()
        replica.close()
        pair.stop()


def test_a_call_that_may_have_run_is_not_repeated(tmp_path):
    """failover_after=2: the first failure is the caller's; a non-idempotent call is not retried
    unless the connection was refused."""
    pair = ReplicatedPair("kt", str(tmp_path / "pair"))
    pair.start()

    async def main():
        async with kt.aio.ShardedKyotoTycoon(
            [tuple(pair.addresses)], failover_after=2, recheck_interval=30, serializer=KT_NONE
        ) as db:
            shard = db.shards[0]
            assert await db.incr("n", 1) == 1
            pair.kill(0)
            with pytest.raises(ServerConnectionError):
                await db.get("n")
            assert shard.active_index == 0
            await db.exists("n")  # failure 2: moves to the replica, retried there
            assert shard.active_index == 1

    try:
        asyncio.run(main())
    finally:
        pair.stop()
