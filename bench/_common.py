"""Shared helpers for the bench scripts: timing, the raw-socket floor, tables, servers.

Numbers are only meaningful as ratios taken in one run against one server, so the helpers
interleave the candidates (``compare``) and report the best round of each, with the range of
the per-round ratios (round i of a client against round i of the baseline).  Set
``KT_BENCH_QUICK=1`` for a short smoke run (``bench/run_all.py --quick`` does).

    from _common import RawSocket, bundled_server, compare, print_table, rows_for

    with bundled_server("tt") as server:
        raw = RawSocket(server.host, server.port)
        floor = raw.fixed(b"\\xc8\\x80", 9)          # TT rnum: 9-byte reply
        results = {"rnum": compare({"floor": floor, "kt": lambda: client.count()})}
        print_table(*rows_for(results, baseline="floor"))
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_HERE), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)  # bench runs against this checkout's kt

QUICK = os.environ.get("KT_BENCH_QUICK", "") not in ("", "0")
DEFAULT_DURATION = 0.3 if QUICK else 2.0  # seconds per candidate, all rounds together
DEFAULT_ROUNDS = 3 if QUICK else 7


@dataclass
class Measurement:
    """Throughput and client CPU cost of one candidate: its best round (most ops/s, least
    CPU), and every round's ops/s for the ranges of the ratios."""

    ops_per_s: float
    cpu_us_per_op: float
    ops: int
    rounds: Tuple[float, ...] = ()

    @property
    def wall_us_per_op(self) -> float:
        return 1e6 / self.ops_per_s if self.ops_per_s else float("inf")


def _timed(fn: Callable[[], Any], calls: int, ops_per_call: int) -> Measurement:
    perf, cpu = time.perf_counter, time.process_time
    wall0, cpu0 = perf(), cpu()
    for _ in range(calls):
        fn()
    wall, used = perf() - wall0, cpu() - cpu0
    ops = calls * ops_per_call
    return Measurement(ops / wall if wall > 0 else float("inf"), used * 1e6 / ops, ops)


def calibrate(fn: Callable[[], Any], seconds: float) -> int:
    """How many calls of ``fn`` take about ``seconds`` (after a short warm-up)."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.02 or calls >= 1 << 22:
            return max(1, int(calls * seconds / max(elapsed, 1e-9)))
        calls *= 4


def measure(
    fn: Callable[[], Any],
    *,
    ops_per_call: int = 1,
    duration: float = DEFAULT_DURATION,
    rounds: int = DEFAULT_ROUNDS,
) -> Measurement:
    """Best ops/s and client CPU µs/op of ``fn`` over ``rounds`` timed runs."""
    return compare({"_": fn}, ops_per_call={"_": ops_per_call}, duration=duration, rounds=rounds)["_"]


def compare(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    ops_per_call: Optional[Mapping[str, int]] = None,
    duration: float = DEFAULT_DURATION,
    rounds: int = DEFAULT_ROUNDS,
) -> Dict[str, Measurement]:
    """Measure several callables doing the same operation, interleaved round by round.

    Interleaving spreads background noise over all candidates, so ratios stay fair on a
    busy machine.  ``duration`` is the total timed seconds per candidate.
    """
    ops_per_call = dict(ops_per_call or {})
    calls = {name: calibrate(fn, duration / rounds) for name, fn in candidates.items()}
    samples: Dict[str, List[Measurement]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(_timed(fn, calls[name], ops_per_call.get(name, 1)))
    return {
        name: Measurement(
            max(m.ops_per_s for m in runs),
            min(m.cpu_us_per_op for m in runs),
            sum(m.ops for m in runs),
            tuple(m.ops_per_s for m in runs),
        )
        for name, runs in samples.items()
    }


def ratio_text(ours: Sequence[float], theirs: Sequence[float], unit: str = "") -> str:
    """Best ÷ best, and the range of the per-round ratios (round i against round i):
    ``0.91x (0.84-0.97)`` with ``unit="x"``."""
    per_round = [a / b for a, b in zip(ours, theirs) if b]
    if not per_round or not max(theirs):
        return "n/a (no reply from the baseline)"
    text = f"{max(ours) / max(theirs):.2f}{unit}"
    if len(per_round) > 1:
        text += f" ({min(per_round):.2f}-{max(per_round):.2f})"
    return text


class RawSocket:
    """The floor: a bare blocking socket sending pre-built request bytes.

    Whatever a client adds on top of this (encoding, parsing, pooling, Python calls) is its
    overhead; a sync client cannot go below it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host or "127.0.0.1", port), 5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.buf = bytearray(1 << 22)
        self.view = memoryview(self.buf)

    def close(self) -> None:
        self.sock.close()

    def reply_size(self, request: bytes, parse: Callable) -> int:
        """Send ``request`` once and learn its reply length with a codec parser."""
        self.sock.sendall(request)
        data = b""
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
            parsed = parse(data, 0)
            if parsed is not None:
                return parsed[1]

    def fixed(self, request: bytes, reply_size: int) -> Callable[[], None]:
        """A callable doing one round trip whose reply is exactly ``reply_size`` bytes."""
        sock, view, buf = self.sock, self.view, self.buf
        if reply_size > len(buf):
            raise ValueError(f"reply of {reply_size} bytes exceeds the {len(buf)}-byte buffer")
        sendall, recv_into = sock.sendall, sock.recv_into

        def round_trip() -> None:
            sendall(request)
            got = recv_into(buf)
            while got < reply_size:
                n = recv_into(view[got:])
                if not n:
                    raise ConnectionError("server closed the connection mid-reply")
                got += n

        return round_trip

    def probed(self, request: bytes, parse: Callable) -> Callable[[], None]:
        """``fixed`` with the reply size learned from one real exchange."""
        return self.fixed(request, self.reply_size(request, parse))

    def send_only(self, data: bytes) -> Callable[[], None]:
        """A callable sending a no-reply request (e.g. TT putnr)."""
        sendall = self.sock.sendall
        return lambda: sendall(data)


def load_rate(port: int, conns: int, request: bytes, parser: Callable, seconds: float) -> float:
    """Requests/s with ``conns`` connections, one request in flight on each."""
    sel = selectors.DefaultSelector()
    socks: List[socket.socket] = []
    for _ in range(conns):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
        sel.register(sock, selectors.EVENT_READ, bytearray())
    for sock in socks:
        sock.send(request)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for key, _ in sel.select(0.5):
            sock, buf = key.fileobj, key.data
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("server closed a benchmark connection")
            buf += chunk
            while True:
                parsed = parser(buf, 0)
                if parsed is None:
                    break
                del buf[: parsed[1]]
                done += 1
                sock.send(request)
    elapsed = time.perf_counter() - start
    for sock in socks:
        sel.unregister(sock)
        sock.close()
    return done / elapsed


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style table with right-aligned numeric columns."""
    text = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) if text else len(str(h))
              for i, h in enumerate(headers)]
    numeric = [bool(text) and all(_is_number(r[i]) for r in text if r[i]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line([str(h) for h in headers]), rule, *(line(r) for r in text)])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x"))
    except ValueError:
        return False
    return True


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: Optional[str] = None) -> None:
    if title:
        print(f"\n### {title}\n")
    print(markdown_table(headers, rows))
    sys.stdout.flush()


def rows_for(
    results: Mapping[str, Mapping[str, Measurement]],
    baseline: Optional[str] = "floor",
    peers: Sequence[str] = (),
) -> Tuple[List[str], List[List[Any]]]:
    """Headers and rows for ``{operation: {client: Measurement}}``.

    Adds an ``x <baseline>`` column (best ÷ best ops/s, with the range of the per-round
    ratios) and one ``x <peer>`` column per peer, for every client that is not that one.
    """
    refs = [r for r in ([baseline] if baseline else []) + list(peers) if r]
    headers = ["operation", "client", "ops/s", "client CPU µs/op", *[f"x {r}" for r in refs]]
    rows: List[List[Any]] = []
    for operation, by_client in results.items():
        for client, m in by_client.items():
            ratios = []
            for ref in refs:
                other = by_client.get(ref)
                ratios.append(ratio_text(m.rounds or (m.ops_per_s,), other.rounds or (other.ops_per_s,), "x")
                              if other is not None and ref != client else None)
            rows.append([operation, client, m.ops_per_s, m.cpu_us_per_op, *ratios])
    return headers, rows


@contextlib.contextmanager
def bundled_server(
    product: str = "kt",
    database: Any = "*",
    server_args: Optional[Sequence[str]] = None,
    server: Optional[str] = None,
) -> Iterator[Any]:
    """Run a server for a benchmark: the bundled one, or ``server`` (a real binary path).

    ``server`` defaults to the environment's ``KTSERVER`` / ``TTSERVER`` when
    ``KT_BENCH_REAL=1``, so the same script can measure against the real servers.
    """
    from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer

    if server is None and os.environ.get("KT_BENCH_REAL") == "1":
        server = os.environ.get("KTSERVER" if product == "kt" else "TTSERVER")
    cls = EmbeddedServer if product == "kt" else EmbeddedTokyoTyrantServer
    embedded = cls(server=server, database=database, server_args=server_args)
    embedded.run()
    try:
        yield embedded
    finally:
        embedded.stop()


def optional_module(name: str) -> Optional[Any]:
    """Import a peer client for comparison (e.g. ``ukt``), or None with a note when absent."""
    try:
        return __import__(name)
    except ImportError as exc:
        print(f"({name} not installed, left out: {exc}; pip install -e '.[bench]')", file=sys.stderr)
        return None


def value_of(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible-ish bytes of ``size`` (benchmark values)."""
    pattern = bytes((seed * 31 + i * 7) & 0xFF for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


def write_section(path: str, start: str, end: str, body: str) -> None:
    """Put ``body`` between the markers ``start`` and ``end`` of the markdown file ``path``
    (in place of what was there, or appended with the markers)."""
    section = f"{start}\n{body}\n{end}"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
