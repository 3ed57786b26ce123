"""kt 0.9.6's additions on the asyncio clients (kt.aio): the same names and arguments as the
sync clients, as coroutines; no_reply writes seen by the same task's next request."""

from __future__ import annotations

import asyncio

import pytest

import kt.aio


def test_kt_no_reply_lua_and_bytes(kt_servers_lua):
    async def main():
        async with kt.aio.KyotoTycoon(kt_servers_lua.host, kt_servers_lua.port, timeout=10) as db:
            await db.clear()
            assert await db.set("a", "1", no_reply=True) is None
            assert await db.get("a") == "1"
            assert await db.set_bulk({"b": b"\xff"}, no_reply=True, encode_values=False) is None
            assert await db.get_bytes("b") == b"\xff"
            assert await db.remove("a", no_reply=True) is None
            assert await db.get("a") is None
            assert await db.lua.hset(table_key="h", key="k", value="v") == {"num": "1"}
            assert await db.lua.hget(table_key="h", key="k") == {"value": "v"}
            assert await db.length("b") == 1 and await db.keys_nonlazy() == ["b", "h"]
            assert await db.open() is True and db.serializer is kt.KT_BINARY
            async with db.cursor() as cur:
                assert await cur.is_valid() is False
                assert await cur.jump() and await cur.is_valid() is True
                assert await cur.next() == ("b", await db.get("b"))
            await db.close_all()

    asyncio.run(main())


def test_tt_no_reply_lua_and_listings(tt_servers_lua):
    async def main():
        async with kt.aio.TokyoTyrant(tt_servers_lua.host, tt_servers_lua.port, timeout=10) as db:
            await db.clear()
            assert await db.set("k", "v", no_reply=True) is None
            assert await db.get("k") == "v"
            assert await db.setdup("k", "w")
            assert await db.items() == [("k", "v"), ("k", "w")]
            assert await db.keys_fast() == ["k"]
            assert await db.seize("k") == "v"
            assert await db.lua.queue_add("q", "x") == b"ok"
            assert await db.lua.queue_size("q", as_int=True) == 1
            assert await db.close_idle() >= 0

    asyncio.run(main())


@pytest.mark.parametrize("cls", [kt.aio.KyotoTycoon, kt.aio.TokyoTyrant])
def test_kt_connection_pool_keyword(cls):
    assert cls(port=1, connection_pool=True) is not None
