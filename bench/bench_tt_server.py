"""Requests per second of the bundled Tokyo Tyrant server: get, put and a table search at
1, 4 and 16 connections.

The server runs as its own process (``python -m kt.server tt``).  The load generator is one
process driving N raw sockets with a selector, one request in flight per connection, requests
pre-built once with the TT codec, replies framed with the codec's parsers; so the numbers are
the server's, plus one loopback round trip each.

    .venv/bin/python bench/bench_tt_server.py [--seconds 2] [--conns 1,4,16] [--profile]

``--profile`` also runs the request path in-process (codec parse -> service -> reply encode,
no sockets) under cProfile and prints the top functions.

``TTSERVER=/path/to/ttserver bench_tt_server.py --versus`` runs the bundled server and the real
ttserver side by side (bench/_versus.py: same load generator, interleaved rounds) and prints
bundled ÷ real: get/put at 1/4/16 connections and mget/putlist/outlist of 1000 x 100 B at 1/4
on ``*``, and the indexed table search (limit 10) on a ``.tct``.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Tuple

from _common import load_rate
from kt.protocol import tt_binary as tt

RECORDS = 10000


def start_server(dbname: str, workdir: str) -> Tuple[subprocess.Popen, int]:
    log = os.path.join(workdir, "bench-tt.log")
    argv = [sys.executable, "-m", "kt.server", "tt", "-host", "127.0.0.1", "-port", "0", "-thnum", "16",
            "-log", log, "-le", dbname]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(b"listening on "):
                return proc, int(line.split(b":")[-1])
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.communicate()}")


_FLOOR_SERVER = r"""
import socket, sys, threading
reply = bytes.fromhex(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(128)
print(srv.getsockname()[1], flush=True)
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while conn.recv(65536):
            conn.sendall(reply)
    except OSError:
        pass
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def start_floor(reply: bytes) -> Tuple[subprocess.Popen, int]:
    """The floor: a thread-per-connection Python server that answers every read with ``reply``
    (no parsing, no database) - what any Python server pays for the round trip alone."""
    proc = subprocess.Popen([sys.executable, "-c", _FLOOR_SERVER, reply.hex()], stdout=subprocess.PIPE)
    return proc, int(proc.stdout.readline())


def call(sock: socket.socket, request: bytes, parser: Callable) -> object:
    sock.sendall(request)
    buf = bytearray()
    while True:
        parsed = parser(buf, 0)
        if parsed is not None:
            return parsed[0]
        buf += sock.recv(65536)


def prepare(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    batch = []
    for i in range(RECORDS):
        cols = [b"%d" % i, b"name", b"user%05d" % i, b"age", b"%d" % (i % 100), b"city", b"c%d" % (i % 50)]
        batch.append(tt.encode_misc(b"putlist", [cols[0], b"\0".join(cols[1:])]))
    for start in range(0, len(batch), 500):
        sock.sendall(b"".join(batch[start:start + 500]))
        buf = bytearray()
        got = 0
        while got < len(batch[start:start + 500]):
            parsed = tt.parse_misc(buf, 0)
            if parsed is None:
                buf += sock.recv(65536)
                continue
            del buf[: parsed[1]]
            got += 1
    assert call(sock, tt.encode_misc(b"setindex", [b"age", b"1"]), tt.parse_misc) == []
    assert call(sock, tt.encode_rnum(), tt.parse_rnum) == RECORDS
    sock.close()


def workloads() -> List[Tuple[str, bytes, Callable]]:
    search = tt.encode_misc(b"search", [tt.query_addcond("age", 8, "42"), tt.query_setlimit(10, 0)], opts=1)
    return [
        ("get", tt.encode_get(b"1234"), tt.parse_get),
        ("put", tt.encode_put(b"bench-put", b"name\0bench\0age\0007"), tt.parse_put),
        ("search (indexed, limit 10)", search, tt.parse_misc),
    ]


def versus_workloads() -> Tuple[list, list]:
    """The issue-13 table's TT rows: (workloads on ``*``, workloads on a table database)."""
    from _versus import Workload, connect

    value = bytes(range(100))

    def putlist(keys: List[bytes]) -> bytes:
        return tt.encode_misc(b"putlist", [x for k in keys for x in (k, value)])

    def fill(target) -> None:
        sock = connect(target)
        for start in range(0, RECORDS, 1000):
            call(sock, putlist([b"%05d" % i for i in range(start, start + 1000)]), tt.parse_misc)
        sock.close()

    def bulk_keys(c: int) -> List[bytes]:
        return [b"%05d" % ((c * 1000 + i) % RECORDS) for i in range(1000)]

    alternating = []
    for c in range(4):
        keys = [b"rm%d-%04d" % (c, i) for i in range(1000)]
        alternating.append([tt.encode_misc(b"outlist", keys), putlist(keys)])
    plain = [
        Workload("get", [[tt.encode_get(b"%05d" % (1234 + c))] for c in range(16)], tt.parse_get,
                 (1, 4, 16), setup=fill),
        Workload("put 100 B", [[tt.encode_put(b"put%02d" % c, value)] for c in range(16)], tt.parse_put),
        Workload("mget 1000", [[tt.encode_mget(bulk_keys(c))] for c in range(4)], tt.parse_mget, (1, 4)),
        Workload("misc putlist 1000 x 100 B", [[putlist(bulk_keys(c))] for c in range(4)], tt.parse_misc,
                 (1, 4)),
        Workload("misc outlist 1000 / putlist 1000 alternating", alternating, tt.parse_misc, (1, 4)),
    ]
    search = tt.encode_misc(b"search", [tt.query_addcond("age", 8, "42"), tt.query_setlimit(10, 0)], opts=1)
    table = [Workload("table search (indexed, limit 10)", [[search]], tt.parse_misc, (1, 4),
                      setup=lambda target: prepare(target.port))]
    return plain, table


def run_versus(args) -> None:
    from _versus import servers, versus, versus_table

    plain, table = versus_workloads()
    plain = [w for w in plain if not args.only or args.only in w.name]
    table = [w for w in table if not args.only or args.only in w.name]
    with tempfile.TemporaryDirectory() as workdir:
        server_args = ["-ulog", os.path.join(workdir, "%s-ulog"), "-sid", "1"] if args.ulog else []
        for name in ("bundled", "real") if args.ulog else ():
            os.mkdir(os.path.join(workdir, f"{name}-ulog"))  # ttserver does not create it
        cells = []
        if plain:
            with servers("tt", "*", server_args) as targets:
                cells += versus(targets, plain, args.rounds, args.seconds)
        if table:
            with servers("tt", os.path.join(workdir, "bench-%s.tct"), server_args) as targets:
                cells += versus(targets, table, args.rounds, args.seconds)
    logged = "; both with an update log (-ulog -sid 1)" if args.ulog else ""
    print("\n### TT: bundled ÷ real ttserver (`*` with 10k records of 100 B; search on a `.tct` of "
          f"10k rows, index on age{logged})\n")
    print(versus_table(cells))


def profile(seconds: float) -> None:
    """cProfile of the in-process request path for each workload (no sockets)."""
    import cProfile
    import pstats

    from kt.server.engines.tc import TokyoCabinetDB
    from kt.server.tt_server import TTService

    with tempfile.TemporaryDirectory() as workdir:
        db = TokyoCabinetDB(os.path.join(workdir, "p.tct"))
        for i in range(RECORDS):
            db.misc(b"put", [b"%d" % i, b"name", b"user%05d" % i, b"age", b"%d" % (i % 100)])
        db.misc(b"setindex", [b"age", b"1"])
        service = TTService(db)
        for name, request, _parser in workloads():
            stream = request * 2000
            prof = cProfile.Profile()
            start = time.perf_counter()
            prof.enable()
            pos = 0
            n = 0
            while pos < len(stream):
                req, pos = tt.parse_request(stream, pos)
                service.handle(req, None)
                n += 1
            prof.disable()
            elapsed = time.perf_counter() - start
            print(f"\n--- profile: {name}: {n / elapsed:,.0f} requests/s in-process (under cProfile)")
            pstats.Stats(prof).sort_stats("tottime").print_stats(6)
        db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--conns", default="1,4,16")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--versus", action="store_true", help="bundled vs real ttserver ($TTSERVER), ratios")
    ap.add_argument("--rounds", type=int, default=5, help="--versus: interleaved rounds")
    ap.add_argument("--ulog", action="store_true", help="--versus: both servers keep an update log")
    ap.add_argument("--only", help="--versus: run only the workloads whose name contains this text")
    args = ap.parse_args()
    if args.versus:
        run_versus(args)
        return 0
    conns_list = [int(c) for c in args.conns.split(",")]
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_server(os.path.join(workdir, "bench.tct"), workdir)
        try:
            prepare(port)
            rows = []
            for name, request, parser in workloads():
                rows.append((name, [load_rate(port, c, request, parser, args.seconds) for c in conns_list]))
        finally:
            proc.terminate()
            proc.wait(30)
        floor_proc, floor_port = start_floor(tt.encode_get_reply(b"x" * 30))
        try:
            floor_get = tt.encode_get(b"1234")
            rows.append(("floor: echo server, no work", [
                load_rate(floor_port, c, floor_get, tt.parse_get, args.seconds) for c in conns_list]))
        finally:
            floor_proc.kill()
            floor_proc.wait(10)
    header = f"{'operation (table DB, 10k records)':<36}" + "".join(f"{f'{c} conn':>12}" for c in conns_list)
    print(header)
    print("-" * len(header))
    for name, rates in rows:
        print(f"{name:<36}" + "".join(f"{r:>12,.0f}" for r in rates))
    print("(requests/s; one request in flight per connection; bundled server on Tokyo Cabinet "
          f"{os.cpu_count()} CPUs)")
    if args.profile:
        profile(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
