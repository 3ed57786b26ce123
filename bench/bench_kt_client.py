"""KyotoTycoon client speed: this client vs ukt 0.4.8 vs a raw socket (the floor).

One server (bundled by default; ``KT_BENCH_REAL=1`` + ``KTSERVER`` for the real ktserver),
all candidates measured interleaved in one run, 100-byte values, serializer KT_NONE for
both clients (so neither pays for value serialization):

* get / set of one record (binary protocol for kt; ukt's choice for ukt);
* get_bulk / set_bulk of 1000 records (one call = one op);
* exists (an HTTP-RPC ``check``).

The floor sends request bytes built once in advance and reads a reply of known length: no
encoding, no parsing, no pooling.

    .venv/bin/python bench/bench_kt_client.py [--profile] [--markdown bench/README.md]

``--profile`` runs each kt operation under cProfile and prints where the time goes.
``--markdown FILE`` replaces the KT client section of FILE with the table.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys

from _common import (
    RawSocket,
    bundled_server,
    compare,
    markdown_table,
    optional_module,
    rows_for,
    value_of,
    write_section,
)
from kt import KT_NONE
from kt.expiry import NO_EXPIRY_XT
from kt.kyototycoon import KyotoTycoon
from kt.protocol import http, kt_binary, kt_rpc

BULK = 1000
VALUE = value_of(100)
KEYS = [f"bench-key-{i:06d}" for i in range(BULK)]
SECTION_START = "<!-- kt-client-bench:start -->"
SECTION_END = "<!-- kt-client-bench:end -->"
NOTES = """Reading the table (2-core machine, client and server share the CPUs):

* Ratios are best round ÷ best round, the brackets the range of the per-round ratios.  The
  bundled server answers from C on these paths, so the floor is as fast as against the real
  ktserver (faster for get_bulk); the same script with `KT_BENCH_REAL=1 KTSERVER=...` gives
  the figures in "The clients against the real servers" below.
* get/set: kt adds about 3 µs of client CPU per call over the floor, about 1 µs in each
  layer (plan and value decode, pool checkout/return, the connection's reply checks); the
  system calls are the same.  ukt spends twice the CPU per call.
* get_bulk(1000): the request is encoded and the reply parsed straight into the result dict
  in C (`kt._speedups.client_codecs`); what is left (~175 ns per record over the floor) is
  the result's own objects: the str key, the value bytes and the dict insert.  ukt spends
  about 7x the CPU.
* set_bulk(1000): one compiled encode pass; ~4x less CPU than ukt's encoder.
* exists (HTTP RPC): the HTTP head parse (a dict lookup when the head repeats) and the TSV
  decode stay in Python, ~16 µs per call over the floor; 5x less than ukt.
"""


def floor_callables(host: str, port: int) -> dict:
    raw = RawSocket(host, port)
    key = KEYS[0].encode()
    records = [(0, k.encode(), VALUE, NO_EXPIRY_XT) for k in KEYS]
    check = kt_rpc.build_rpc_request("check", [(b"key", key)], f"{host}:{port}")
    return {
        "get": raw.probed(kt_binary.encode_get_one(0, key), kt_binary.parse_get_one_reply),
        "set": raw.probed(kt_binary.encode_set_one(0, key, VALUE, NO_EXPIRY_XT),
                          kt_binary.parse_set_bulk_reply),
        "get_bulk(1000)": raw.probed(kt_binary.encode_get_bulk([(0, k.encode()) for k in KEYS]),
                                     kt_binary.parse_get_bulk_reply),
        "set_bulk(1000)": raw.probed(kt_binary.encode_set_bulk(records), kt_binary.parse_set_bulk_reply),
        "exists (HTTP RPC)": raw.probed(check, http.parse_response),
    }


def kt_callables(client: KyotoTycoon) -> dict:
    key = KEYS[0]
    data = dict.fromkeys(KEYS, VALUE)
    return {
        "get": lambda: client.get(key),
        "set": lambda: client.set(key, VALUE),
        "get_bulk(1000)": lambda: client.get_bulk(KEYS),
        "set_bulk(1000)": lambda: client.set_bulk(data),
        "exists (HTTP RPC)": lambda: client.exists(key),
    }


def ukt_callables(client) -> dict:
    key = KEYS[0]
    data = dict.fromkeys(KEYS, VALUE)
    return {
        "get": lambda: client.get(key),
        "set": lambda: client.set(key, VALUE),
        "get_bulk(1000)": lambda: client.get_bulk(KEYS),
        "set_bulk(1000)": lambda: client.set_bulk(data),
        "exists (HTTP RPC)": lambda: client.exists(key),
    }


def check_results(kt_client: KyotoTycoon, ukt_client) -> None:
    """The candidates must do the real work: verify what they return."""
    kt_client.set_bulk(dict.fromkeys(KEYS, VALUE))
    assert kt_client.get(KEYS[0]) == VALUE and kt_client.exists(KEYS[0])
    assert len(kt_client.get_bulk(KEYS)) == BULK
    if ukt_client is not None:
        assert ukt_client.get(KEYS[0]) == VALUE and ukt_client.exists(KEYS[0])
        assert len(ukt_client.get_bulk(KEYS)) == BULK


def profile(client: KyotoTycoon) -> None:
    for name, fn in kt_callables(client).items():
        calls = 20 if "bulk" in name else 20000
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            fn()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
        print(f"\n#### profile: kt {name} x {calls}\n```")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:3000])
        print("```")


def write_markdown(path: str, table: str, server_kind: str) -> None:
    intro = (
        f"Server: {server_kind}; 100-byte values; KT_NONE serializer for both clients; one op = one "
        "call (a bulk op moves 1000 records). `x floor` = ops/s relative to a raw socket sending "
        "pre-built requests; `x ukt` = relative to ukt 0.4.8: best of 7 interleaved rounds, the "
        "range of the per-round ratios in brackets. Client CPU = `time.process_time` of the "
        "benchmark process per op (best round)."
    )
    title = "## KyotoTycoon client (`bench/bench_kt_client.py`)"
    write_section(path, SECTION_START, SECTION_END, f"{title}\n\n{intro}\n\n{table}\n\n{NOTES}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each kt operation")
    parser.add_argument("--markdown", help="write the table into this markdown file's KT client section")
    args = parser.parse_args(argv)

    ukt = optional_module("ukt")
    with bundled_server("kt", server_args=["-th", "4", "-tout", "3600"]) as server:
        kind = "bundled server" if server.bundled else f"real ktserver ({server.executable})"
        kt_client = KyotoTycoon(server.host, server.port, serializer=KT_NONE)
        ukt_client = None
        if ukt is not None:
            ukt_client = ukt.KyotoTycoon(server.host, server.port, serializer=ukt.KT_NONE)
        check_results(kt_client, ukt_client)
        floor = floor_callables(server.host, server.port)
        mine = kt_callables(kt_client)
        theirs = ukt_callables(ukt_client) if ukt_client is not None else {}
        results = {}
        for operation in floor:
            candidates = {"floor": floor[operation], "kt": mine[operation]}
            if operation in theirs:
                candidates["ukt"] = theirs[operation]
            results[operation] = compare(candidates)
        headers, rows = rows_for(results, baseline="floor", peers=["ukt"] if theirs else [])
        if theirs:
            # Client CPU is what a client controls; against a slow server ops/s hide it.
            headers.append("ukt CPU / kt CPU")
            for row in rows:
                op, client = row[0], row[1]
                ratio = results[op]["ukt"].cpu_us_per_op / results[op]["kt"].cpu_us_per_op
                row.append(f"{ratio:.2f}x" if client == "kt" else None)
        table = markdown_table(headers, rows)
        print(f"\n### KyotoTycoon client ({kind})\n")
        print(table)
        if args.markdown:
            write_markdown(args.markdown, table, kind)
        if args.profile:
            profile(kt_client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
