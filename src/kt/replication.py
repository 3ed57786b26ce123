"""Follow a server's update log as a replication slave: change-data capture, cache invalidation.

``ReplicationClient(host, port, sid)`` connects the way ``ktserver -mhost`` / ``ttserver -mhost``
do (the server needs ``-ulog`` and ``-sid``) and yields every update after a timestamp as an
:class:`UpdateEntry`.  Each entry carries the master's log timestamp, so a consumer that stores
``entry.ts`` after handling an entry resumes exactly there with ``updates(start_ts=entry.ts)``;
``last_ts`` tracks the same thing for the client's own loop (it advances when the loop asks for
the next entry, so a crash re-delivers the entry being handled: at-least-once).

Timestamps are the server's own: Kyoto Tycoon uses ``milliseconds * 10**6 + counter``, Tokyo
Tyrant microseconds.  ``timestamp(seconds)`` converts a Unix time for either.

Kyoto Tycoon entries are ``set`` (key, value, xt = absolute expiry or None), ``remove`` (key) and
``clear``, each with its database index and origin server id.  Tokyo Tyrant logs the binary
requests themselves; they come as ``set`` (put, putnr), ``add`` (putkeep), ``append`` (putcat),
``addshl`` (putshl; ``args=[width]``), ``remove`` (out), ``incr`` / ``incr_double`` (``value``
is the number added), ``clear`` (vanish), ``sync``, ``optimize`` and ``misc`` (``args`` =
``[name, *arguments]`` as bytes).  Tokyo Tyrant also logs calls that failed (a putkeep on an
existing key): those that changed nothing are skipped; ``misc`` calls are always yielded.

The records the server skips are the ones whose origin id equals ``sid`` (a slave does not get
its own writes back), so pick a ``sid`` no server uses.  ``only_origin`` (Kyoto Tycoon) asks for
the opposite: just the updates that originated on that server id.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator, List, NamedTuple, Optional

from kt.errors import KyotoTycoonError, ProtocolError, ServerConnectionError, ServerTimeoutError
from kt.protocol import kt_binary, kt_ulog, tt_binary
from kt.serializers import key_decoder, resolve_serializer
from kt.transport import DEFAULT_CONNECT_TIMEOUT, Connection

__all__ = ["ReplicationClient", "UpdateEntry"]

KT_TS_PER_SECOND = 10**9
TT_TS_PER_SECOND = 10**6
_RECV = 1 << 16


class UpdateEntry(NamedTuple):
    """One update from the log (fields a kind of update does not have are None)."""

    ts: int
    op: str
    key: Any = None
    value: Any = None
    xt: Optional[int] = None
    db: int = 0
    sid: int = 0
    args: Optional[List[Any]] = None


_TT_OPS = {
    tt_binary.CMD_PUT: "set",
    tt_binary.CMD_PUTNR: "set",
    tt_binary.CMD_PUTKEEP: "add",
    tt_binary.CMD_PUTCAT: "append",
    tt_binary.CMD_PUTSHL: "addshl",
    tt_binary.CMD_OUT: "remove",
    tt_binary.CMD_ADDINT: "incr",
    tt_binary.CMD_ADDDOUBLE: "incr_double",
    tt_binary.CMD_VANISH: "clear",
    tt_binary.CMD_SYNC: "sync",
    tt_binary.CMD_OPTIMIZE: "optimize",
    tt_binary.CMD_MISC: "misc",
}


class ReplicationClient:
    """A replication slave that hands the master's updates to Python code (see the module doc).

    ``server`` is ``"kt"`` (Kyoto Tycoon) or ``"tt"`` (Tokyo Tyrant).  ``timeout`` bounds the
    silence on the stream (both servers send keep-alives at least every second); values are
    raw bytes unless a ``serializer`` is given; keys are str when ``decode_keys`` and UTF-8.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1978,
        sid: int = 65535,
        *,
        server: str = "kt",
        timeout: Optional[float] = 30.0,
        connect_timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
        serializer: Any = None,
        decode_keys: bool = True,
        only_origin: Optional[int] = None,
    ) -> None:
        if server not in ("kt", "tt"):
            raise ValueError(f"server must be 'kt' or 'tt', not {server!r}")
        limit = 0xFFFF if server == "kt" else 0x7FFFFFFF
        if isinstance(sid, bool) or not isinstance(sid, int) or not 1 <= sid <= limit:
            raise ValueError(f"sid must be an int in 1..{limit}, not {sid!r}")
        if only_origin is not None:
            if server != "kt":
                raise ValueError("only_origin needs Kyoto Tycoon (Tokyo Tyrant's stream has no such filter)")
            if (
                isinstance(only_origin, bool)
                or not isinstance(only_origin, int)
                or not 0 <= only_origin <= 0xFFFF
            ):
                raise ValueError(f"only_origin must be a server id 0..65535, not {only_origin!r}")
        self.server = server
        self.sid = sid
        self.only_origin = only_origin
        self._conn = Connection(host, port, timeout=timeout, connect_timeout=connect_timeout)
        self.host, self.port = self._conn.host, port
        self._decode_value = None if serializer is None else resolve_serializer(serializer).decode
        self._decode_key = key_decoder(decode_keys)
        self.last_ts = 0

    def __repr__(self) -> str:
        return (
            f"<ReplicationClient {self.server} {self.host}:{self.port} sid={self.sid} last_ts={self.last_ts}>"
        )

    def timestamp(self, seconds: Optional[float] = None) -> int:
        """The log position just before Unix time ``seconds`` (default: now), for ``start_ts``:
        the updates logged from that moment on (even within the same millisecond) come after it."""
        seconds = time.time() if seconds is None else seconds
        if self.server == "kt":
            return max(int(seconds * 1000) * (KT_TS_PER_SECOND // 1000) - 1, 0)
        return max(int(seconds * TT_TS_PER_SECOND) - 1, 0)

    def close(self) -> None:
        """Drop the stream (a running ``updates`` loop then raises ServerConnectionError)."""
        self._conn.close()

    def __enter__(self) -> ReplicationClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the stream -----------------------------------------------------------------------

    def updates(
        self, start_ts: Optional[int] = None, idle_timeout: Optional[float] = None
    ) -> Iterator[UpdateEntry]:
        """Yield the updates logged after ``start_ts`` (default ``last_ts``; 0 = the whole log).

        Runs until the connection ends (ServerConnectionError) or, with ``idle_timeout``, until
        no update arrived for that many seconds (then it returns: the consumer is caught up).
        """
        ts = self.last_ts if start_ts is None else start_ts
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise ValueError(f"start_ts must be a non-negative int timestamp, not {ts!r}")
        self.last_ts = ts
        self._conn.close()
        sock = self._conn.connect()
        frames = self._kt_frames(sock, ts) if self.server == "kt" else self._tt_frames(sock, ts)
        last_update = time.monotonic()
        try:
            for frame_ts, entry in frames:
                if entry is None:  # keep-alive or a record the master skipped for us
                    if frame_ts is not None and frame_ts > self.last_ts:
                        self.last_ts = frame_ts
                    if idle_timeout is not None and time.monotonic() - last_update >= idle_timeout:
                        return
                    continue
                yield entry
                self.last_ts = entry.ts
                last_update = time.monotonic()
        except KyotoTycoonError:
            raise  # (kt's connection errors are OSErrors too)
        except OSError as exc:
            raise ServerConnectionError(
                f"replication stream from {self._conn.address} failed: {exc}"
            ) from exc
        finally:
            frames.close()
            self._conn.close()

    def follow(self, start_ts: Optional[int] = None, retry_interval: float = 1.0) -> Iterator[UpdateEntry]:
        """``updates`` forever: after a lost connection, reconnect and resume from ``last_ts``."""
        if start_ts is not None:
            self.last_ts = start_ts
        while True:
            try:
                yield from self.updates()
            except ServerConnectionError:
                time.sleep(retry_interval)

    def _read(self, sock: Any, buf: bytearray) -> None:
        try:
            chunk = sock.recv(_RECV)
        except (socket.timeout, BlockingIOError) as exc:  # BlockingIOError: SO_RCVTIMEO expired
            raise ServerTimeoutError(
                f"replication stream from {self._conn.address} was silent too long"
            ) from exc
        if not chunk:
            raise ServerConnectionError(f"{self._conn.address} closed the replication stream")
        buf += chunk

    def _kt_frames(self, sock: Any, ts: int) -> Iterator[tuple]:
        white = self.only_origin is not None
        sock.sendall(kt_binary.encode_replication(ts, self.only_origin if white else self.sid, white))
        buf = bytearray()
        started = False
        while True:
            parsed = kt_binary.parse_replication_frame(buf, 0, started)
            if parsed is None:
                self._read(sock, buf)
                continue
            frame, end = parsed
            del buf[:end]
            if frame.kind == "ack":
                started = True
            elif frame.kind == "nop":
                sock.sendall(kt_binary.REPLICATION_ACK)
                yield frame.ts, None
            elif not frame.message:
                yield frame.ts, None
            else:
                yield frame.ts, self._kt_entry(frame.ts, frame.message)

    def _kt_entry(self, ts: int, message: bytes) -> UpdateEntry:
        update = kt_ulog.parse_update_message(message)
        key = None if update.key is None else self._decode_key(update.key)
        value = xt = None
        if update.stored is not None:
            value, xt = kt_ulog.split_stored_value(update.stored)
            if self._decode_value is not None:
                value = self._decode_value(value)
        return UpdateEntry(ts, update.op, key, value, xt, update.db, update.sid)

    def _tt_frames(self, sock: Any, ts: int) -> Iterator[tuple]:
        sock.sendall(tt_binary.encode_repl(ts + 1, self.sid))  # the master sends ts >= asked
        buf = bytearray()
        while tt_binary.parse_repl_sid(buf) is None:
            self._read(sock, buf)
        del buf[:4]
        while True:
            parsed = tt_binary.parse_repl_item(buf)
            if parsed is None:
                self._read(sock, buf)
                continue
            record, end = parsed
            del buf[:end]
            if record is None:
                yield None, None
            else:
                yield record.ts, self._tt_entry(record)

    def _tt_entry(self, record: tt_binary.ReplRecord) -> Optional[UpdateEntry]:
        request, ok = tt_binary.parse_log_message(record.message)
        op = _TT_OPS.get(request.command)
        if op is None:
            raise ProtocolError(f"Tokyo Tyrant update log holds a {request.command_name!r} request")
        if op == "misc":
            return UpdateEntry(record.ts, op, sid=record.sid, args=[request.name, *request.args])
        if not ok:
            return None  # a failed call changed nothing
        key = None if request.key is None else self._decode_key(request.key)
        value: Any = request.num if op in ("incr", "incr_double") else request.value
        if value is not None and op not in ("incr", "incr_double") and self._decode_value is not None:
            value = self._decode_value(value)
        args = [request.width] if op == "addshl" else None
        return UpdateEntry(record.ts, op, key, value, None, 0, record.sid, args)
