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
between runs; the server's own CPU shares the machine with the client):

* Throughput here is bounded by client CPU per get, not by round trips. The last row is the
  floor of a client whose methods are coroutines: under `gather` each call gets its own Task,
  and the Task, its future and its wake-ups alone cost about as much CPU as a whole pipelined
  get. So kt.aio's one-round-trip methods return their request's future instead (inside a
  running loop): `aio 1 conn` then runs *above* that floor. What remains per get is the plan
  (encode), one queue entry, one share of a write, the parse (or one slice of a get_bulk
  reply), `set_result`, and `gather`'s own callback per awaitable (asyncio's, ~1-2 µs).
* Targets of the issue: >= 5x (one connection) is within reach on a quiet machine (3.6-4.2x
  measured, coalesced 4.9-5.3x); >= 20x would need ~1.5 µs of client CPU per awaited get, below
  what one future plus `gather`'s callback per call costs in CPython.
* Before/after, real ktserver, `x sync` of 1 conn / coalesced / pool of 4 over 2-4 runs each:
  coroutine methods 2.43-2.97x / 2.82-3.28x / 1.93-2.40x; future-returning methods
  3.47-4.23x / 4.88-5.30x / 2.66-3.59x.
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
