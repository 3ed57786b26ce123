"""Sharded client throughput over 1, 2 and 4 local shards, and the cost of a failover.

Bundled KT servers (in-memory ``*``; ``KT_BENCH_REAL=1`` + ``KTSERVER`` for the real one),
100-byte values, serializer KT_NONE:

* get / set of one record from one thread, and get from 4 threads at once;
* get_bulk of 1000 keys (split per shard, the parts run in parallel);
* the plain ``KyotoTycoon`` on one server as the reference row.

Failover: a dual-master pair (tests/replicated.py) behind ``ShardedKyotoTycoon``; the primary
gets ``kill -9`` (connections refused) or ``SIGSTOP`` (it hangs: only the read timeout tells),
and we time from the signal to the first successful ``get``, then from the restart to the
client being back on the primary (health check + catch-up).

    .venv/bin/python bench/bench_sharding.py [--markdown bench/README.md]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable, Dict, List

from _common import QUICK, bundled_server, compare, markdown_table, rows_for, value_of
from kt import KT_NONE, KyotoTycoon, ShardedKyotoTycoon

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from replicated import ReplicatedPair  # noqa: E402

VALUE = value_of(100)
KEYS = [f"shard-key-{i:06d}" for i in range(2000 if QUICK else 10000)]
BULK = 1000
THREADS = 4
NOTES = """Reading the tables (2-core machine shared with other work: client, thread pool and up to 4
server processes compete for the same two CPUs, so absolute numbers swing from run to run):

* Single-key calls from one thread are latency-bound: a sharded call costs the ring lookup
  (MD5 of the key + a bisect over 160 points per shard, ~2-4 µs) on top of the plain client, and
  more server processes only add scheduling noise; sharding does not make one thread faster.
* get_bulk splits 1000 keys per shard (~3 µs per key for the lookup) and runs the parts on a
  thread pool; with one shard it skips both.  On this machine the servers' CPU is the limit, so
  4 shards cannot run 4x in parallel; on separate machines each shard adds its own CPU.
* Failover: a killed primary refuses connections, so the first call after the kill already
  succeeds on the replica (`failover_after=1`); a hung primary costs one `timeout`.  Going back
  waits for the restarted server to start (a Python process here) and for the catch-up check.
"""
SECTION_START = "<!-- sharding-bench:start -->"
SECTION_END = "<!-- sharding-bench:end -->"


def _threaded_rate(fn: Callable[[], Any], threads: int, seconds: float) -> float:
    """Calls per second of ``fn`` run in a closed loop by ``threads`` threads."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            fn()
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def throughput(servers: List[Any]) -> Dict[str, Dict[str, Any]]:
    names = [f"{s.host}:{s.port}" for s in servers]
    plain = KyotoTycoon(servers[0].host, servers[0].port, serializer=KT_NONE)
    clients = {"plain (1 server)": plain}
    for n in (1, 2, 4):
        if n <= len(servers):
            clients[f"sharded x{n}"] = ShardedKyotoTycoon(names[:n], serializer=KT_NONE)
    for client in clients.values():
        client.set_bulk({k: VALUE for k in KEYS})
    counter = iter(range(1 << 62))
    bulk_keys = KEYS[:BULK]

    def op(kind: str, client: Any) -> Callable[[], Any]:
        if kind == "get":
            return lambda: client.get(KEYS[next(counter) % len(KEYS)])
        if kind == "set":
            return lambda: client.set(KEYS[next(counter) % len(KEYS)], VALUE)
        return lambda: client.get_bulk(bulk_keys)

    results: Dict[str, Dict[str, Any]] = {}
    for kind in ("get", "set", f"get_bulk({BULK})"):
        results[kind] = compare(
            {name: op(kind, c) for name, c in clients.items()},
            ops_per_call={name: BULK if kind.startswith("get_bulk") else 1 for name in clients},
        )
    threaded = {}
    for name, client in clients.items():
        rates = [_threaded_rate(op("get", client), THREADS, 0.5 if QUICK else 1.5) for _ in range(3)]
        threaded[name] = statistics.median(rates)
    for client in clients.values():
        client.close()
    return results, threaded


def failover_cost(rounds: int) -> List[List[Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kt-bench-failover-") as workdir:
        pair = ReplicatedPair("kt", workdir)
        pair.start()
        client = ShardedKyotoTycoon(
            [tuple(pair.addresses)],
            serializer=KT_NONE,
            failover_after=1,
            recheck_interval=0.1,
            timeout=0.5,
            connect_timeout=0.5,
        )
        shard = client.shards[0]
        try:
            client.set("probe", b"x")
            time.sleep(0.3)
            for how in ("kill -9", "SIGSTOP (hung)"):
                to_replica, back = [], []
                for _ in range(rounds):
                    embedded = pair.servers[0]
                    started = time.monotonic()
                    if how == "kill -9":
                        pair.kill(0)
                    else:
                        os.kill(embedded.pid, signal.SIGSTOP)
                    while True:
                        try:
                            client.get("probe")
                            break
                        except Exception:
                            pass
                    to_replica.append(time.monotonic() - started)
                    assert shard.active_index == 1
                    started = time.monotonic()
                    if how == "kill -9":
                        pair.start(0)
                    else:
                        os.kill(embedded.pid, signal.SIGCONT)
                    while shard.active_index != 0:
                        client.get("probe")
                        time.sleep(0.01)
                    back.append(time.monotonic() - started)
                rows.append([how, statistics.median(to_replica), max(to_replica), statistics.median(back)])
        finally:
            client.close()
            pair.stop()
    return rows


def write_markdown(path: str, text: str) -> None:
    section = f"{SECTION_START}\n{text}\n{SECTION_END}"
    with open(path) as f:
        current = f.read()
    pattern = re.compile(re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END), re.S)
    updated = (
        pattern.sub(lambda _: section, current)
        if pattern.search(current)
        else current.rstrip() + "\n\n" + section + "\n"
    )
    with open(path, "w") as f:
        f.write(updated)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown", help="write the tables into this file's sharding section")
    args = parser.parse_args()
    with ExitStack() as stack:
        servers = [stack.enter_context(bundled_server("kt")) for _ in range(4)]
        kind = "bundled" if servers[0].bundled else servers[0].executable
        results, threaded = throughput(servers)
    headers, rows = rows_for(results, baseline="plain (1 server)")
    table = markdown_table(headers, rows)
    threads_table = markdown_table(
        ["operation", "client", "ops/s", "x plain"],
        [
            [f"get, {THREADS} threads", name, rate, f"{rate / threaded['plain (1 server)']:.2f}x"]
            for name, rate in threaded.items()
        ],
    )
    fail_rows = failover_cost(2 if QUICK else 5)
    fail_table = markdown_table(
        [
            "primary failure",
            "to first successful call (median s)",
            "worst s",
            "restart -> back on primary (median s)",
        ],
        fail_rows,
    )
    text = (
        "## Sharded client (`bench/bench_sharding.py`)\n\n"
        f"Servers: {kind} KT, one process per shard, in-memory `*`, all on this 2-core machine; "
        "100-byte values, KT_NONE. `x plain` = ops/s relative to a plain `KyotoTycoon` on one server.\n\n"
        f"{table}\n\n{threads_table}\n\n"
        "Failover (`failover_after=1`, `timeout=0.5`, `recheck_interval=0.1`, a dual-master pair on "
        "file databases):\n\n"
        f"{fail_table}\n\n{NOTES}"
    )
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
