"""``PooledClient``: what both clients share about their connection pool.

No-reply writes (TT ``putnr``, KT's binary no-reply flag), closing and checking in, and the
explicit connection controls and ``lua`` runner that coleifer/kt's clients had.

A no-reply request goes out at once and its connection goes straight back to the pool, so
no-reply writes never hold a connection (any number of threads can use them with a small
pool).  The calling thread remembers which connection carried them and that connection's
reply count: its next request takes that very connection back while it is idle (a server
handles one connection's requests in order, so the request sees the writes), or goes to
any connection once that one has read another reply since (the writes were processed
before it).  While another thread is using it, the request waits for it, at most
``timeout`` (or ``connect_timeout``).  A request on the taken-back connection is not resent
if that connection drops (elsewhere it could overtake the writes).  This is branch h9c's
design for TT ``setnr``, here shared by both clients.

``PooledClient`` is a base class: a client calls ``_init_no_reply(pool)`` in its constructor,
runs operations with ``self._run`` (switched to the pending-aware driver only while some
thread has no-reply writes outstanding, so the common path costs nothing), and runs an
operation that may be a no-reply plan (``parse`` None) with ``_run_or_send(op)``.
"""

from __future__ import annotations

import threading
from functools import partial
from types import GeneratorType
from typing import Any, Optional, TypeVar

from kt.lua import ScriptRunner
from kt.ops import run
from kt.transport import ConnectionDroppedError, Pool, outcome_unknown

__all__ = ["PooledClient"]

_Client = TypeVar("_Client", bound="PooledClient")


class _PendingWrites:
    """Which connection carried this thread's latest no-reply writes, and its reply count then.

    Holds no connection checked out.  ``__del__`` (the thread ended) keeps the client's count
    of threads with pending writes right.
    """

    __slots__ = ("conn", "replies", "owner")

    def __init__(self, conn: Any, replies: int, owner: PooledClient) -> None:
        self.conn = conn
        self.replies = replies
        self.owner: Optional[PooledClient] = owner  # set while counted in owner._pending_threads

    def __del__(self) -> None:
        try:
            owner, self.owner = self.owner, None
            if owner is not None:
                owner._count_pending(-1)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class PooledClient:
    """Base of both clients: no-reply sends, a driver that reads on the connection that
    carried them, and the pool controls (``close``, ``checkin``, ``open``, ``close_idle``)."""

    _pool: Pool

    def _init_no_reply(self, pool: Pool) -> None:
        # While some thread holds a no-reply connection, requests look for it first.
        self._run_pooled = partial(run, pool.request)
        self._run_pending = partial(run, self._request)
        self._run = self._run_pooled
        self._local = threading.local()
        self._pending_threads = 0  # > 0 while some thread holds a no-reply connection
        self._pending_lock = threading.Lock()

    def _request(self, data: bytes, parse: Any, idempotent: bool = False) -> Any:
        """Pool.request, but first on this thread's no-reply connection (when it has one)."""
        if self._pending_threads:
            conn = self._reclaim()
            if conn is not None:
                if conn.is_stale():  # dropped: nothing to wait for, nothing sent yet
                    self._pool.release(conn)
                else:
                    try:
                        return conn.request(data, parse)
                    except ConnectionDroppedError as exc:
                        # Not resent even if idempotent: on another connection it could
                        # overtake the no-reply writes this one may have delivered.
                        if not idempotent:
                            raise outcome_unknown(exc) from exc
                        raise ConnectionDroppedError(
                            f"{exc}; it carried this thread's no-reply writes, which may or may "
                            "not have been applied"
                        ) from exc
                    finally:
                        self._pool.release(conn)
        return self._pool.request(data, parse, idempotent=idempotent)

    def _take_pending(self) -> Optional[_PendingWrites]:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            self._local.pending = None
            if pending.owner is not None:
                pending.owner = None
                self._count_pending(-1)
        return pending

    def _count_pending(self, delta: int) -> None:
        with self._pending_lock:
            self._pending_threads += delta
            self._run = self._run_pending if self._pending_threads else self._run_pooled

    def _reclaim(self) -> Any:
        """The connection of this thread's unprocessed no-reply writes, checked out, or None."""
        pending = self._take_pending()
        if pending is None:
            return None
        return self._pool.reclaim(pending.conn, pending.replies)

    def _send_no_reply(self, data: bytes) -> None:
        pool = self._pool
        conn = self._reclaim()  # keeps this thread's no-reply writes in order
        if conn is None:
            conn = pool.acquire()
        if conn.is_stale():  # a write to a peer that hung up would be lost silently
            pool.release(conn)  # closed by is_stale(): the pool discards it
            conn = pool.acquire()
        try:
            conn.send(data)
            replies = conn.replies
        finally:
            pool.release(conn)  # no connection is held between calls
        self._count_pending(1)
        self._local.pending = _PendingWrites(conn, replies, self)

    def _release_pending(self) -> None:
        self._take_pending()

    def _run_or_send(self, op: Any) -> Any:
        """Run ``op``; a plan whose ``parse`` is None is a no-reply request: sent, None returned."""
        if op is None:
            return None  # a no-reply call with nothing to send
        if type(op) is not GeneratorType and op[1] is None:
            self._send_no_reply(op[0])
            return None
        return self._run(op)

    # -- closing, and coleifer/kt's explicit connection controls ------------------------

    def checkin(self) -> None:
        """Return the calling thread's pinned connection to the pool for re-use."""
        self._release_pending()
        self._pool.checkin()

    def close(self, allow_reuse: bool = True) -> None:
        """Close the idle connections (the client stays usable: it reconnects on demand).

        ``allow_reuse`` is accepted for coleifer/kt code (its per-thread socket)."""
        self._release_pending()
        self._pool.close()

    close_all = close

    def __enter__(self: _Client) -> _Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> bool:
        """Connect now (otherwise the first call does); True once a connection is ready."""
        conn = self._pool.acquire()
        try:
            conn.connect()
        finally:
            self._pool.release(conn)
        return True

    def close_idle(self, cutoff: int = 60) -> int:
        """Close the idle connections; how many were closed.

        The pool keeps no idle time per connection, so ``cutoff`` (kt's age limit in
        seconds) is accepted but every idle connection is closed."""
        self._release_pending()
        idle = self._pool.idle
        self._pool.close()
        return idle

    @property
    def lua(self) -> ScriptRunner:
        """``db.lua.name(...)``: calls the server-side Lua function ``name`` (see ``_script``)."""
        return ScriptRunner(self)
