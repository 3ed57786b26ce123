"""Dual-master server pairs on loopback for the sharding/failover tests and bench/bench_sharding.py.

``ReplicatedPair`` starts two servers (bundled, or the real binary named by ``KTSERVER`` /
``TTSERVER`` when ``real=True``) that replicate to each other through their update logs:
server *i* runs with ``-ulog <dir>/ulog-i -sid <i> -mhost 127.0.0.1 -mport <peer port>
-rts <dir>/<i>.rts`` on a file database, which is exactly the deployment docs/sharding.md
describes.  ``kill(i)`` sends SIGKILL; ``start(i)`` brings it back on the same port, files,
update log and RTS file.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from typing import List, Optional

from kt.embedded import EmbeddedServer, EmbeddedTokyoTyrantServer

_DB_SUFFIX = {"kt": "kch", "tt": "tch"}


def free_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """``count`` distinct ports nobody listens on now (ktserver rejects ports >= 32768)."""
    ports: List[int] = []
    while len(ports) < count:
        port = random.randint(10000, 32767)
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        ports.append(port)
    return ports


class ReplicatedPair:
    """Two servers, each the other's replication master (see the module docstring)."""

    def __init__(
        self,
        product: str,
        workdir: str,
        sids: tuple = (1, 2),
        server: Optional[str] = None,
        ports: Optional[List[int]] = None,
    ) -> None:
        if product not in _DB_SUFFIX:
            raise ValueError(f"product must be 'kt' or 'tt', not {product!r}")
        self.product = product
        self.workdir = workdir
        self.sids = sids
        self.server = server
        self.ports = list(ports) if ports else free_ports(2)
        os.makedirs(workdir, exist_ok=True)
        self.servers = [self._embedded(i) for i in range(2)]

    @property
    def addresses(self) -> List[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def db_path(self, i: int) -> str:
        return os.path.join(self.workdir, f"db-{i}.{_DB_SUFFIX[self.product]}")

    def _embedded(self, i: int):
        peer = self.ports[1 - i]
        os.makedirs(os.path.join(self.workdir, f"ulog-{i}"), exist_ok=True)  # ttserver wants it to exist
        args = [
            "-ulog",
            os.path.join(self.workdir, f"ulog-{i}"),
            "-sid",
            str(self.sids[i]),
            "-mhost",
            "127.0.0.1",
            "-mport",
            str(peer),
            "-rts",
            os.path.join(self.workdir, f"{i}.rts"),
        ]
        if self.product == "kt":
            return EmbeddedServer(self.server, port=self.ports[i], database=self.db_path(i), server_args=args)
        return EmbeddedTokyoTyrantServer(
            self.server, port=self.ports[i], database=self.db_path(i), server_args=args
        )

    def start(self, i: Optional[int] = None) -> None:
        """Start server ``i`` (both when None)."""
        for j in range(2) if i is None else [i]:
            self.servers[j].run()

    def kill(self, i: int) -> None:
        """``kill -9`` server ``i`` (no shutdown, no final sync)."""
        embedded = self.servers[i]
        if embedded.pid is not None and embedded.running:
            os.kill(embedded.pid, signal.SIGKILL)
        embedded.stop()  # reaps the dead process

    def stop(self) -> None:
        for embedded in self.servers:
            embedded.stop()

    def wait_identical(self, client_factory, timeout: float = 30.0) -> bool:
        """Wait until both servers hold the same records; True when they do."""
        a, b = (client_factory(address) for address in self.addresses)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if dict(a.items()) == dict(b.items()):
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
        finally:
            a.close()
            b.close()

    def __enter__(self) -> ReplicatedPair:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
