"""``kt bench``: a quick throughput check of any server, printed as a table."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Tuple

import click

from kt.cli.context import Target, json_option

PREFIX = b"kt-bench:"


def _client(target: Target) -> Any:
    from kt import KT_NONE, KyotoTycoon, TokyoTyrant  # on use: ``kt --help`` imports this module

    if target.is_tt:
        return TokyoTyrant(target.host, target.port, serializer=KT_NONE, timeout=target.timeout)
    return KyotoTycoon(
        target.host, target.port, serializer=KT_NONE, timeout=target.timeout, default_db=target.db
    )


def _run(target: Target, connections: int, requests: int, work: Callable[[Any, int, int], None]) -> float:
    """Run ``work(client, first, count)`` on ``connections`` threads; the wall time in seconds."""
    clients = [_client(target) for _ in range(connections)]
    share = requests // connections
    errors: List[BaseException] = []

    def worker(index: int) -> None:
        try:
            work(clients[index], index * share, share)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    if errors:
        raise errors[0]
    return elapsed


def _key(i: int) -> bytes:
    return PREFIX + b"%08d" % i


@click.command()
@click.option(
    "-n",
    "--requests",
    type=click.IntRange(min=1),
    default=20000,
    show_default=True,
    help="Operations per test (records for the bulk tests).",
)
@click.option(
    "-c",
    "--connections",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Concurrent connections (one thread each).",
)
@click.option(
    "--value-size", type=click.IntRange(min=0), default=100, show_default=True, help="Bytes per value."
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=100, show_default=True, help="Records per bulk call."
)
@json_option
@click.pass_obj
def bench(
    target: Target, requests: int, connections: int, value_size: int, batch: int, as_json: bool
) -> None:
    """Measure set/get/bulk throughput; writes and then removes kt-bench:* keys."""
    value = b"v" * value_size
    per_conn = max(1, requests // connections)
    total = per_conn * connections

    def sets(client: Any, first: int, count: int) -> None:
        for i in range(first, first + count):
            client.set(_key(i), value)

    def gets(client: Any, first: int, count: int) -> None:
        for i in range(first, first + count):
            client.get(_key(i))

    def set_bulks(client: Any, first: int, count: int) -> None:
        for start in range(first, first + count, batch):
            client.set_bulk({_key(i): value for i in range(start, min(start + batch, first + count))})

    def get_bulks(client: Any, first: int, count: int) -> None:
        for start in range(first, first + count, batch):
            client.get_bulk([_key(i) for i in range(start, min(start + batch, first + count))])

    tests: List[Tuple[str, Callable[[Any, int, int], None]]] = [
        ("set", sets),
        ("get", gets),
        (f"set_bulk x{batch}", set_bulks),
        (f"get_bulk x{batch}", get_bulks),
    ]
    rows = []
    try:
        for name, work in tests:
            seconds = _run(target, connections, total, work)
            rows.append(
                {
                    "test": name,
                    "connections": connections,
                    "records": total,
                    "seconds": round(seconds, 3),
                    "records_per_s": round(total / seconds),
                }
            )
    finally:
        _cleanup(target, total)
    if as_json:
        target.json(rows)
        return
    target.table(
        f"kt bench {target.host}:{target.port} ({target.flavour}, {value_size}-byte values)",
        ["test", "connections", "records", "seconds", "records/s"],
        [
            [
                r["test"],
                r["connections"],
                f"{r['records']:,}",
                f"{r['seconds']:.3f}",
                f"{r['records_per_s']:,}",
            ]
            for r in rows
        ],
    )


def _cleanup(target: Target, total: int) -> None:
    client = target.client
    for start in range(0, total, 1000):
        keys = [_key(i) for i in range(start, min(start + 1000, total))]
        if target.is_tt:
            client.remove_bulk(keys)
        else:
            client.remove_bulk(keys, target.db)


COMMANDS = [bench]
