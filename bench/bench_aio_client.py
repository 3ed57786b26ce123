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
  are coroutines (``gather`` runs each in its own Task).

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
NOTES = """Reading it (2-core VM shared with other busy processes; load average 4-14 while
these ran, so each row moves by tens of percent between runs):

* Throughput here is bounded by client CPU per get, not by round trips: one asyncio Task per
  concurrent call, its future and its wake-ups cost ~8 µs of CPU per call on this machine
  before kt does anything (a bare `gather` of 100 tasks each awaiting a future); kt adds a
  plan, one queue entry, one share of a write per loop turn and one parse per reply. The sync
  client's single get costs ~25-40 µs of CPU here, so the ratios land at 1.4-2.3x (one
  connection) and 2.6-3.3x (coalesced), short of the issue's targets (>= 5x, >= 20x), which
  need round trips, not CPU, to dominate.
* Coalescing (one get_bulk for the gets queued on one connection in one loop turn) was faster
  in 4 of 5 runs (a wash in the most loaded one), and always gives the same results as one by
  one (missing keys, duplicates, db=; tests/test_aio.py), so it is on by default.
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

    aio_one = AsyncKyotoTycoon(host, port, serializer=KT_NONE, max_connections=1, coalesce_gets=False)
    aio_merge = AsyncKyotoTycoon(host, port, serializer=KT_NONE, max_connections=1, coalesce_gets=True)
    aio_four = AsyncKyotoTycoon(host, port, serializer=KT_NONE, max_connections=4, coalesce_gets=False)
    return {
        "sync sequential": sequential,
        "aio 1 conn": gathered(aio_one),
        "aio 1 conn + coalesce": gathered(aio_merge),
        "aio pool of 4": gathered(aio_four),
        "asyncio floor: 100 bare tasks": lambda: loop.run_until_complete(bare_tasks()),
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
                 "asyncio floor: 100 bare tasks"]
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
