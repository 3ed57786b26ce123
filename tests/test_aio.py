"""kt.aio against real server processes: pipelining, cancellation, timeouts, restarts.

Plain ``asyncio.run`` per test (no plugin).  Every scenario runs against the bundled servers
and, when KTSERVER/TTSERVER are set, the real ones (the ``*_servers`` fixtures).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import sys
import threading
import time
from typing import List

import pytest

import kt
import kt.aio
from kt import OP_NUM_GE, ORDER_NUM_ASC, QueryBuilder, ServerConnectionError, ServerTimeoutError
from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer


class HoldProxy:
    """A TCP proxy whose replies can be held back (``hold()``) and let go (``release()``)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.request_bytes = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: List[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if requests:
                    with self._lock:
                        self.request_bytes += len(chunk)
                else:
                    self.flowing.wait()
                dst.sendall(chunk)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self.flowing.set()
        self._listener.close()
        for sock in self._socks:
            try:
                sock.close()
            except OSError:
                pass


@pytest.fixture
def kt_proxy(kt_servers):
    proxy = HoldProxy(kt_servers.host, kt_servers.port)
    yield proxy
    proxy.close()


def _wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _params(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


# -- the API -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sync_class, async_class",
    [(kt.KyotoTycoon, kt.aio.KyotoTycoon), (kt.Cursor, kt.aio.Cursor), (kt.TokyoTyrant, kt.aio.TokyoTyrant)],
)
def test_async_clients_have_the_sync_methods_with_the_same_signatures(sync_class, async_class):
    mapping = {"__getitem__", "__setitem__", "__delitem__", "__contains__", "__len__", "__iter__"}
    for name, attr in vars(sync_class).items():
        if name.startswith("_") and name not in mapping or name == "__init__":
            continue
        if name in mapping:
            assert not hasattr(async_class, name), f"{async_class.__name__} must not offer {name}"
            continue
        twin = getattr(async_class, name)
        if isinstance(attr, property):
            assert isinstance(inspect.getattr_static(async_class, name), property), name
            continue
        if name in ("keys", "values", "items") and async_class is not kt.aio.TokyoTyrant:
            assert inspect.isasyncgenfunction(twin), name
        elif name not in ("set_database", "cursor"):
            # One-round-trip methods return their request's future (no Task per call); Python
            # 3.12+ marks them as coroutine functions, older ones cannot (kt.aio._facade).
            assert inspect.iscoroutinefunction(twin) or (
                sys.version_info < (3, 12) and getattr(twin, "_kt_returns_awaitable", False)
            ), name
        # Same parameter names, kinds and defaults (annotations aside: iterators become async).
        assert _params(twin) == _params(getattr(sync_class, name)), name


def test_kt_basic_calls_match_the_sync_client(kt_servers):
    sync = kt_servers.client()
    sync.set_bulk({f"aio-basic-{i}": f"v{i}" for i in range(20)})

    async def main():
        async with kt.aio.KyotoTycoon(kt_servers.host, kt_servers.port, timeout=10) as db:
            assert await db.get("aio-basic-3") == "v3"
            assert await db.get("aio-basic-missing") is None
            assert await db.set("aio-basic-new", "x") == 1
            assert await db.add("aio-basic-new", "y") is False
            assert await db.incr("aio-basic-n", 3) == 3
            assert await db.get_bulk(["aio-basic-1", "aio-basic-2", "nope"]) == {
                "aio-basic-1": "v1",
                "aio-basic-2": "v2",
            }
            assert await db.count() == sync.count()
            assert await db.size == sync.size
            assert sorted(await db.match_prefix("aio-basic-1")) == sorted(sync.match_prefix("aio-basic-1"))
            keys = [key async for key in db.keys()]
            assert sorted(keys) == sorted(sync.keys())
            async with db.cursor() as cur:
                assert await cur.jump("aio-basic-0") is True
                assert (await cur.get())[1] is not None
            items = [item async for item in db.items()]
            assert dict(items) == dict(sync.items())
            with pytest.raises(kt.ScriptError):
                await db.script("no_such_procedure")
            assert await db.get("aio-basic-4") == "v4"  # the connection survived the error reply

    asyncio.run(main())


# -- pipelining --------------------------------------------------------------------------------


@pytest.mark.parametrize("coalesce", [False, True])
def test_2000_concurrent_gets_each_get_their_own_value(kt_servers, coalesce):
    sync = kt_servers.client()
    sync.set_bulk({f"aio-many-{i}": f"value-{i}" for i in range(2000)})
    sync.set_bulk({"aio-many-7": "in-db-1", "aio-only-db1": "db-1-only"}, db=1)

    async def main():
        db = kt.aio.KyotoTycoon(
            kt_servers.host, kt_servers.port, timeout=30, max_connections=2, coalesce_gets=coalesce
        )
        keys = [f"aio-many-{i}" for i in range(2000)]
        results = await asyncio.gather(*[db.get(key) for key in keys])
        assert results == [f"value-{i}" for i in range(2000)]
        # Missing keys, repeated keys and other databases in one burst.
        mixed = ["aio-many-5", "aio-missing", "aio-many-5", "aio-many-7"]
        dbs = [None, None, 0, 1]
        got = await asyncio.gather(*[db.get(key, db=d) for key, d in zip(mixed, dbs)])
        assert got == ["value-5", None, "value-5", "in-db-1"]
        # One key, present only in database 1, asked of both in one burst.
        got = await asyncio.gather(db.get("aio-only-db1", db=0), db.get("aio-only-db1", db=1))
        assert got == [None, "db-1-only"]
        assert db._pool.size <= 2
        await db.close()

    asyncio.run(main())


def test_tt_concurrent_gets_and_no_reply_writes(tt_servers):
    async def main():
        async with kt.aio.TokyoTyrant(tt_servers.host, tt_servers.port, timeout=30) as tt:
            assert await tt.set_bulk({f"aio-tt-{i}": str(i) for i in range(500)})
            got = await asyncio.gather(*[tt.get(f"aio-tt-{i}") for i in range(500)])
            assert got == [str(i) for i in range(500)]

            async def writer(n: int) -> None:
                await tt.setnr(f"aio-nr-{n}", f"nr{n}")
                assert await tt.get(f"aio-nr-{n}") == f"nr{n}"  # same task: sees its write

            await asyncio.gather(*[writer(n) for n in range(50)])
            assert [key async for key in tt if key.startswith("aio-nr-")]

    asyncio.run(main())


# -- cancellation ------------------------------------------------------------------------------


async def _odd_ones_answered(calls, expected):
    """The even-numbered calls were cancelled; each odd-numbered one got its own value."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 2 == 0:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == expected[i]


@pytest.mark.parametrize("coalesce", [True, False])
def test_cancelled_calls_never_leave_a_reply_for_later_ones(kt_servers, kt_proxy, coalesce):
    sync = kt_servers.client()
    sync.set_bulk({f"aio-cancel-{i}": f"c{i}" for i in range(1000)})

    async def main():
        db = kt.aio.KyotoTycoon(
            "127.0.0.1", kt_proxy.port, timeout=30, max_connections=2, coalesce_gets=coalesce
        )
        assert await db.get("aio-cancel-0") == "c0"  # connected through the proxy
        kt_proxy.hold()
        sent_before = kt_proxy.request_bytes
        tasks = [asyncio.ensure_future(db.get(f"aio-cancel-{i}")) for i in range(1000)]
        # Every request reached the proxy: at least 18 bytes per key whether sent one by one or
        # coalesced into get_bulk records ([dbidx:2][ksiz:4][key >= 12 bytes]).
        deadline = time.monotonic() + 30
        while kt_proxy.request_bytes - sent_before < 1000 * 18:
            assert time.monotonic() < deadline, "the requests never reached the proxy"
            await asyncio.sleep(0.01)
        for task in tasks[::2]:
            task.cancel()
        kt_proxy.release()
        await _odd_ones_answered(tasks, [f"c{i}" for i in range(1000)])
        # Later calls, on the same connections, each get their own reply.
        later = await asyncio.gather(*[db.get(f"aio-cancel-{i}") for i in range(999, -1, -1)])
        assert later == [f"c{i}" for i in range(999, -1, -1)]
        # wait_for timeouts are cancellations too.
        for i in range(0, 1000, 97):
            try:
                await asyncio.wait_for(db.get(f"aio-cancel-{i}"), 0.00001)
            except asyncio.TimeoutError:
                pass
            assert await db.get(f"aio-cancel-{i + 1}") == f"c{i + 1}"
        await db.close()

    asyncio.run(main())


# -- timeouts ----------------------------------------------------------------------------------


def test_stalled_server_times_out_then_the_client_recovers(kt_servers, kt_proxy):
    sync = kt_servers.client()
    sync.set_bulk({f"aio-stall-{i}": f"s{i}" for i in range(20)})

    async def main():
        db = kt.aio.KyotoTycoon("127.0.0.1", kt_proxy.port, timeout=0.5, max_connections=1)
        assert await db.get("aio-stall-0") == "s0"
        kt_proxy.hold()
        started = time.monotonic()
        results = await asyncio.gather(*[db.get(f"aio-stall-{i}") for i in range(20)], return_exceptions=True)
        elapsed = time.monotonic() - started
        assert all(isinstance(r, ServerTimeoutError) for r in results), results
        assert elapsed < 3.0, elapsed  # within the timeout (plus slack for a loaded machine)
        assert "0.5s" in str(results[0])
        kt_proxy.release()
        again = await asyncio.gather(*[db.get(f"aio-stall-{i}") for i in range(20)])
        assert again == [f"s{i}" for i in range(20)]
        await db.close()

    asyncio.run(main())


# -- server restart ----------------------------------------------------------------------------


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 32768:  # ktserver refuses higher ports
            return port
    return 20000 + os.getpid() % 10000


@pytest.mark.parametrize("flavour", ["bundled", "real"])
def test_server_restart_mid_load(flavour):
    binary = os.environ.get("KTSERVER") if flavour == "real" else None
    if flavour == "real" and not binary:
        pytest.skip("KTSERVER is not set (the path of a real ktserver binary)")
    server = EmbeddedServer(server=binary, port=_free_port())
    server.run()

    async def main():
        db = kt.aio.KyotoTycoon(server.host, server.port, timeout=5, connect_timeout=5)
        failures: List[BaseException] = []
        restarted = asyncio.Event()
        done_after_restart = [0]

        async def worker(n: int) -> None:
            i = 0
            while not restarted.is_set() or done_after_restart[0] < 400:
                key, value = f"restart-{n}-{i % 5}", f"{n}:{i}"
                try:
                    await db.set(key, value)
                    assert await db.get(key) == value
                    if restarted.is_set():
                        done_after_restart[0] += 1
                except ServerConnectionError as exc:
                    failures.append(exc)
                    await asyncio.sleep(0.01)
                i += 1

        workers = [asyncio.ensure_future(worker(n)) for n in range(20)]
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, server.stop)
        await loop.run_in_executor(None, server.run)
        restarted.set()
        await asyncio.wait_for(asyncio.gather(*workers), 60)
        # Errors during the outage are connection errors only; afterwards everything works.
        assert all(isinstance(f, ServerConnectionError) for f in failures)
        assert await db.get("restart-0-0") is not None
        await db.close()

    try:
        asyncio.run(main())
    finally:
        server.stop()


# -- Tokyo Tyrant tables -------------------------------------------------------------------------


def test_querybuilder_awaits_with_the_async_client(tt_servers_table):
    sync = tt_servers_table.client(serializer=kt.TT_TABLE)
    sync.clear()
    sync.set_bulk({f"u{i}": {"name": f"user{i}", "age": str(i)} for i in range(30)})
    query = QueryBuilder().filter("age", OP_NUM_GE, 25).order_by("age", ORDER_NUM_ASC)

    async def main():
        server = tt_servers_table
        async with kt.aio.TokyoTyrant(server.host, server.port, serializer=kt.TT_TABLE) as tt:
            assert await query.execute(tt) == ["u25", "u26", "u27", "u28", "u29"]
            assert await query.count(tt) == 5
            records = await query.get(tt)
            assert records[0] == ("u25", {"name": "user25", "age": "25"})
            assert await query.execute(tt) == query.execute(sync)

    asyncio.run(main())


# -- embedded servers ----------------------------------------------------------------------------


def test_embedded_servers_start_and_stop_from_asyncio():
    async def main():
        async with EmbeddedServer(server=None) as ks, EmbeddedTokyoTyrantServer(server=None) as ts:
            async with kt.aio.KyotoTycoon(ks.host, ks.port) as db:
                assert await db.set("k", "v") == 1
                assert await db.get("k") == "v"
            async with kt.aio.TokyoTyrant(ts.host, ts.port) as tt:
                assert await tt.set("k", "v")
                assert await tt.get("k") == "v"
        assert not ks.running and not ts.running

    asyncio.run(main())


# -- fork ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_connections(kt_server):
    sync = kt_server.client()
    sync.set_bulk({"aio-fork-a": "parent", "aio-fork-b": "child"})
    db = kt.aio.KyotoTycoon(kt_server.host, kt_server.port, timeout=10, max_connections=1)

    async def read(key):
        return await db.get(key)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(read("aio-fork-a")) == "parent"
        parent_conn = db._pool._conns[0]
        pid = os.fork()
        if pid == 0:  # the child: a new event loop, the same client object
            code = 1
            try:
                ok = asyncio.run(read("aio-fork-b")) == "child" and db._pool._conns[0] is not parent_conn
                code = 0 if ok else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        # The parent's connection was never touched by the child and still answers in order.
        assert loop.run_until_complete(read("aio-fork-a")) == "parent"
        assert db._pool._conns == [parent_conn]
        loop.run_until_complete(db.close())
    finally:
        loop.close()


def test_large_replies_pipelined_with_small_ones(kt_servers):
    big = {f"aio-big-{i}": os.urandom(512 * 1024).hex() for i in range(24)}  # ~24 MiB of values
    sync = kt_servers.client()
    sync.set_bulk(big)
    sync.set("aio-small", "s")

    async def main():
        async with kt.aio.KyotoTycoon(kt_servers.host, kt_servers.port, timeout=60, max_connections=1) as db:
            started = time.monotonic()
            results = await asyncio.gather(
                db.get("aio-small"), db.get_bulk(list(big)), db.get("aio-small"), db.get_bulk(list(big)[:3])
            )
            assert results[0] == results[2] == "s"
            assert results[1] == big
            assert results[3] == {k: big[k] for k in list(big)[:3]}
            assert time.monotonic() - started < 60

    asyncio.run(main())


def test_one_round_trip_methods_queue_at_call_and_raise_bad_input_at_await(kt_servers):
    """``db.get`` inside a loop returns its request's future (no Task per call); bad input
    raises where it is awaited; outside a loop the method is an ordinary coroutine."""

    async def main():
        async with kt.aio.KyotoTycoon(kt_servers.host, kt_servers.port) as db:
            await db.set("aio-eager", "v")
            pending = db.get("aio-eager")
            assert asyncio.isfuture(pending)
            assert await pending == "v"
            bad = db.get("k", db=-1)  # no exception at call time
            with pytest.raises(TypeError, match="db must be a database index"):
                await bad
            assert await db.get("aio-eager-missing") is None

            # Tasks awaiting the futures, half cancelled after their requests were queued.
            async def via_task(key):
                return await db.get(key)

            await db.set("aio-eager-2", "w")
            keys = ["aio-eager" if i % 3 else "aio-eager-2" for i in range(60)]
            tasks = [asyncio.create_task(via_task(key)) for key in keys]
            await asyncio.sleep(0)  # each task ran up to its await: every request is queued
            for task in tasks[::2]:
                task.cancel()
            await _odd_ones_answered(tasks, ["v" if i % 3 else "w" for i in range(60)])
            assert await asyncio.gather(db.get("aio-eager-2"), db.get("aio-eager")) == ["w", "v"]

    asyncio.run(main())
    client = kt.aio.KyotoTycoon(kt_servers.host, kt_servers.port)
    assert asyncio.run(client.get("aio-eager")) == "v"


def test_gets_gathered_right_after_a_no_reply_write_all_see_it(kt_servers):
    """Every get queued after a no-reply set in the same task follows it on its connection."""

    async def main():
        async with kt.aio.KyotoTycoon(kt_servers.host, kt_servers.port, max_connections=4) as db:
            await asyncio.gather(*[db.count() for _ in range(8)])  # open several connections
            for round_ in range(20):
                await db.set("aio-nr", f"v{round_}", no_reply=True)
                values = await asyncio.gather(*[db.get("aio-nr") for _ in range(8)])
                assert values == [f"v{round_}"] * 8
            await db.checkin()

    asyncio.run(main())


def test_a_turn_of_many_requests_is_written_in_chunks_and_answered_in_order(kt_servers):
    """40 gets queued in one turn on one connection go out as writes of 16, 16 and 8 requests
    (the server starts on the first while the rest are built); each caller gets its value."""
    sync = kt_servers.client()

    async def main():
        async with kt.aio.KyotoTycoon(
            kt_servers.host, kt_servers.port, max_connections=1, coalesce_gets=False
        ) as db:
            await db.get("aio-chunk-0")  # connected
            transport = db._pool._conns[0].transport
            sizes = []
            write = transport.write
            transport.write = lambda data: (sizes.append(len(data)), write(data))[1]
            keys = [f"aio-chunk-{i:02d}" for i in range(40)]  # same-size requests
            sync.set_bulk({key: key.upper() for key in keys})
            values = await asyncio.gather(*[db.get(key) for key in keys])
            assert values == [key.upper() for key in keys]
            one = len(keys[0]) + 15  # a single get: 15 bytes of head, then the key
            assert sizes == [16 * one, 16 * one, 8 * one]

    asyncio.run(main())
