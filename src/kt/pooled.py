"""``PooledClient``: what both clients share about their connection pool.

No-reply writes (TT ``putnr``, KT's binary no-reply flag), closing and checking in, and the
explicit connection controls and ``lua`` runner that coleifer/kt's clients had.

A no-reply request goes out at once.  The connection that carried it stays with the calling
thread until that thread's next request, which uses it, so every later read from the same
thread sees the write (a server handles one connection's requests in order).  The
connection goes back to the pool after that request, when the client is closed or checked
in, or when the thread ends.

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
from kt.serializers import Serializer
from kt.transport import Pool

__all__ = ["PooledClient"]

_Client = TypeVar("_Client", bound="PooledClient")


class _PendingWrites:
    """A connection that carried no-reply writes, held by one thread until its next request.

    Released back to the pool when the thread's next request is done, when the client is
    closed, or when the thread ends (its thread-local storage is dropped, running ``__del__``).
    """

    __slots__ = ("pool", "conn", "owner")

    def __init__(self, pool: Pool, conn: Any) -> None:
        self.pool = pool
        self.conn = conn
        self.owner: Optional[PooledClient] = None  # set while counted in owner._pending_threads

    def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.release(conn)

    def __del__(self) -> None:
        try:
            owner, self.owner = self.owner, None
            if owner is not None:
                owner._count_pending(-1)
            self.release()
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
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            return self._request_pending(pending, data, parse)
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

    def _request_pending(self, pending: _PendingWrites, data: bytes, parse: Any) -> Any:
        self._take_pending()
        conn = pending.conn
        pending.conn = None
        try:
            return conn.request(data, parse)
        finally:
            self._pool.release(conn)

    def _send_no_reply(self, data: bytes) -> None:
        pending = self._take_pending()
        if pending is None:
            conn = self._pool.acquire()
            if conn.is_stale():
                self._pool.release(conn)  # closed by is_stale(): the pool discards it
                conn = self._pool.acquire()
            pending = _PendingWrites(self._pool, conn)
        try:
            pending.conn.send(data)
        except BaseException:
            pending.release()
            raise
        self._count_pending(1)
        pending.owner = self
        self._local.pending = pending

    def _release_pending(self) -> None:
        pending = self._take_pending()
        if pending is not None:
            pending.release()

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
    def serializer(self) -> Serializer:
        """The value serializer (``KT_BINARY``, ``KT_JSON``... or a custom pair)."""
        return self._codec.serializer

    @property
    def lua(self) -> ScriptRunner:
        """``db.lua.name(...)``: calls the server-side Lua function ``name`` (see ``_script``)."""
        return ScriptRunner(self)
