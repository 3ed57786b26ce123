"""Bundled server vs real server, side by side: one closed-loop load generator for both.

A *workload* is a name, the request bytes each connection sends in a cycle, and the codec
parser that frames one reply.  Reply sizes are learned once per server with the parser (one
exchange per distinct request, which also warms the server up); during the timed run replies
are framed by size only, so the load generator costs the same few µs per reply whatever the
server, and a 1000-record reply is not parsed 1000 records at a time in the benchmark process.

Rounds alternate between the servers (bundled, real, bundled, real, ...), so background load on
a shared machine hits both; the table shows the best round of each (noise only ever slows a
round down) and the range of the per-round ratios.  Server CPU per request comes from
``/proc/<pid>/stat`` (utime + stime of the whole server process), the steadier measure when the
machine is busy.

    targets = start_pair("kt", "*")          # bundled + $KTSERVER, each as its own process
    rows = versus(targets, [Workload("get", [[request]], parser)], conns=(1, 4, 16))
    print_versus(rows)
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from _common import markdown_table, ratio_text

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """A running server the benchmark can drive: its name, port and process id."""

    name: str
    port: int
    pid: int
    host: str = "127.0.0.1"


def server_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, all threads) the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def server_rss(pid: int) -> int:
    """Resident set size of the process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def connect(target: Target) -> socket.socket:
    sock = socket.create_connection((target.host, target.port), 600)  # a slow search
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def exchange(sock: socket.socket, request: bytes, parser: Callable) -> Tuple[object, int]:
    """Send one request, read its whole reply: ``(parsed value, reply size)``."""
    sock.sendall(request)
    buf = bytearray()
    while True:
        parsed = parser(buf, 0)
        if parsed is not None:
            if parsed[1] != len(buf):
                raise RuntimeError(f"{len(buf) - parsed[1]} unexpected bytes after a reply")
            return parsed[0], parsed[1]
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk


@dataclass
class Workload:
    """``requests[c]`` is the cycle of requests connection ``c`` sends (the last entry is
    reused for connections beyond the list); ``parser`` frames one reply (a codec parser)."""

    name: str
    requests: List[List[bytes]]
    parser: Callable
    conns: Sequence[int] = (1, 4, 16)
    setup: Optional[Callable[[Target], None]] = None

    def cycle(self, conn: int) -> List[bytes]:
        return self.requests[min(conn, len(self.requests) - 1)]


def load_run(
    target: Target, cycles: List[List[bytes]], sizes: List[List[int]], seconds: float
) -> Tuple[int, float]:
    """Closed loop: each connection keeps one request in flight; ``(replies, elapsed)``."""
    socks = [connect(target) for _ in cycles]
    scratch = bytearray(1 << 20)
    index = [0] * len(socks)
    got = [0] * len(socks)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    poller = select.poll()
    for i, sock in enumerate(socks):
        poller.register(sock, select.POLLIN)
        sock.sendall(cycles[i][0])
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while time.perf_counter() < deadline or not done:  # a slow request: wait for one reply
            for fd, _ in poller.poll(500):
                i = by_fd[fd]
                n = socks[i].recv_into(scratch, 0, socket.MSG_DONTWAIT)
                if not n:
                    raise RuntimeError(f"{target.name} closed a benchmark connection")
                got[i] += n
                want = sizes[i][index[i]]
                if got[i] < want:
                    continue
                if got[i] > want:
                    raise RuntimeError(f"{target.name}: reply longer than learned ({got[i]} > {want})")
                got[i] = 0
                done += 1
                index[i] = (index[i] + 1) % len(cycles[i])
                socks[i].sendall(cycles[i][index[i]])
        elapsed = time.perf_counter() - start
        # drain the replies in flight so the next run starts on a quiet server
        for i, sock in enumerate(socks):
            sock.settimeout(60)
            while got[i] < sizes[i][index[i]]:
                n = sock.recv_into(scratch)
                if not n:
                    break
                got[i] += n
    finally:
        for sock in socks:
            sock.close()
    return done, elapsed


def learn_sizes(target: Target, cycles: List[List[bytes]], parser: Callable) -> List[List[int]]:
    """Each distinct request's reply size on ``target`` (one real exchange each)."""
    known: Dict[bytes, int] = {}
    sock = connect(target)
    try:
        for cycle in cycles:
            for request in cycle:
                if request not in known:
                    known[request] = exchange(sock, request, parser)[1]
    finally:
        sock.close()
    return [[known[r] for r in cycle] for cycle in cycles]


@dataclass
class Cell:
    """One workload at one connection count, measured on every target."""

    workload: str
    conns: int
    rates: Dict[str, List[float]] = field(default_factory=dict)
    cpu_us: Dict[str, List[float]] = field(default_factory=dict)

    def best(self, target: str) -> float:
        return max(self.rates[target])

    def cpu(self, target: str) -> float:
        return min(self.cpu_us[target])


def versus(
    targets: Sequence[Target], workloads: Sequence[Workload], rounds: int, seconds: float
) -> List[Cell]:
    cells = []
    for workload in workloads:
        for target in targets:
            if workload.setup is not None:
                workload.setup(target)
        for conns in workload.conns:
            cycles = [workload.cycle(c) for c in range(conns)]
            sizes = {t.name: learn_sizes(t, cycles, workload.parser) for t in targets}
            cell = Cell(workload.name, conns)
            for _ in range(rounds):
                for target in targets:
                    cpu0 = server_cpu(target.pid)
                    done, elapsed = load_run(target, cycles, sizes[target.name], seconds)
                    used = server_cpu(target.pid) - cpu0
                    cell.rates.setdefault(target.name, []).append(done / elapsed)
                    cell.cpu_us.setdefault(target.name, []).append(used * 1e6 / max(done, 1))
            cells.append(cell)
            print(f"  {workload.name} x{conns}: " + ", ".join(
                f"{t.name} {cell.best(t.name):,.0f}/s" for t in targets), flush=True)
    return cells


def versus_table(cells: Sequence[Cell], ours: str = "bundled", theirs: str = "real") -> str:
    headers = ["operation", "conns", f"{ours} req/s", f"{theirs} req/s", f"{ours} ÷ {theirs} (range)",
               f"{ours} CPU µs/req", f"{theirs} CPU µs/req", f"CPU {theirs} ÷ {ours}"]
    rows = []
    for cell in cells:
        rows.append([cell.workload, cell.conns, cell.best(ours), cell.best(theirs),
                     ratio_text(cell.rates[ours], cell.rates[theirs]), cell.cpu(ours), cell.cpu(theirs),
                     f"{cell.cpu(theirs) / cell.cpu(ours):.2f}" if cell.cpu(ours) else ""])
    return markdown_table(headers, rows)


@dataclass
class LoadResult:
    seconds: float
    cpu_seconds: float
    rss_kib: int
    rss_before_kib: int


def load_records(target: Target, requests: Sequence[bytes], parser: Callable) -> LoadResult:
    """Send ``requests`` (set_bulk batches) one after another on one connection."""
    rss0 = server_rss(target.pid)
    sock = connect(target)
    cpu0 = server_cpu(target.pid)
    start = time.perf_counter()
    try:
        for request in requests:
            exchange(sock, request, parser)
    finally:
        sock.close()
    elapsed = time.perf_counter() - start
    return LoadResult(elapsed, server_cpu(target.pid) - cpu0, server_rss(target.pid), rss0)


def load_table(results: Dict[str, List[LoadResult]], records: int, ours: str = "bundled",
               theirs: str = "real") -> str:
    headers = ["server", "load time s (best, range)", "server CPU s", "RSS MiB after", "RSS growth MiB"]
    rows = []
    for name in (ours, theirs):
        runs = results[name]
        times = [r.seconds for r in runs]
        rows.append([name, f"{min(times):.2f} ({min(times):.2f}-{max(times):.2f})",
                     min(r.cpu_seconds for r in runs), max(r.rss_kib for r in runs) / 1024,
                     max(r.rss_kib - r.rss_before_kib for r in runs) / 1024])
    a, b = results[ours], results[theirs]
    speed = min(r.seconds for r in b) / min(r.seconds for r in a)
    rss = max(r.rss_kib for r in a) / max(r.rss_kib for r in b)
    return (markdown_table(headers, rows)
            + f"\n\n{records:,} records: {ours} ÷ {theirs} speed {speed:.2f}x, RSS {rss:.2f}x of {theirs}")


@contextlib.contextmanager
def servers(product: str, database: str, server_args: Sequence[str] = (),
            real: Optional[str] = None) -> Iterator[List[Target]]:
    """The bundled server and the real one (``real`` or $KTSERVER/$TTSERVER), both running.

    ``%s`` in the database name or in ``server_args`` becomes the server's name (bundled/real)."""
    from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer

    cls = EmbeddedServer if product == "kt" else EmbeddedTokyoTyrantServer
    real = real or os.environ.get("KTSERVER" if product == "kt" else "TTSERVER")
    if not real:
        raise SystemExit(f"set {'KTSERVER' if product == 'kt' else 'TTSERVER'} to the real server binary")
    started = []
    try:
        targets = []
        for name, binary, db in (("bundled", None, database), ("real", real, database)):
            if db not in ("*", "%", ":", "+", "-"):
                db = db.replace("%s", name)
            args = [arg.replace("%s", name) for arg in server_args]  # e.g. one -ulog directory each
            server = cls(server=binary, database=db, server_args=args)
            server.run()
            started.append(server)
            targets.append(Target(name, server.port, server.pid))
        yield targets
    finally:
        for server in started:
            server.stop()
