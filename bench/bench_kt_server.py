"""Requests per second of the bundled Kyoto Tycoon server: binary get, binary set and HTTP-RPC
get at 1, 4 and 16 connections; plus the HTTP parser choice and a profile of the server path.

The server runs as its own process (``python -m kt.server kt``).  The load generator is one
process driving N raw sockets with a selector, one request in flight per connection, requests
pre-built once with the KT codecs; so the numbers are the server's plus one loopback round trip.

    .venv/bin/python bench/bench_kt_server.py [--seconds 1] [--rounds 3] [--conns 1,4,16] [--profile]
    KTSERVER=/path/to/ktserver .venv/bin/python bench/bench_kt_server.py --versus [--load 1000000]

``--profile`` runs the real connection handler in-process on a socketpair under cProfile and
prints where the server's time goes for each workload.

``--versus`` runs the bundled server and the real ktserver ($KTSERVER) side by side, same
load generator (bench/_versus.py), interleaved rounds, and prints bundled ÷ real: get/set at
1/4/16 connections, get/set/remove_bulk of 1000 x 100 B at 1/4, HTTP RPC get/set at 1/4/16,
loading ``--load`` records with set_bulk batches of 1000 (time and server RSS), and
match_prefix over those records.  ``--ulog``: both servers keep an update log (``-ulog -sid 1``),
as replicated deployments do; ``--only TEXT`` keeps the workloads whose name contains TEXT.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, List, Optional, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_HERE), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from _common import load_rate  # noqa: E402
from kt.protocol import http_server as hs  # noqa: E402
from kt.protocol import kt_binary as kb  # noqa: E402
from kt.protocol import kt_rpc  # noqa: E402

RECORDS = 10000
NO_XT = 0x7FFFFFFFFFFFFFFF
_CLEN = re.compile(rb"\r\nContent-Length: (\d+)\r\n")


def parse_http_reply(buf, pos: int = 0) -> Optional[Tuple[None, int]]:
    """Frame one HTTP response by Content-Length (enough for the benchmark)."""
    head_end = buf.find(b"\r\n\r\n", pos)
    if head_end < 0:
        return None
    match = _CLEN.search(buf, pos, head_end + 2)
    end = head_end + 4 + (int(match.group(1)) if match else 0)
    return (None, end) if len(buf) >= end else None


def rpc_request(procedure: bytes, params: List[Tuple[bytes, bytes]]) -> bytes:
    body = kt_rpc.encode_tsv(params)
    return (b"POST /rpc/%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/tab-separated-values\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (procedure, len(body), body))


def workloads() -> List[Tuple[str, bytes, Callable]]:
    return [
        ("binary get (get_bulk, 1 key)", kb.encode_get_bulk([(0, b"key%05d" % 1234)]),
         kb.parse_get_bulk_reply),
        ("binary set (set_bulk, 1 rec)", kb.encode_set_bulk([(0, b"bench-set", b"x" * 100, NO_XT)]),
         kb.parse_set_bulk_reply),
        ("HTTP RPC get", rpc_request(b"get", [(b"key", b"key%05d" % 1234)]), parse_http_reply),
    ]


VALUE = bytes(range(100))  # 100-byte benchmark values


def _records(keys: List[bytes]) -> List[Tuple[int, bytes, bytes, int]]:
    return [(0, key, VALUE, NO_XT) for key in keys]


def _count_reply(buf, pos: int = 0) -> Optional[Tuple[int, int]]:
    """A set_bulk or remove_bulk reply (magic + 4-byte count): both alternate on one connection."""
    if len(buf) - pos < 5:
        return None
    if buf[pos] == kb.MAGIC_REMOVE_BULK:
        return kb.parse_remove_bulk_reply(buf, pos)
    return kb.parse_set_bulk_reply(buf, pos)


def versus_workloads() -> list:
    """The issue-13 table's KT rows, as _versus workloads (conn ``c`` uses its own keys)."""
    from _versus import Workload

    def bulk_keys(c: int) -> List[bytes]:
        return [b"key%05d" % ((c * 1000 + i) % RECORDS) for i in range(1000)]

    def fill(target) -> None:
        from _versus import connect, exchange

        sock = connect(target)
        for start in range(0, RECORDS, 1000):
            exchange(sock, kb.encode_set_bulk(_records([b"key%05d" % i for i in range(start, start + 1000)])),
                     kb.parse_set_bulk_reply)
        sock.close()

    removes = []
    for c in range(4):
        keys = [b"rm%d-%04d" % (c, i) for i in range(1000)]
        removes.append([kb.encode_remove_bulk([(0, k) for k in keys]), kb.encode_set_bulk(_records(keys))])
    return [
        Workload("get", [[kb.encode_get_bulk([(0, b"key%05d" % (1234 + c))])] for c in range(16)],
                 kb.parse_get_bulk_reply, (1, 4, 16), setup=fill),
        Workload("set 100 B", [[kb.encode_set_bulk(_records([b"set%02d" % c]))] for c in range(16)],
                 kb.parse_set_bulk_reply, (1, 4, 16)),
        Workload("get_bulk 1000", [[kb.encode_get_bulk([(0, k) for k in bulk_keys(c)])] for c in range(4)],
                 kb.parse_get_bulk_reply, (1, 4)),
        Workload("set_bulk 1000 x 100 B", [[kb.encode_set_bulk(_records(bulk_keys(c)))] for c in range(4)],
                 kb.parse_set_bulk_reply, (1, 4)),
        Workload("remove_bulk 1000 / set_bulk 1000 alternating", removes, _count_reply, (1, 4)),
        # HTTP RPC, the protocol ukt and most non-Python clients speak
        Workload("HTTP RPC get",
                 [[rpc_request(b"get", [(b"key", b"key%05d" % (1234 + c))])] for c in range(16)],
                 parse_http_reply, (1, 4, 16)),
        Workload("HTTP RPC set 100 B",
                 [[rpc_request(b"set", [(b"key", b"hset%02d" % c), (b"value", VALUE)])] for c in range(16)],
                 parse_http_reply, (1, 4, 16)),
    ]


def run_versus(args) -> None:
    """Bundled vs real ktserver: the ratio tables of issue 13."""
    from _versus import Workload, load_records, load_table, servers, versus, versus_table

    conns = tuple(int(c) for c in args.conns.split(","))
    workloads = [w for w in versus_workloads() if not args.only or args.only in w.name]
    for w in workloads:
        w.conns = tuple(c for c in w.conns if c in conns) or w.conns[:1]
    server_args: List[str] = []
    logdir = None
    if args.ulog:
        logdir = tempfile.TemporaryDirectory()
        server_args = ["-ulog", os.path.join(logdir.name, "%s-ulog"), "-sid", "1"]
    try:
        with servers("kt", "*", server_args) as targets:
            cells = versus(targets, workloads, args.rounds, args.seconds)
    finally:
        if logdir is not None:
            logdir.cleanup()
    logged = ", both with an update log (-ulog -sid 1)" if args.ulog else ""
    print(f"\n### KT: bundled ÷ real ktserver (in-memory `*`, 10k records of 100 B{logged})\n")
    print(versus_table(cells))
    if not args.load:
        return
    batches = [range(start, min(start + 1000, args.load)) for start in range(0, args.load, 1000)]
    requests = [kb.encode_set_bulk(_records([b"key%07d" % i for i in batch])) for batch in batches]
    results: dict = {"bundled": [], "real": []}
    cells = []
    prefix = b"key%s" % (b"%07d" % (args.load // 2))[:-2]  # matches 100 keys
    search = Workload(f"match_prefix (100 of {args.load} keys)",
                      [[rpc_request(b"match_prefix", [(b"prefix", prefix)])]], parse_http_reply, (1,))
    for _ in range(args.load_rounds):
        with servers("kt", "*") as targets:
            for target in targets:
                results[target.name].append(load_records(target, requests, kb.parse_set_bulk_reply))
            print(f"  loaded {args.load:,}: " + ", ".join(
                f"{name} {runs[-1].seconds:.2f} s" for name, runs in results.items()), flush=True)
            cells.extend(versus(targets, [search], max(1, args.rounds // args.load_rounds), args.seconds))
    merged = cells[0]
    for cell in cells[1:]:
        for name in merged.rates:
            merged.rates[name] += cell.rates[name]
            merged.cpu_us[name] += cell.cpu_us[name]
    print(f"\n### KT: loading {args.load:,} records of 100 B, set_bulk batches of 1000, one connection\n")
    print(load_table(results, args.load))
    print("\n### KT: match_prefix over the loaded records\n")
    print(versus_table([merged]))


def start_server(workdir: str, dbname: str) -> Tuple[subprocess.Popen, int]:
    log = os.path.join(workdir, "bench-kt.log")
    argv = [sys.executable, "-m", "kt.server", "kt", "-host", "127.0.0.1", "-port", "0", "-log", log,
            "-le", dbname]
    env = dict(os.environ, PYTHONPATH=_SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        match = re.search(r"listening on \S+:(\d+)", text)
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.communicate()}")


def prepare(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    for start in range(0, RECORDS, 1000):
        recs = [(0, b"key%05d" % i, b"value-%05d" % i, NO_XT) for i in range(start, start + 1000)]
        sock.sendall(kb.encode_set_bulk(recs))
        buf = b""
        while kb.parse_set_bulk_reply(buf) is None:
            buf += sock.recv(100)
    sock.close()


def parser_choice(rounds: int = 20000) -> None:
    """µs per request: our ktserver-exact parser vs httptools (llhttp) on the same bytes."""
    request = rpc_request(b"get", [(b"key", b"key01234")])
    start = time.perf_counter()
    for _ in range(rounds):
        hs.parse_request(request, 0)
    ours = (time.perf_counter() - start) / rounds * 1e6
    line = f"HTTP request parse: hand-written (kt.protocol.http_server) {ours:.2f} µs/request"
    try:
        import httptools
    except ImportError:
        print(line + "; httptools not installed")
        return

    class Sink:
        __slots__ = ("headers", "body", "url", "done")

        def __init__(self):
            self.headers, self.body, self.url, self.done = [], b"", b"", False

        def on_url(self, url):
            self.url = url

        def on_header(self, name, value):
            self.headers.append((name, value))

        def on_body(self, body):
            self.body += body

        def on_message_complete(self):
            self.done = True

    start = time.perf_counter()
    for _ in range(rounds):
        sink = Sink()
        httptools.HttpRequestParser(sink).feed_data(request)
    theirs = (time.perf_counter() - start) / rounds * 1e6
    print(line + f"; httptools {theirs:.2f} µs/request (new parser per request, as per connection "
                 "state would need; httptools cannot reproduce ktserver's rules, see module docstring)")


def profile(seconds: float) -> None:
    """cProfile of the server's event loop thread, in-process, one client connection."""
    import cProfile
    import pstats

    from kt.server.common import EventLoopServer, Logger
    from kt.server.kt_server import KTServerHandler
    from kt.server.kt_service import KTService

    service = KTService(["*"])
    service.bin_set_bulk([(0, b"key%05d" % i, b"value-%05d" % i, NO_XT) for i in range(RECORDS)])
    logger = Logger(kinds=0)
    handler = KTServerHandler(service, server_name=b"localhost:1978", logger=logger)
    server = EventLoopServer(handler, port=0, logger=logger)
    host, port = server.bind()
    prof = cProfile.Profile()

    def serve() -> None:
        prof.enable()
        try:
            server.serve_forever()
        finally:
            prof.disable()

    thread = threading.Thread(target=serve)
    thread.start()
    for name, request, parser in workloads():
        prof.clear()
        client = socket.create_connection((host, port))
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done = 0
        buf = bytearray()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            client.sendall(request)
            while True:
                parsed = parser(buf, 0)
                if parsed is not None:
                    del buf[: parsed[1]]
                    break
                buf += client.recv(65536)
            done += 1
        elapsed = time.perf_counter() - start
        client.close()
        print(f"\n--- profile: {name}: {done / elapsed:,.0f} requests/s, in-process (under cProfile)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)
    server.stop()
    thread.join(10)
    server.close()
    server.shutdown_clients()
    service.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="best of N (the box is shared: noise is one-sided)")
    ap.add_argument("--conns", default="1,4,16")
    ap.add_argument("--db", default="*", help="database name given to the server (default '*')")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--versus", action="store_true", help="bundled vs real ktserver ($KTSERVER), ratios")
    ap.add_argument("--load", type=int, default=1000000, help="--versus: records to load (0: skip)")
    ap.add_argument("--load-rounds", type=int, default=2, help="--versus: fresh server pairs for loading")
    ap.add_argument("--ulog", action="store_true", help="--versus: both servers keep an update log")
    ap.add_argument("--only", help="--versus: run only the workloads whose name contains this text")
    args = ap.parse_args()
    if args.versus:
        run_versus(args)
        return 0
    if os.environ.get("KT_BENCH_QUICK", "") not in ("", "0"):
        args.seconds = min(args.seconds, 0.3)
    conns_list = [int(c) for c in args.conns.split(",")]
    with tempfile.TemporaryDirectory() as workdir:
        db = args.db if not args.db.startswith(".") else os.path.join(workdir, "bench" + args.db)
        proc, port = start_server(workdir, db)
        try:
            prepare(port)
            rows = []
            for name, request, parser in workloads():
                rates = [max(load_rate(port, c, request, parser, args.seconds) for _ in range(args.rounds))
                         for c in conns_list]
                rows.append((name, rates))
        finally:
            proc.terminate()
            proc.wait(30)
    title = f"operation (DB {args.db}, 10k records)"
    header = f"{title:<34}" + "".join(f"{f'{c} conn':>12}" for c in conns_list)
    print(header)
    print("-" * len(header))
    for name, rates in rows:
        print(f"{name:<34}" + "".join(f"{r:>12,.0f}" for r in rates))
    print(f"(requests/s, best of {args.rounds} x {args.seconds:g}s; one request in flight per connection; "
          f"{os.cpu_count()} CPUs shared by server and load generator)")
    parser_choice()
    if args.profile:
        profile(min(args.seconds, 2.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
