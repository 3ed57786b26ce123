"""A shard's servers and when to switch between them: primary/replica failover.

A :class:`Shard` holds one client per server, primary first.  Calls go to its active server,
the primary at first.  After ``failover_after`` consecutive connection failures (refused,
reset, timeout) it moves to the next server; from then on, every ``recheck_interval``
seconds one call first runs the health check on the primary and moves back when it passes
(the defaults, :class:`KTCatchUpCheck` and :class:`TTCatchUpCheck`: the primary answers and
has applied what the replica logged).  A call that failed is sent again on the new server
only when that cannot change its outcome: reads and idempotent writes (``set``, ``remove``,
bulk set/remove...), or any call that never reached the old one (connection refused).
Otherwise the caller gets the connection error: the write may or may not have been applied.
A reply always comes from one request on one connection of one server, so no call can
return another key's value.  docs/sharding.md says what a write during failover means with
the servers' asynchronous replication.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Awaitable, Callable, List, Optional, Sequence, Tuple, Union

from kt.errors import KyotoTycoonError, ServerConnectionError, ServerTimeoutError
from kt.kyototycoon import KyotoTycoon
from kt.protocol import http, kt_rpc
from kt.tokyotyrant import TokyoTyrant
from kt.transport import Connection

__all__ = [
    "Shard",
    "KTCatchUpCheck",
    "TTCatchUpCheck",
    "kt_health_check",
    "kt_replication_position",
    "parse_address",
    "shard_addresses",
]

log = logging.getLogger("kt.sharding")

Address = Union[str, Tuple[str, int]]
HealthCheck = Callable[[Any, Any], bool]
DEFAULT_PORT = 1978


def parse_address(spec: Any) -> Tuple[str, int]:
    """``"host:port"`` / ``"host"`` / ``(host, port)`` -> ``(host, port)``."""
    if isinstance(spec, str):
        host, sep, port = spec.rpartition(":")
        if not sep:
            host, port = spec, str(DEFAULT_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a server address is 'host:port', not {spec!r}")
        return host, int(port)
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], int)
        and not isinstance(spec[1], bool)
    ):
        return spec[0], spec[1]
    raise TypeError(f"a server address is 'host:port' or (host, port), not {spec!r}")


def shard_addresses(spec: Any) -> List[Tuple[str, int]]:
    """One shard spec -> its servers, primary first."""
    if isinstance(spec, str) or (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], int)):
        return [parse_address(spec)]
    if isinstance(spec, (tuple, list)) and spec:
        return [parse_address(server) for server in spec]
    raise TypeError(f"a shard is an address or a sequence of addresses (primary first), not {spec!r}")


def _never_sent(exc: ServerConnectionError) -> bool:
    """True when the request cannot have reached the server (it refused the connection)."""
    return isinstance(exc.__cause__, ConnectionRefusedError)


def _is_server_failure(exc: ServerConnectionError) -> bool:
    """A waiting room full of our own threads is not the server's fault."""
    return not str(exc).startswith("pool exhausted")


class Shard:
    """One place on the ring: a primary client and its replicas, with the failover state."""

    def __init__(
        self,
        name: str,
        clients: Sequence[Any],
        failover_after: int,
        recheck_interval: float,
        health_check: HealthCheck,
        health_clients: Optional[Sequence[Any]] = None,
    ) -> None:
        self.name = name
        self.clients = list(clients)
        # blocking clients of the same servers for the health check (the clients themselves
        # unless they are asyncio ones)
        self.health_clients = list(health_clients) if health_clients is not None else self.clients
        self.failover_after = failover_after
        self.recheck_interval = recheck_interval
        self.health_check = health_check
        self._active = 0
        self._failures = 0
        self._next_check = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        servers = ", ".join(f"{c.host}:{c.port}" for c in self.clients)
        return f"<Shard {self.name} [{servers}] active={self._active}>"

    @property
    def active(self) -> Any:
        """The client calls go to now."""
        return self.clients[self._active]

    @property
    def active_index(self) -> int:
        return self._active

    def call(self, fn: Callable[[Any], Any], retry_safe: bool) -> Any:
        """``fn(client)`` on the active server, failing over as the module docstring says."""
        probe = self._probe_due()
        if probe is not None and self._health(probe):
            self._back_to_primary()
        attempts = len(self.clients)  # every server once at most
        while True:
            index = self._active
            try:
                result = fn(self.clients[index])
            except ServerConnectionError as exc:
                attempts -= 1
                if not self._retry_after(index, exc, attempts, retry_safe):
                    raise
                continue
            self._succeeded(index)
            return result

    async def acall(self, fn: Callable[[Any], Awaitable[Any]], retry_safe: bool) -> Any:
        """:meth:`call` for asyncio clients: the same decisions, ``await fn(client)``; the
        health check (blocking I/O on ``health_clients``) runs in the default executor."""
        probe = self._probe_due()
        if probe is not None:
            healthy = await asyncio.get_running_loop().run_in_executor(None, self._health, probe)
            if healthy:
                self._back_to_primary()
        attempts = len(self.clients)
        while True:
            index = self._active
            try:
                result = await fn(self.clients[index])
            except ServerConnectionError as exc:
                attempts -= 1
                if not self._retry_after(index, exc, attempts, retry_safe):
                    raise
                continue
            self._succeeded(index)
            return result

    def _retry_after(self, index: int, exc: ServerConnectionError, attempts: int, retry_safe: bool) -> bool:
        """Count the failure of server ``index``; True when the call should go to the next one."""
        moved = _is_server_failure(exc) and self._failed(index, exc)
        return bool(moved and attempts and (retry_safe or _never_sent(exc)))

    def _succeeded(self, index: int) -> None:
        if self._failures and index == self._active:
            self._failures = 0

    def _failed(self, index: int, exc: Exception) -> bool:
        """Count a failure of server ``index``; True when calls now go elsewhere."""
        with self._lock:
            if index != self._active:
                return True  # another thread already moved on
            self._failures += 1
            if self._failures < self.failover_after or len(self.clients) < 2:
                return False
            self._active = (index + 1) % len(self.clients)
            self._failures = 0
            self._next_check = time.monotonic() + self.recheck_interval
            new = self.clients[self._active]
        log.warning(
            "shard %s: %s failed (%s); calls go to %s:%s",
            self.name,
            f"{self.clients[index].host}:{self.clients[index].port}",
            exc,
            new.host,
            new.port,
        )
        return True

    def _probe_due(self) -> Optional[Tuple[Any, Any]]:
        """``(primary, current)`` health-check clients when this call should probe the primary
        (one caller per ``recheck_interval``), else None."""
        if not self._active or time.monotonic() < self._next_check:
            return None
        with self._lock:
            now = time.monotonic()
            if not self._active or now < self._next_check:
                return None
            self._next_check = now + self.recheck_interval  # one probing caller per interval
            return self.health_clients[0], self.health_clients[self._active]

    def _health(self, probe: Tuple[Any, Any]) -> bool:
        try:
            return bool(self.health_check(*probe))
        except KyotoTycoonError as exc:
            log.debug("shard %s: primary still unhealthy: %s", self.name, exc)
            return False

    def _back_to_primary(self) -> None:
        with self._lock:
            self._active = 0
            self._failures = 0
        primary = self.clients[0]
        log.warning("shard %s: calls go back to the primary %s:%s", self.name, primary.host, primary.port)


# The real ktserver keeps update-log entries in memory and writes them to the log file (where
# ``ulog_list`` sees them) every 0.1 s (``UpdateLogger::FLUSHWAIT`` in ktulog.h).
KT_ULOG_FLUSH_WAIT = 0.1


def kt_replication_position(
    primary: KyotoTycoon, current: KyotoTycoon, settle: float = 0.0
) -> Optional[Tuple[int, int]]:
    """``(applied, logged)``: the newest update ``primary`` applied from ``current`` and the newest
    ``current`` logged; None when ``primary`` does not replicate from ``current`` (or
    ``current`` keeps no update log).  Raises when ``primary`` does not answer.

    The primary's ``report`` shows the timestamp of the last update it applied from its master
    (``repl_timestamp``); the master's ``ulog_list`` shows the newest timestamp it logged.
    ``settle`` seconds pass between the two, so that what ``current`` acknowledged before the
    call has reached its log file (see ``KT_ULOG_FLUSH_WAIT``).
    """
    report = primary.report()
    applied = report.get("repl_timestamp")
    if applied is None or report.get("repl_master_port") != str(current.port):
        return None
    if settle:
        time.sleep(settle)
    logged = _newest_logged(current)
    return None if logged is None else (int(applied), logged)


def _newest_logged(client: KyotoTycoon) -> Optional[int]:
    """The newest timestamp in ``client``'s server's update log (``ulog_list``); None without one.

    The clients have no ``ulog_list`` method, so this asks on a connection of its own.
    """
    address = f"{client.host}:{client.port}"
    conn = Connection(client.host, client.port, timeout=client.timeout or 5.0, connect_timeout=5.0)
    try:
        response = conn.request(kt_rpc.build_rpc_request("ulog_list", (), address), http.parse_response)
    except KyotoTycoonError:
        return None  # down: nothing it logged can reach the primary now anyway
    finally:
        conn.close()
    status, files = kt_rpc.parse_rpc_response(response)
    if status != 200:
        return None  # no update log
    return max((int(info.partition(b":")[2] or 0) for info in files.values()), default=0)


def kt_health_check(primary: KyotoTycoon, current: KyotoTycoon) -> bool:
    """The primary answers and has applied every update ``current`` has logged so far."""
    position = kt_replication_position(primary, current)
    return position is None or position[0] >= position[1]


class KTCatchUpCheck:
    """The default Kyoto Tycoon health check (one per shard): the primary answers and has applied
    everything the replica had logged at the previous check (at the first check: everything).

    While writes keep arriving on the replica its log never stops moving, so "everything logged
    now" is rarely reached; the target of the previous check is, once the primary's replication
    delay is below ``recheck_interval``.  Moving back before that could let a write on the
    primary be overwritten by an older one still on its way from the replica.  ``settle``: the
    wait before reading the replica's log position, so that writes it acknowledged just before
    the check are in its log file (the real ktserver flushes its log every 0.1 s).
    """

    def __init__(self, settle: float = 1.5 * KT_ULOG_FLUSH_WAIT) -> None:
        self._target: Optional[int] = None
        self.settle = settle

    def __call__(self, primary: KyotoTycoon, current: KyotoTycoon) -> bool:
        position = kt_replication_position(primary, current, self.settle)
        if position is None:
            return True  # not replicating from the server we use now: nothing to wait for
        applied, logged = position
        log.debug("catch-up check: primary applied %d, replica logged %d", applied, logged)
        target = logged if self._target is None else self._target
        self._target = logged
        if applied >= target:
            self._target = None  # the next failover starts afresh
            return True
        return False


class TTCatchUpCheck:
    """The default Tokyo Tyrant health check: the primary answers and the replica logged nothing
    after the primary's replication position that the primary has not applied.

    ``stat`` on the primary shows its master (``mport``), its id (``sid``) and the timestamp of
    the last update it applied (``rts``).  Tokyo Tyrant shows no log position of its own, so the
    check asks the replica's update-log stream, as a slave with the primary's id (the stream
    then leaves out what originated on the primary), for the updates after ``rts``: when none
    arrives within ``window`` seconds the primary has caught up.  The real ttserver sends
    keep-alives every second and sends a new reader its first records only about 1 s after it
    connected, right after a keep-alive (its reader waits up to 1 s for a write,
    ``tculrdwait`` in tculog.c): the window ends at a keep-alive that comes ``window`` seconds
    after the start, so it must be longer than 1 s (a silent server ends it by the socket
    timeout).
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window

    def __call__(self, primary: TokyoTyrant, current: TokyoTyrant) -> bool:
        from kt.replication import ReplicationClient  # the stream reader (no cycle at import)

        status = primary.status()
        if status.get("mport") != str(current.port) or "rts" not in status or int(status.get("sid", 0)) < 1:
            return True  # not replicating from the server we use now: nothing to wait for
        stream = ReplicationClient(
            current.host, current.port, sid=int(status["sid"]), server="tt", timeout=self.window + 0.5
        )
        try:
            # ttserver refuses a start timestamp of 0 (its rts is 0 until its slave applied something)
            for _entry in stream.updates(start_ts=max(int(status["rts"]), 1), idle_timeout=self.window):
                return False  # the replica has an update the primary has not applied yet
        except ServerTimeoutError:
            return True  # nothing newer within the window
        except KyotoTycoonError:
            return True  # the replica is down: nothing it logged can reach the primary now
        finally:
            stream.close()
        return True
