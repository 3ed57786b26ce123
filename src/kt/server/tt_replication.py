"""The TT replication slave (``-mhost``/``setmst``) and its position file (``-rts``).

ttserver's ``do_slave`` re-executes each update of the master's stream and, after each one,
rewrites the RTS file in place (``lseek`` + ``write`` of ``"%llu\\n"``), so a restarted slave asks
for what follows the last applied update.  That leaves a window: killed between applying an
update and writing its timestamp, the slave applies the update again after the restart, and an
append or an increment is doubled.  :class:`RtsFile` closes that window for single-key updates
(put*, out, addint, adddouble, and the ``misc`` put/putkeep/putcat/out): before applying one,
it records the update's timestamp with a digest of the key's current value ("pending"); on the
next run, when that update arrives first, a value that no longer matches the digest means it
was applied, so it is skipped.  (An update that left the value unchanged may be applied again:
by definition that changes nothing.)  Updates of many keys (``putlist``, ``vanish``...) are
idempotent and only get the position written after them, as in ttserver.

The file stays readable by ttserver: its first line is the position as ttserver writes it.
Every write is one ``pwrite`` of a fixed-size block at offset 0, so a killed process leaves
either the old or the new block, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from typing import Callable, Iterator, Optional, Tuple

from kt.errors import EngineError, ProtocolError
from kt.protocol import tt_binary as tt

__all__ = ["RtsFile", "ReplicationSlave", "read_stream"]

_BLOCK = 96  # bytes of every RTS file write: "<ts>\n" [+ "pending <ts> <digest>\n"], space-padded
_SINGLE_KEY = frozenset((tt.CMD_PUTKEEP, tt.CMD_PUTCAT, tt.CMD_PUTSHL, tt.CMD_OUT, tt.CMD_ADDINT,
                         tt.CMD_ADDDOUBLE))
_SINGLE_KEY_MISC = frozenset((b"put", b"putkeep", b"putcat", b"out"))


def _leading_int(text: bytes) -> int:
    """``tcatoi``: leading digits after white space (0 when there are none)."""
    text = text.lstrip()
    end = 0
    while end < len(text) and 0x30 <= text[end] <= 0x39:
        end += 1
    return int(text[:end] or b"0")


def digest(value: Optional[bytes]) -> str:
    """What the pending record remembers of a key's value: ``-`` for none, else a hash."""
    return "-" if value is None else hashlib.blake2b(value, digest_size=16).hexdigest()


def update_key(req: tt.Request) -> Optional[bytes]:
    """The one key a logged update changes in a way that is not idempotent, or None."""
    if req.command in _SINGLE_KEY:
        return req.key
    if req.command == tt.CMD_MISC and req.args and req.name.split(b"\0", 1)[0] in _SINGLE_KEY_MISC:
        return req.args[0]
    return None


def read_stream(sock: socket.socket, ts: int, sid: int) -> Iterator:
    """Ask a master for its updates from ``ts`` on as server ``sid``; yields the master's server
    ID, then each update (``tt.ReplRecord``) until the master closes (NOPs are skipped)."""
    sock.sendall(tt.encode_repl(ts, sid))
    buf = bytearray()
    parse = tt.parse_repl_sid
    while True:
        parsed = parse(buf, 0)
        if parsed is None:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buf += chunk
            continue
        item, end = parsed
        del buf[:end]
        parse = tt.parse_repl_item
        if item is not None:
            yield item


class RtsFile:
    """The slave's replication position: the last applied timestamp and, while an update is
    being applied, that update's ``(ts, digest of the old value)``."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        data = os.pread(self._fd, 4096, 0)
        self.ts = max(0, _leading_int(data))
        self.pending: Optional[Tuple[int, str]] = None
        for line in data.splitlines()[1:2]:
            fields = line.split()
            if len(fields) == 3 and fields[0] == b"pending" and fields[1].isdigit():
                self.pending = (int(fields[1]), fields[2].decode("ascii", "replace"))
        os.ftruncate(self._fd, 0)
        self._write()

    def _write(self) -> None:
        text = f"{self.ts}\n"
        if self.pending is not None:
            text += f"pending {self.pending[0]} {self.pending[1]}\n"
        block = text.encode("ascii").ljust(_BLOCK, b" ")
        os.pwrite(self._fd, block, 0)

    def begin(self, ts: int, old: str) -> None:
        """About to apply update ``ts`` to a key whose value has digest ``old``."""
        self.pending = (ts, old)
        self._write()

    def done(self, ts: int) -> None:
        """Update ``ts`` is applied (or skipped): it is the new position."""
        self.ts = ts
        self.pending = None
        self._write()

    def reset(self, ts: int) -> None:
        """``setmst`` with a start timestamp: replicate from ``ts + 1``, nothing pending."""
        self.done(ts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ReplicationSlave:
    """``-mhost``/``setmst``: follow a master's update stream (ttserver's ``do_slave``),
    re-executing each update with ``redo(store, request, sid, master_sid)`` and recording the
    position in the RTS file with each one (see the module docstring)."""

    def __init__(self, service, host: str, port: int, rts_path: str, *,
                 redo: Callable[..., bool], check: bool = False, start_ts: int = 0):
        self.service = service
        self.host = host
        self.port = port
        self.rts_path = rts_path
        self.check = check
        self._redo = redo
        self._start_ts = start_ts
        self._rts: Optional[RtsFile] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tt-slave", daemon=True)
        self._sock: Optional[socket.socket] = None

    @property
    def rts(self) -> int:
        rts = self._rts
        return rts.ts if rts is not None else self._start_ts

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        logger = self.service.logger
        try:
            self._rts = RtsFile(self.rts_path)
        except OSError as exc:
            logger.error(f"do_slave: cannot open the RTS file: {exc}")
            return
        try:
            if self._start_ts:
                self._rts.reset(self._start_ts)
            while not self._stop.is_set():
                try:
                    self._follow()
                except (OSError, ProtocolError, EngineError) as exc:
                    if not self._stop.is_set():
                        logger.error(f"do_slave: replication from {self.host}:{self.port} failed: {exc}")
                if self._stop.wait(1.0):
                    break
        finally:
            self._rts.close()

    def _follow(self) -> None:
        service = self.service
        sock = socket.create_connection((self.host, self.port), timeout=10)
        self._sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = read_stream(sock, self._rts.ts + 1, service.sid)
            master_sid = next(stream, None)
            if master_sid is None:
                return
            service.logger.info(f"replicating from sid={master_sid} ({self.host}:{self.port})")
            for item in stream:
                if self._stop.is_set():
                    return
                if not self._apply(item, master_sid):
                    service.logger.error("do_slave: consistency check failed; replication stopped")
                    self._stop.set()
                    return
        finally:
            self._sock = None
            sock.close()

    def _apply(self, item, master_sid: int) -> bool:
        """Apply one update exactly once; False when ``-rcc`` finds a differing result."""
        rts = self._rts
        req, logged_ok = tt.parse_log_message(item.message)
        key = update_key(req)
        store = self.service.store
        pending, rts.pending = rts.pending, None
        if key is not None and pending is not None and pending[0] == item.ts:
            if digest(store.get(key)) != pending[1]:  # applied before the crash
                rts.done(item.ts)
                return True
        if key is not None:
            rts.begin(item.ts, digest(store.get(key)))
        done = self._redo(store, req, item.sid, master_sid)
        rts.done(item.ts)
        return not self.check or done == logged_ok
