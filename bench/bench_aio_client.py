"""asyncio pipelining: 100 concurrent single gets vs the sync client's sequential gets.

One server (bundled by default; ``KT_BENCH_REAL=1`` + ``KTSERVER`` for the real ktserver),
all candidates measured interleaved in one run, 100-byte values, KT_NONE serializer:

* ``sync sequential``: ``kt.KyotoTycoon.get`` 100 times in a row (one round trip each);
* ``aio 1 conn``: ``kt.aio.KyotoTycoon`` with ``max_connections=1, coalesce_gets=False``,
  100 ``get``s gathered (written back to back on one connection, replies matched in order);
* ``aio 1 conn + coalesce``: the same with ``coalesce_gets=True`` (the default: one
  ``get_bulk``);
* ``aio pool of 4``: ``max_connections=4, coalesce_gets=False``, 100 gets gathered;
* ``asyncio floor: 100 bare tasks``: 100 coroutines gathered, each awaiting a future that
  the loop resolves a turn later, no kt and no I/O: the ceiling of any client whose methods
  are coroutines (``gather`` runs each in its own Task);
* ``futures floor: 100 gathered futures``: 100 plain futures gathered and resolved together
  by one loop callback (as one batch of replies is), no kt and no I/O: the ceiling of any
  client whose calls return futures awaited through ``gather``.

One op = one get; the event loop is created once and reused (as in a long-running service).

    .venv/bin/python bench/bench_aio_client.py [--markdown bench/README.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from _common import QUICK, bundled_server, compare, markdown_table, rows_for, value_of, write_section
from kt import KT_NONE
from kt.aio import KyotoTycoon as AsyncKyotoTycoon
from kt.kyototycoon import KyotoTycoon

CONCURRENT = 100
VALUE = value_of(100)
KEYS = [f"aio-key-{i:04d}" for i in range(CONCURRENT)]
SECTION_START = "<!-- aio-client-bench:start -->"
SECTION_END = "<!-- aio-client-bench:end -->"
NOTES = """Reading it (2-core VM shared with other busy processes, so rows move by tens of percent
between runs; the server's own CPU shares the machine with the client; the load average of
the run is in the heading):

* Throughput here is bounded by CPU per get (client and server on two shared cores), not by
  round trips. The two floor rows are asyncio alone, no kt and no I/O: `100 bare tasks` is
  the ceiling of a client whose methods are coroutines (`gather` makes a Task for each);
  `100 gathered futures` is the ceiling of any client whose calls are awaited through
  `gather` (a future each, `gather`'s callback each, one loop callback resolving them all).
  kt.aio's one-round-trip methods return their queued request's future, so they run between
  the two floors.
* Client instructions per get (callgrind, 100 gets gathered, real ktserver; steady under
  load): futures floor 20,071, bare tasks 63,653; kt.aio 1 conn 70,526 (coroutine
  methods, main before issue 12's follow-up) -> 40,051 (future-returning, h12b) ->
  34,957 (tuple waiters, one clock read per turn, one call in the transport, façade methods
  generated with the sync signatures) -> 29,837
  with the C client codecs (k13cl) -> 28,619 (a run of replies answered in one C call,
  kt._speedups.aio_pipeline) -> 27,899 (one-connection fast path in submit) -> 28,472
  (writes every 16 requests, below); coalesced 80,789 -> 44,265 -> 37,171 -> 32,218 ->
  31,525.
  What remains above the floor per get: the façade call and the operation's plan (argument
  checks, key encoding, request bytes), one tuple and two appends in the queue, a share of one
  write per loop turn, the reply parse (or a slice and a dict lookup of the coalesced
  get_bulk reply) and `set_result`.
* Client CPU per get also holds kernel time that callgrind does not count: the sends, one recv
  and epoll wake-up per arriving chunk of replies, and each burst's `run_until_complete`.
* Where one connection's time goes (real ktserver, getrusage and /proc per burst, k12b):
  ktserver spends ~8 µs of its own CPU per pipelined get (it writes each reply with its own
  send) against ~1.3 µs per get of a coalesced get_bulk; the client ~9.5 µs (user ~8, sys
  ~1.5). With one write at the end of the turn the three phases ran one after another (the
  client builds 100 requests, the server answers them, the client reads them in ~1 recv):
  wall time per get = client + server. Writing every 16 requests lets the server start while
  the rest are built: +10-25% gets/s on one connection (interleaved, 2..32 tried, 16 best),
  and less client CPU per get (fewer sleeps). Merging coalesced gets early was tried too and
  is slower (one get_bulk per turn stays).
* Targets of the issue: >= 20x with coalescing needs < 2.8 µs of wall time per get on the
  quiet machine (sync 17.7k gets/s), about what the futures floor alone costs: not reachable
  with one future per awaited get in CPython's asyncio. >= 5x needs < 11.3 µs per get: the
  client CPU ratio to sync in the run of 2026-12-01 03:16 UTC (load ~9: 33.5 / 15.8 µs one
  connection, 33.5 / 13.6 coalesced)
  puts one connection near 4.5x and coalesced near 5x on a quiet machine, if the client stays
  the bottleneck there.
* Coalescing (one get_bulk for the gets queued on one connection in one loop turn) is faster
  and always gives the same results as one by one (missing keys, duplicates, db=;
  tests/test_aio.py), so it is on by default.
"""


def candidates(host: str, port: int, loop: asyncio.AbstractEventLoop) -> dict:
    sync = KyotoTycoon(host, port, serializer=KT_NONE)
    sync.set_bulk(dict.fromkeys(KEYS, VALUE))

    def sequential() -> None:
        get = sync.get
        for key in KEYS:
            get(key)

    def gathered(client: AsyncKyotoTycoon):
        async def burst() -> None:
            values = await asyncio.gather(*[client.get(key) for key in KEYS])
            if values[-1] != VALUE:
                raise AssertionError("wrong value")

        return lambda: loop.run_until_complete(burst())

    async def bare_tasks() -> None:
        # The asyncio floor of "100 awaited calls": one Task per coroutine (what gather makes),
        # each awaiting a future resolved in a later loop turn.  No kt, no I/O.
        def one() -> asyncio.Future[None]:
            future = loop.create_future()
            loop.call_soon(future.set_result, None)
            return future

        async def call() -> None:
            await one()

        await asyncio.gather(*[call() for _ in KEYS])

    async def bare_futures() -> None:
        # The asyncio floor of "100 gathered futures": what a future-returning client cannot
        # go below (a future each, gather's callback each, one loop turn resolves them all).
        futures = [loop.create_future() for _ in KEYS]

        def resolve() -> None:
            for future in futures:
                future.set_result(None)

        loop.call_soon(resolve)
        await asyncio.gather(*futures)

    aio_one = AsyncKyotoTycoon(host, port, serializer=KT_NONE, max_connections=1, coalesce_gets=False)
    aio_merge = AsyncKyotoTycoon(host, port, serializer=KT_NONE, max_connections=1, coalesce_gets=True)
    aio_four = AsyncKyotoTycoon(host, port, serializer=KT_NONE, max_connections=4, coalesce_gets=False)
    return {
        "sync sequential": sequential,
        "aio 1 conn": gathered(aio_one),
        "aio 1 conn + coalesce": gathered(aio_merge),
        "aio pool of 4": gathered(aio_four),
        "asyncio floor: 100 bare tasks": lambda: loop.run_until_complete(bare_tasks()),
        "futures floor: 100 gathered futures": lambda: loop.run_until_complete(bare_futures()),
    }


def write_markdown(path: str, table: str, server_kind: str) -> None:
    intro = (
        f"Server: {server_kind}; {CONCURRENT} gets of distinct keys per call (100-byte values, "
        "KT_NONE); ops/s counts gets. `x sync` = relative to the sync client's sequential gets "
        "in the same run."
    )
    title = "## asyncio client (`bench/bench_aio_client.py`)"
    write_section(path, SECTION_START, SECTION_END, f"{title}\n\n{intro}\n\n{table}\n\n{NOTES}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown", help="write the table into this markdown file's asyncio section")
    args = parser.parse_args(argv)
    loop = asyncio.new_event_loop()
    with bundled_server("kt", server_args=["-th", "4"]) as server:
        kind = "bundled server" if server.bundled else f"real ktserver ({server.executable})"
        load_before = os.getloadavg()[0]
        names = ["sync sequential", "aio 1 conn", "aio 1 conn + coalesce", "aio pool of 4",
                 "asyncio floor: 100 bare tasks", "futures floor: 100 gathered futures"]
        per_call = dict.fromkeys(names, CONCURRENT)
        results = {
            f"get x {CONCURRENT}": compare(
                candidates(server.host, server.port, loop),
                ops_per_call=per_call,
                rounds=3 if QUICK else 9,
                duration=0.5 if QUICK else 6.0,
            )
        }
    loop.close()
    kind += f", load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    headers, rows = rows_for(results, baseline="sync sequential", peers=[])
    headers = [("x sync" if h == "x floor" else h) for h in headers]
    table = markdown_table(headers, rows)
    print(f"\n### asyncio client ({kind})\n")
    print(table)
    if args.markdown:
        write_markdown(args.markdown, table, kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
