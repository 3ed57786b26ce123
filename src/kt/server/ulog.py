"""Kyoto Tycoon's update log (``-ulog DIR``): files, writer and replication reader.

Layout as ktserver writes it (``ktulog.h: UpdateLogger``): files ``DIR/0000000001.ulog`` ...
(10-digit id); each starts with a 17-byte meta header ``[0xA0][file size:8][max ts:8]``
followed by records ``[0xA1][ts:8][msiz:4][message][0xA2]``.  A message is
``[origin sid:2][db index:2][TimedDB update]`` (``cmdcommon.h: DBUpdateLogger``).
Timestamps are ``wall milliseconds * 1e6 + logical counter``.  A file is rotated once it
reaches the size limit (``-ulim``).  Records are written synchronously (the real server
buffers them for up to 0.1 s), so every acknowledged write is in the log.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from typing import Optional

from kt.server.timeddb import UREMOVE, USET, update_message

METAMAGIC = 0xA0
BEGMAGIC = 0xA1
ENDMAGIC = 0xA2
TSWACC = 1000
TSLACC = 1000 * 1000
META = struct.Struct(">BQQ")
RECHEAD = struct.Struct(">BQI")
DEFAULT_LIMIT = 256 << 20
EXTENSION = ".ulog"


class PendingLog:
    """Log records not yet in the file, in apply order, and the log's clock; the lock
    (``with pending:``) is the update log's.  Pure-Python twin of the compiled
    ``kt_server_bulk.LogQueue``, whose C visitors queue a native batch's records under it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[bytes] = []
        self.tswall = 0
        self.tslogic = 0

    def __enter__(self) -> PendingLog:
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self._lock.release()
        return False

    def push(self, op: int, key: bytes, stored: Optional[bytes] = None, prefix: int = 0) -> None:
        """Queue one update (lock held): USET ``key`` ``stored`` or UREMOVE ``key``, after the
        ``[sid:2][dbid:2]`` ``prefix``."""
        if op not in (USET, UREMOVE):
            raise ValueError(f"not a queued update operation: {op}")
        if op == USET and stored is None:
            raise ValueError("a USET update needs the stored value")
        message = prefix.to_bytes(4, "big") + update_message(op, key, stored)
        self._records.append(RECHEAD.pack(BEGMAGIC, 0, len(message)) + message + bytes((ENDMAGIC,)))

    def pending(self) -> bool:
        """Whether records wait (lock held)."""
        return bool(self._records)

    def clock(self) -> int:
        """The next log timestamp (lock held): ``UpdateLogger::clock``."""
        return self._stamp(int(time.time() * TSWACC))

    def _stamp(self, ct: int) -> int:
        if ct > self.tswall:
            self.tswall = ct
            self.tslogic = 0
        else:
            self.tslogic += 1
        return self.tswall * TSLACC + self.tslogic

    def take(self, room: int) -> tuple[bytes, int]:
        """``(records, max ts)``: the queued records stamped in order, while fewer than
        ``room`` bytes are taken (at least one), for the current log file (lock held)."""
        ct = int(time.time() * TSWACC)
        out: list[bytes] = []
        used = ts = 0
        while len(out) < len(self._records) and (not out or used < room):
            record = self._records[len(out)]
            ts = self._stamp(ct)
            out.append(record[:1] + ts.to_bytes(8, "big") + record[9:])
            used += len(record)
        del self._records[:len(out)]
        return b"".join(out), ts

    def write_out(self, fd: int, size: int, limit: int, cts: int) -> tuple[int, int]:
        """``take`` what fits the log file ``fd`` (``limit`` bytes) and write it at ``size``,
        then the file's meta header: ``(new size, new max ts)`` (lock held)."""
        records, ts = self.take(limit - size)
        _pwrite_all(fd, records, size)
        size += len(records)
        cts = max(cts, ts)
        _pwrite_all(fd, META.pack(METAMAGIC, size, cts), 0)
        return size, cts


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pending_log() -> PendingLog:
    """The compiled LogQueue when built (native batches then log in C), else the twin."""
    from kt import _native

    native = _native.load("kt_server_bulk")
    return native.LogQueue() if native is not None else PendingLog()


def clock_pure() -> int:
    """``UpdateLogger::clock_pure``: the current wall clock as a log timestamp."""
    return int(time.time() * TSWACC) * TSLACC


def _is_log_name(name: str) -> bool:
    stem, dot, ext = name.partition(".")
    return dot == "." and ext == "ulog" and len(stem) == 10 and stem.isdigit()


class UpdateLogger:
    """Appends update messages to the log files of one directory (thread-safe)."""

    def __init__(self, path: str, limit: int = DEFAULT_LIMIT):
        path = path.rstrip("/") or "/"
        if os.path.exists(path):
            if not os.path.isdir(path):
                raise OSError(f"the update log path is not a directory: {path}")
        else:
            os.makedirs(path)
        self.path = path
        self.limit = limit if limit > 0 else (1 << 63) - 1
        ids = [int(n[:10]) for n in os.listdir(path) if _is_log_name(n)]
        self.id = max(ids) if ids else 1
        # records queued by native batches and the clock; its lock is the log's lock
        self.pending = _pending_log()
        self._lock = self.pending
        self._cts = 0
        self._fd = os.open(self.file_path(self.id), os.O_RDWR | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size < 1:
            self._write_meta()
        self._validate_meta()

    def file_path(self, fid: int) -> str:
        return os.path.join(self.path, f"{fid:010d}{EXTENSION}")

    def _write_meta(self) -> None:
        self._size = max(self._size, META.size)
        os.pwrite(self._fd, META.pack(METAMAGIC, self._size, self._cts), 0)

    def _validate_meta(self) -> None:
        fd = self._fd
        head = os.pread(fd, META.size, 0)
        if len(head) < META.size or head[0] != METAMAGIC:
            raise OSError(f"broken update log file: {self.file_path(self.id)}")
        _, fsiz, fts = META.unpack(head)
        psiz = os.fstat(fd).st_size
        if psiz < fsiz or fsiz < META.size:
            raise OSError(f"broken update log file: {self.file_path(self.id)}")
        if psiz > fsiz:
            os.ftruncate(fd, fsiz)
        self._size = fsiz
        self._cts = fts
        self.pending.tswall = fts // TSLACC + 1

    def clock(self) -> int:
        with self._lock:
            return self._clock()

    def _clock(self) -> int:
        return self.pending.clock()

    def _rotate_if_full(self) -> None:
        if self._size >= self.limit:
            os.close(self._fd)
            self.id += 1
            self._fd = os.open(self.file_path(self.id), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self._size = 0
            self._write_meta()


    def _flush(self) -> None:
        pending = self.pending
        while pending.pending():
            self._rotate_if_full()
            self._size, self._cts = pending.write_out(self._fd, self._size, self.limit, self._cts)

    def flush(self) -> None:
        """Write out the records native batches queued (before their replies are sent)."""
        with self._lock:
            self._flush()

    def write(self, message: bytes, ts: int = 0) -> int:
        """Append one message (after the queued records); returns its timestamp."""
        with self._lock:
            self._flush()
            if ts < 1:
                ts = self._clock()
            self._rotate_if_full()
            record = RECHEAD.pack(BEGMAGIC, ts, len(message)) + message + bytes((ENDMAGIC,))
            _pwrite_all(self._fd, record, self._size)
            self._size += len(record)
            self._cts = max(self._cts, ts)
            self._write_meta()
            return ts

    def list_files(self) -> list[tuple[str, int, int]]:
        """``(path, size, max ts)`` of every log file, by name (ulog_list)."""
        out = []
        for name in sorted(os.listdir(self.path)):
            path = os.path.join(self.path, name)
            try:
                with open(path, "rb") as f:
                    head = f.read(META.size)
            except OSError:
                continue
            if len(head) == META.size and head[0] == METAMAGIC:
                _, fsiz, fts = META.unpack(head)
                out.append((path, fsiz, fts))
        return out

    def remove_files(self, ts: int) -> Optional[str]:
        """Remove every file but the newest whose max ts <= ts; the failing path, if any."""
        failed = None
        for path, _size, fts in self.list_files()[:-1]:
            if fts <= ts:
                try:
                    os.remove(path)
                except OSError:
                    failed = path
        return failed

    def reader(self, ts: int) -> UpdateLogReader:
        return UpdateLogReader(self, ts)

    def synchronize(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                self._flush()
                os.close(self._fd)
                self._fd = -1


class UpdateLogReader:
    """Reads messages newer than ``ts`` across the log files, following new writes."""

    def __init__(self, ulog: UpdateLogger, ts: int):
        self.ulog = ulog
        self.ts = ts
        ids = sorted(int(n[:10]) for n in os.listdir(ulog.path) if _is_log_name(n))
        self.id = ids[0] if ids else 1
        # skip whole files whose newest record is not newer than ts
        for fid, nxt in zip(ids, ids[1:]):
            head = self._meta(fid)
            if head is not None and head[1] <= ts:
                self.id = nxt
            else:
                break
        self.off = META.size
        self._fd = -1
        self._fd_id = -1

    def _meta(self, fid: int) -> Optional[tuple[int, int]]:
        try:
            with open(self.ulog.file_path(fid), "rb") as f:
                head = f.read(META.size)
        except OSError:
            return None
        if len(head) < META.size or head[0] != METAMAGIC:
            return None
        _, fsiz, fts = META.unpack(head)
        return fsiz, fts

    def _open_current(self) -> Optional[int]:
        if self._fd_id != self.id:
            self._close_fd()
            try:
                self._fd = os.open(self.ulog.file_path(self.id), os.O_RDONLY)
            except OSError:
                return None
            self._fd_id = self.id
        return self._fd

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._fd_id = -1, -1

    def _read_one(self) -> Optional[tuple[int, bytes]]:
        while True:
            fd = self._open_current()
            if fd is not None:
                head = os.pread(fd, META.size, 0)
                fsiz = META.unpack(head)[1] if len(head) == META.size and head[0] == METAMAGIC else 0
                if self.off + RECHEAD.size <= fsiz:
                    magic, ts, msiz = RECHEAD.unpack(os.pread(fd, RECHEAD.size, self.off))
                    if magic != BEGMAGIC:
                        return None
                    body = os.pread(fd, msiz + 1, self.off + RECHEAD.size)
                    if len(body) < msiz + 1 or body[-1] != ENDMAGIC:
                        return None
                    self.off += RECHEAD.size + msiz + 1
                    return ts, body[:-1]
            if self.id < self.ulog.id:
                self.id += 1
                self.off = META.size
                continue
            return None

    def read(self) -> Optional[tuple[int, bytes]]:
        """The next ``(ts, message)`` newer than the requested ts, or None when caught up."""
        while True:
            rec = self._read_one()
            if rec is None:
                return None
            if rec[0] > self.ts:
                return rec

    def close(self) -> None:
        self._close_fd()


def db_message(sid: int, dbid: int, update: bytes) -> bytes:
    """``DBUpdateLogger`` framing: origin server id and database index before the update."""
    return struct.pack(">HH", sid & 0xFFFF, dbid & 0xFFFF) + update


def parse_db_message(message: bytes) -> Optional[tuple[int, int, bytes]]:
    """``(origin sid, db index, update)`` of a log message, or None if it is too short."""
    if len(message) < 4:
        return None
    sid, dbid = struct.unpack_from(">HH", message)
    return sid, dbid, message[4:]


__all__ = [
    "UpdateLogger",
    "UpdateLogReader",
    "clock_pure",
    "db_message",
    "parse_db_message",
]
