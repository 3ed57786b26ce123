"""Hostile peers for the server robustness tests (issue 9): slowloris heads, endless bulk requests.

Each peer runs in a background thread on its own raw socket, so a test can measure what the
*other* clients see meanwhile:

* :class:`SlowHeadPeer` sends an HTTP request line and ~``head_bytes`` of header lines, then one
  more header byte every ``drip`` seconds (the head never ends);
* :class:`SlowItemsPeer` sends a TT ``misc putlist`` announcing 2^20 arguments, ~1 MB of tiny
  ones, then one more byte every ``drip`` seconds (the request never completes);
* :class:`EndlessBulkPeer` sends a KT binary ``set_bulk`` announcing ``rnum`` (2^31) records and
  streams small records as fast as the server takes them;
* :func:`get_latencies` times ``get`` calls of a normal client; :func:`rss_bytes` reads a
  process's resident set size from ``/proc``.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Callable, List, Optional


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (Linux ``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def get_latencies(call: Callable[[], object], count: int, pause: float = 0.0) -> List[float]:
    """Seconds taken by each of ``count`` calls of ``call`` (e.g. ``lambda: kt.get("k")``)."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
        if pause:
            time.sleep(pause)
    return out


class _Peer:
    """A background thread owning one connection; ``stop()`` ends it and closes the socket."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.error: Optional[BaseException] = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, daemon=True)

    def start(self) -> _Peer:
        self._thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self.run()
        except OSError as exc:  # the server hung up on us: that is allowed
            self.error = exc
        finally:
            self.ready.set()

    def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class SlowHeadPeer(_Peer):
    """Slowloris: a head of ``head_bytes`` header lines, then one byte every ``drip`` seconds."""

    def __init__(self, host: str, port: int, head_bytes: int = 1_000_000, drip: float = 0.2):
        super().__init__(host, port)
        self.head_bytes = head_bytes
        self.drip = drip

    def run(self) -> None:
        line = b"X-Pad: " + b"p" * 90 + b"\r\n"
        head = b"GET /rpc/void HTTP/1.1\r\n" + line * (self.head_bytes // len(line))
        self.sock.sendall(head)
        self.sent = len(head)
        self.ready.set()
        while not self._stop.wait(self.drip):
            self.sock.sendall(b"y")
            self.sent += 1


class EndlessBulkPeer(_Peer):
    """A binary ``set_bulk`` (KT, magic 0xB8) announcing ``rnum`` records, streamed until stopped."""

    def __init__(self, host: str, port: int, rnum: int = 1 << 31, value_size: int = 100):
        super().__init__(host, port)
        self.rnum = rnum
        self.value_size = value_size

    def run(self) -> None:
        self.sock.sendall(struct.pack(">BII", 0xB8, 0, self.rnum))
        value = b"v" * self.value_size
        i = 0
        self.ready.set()
        while not self._stop.is_set():
            chunk = []
            for _ in range(1000):
                key = b"flood-%d" % (i % 50000)
                chunk.append(struct.pack(">HIIq", 0, len(key), len(value), 0x7FFFFFFFFFFFFFFF) + key + value)
                i += 1
            data = b"".join(chunk)
            self.sock.sendall(data)
            self.sent += len(data)


class SlowItemsPeer(_Peer):
    """TT ``misc putlist`` with 2^20 arguments announced, ``items`` one-byte ones sent, then one
    more byte every ``drip`` seconds."""

    def __init__(self, host: str, port: int, items: int = 200_000, drip: float = 0.2):
        super().__init__(host, port)
        self.items = items
        self.drip = drip

    def run(self) -> None:
        name = b"putlist"
        head = struct.pack(">BBiii", 0xC8, 0x90, len(name), 0, 1 << 20) + name
        self.sock.sendall(head + (struct.pack(">i", 1) + b"x") * self.items)
        self.sent = len(head) + 5 * self.items
        self.ready.set()
        while not self._stop.wait(self.drip):
            self.sock.sendall(b"\0")
            self.sent += 1
