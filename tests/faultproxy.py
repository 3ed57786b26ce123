"""A fault-injecting TCP proxy for tests: a real socket between a client and a real server.

``FaultProxy(host, port, seed=..., drop_reply=0.05, ...)`` listens on 127.0.0.1 (``.port``)
and forwards every connection to the server.  Each chunk read from either side (a client
request is one ``sendall``, so in practice one chunk per request or reply) may, at random
with the given probabilities and a seeded generator, be:

* ``drop_request``: not forwarded; both connections are closed (the server never saw it);
* ``truncate_request``: only a prefix is forwarded, then both are closed (the server sees a
  partial request and must not apply it);
* ``drop_reply``: the server's reply is not forwarded and both are closed -- the server HAS
  executed the request, the client sees the connection drop before any reply byte;
* ``truncate_reply``: a prefix of the reply is forwarded, then both are closed (executed;
  the client sees EOF mid-reply);
* ``delay_request`` / ``delay_reply``: forwarded after sleeping a random time in
  ``request_delay_seconds`` / ``reply_delay_seconds`` (``(min, max)``).  A reply delayed
  beyond the client's timeout makes it time out after the server executed the request; a
  request delayed beyond it would still reach the server after the client gave up (as on
  a real network), so keep request delays short when a test must know when that happened.

``counts`` tallies what happened (``requests``, ``replies`` forwarded and each fault), so a
test can check the server-side effect against what the client was told.  ``faults_on`` can
be cleared to let traffic through untouched (e.g. to read the final state).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from typing import List, Optional, Tuple

_FORWARDED = {"request": "requests", "reply": "replies"}
_FAULTS = ("drop_request", "truncate_request", "delay_request", "drop_reply", "truncate_reply", "delay_reply")


class FaultProxy:
    """Threaded TCP proxy on 127.0.0.1 injecting seeded random faults; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        seed: int = 0,
        drop_request: float = 0.0,
        truncate_request: float = 0.0,
        drop_reply: float = 0.0,
        truncate_reply: float = 0.0,
        delay_request: float = 0.0,
        delay_reply: float = 0.0,
        request_delay_seconds: Tuple[float, float] = (0.001, 0.02),
        reply_delay_seconds: Tuple[float, float] = (0.001, 0.02),
    ) -> None:
        self.target = (host, port)
        self.rates = {
            "drop_request": drop_request,
            "truncate_request": truncate_request,
            "drop_reply": drop_reply,
            "truncate_reply": truncate_reply,
            "delay_request": delay_request,
            "delay_reply": delay_reply,
        }
        self.delay_seconds = {"request": request_delay_seconds, "reply": reply_delay_seconds}
        self.counts: Counter = Counter()
        self.faults_on = True
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: List[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self.host = "127.0.0.1"
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    # -- fault decisions -------------------------------------------------------------------

    def _pick(self, direction: str) -> Optional[str]:
        """The fault for the next chunk travelling ``direction`` ("request"/"reply"), if any."""
        if not self.faults_on:
            return None
        with self._lock:
            roll = self._random.random()
            for fault in _FAULTS:
                if not fault.endswith(direction):
                    continue
                rate = self.rates[fault]
                if roll < rate:
                    return fault
                roll -= rate
        return None

    def _delay(self, direction: str) -> float:
        with self._lock:
            return self._random.uniform(*self.delay_seconds[direction])

    def _cut(self, size: int) -> int:
        with self._lock:
            return self._random.randint(1, size - 1) if size > 1 else 0

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    # -- plumbing --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            pair = _Pair(self, client, upstream)
            threading.Thread(target=pair.pump, args=(client, upstream, "request"), daemon=True).start()
            threading.Thread(target=pair.pump, args=(upstream, client, "reply"), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _hang_up(sock)
        self._thread.join(2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pair:
    """One proxied connection: two pumps; a fault on either closes both sides."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            _hang_up(self.client)
            _hang_up(self.upstream)

    def pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        proxy = self.proxy
        try:
            while not self.closed.is_set():
                chunk = src.recv(1 << 20)
                if not chunk:
                    break
                fault = proxy._pick(direction)
                if fault is None:
                    dst.sendall(chunk)
                    proxy.count(_FORWARDED[direction])
                    continue
                proxy.count(fault)
                if fault.startswith("delay"):
                    time.sleep(proxy._delay(direction))
                    dst.sendall(chunk)
                    proxy.count(_FORWARDED[direction])
                    continue
                if fault.startswith("truncate"):
                    cut = proxy._cut(len(chunk))
                    if cut:
                        dst.sendall(chunk[:cut])
                break  # drop_* / truncate_*: hang up both sides
        except OSError:
            pass
        finally:
            self.close()


def _hang_up(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
