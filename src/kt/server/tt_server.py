"""The bundled Tokyo Tyrant server: ttserver 1.1.41's binary protocol on Tokyo Cabinet.

``python -m kt.server tt [ttserver options] [dbname]`` (protocol.md §E, §F).  Requests are read
and replies written only through :mod:`kt.protocol.tt_binary`; storage is Tokyo Cabinet's
abstract database (:mod:`kt.server.engines.tc`), so every command, ``misc`` function and table
search has Tokyo Cabinet's own semantics.  Connections are served by the shared event loop
of :mod:`kt.server.common` (:class:`TTHandler`): record commands run on the loop, blocking ones
in ``-thnum`` worker threads, replication streams in their own thread.

Faithful to ttserver where a client can tell: command counters, ``stat`` fields and order,
``-mask``/``-unmask``, the 5-byte ``misc`` failure, ``putnr`` never answering, and closing
without a reply on an unknown command byte, a negative or oversized size, an over-long
``ext``/``misc`` name or a negative ``putshl`` width.  Also here, as in ttserver.c: the
memcached and HTTP front-ends on the same port, the update log (``-ulog``) with the ``repl``
stream, the slave side (``-mhost``, ``setmst``) and ``restore``.  Without ``-ulog``, ``repl``
answers the server ID and closes, as ttserver does.

Sections: service (binary commands) · update log and replication · connections and text
front-ends · command line.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from kt.errors import EngineError
from kt.protocol import tt_binary as tt
from kt.server.common import (
    LOG_ALL,
    LOG_ERROR,
    LOG_INFO,
    LOG_SYSTEM,
    Connection,
    EventLoopServer,
    HandOver,
    Logger,
    Offload,
    OptionSpec,
    UsageError,
    daemonize,
    ineffective_options,
    parse_options,
)
from kt.server.engines.tc import TokyoCabinetDB, bulk_speedups, library_version
from kt.server.engines.tc import codec as tc_codec
from kt.server.tt_replication import ReplicationSlave

__all__ = ["main", "TTService", "OPTION_SPECS", "parse_mask", "TT_VERSION", "PROTOCOL_VERSION"]

TT_VERSION = "1.1.41"
TT_LIBVER = "324"
PROTOCOL_VERSION = "0.91"

# ttserver.c TTSEQ*: command sequence numbers (counter slots and mask bits), in this order.
SEQ_NAMES = (
    "put putkeep putcat putshl putnr out get mget vsiz iterinit iternext fwmkeys addint "
    "adddouble ext sync optimize vanish copy restore setmst rnum size stat misc repl slave "
    "allorg allmc allhttp allread allwrite allmanage"
).split()
SEQ = {name: i for i, name in enumerate(SEQ_NAMES)}
SEQ_PUT_MISS, SEQ_OUT_MISS, SEQ_GET_MISS = SEQ["slave"], SEQ["slave"] + 1, SEQ["slave"] + 2
SEQ_COUNT = SEQ_GET_MISS + 1
_COUNTED = SEQ_NAMES[: SEQ["repl"] + 1]

_READ = {"get", "mget", "vsiz", "iterinit", "iternext", "fwmkeys", "rnum", "size", "stat"}
_WRITE = {"put", "putkeep", "putcat", "putshl", "putnr", "out", "addint", "adddouble", "vanish", "misc"}
_MANAGE = {"sync", "optimize", "copy", "restore", "setmst"}


def _forbidden_bits(name: str) -> int:
    """The mask bits that forbid command ``name`` on the binary protocol (ttserver's checks)."""
    bits = 1 << SEQ[name]
    if name == "repl":
        return bits
    bits |= 1 << SEQ["allorg"]
    if name in _READ:
        bits |= 1 << SEQ["allread"]
    elif name in _WRITE:
        bits |= 1 << SEQ["allwrite"]
    elif name in _MANAGE:
        bits |= 1 << SEQ["allmanage"]
    return bits


def parse_mask(expr: Optional[str]) -> int:
    """ttserver's ``getcmdmask``: command names (``,`` or space separated, case-insensitive),
    ``all*`` groups, or ``0x`` bit masks -> a bit mask over :data:`SEQ`; unknown names are
    ignored, as ttserver ignores them."""
    mask = 0
    for token in (expr or "").replace(",", " ").split():
        word = token.lower()
        if word.startswith("0x"):
            digits = ""
            for ch in word[2:]:
                if ch not in "0123456789abcdef":
                    break
                digits += ch
            mask |= int(digits or "0", 16)
        elif word == "all":
            mask |= (1 << 64) - 1
        elif word in SEQ:
            mask |= 1 << SEQ[word]
    return mask


_Handler = Callable[[tt.Request, List[int], Optional[Connection]], Optional[bytes]]


class _Close(Exception):
    """Close the connection now (after sending ``reply`` if any), as ttserver does."""

    def __init__(self, reply: bytes = b""):
        super().__init__("close")
        self.reply = reply


class TTService:
    """Executes decoded requests against one database, keeping ttserver's counters."""

    def __init__(
        self,
        db: TokyoCabinetDB,
        *,
        logger: Optional[Logger] = None,
        ext: Optional[object] = None,
        sid: int = 0,
        mask: int = 0,
        version: str = TT_VERSION,
        libver: str = TT_LIBVER,
        thnum: int = 1,
        rts_path: str = "ttserver.rts",
    ) -> None:
        self.db = db
        self.thnum = thnum
        self.rts_path = rts_path  # -rts (ttserver's DEFRTSPATH when absent): setmst uses it too
        self.logger = logger or Logger(kinds=LOG_ERROR, style="tt")
        self.ext = ext
        self.sid = sid
        self.mask = mask
        self.version = version
        self.libver = libver
        self.start_time = time.time()
        self.master: Optional[Dict[str, object]] = None
        self.ulog: Optional[UpdateLog] = None
        self.store = db  # writes go through LoggedDB once an update log is attached
        self.slave: Optional[ReplicationSlave] = None
        self.stopping = threading.Event()
        self._counter_sets: List[List[int]] = []
        self._retired = [0] * SEQ_COUNT
        self._counter_guard = threading.Lock()
        self._local = threading.local()
        self._forbidden = {name: bool(mask & _forbidden_bits(name)) for name in _COUNTED}
        self._handlers: Dict[int, _Handler] = {
            tt.CMD_PUT: self._put,
            tt.CMD_PUTKEEP: self._putkeep,
            tt.CMD_PUTCAT: self._putcat,
            tt.CMD_PUTSHL: self._putshl,
            tt.CMD_PUTNR: self._putnr,
            tt.CMD_OUT: self._out,
            tt.CMD_GET: self._get,
            tt.CMD_MGET: self._mget,
            tt.CMD_VSIZ: self._vsiz,
            tt.CMD_ITERINIT: self._iterinit,
            tt.CMD_ITERNEXT: self._iternext,
            tt.CMD_FWMKEYS: self._fwmkeys,
            tt.CMD_ADDINT: self._addint,
            tt.CMD_ADDDOUBLE: self._adddouble,
            tt.CMD_EXT: self._ext,
            tt.CMD_SYNC: self._sync,
            tt.CMD_OPTIMIZE: self._optimize,
            tt.CMD_VANISH: self._vanish,
            tt.CMD_COPY: self._copy,
            tt.CMD_RESTORE: self._restore,
            tt.CMD_SETMST: self._setmst,
            tt.CMD_RNUM: self._rnum,
            tt.CMD_SIZE: self._size,
            tt.CMD_STAT: self._stat,
            tt.CMD_MISC: self._misc,
            tt.CMD_REPL: self._repl,
        }

    def attach_update_log(self, ulog: UpdateLog) -> None:
        """``-ulog``: log every update like ttserver's ``tculogadb*`` wrappers."""
        self.ulog = ulog
        self.store = LoggedDB(self.db, ulog, self.sid)

    def stop(self) -> None:
        """Wake replication streams and stop the slave (server shutdown)."""
        self.stopping.set()
        if self.ulog is not None:
            self.ulog.wake()
        if self.slave is not None:
            self.slave.stop()

    # -- counters (per thread, summed by stat, like ttserver's per-worker arrays) ---------
    def counters(self) -> List[int]:
        counts = getattr(self._local, "counts", None)
        if counts is None:
            counts = [0] * SEQ_COUNT
            self._local.counts = counts
            with self._counter_guard:
                self._counter_sets.append(counts)
        return counts

    def total(self, seq: int) -> int:
        with self._counter_guard:
            return self._retired[seq] + sum(counts[seq] for counts in self._counter_sets)

    def retire_counters(self) -> None:
        """A connection thread ends: fold its counters into the totals (bounded memory)."""
        counts = getattr(self._local, "counts", None)
        if counts is None:
            return
        self._local.counts = None
        with self._counter_guard:
            for i, value in enumerate(counts):
                self._retired[i] += value
            self._counter_sets = [c for c in self._counter_sets if c is not counts]

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, req: tt.Request, conn: Optional[Connection] = None) -> Optional[bytes]:
        """The reply to ``req`` (None: no reply); raises :class:`_Close` to drop the client."""
        return self._handlers[req.command](req, self.counters(), conn)

    # -- record commands --------------------------------------------------------------------
    def _write(self, name: str, op: Callable[[bytes, bytes], bool], req: tt.Request,
               counts: List[int]) -> bool:
        counts[SEQ[name]] += 1
        if self._forbidden[name]:
            self.logger.info(f"do_{name}: forbidden")
            return False
        if op(req.key, req.value):
            return True
        counts[SEQ_PUT_MISS] += 1
        return False

    def _put(self, req, counts, conn):
        return tt.REPLY_OK if self._write("put", self.store.put, req, counts) else tt.REPLY_FAIL

    def _putkeep(self, req, counts, conn):
        return tt.REPLY_OK if self._write("putkeep", self.store.putkeep, req, counts) else tt.REPLY_FAIL

    def _putcat(self, req, counts, conn):
        return tt.REPLY_OK if self._write("putcat", self.store.putcat, req, counts) else tt.REPLY_FAIL

    def _putshl(self, req, counts, conn):
        width = req.width

        def shift(key: bytes, value: bytes) -> bool:
            return self.store.putshl(key, value, width)

        return tt.REPLY_OK if self._write("putshl", shift, req, counts) else tt.REPLY_FAIL

    def _putnr(self, req, counts, conn):
        self._write("putnr", self.store.put, req, counts)  # logged as put, like ttserver
        return None

    def _out(self, req, counts, conn):
        counts[SEQ["out"]] += 1
        if self._forbidden["out"]:
            return tt.REPLY_FAIL
        if self.store.out(req.key):
            return tt.REPLY_OK
        counts[SEQ_OUT_MISS] += 1
        return tt.REPLY_FAIL

    def _get(self, req, counts, conn):
        counts[SEQ["get"]] += 1
        value = None if self._forbidden["get"] else self.db.get(req.key)
        if value is None:
            counts[SEQ_GET_MISS] += 1
        return tt.encode_get_reply(value)

    def _mget(self, req, counts, conn):
        counts[SEQ["mget"]] += 1
        if self._forbidden["mget"]:
            return tt.encode_mget_reply(())
        get = self.db.get
        hits = []
        for key in req.keys:
            value = get(key)
            if value is not None:
                hits.append((key, value))
        return tt.encode_mget_reply(hits)

    def _vsiz(self, req, counts, conn):
        counts[SEQ["vsiz"]] += 1
        size = -1 if self._forbidden["vsiz"] else self.db.vsiz(req.key)
        return tt.encode_vsiz_reply(size if size >= 0 else None)

    def _iterinit(self, req, counts, conn):
        counts[SEQ["iterinit"]] += 1
        return tt.encode_status_reply(not self._forbidden["iterinit"] and self.db.iterinit())

    def _iternext(self, req, counts, conn):
        counts[SEQ["iternext"]] += 1
        return tt.encode_iternext_reply(None if self._forbidden["iternext"] else self.db.iternext())

    def _fwmkeys(self, req, counts, conn):
        counts[SEQ["fwmkeys"]] += 1
        keys = self.db.fwmkeys(req.prefix, req.max)
        return tt.encode_fwmkeys_reply([] if self._forbidden["fwmkeys"] else keys)

    def _addint(self, req, counts, conn):
        counts[SEQ["addint"]] += 1
        total = None if self._forbidden["addint"] else self.store.addint(req.key, req.num)
        return tt.encode_addint_reply(total)

    def _adddouble(self, req, counts, conn):
        counts[SEQ["adddouble"]] += 1
        total = None if self._forbidden["adddouble"] else self.store.adddouble(req.key, req.num)
        return tt.encode_adddouble_reply(total)

    def _ext(self, req, counts, conn):
        counts[SEQ["ext"]] += 1
        if self._forbidden["ext"] or self.ext is None:
            return tt.encode_ext_reply(None)
        return tt.encode_ext_reply(self.ext.call(req.name, req.key, req.value, req.opts))

    # -- database commands -------------------------------------------------------------------
    def _sync(self, req, counts, conn):
        counts[SEQ["sync"]] += 1
        return tt.encode_status_reply(not self._forbidden["sync"] and self.store.sync())

    def _optimize(self, req, counts, conn):
        counts[SEQ["optimize"]] += 1
        params = req.params.split(b"\0", 1)[0]
        return tt.encode_status_reply(not self._forbidden["optimize"] and self.store.optimize(params))

    def _vanish(self, req, counts, conn):
        counts[SEQ["vanish"]] += 1
        return tt.encode_status_reply(not self._forbidden["vanish"] and self.store.vanish())

    def _copy(self, req, counts, conn):
        counts[SEQ["copy"]] += 1
        if self._forbidden["copy"]:
            return tt.REPLY_FAIL
        ok = self.db.copy(req.path.split(b"\0", 1)[0])
        if not ok:
            self.logger.error("do_copy: operation failed")
        return tt.encode_status_reply(ok)

    def _restore(self, req, counts, conn):
        counts[SEQ["restore"]] += 1
        if self._forbidden["restore"]:
            return tt.REPLY_FAIL
        path = req.path.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        ok = restore_update_logs(self, path, req.ts, bool(req.opts & tt.RESTORE_CONSISTENCY_CHECK))
        if not ok:
            self.logger.error("do_restore: operation failed")
        return tt.encode_status_reply(ok)

    def _setmst(self, req, counts, conn):
        counts[SEQ["setmst"]] += 1
        if self._forbidden["setmst"]:
            return tt.REPLY_FAIL
        host = req.host.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.set_master(host, req.port, req.ts, req.opts)
        return tt.REPLY_OK

    def set_master(self, host: str, port: int, ts: int = 0, opts: int = 0,
                   rts_path: Optional[str] = None) -> None:
        """Follow a new master (empty host: stop replicating), like ttserver's do_setmst."""
        if self.slave is not None:
            self.slave.stop()
            rts_path = rts_path or self.slave.rts_path
            self.slave = None
        self.master = {"host": host, "port": port, "ts": ts, "opts": opts} if host else None
        if host:
            self.slave = ReplicationSlave(self, host, port, rts_path or self.rts_path, redo=redo,
                                          check=bool(opts & tt.RESTORE_CONSISTENCY_CHECK), start_ts=ts)
            self.slave.start()

    def _rnum(self, req, counts, conn):
        counts[SEQ["rnum"]] += 1
        return tt.encode_rnum_reply(0 if self._forbidden["rnum"] else self.db.rnum())

    def _size(self, req, counts, conn):
        counts[SEQ["size"]] += 1
        return tt.encode_size_reply(0 if self._forbidden["size"] else self.db.size())

    def _misc(self, req, counts, conn):
        counts[SEQ["misc"]] += 1
        if self._forbidden["misc"]:
            return tt.encode_misc_reply([])
        if self.ulog is not None and not req.opts & tt.MISC_NO_UPDATE_LOG:
            return tt.encode_misc_reply(self.store.misc_logged(req.name, req.args))
        return tt.encode_misc_reply(self.db.misc(req.name, req.args))

    def _repl(self, req, counts, conn):
        counts[SEQ["repl"]] += 1
        if self._forbidden["repl"]:
            self.logger.info("do_repl: forbidden")
            raise _Close()
        if req.sid == self.sid:
            self.logger.info("do_repl: rejected circular replication")
            raise _Close()
        if self.ulog is None:
            # ttserver sends its ID, then fails to open the (absent) update log and closes.
            self.logger.error("do_repl: tculrdnew failed (no update log)")
            raise _Close(tt.encode_repl_sid(self.sid))
        if conn is None or not conn.send(tt.encode_repl_sid(self.sid)):
            raise _Close()
        self.logger.info(f"replicating to sid={req.sid} after {req.ts - 1}")
        stream_updates(self, conn, req.ts, req.sid)
        raise _Close()

    # -- stat ------------------------------------------------------------------------------
    def stat_pairs(self, conn: Optional[Connection] = None) -> List[tuple]:
        """ttserver's ``stat`` fields, in its order."""
        pairs: List[tuple] = []
        if not self._forbidden["stat"]:
            now = time.time()
            db = self.db
            pairs += [
                ("version", self.version),
                ("libver", self.libver),
                ("protver", PROTOCOL_VERSION),
                ("os", "Linux" if sys.platform.startswith("linux") else sys.platform),
                ("time", f"{now:.6f}"),
                ("pid", os.getpid()),
                ("sid", self.sid),
                ("type", db.type_name),
            ]
            path = db.path()
            if path is not None:
                pairs.append(("path", path))
            pairs += [("rnum", db.rnum()), ("size", db.size())]
            errors = db.misc(b"error")
            if errors and any(e.lower() == b"fatal" for e in errors):
                message = [e for e in errors if e.lower() != b"fatal"]
                pairs.append(("fatal", message[-1] if message else b"(null)"))
            pairs.append(("bigend", 1 if sys.byteorder == "big" else 0))
            if self.master:
                rts = self.slave.rts if self.slave is not None else 0
                delay = now - rts / 1e6
                pairs += [
                    ("mhost", self.master["host"]),
                    ("mport", self.master["port"]),
                    ("rts", rts),
                    ("delay", f"{max(delay, 0.0):.6f}"),
                ]
            pairs.append(("fd", conn.sock.fileno() if conn is not None else -1))
            pairs.append(("loadavg", f"{_loadavg():.6f}"))
            pairs += _memory_and_rusage()
            pairs.append(("ru_real", f"{now - self.start_time:.6f}"))
        for name in _COUNTED:
            pairs.append((f"cnt_{name}", self.total(SEQ[name])))
        pairs += [
            ("cnt_put_miss", self.total(SEQ_PUT_MISS)),
            ("cnt_out_miss", self.total(SEQ_OUT_MISS)),
            ("cnt_get_miss", self.total(SEQ_GET_MISS)),
        ]
        return pairs

    def _stat(self, req, counts, conn):
        counts[SEQ["stat"]] += 1
        return tt.encode_stat_reply(self.stat_pairs(conn))


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _memory_and_rusage() -> List[tuple]:
    """``memsize``/``memrss`` (bytes, from /proc) and ``ru_user``/``ru_sys`` like tcsysinfo."""
    pairs: List[tuple] = []
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            status = dict(line.split(":", 1) for line in fh if ":" in line)
        for key, name in (("VmSize", "memsize"), ("VmRSS", "memrss")):
            if key in status:
                pairs.append((name, int(status[key].split()[0]) * 1024))
    except (OSError, ValueError):
        pass
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        pairs += [("ru_user", f"{usage.ru_utime:.6f}"), ("ru_sys", f"{usage.ru_stime:.6f}")]
    except (ImportError, OSError):
        pass
    return pairs


# ------------------------------------------------------------------------------ connections

# ------------------------------------------------------------------------------ update log

_ULOG_RECORD = struct.Struct(">BQHHI")  # tculogwrite: C9, ts (µs), sid, mid, message size
_ULOG_MAGIC = 0xC9
_ULOG_SUFFIX = ".ulog"
DEFAULT_ULOG_LIMIT = 1 << 30


def parse_size(text: str) -> int:
    """Tokyo Cabinet's ``tcatoix``: a number with an optional k/m/g/t/p/e suffix (x1024)."""
    text = text.strip()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}
    mult = 1
    if text and text[-1].lower() in units:
        mult = units[text[-1].lower()]
        text = text[:-1]
    try:
        return int(float(text) * mult)
    except ValueError:
        return _atoi(text) * mult


class UpdateLog:
    """ttserver's update log (``tculog.c``): numbered ``NNNNNNNN.ulog`` files of records
    ``C9 [ts:8][sid:2][mid:2][size:4][message]``; a new file once ``limit`` bytes are reached.
    Readers (replication streams) wait on ``changed`` for new records."""

    def __init__(self, directory: str, limit: int = DEFAULT_ULOG_LIMIT):
        if not os.path.isdir(directory):
            raise EngineError(f"the update log directory {directory} does not exist")
        self.directory = directory
        self.limit = max(limit, 1024)
        self.changed = threading.Condition()
        self._lock = threading.Lock()
        numbers = self.file_numbers()
        self.number = numbers[-1] if numbers else 1
        self._fd = os.open(self.file_path(self.number), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._last_ts = 0

    def file_numbers(self) -> List[int]:
        return list_ulog_numbers(self.directory)

    def file_path(self, number: int) -> str:
        return os.path.join(self.directory, f"{number:08d}{_ULOG_SUFFIX}")

    def write(self, message: bytes, sid: int, mid: int = 0, ts: int = 0) -> int:
        """Append one update; returns its timestamp (µs, strictly increasing)."""
        with self._lock:
            if not ts:
                ts = max(int(time.time() * 1e6), self._last_ts + 1)
            self._last_ts = max(self._last_ts, ts)
            record = _ULOG_RECORD.pack(_ULOG_MAGIC, ts, sid & 0xFFFF, mid & 0xFFFF, len(message)) + message
            if self._size > 0 and self._size + len(record) > self.limit:
                os.close(self._fd)
                self.number += 1
                self._fd = os.open(self.file_path(self.number), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._size = 0
            os.write(self._fd, record)
            self._size += len(record)
        with self.changed:
            self.changed.notify_all()
        return ts

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def list_ulog_numbers(directory: str) -> List[int]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(int(n[:-len(_ULOG_SUFFIX)]) for n in names
                  if n.endswith(_ULOG_SUFFIX) and n[:-len(_ULOG_SUFFIX)].isdigit())


class UlogReader:
    """Reads update-log records from timestamp ``ts`` on, following new files and appends."""

    def __init__(self, directory: str, ts: int):
        self.directory = directory
        self.ts = ts
        numbers = list_ulog_numbers(directory)
        self.number = numbers[0] if numbers else 1
        self.offset = 0
        self._buf = b""

    def read(self) -> Optional[tuple]:
        """The next record ``(ts, sid, mid, message)`` at or after ``ts``, or None for now."""
        while True:
            rec = self._next_in_file()
            if rec is None:
                later = [n for n in list_ulog_numbers(self.directory) if n > self.number]
                if not later:
                    return None
                self.number, self.offset, self._buf = later[0], 0, b""
                continue
            if rec[0] >= self.ts:
                return rec

    def _next_in_file(self) -> Optional[tuple]:
        head = _ULOG_RECORD.size
        if len(self._buf) < head or len(self._buf) < head + _ULOG_RECORD.unpack_from(self._buf)[4]:
            path = os.path.join(self.directory, f"{self.number:08d}{_ULOG_SUFFIX}")
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offset + len(self._buf))
                    self._buf += fh.read(1 << 20)
            except OSError:
                return None
        if len(self._buf) < head:
            return None
        magic, ts, sid, mid, size = _ULOG_RECORD.unpack_from(self._buf)
        if magic != _ULOG_MAGIC:
            raise EngineError(f"corrupt update log record in {self.number:08d}{_ULOG_SUFFIX}")
        if len(self._buf) < head + size:
            return None
        message = self._buf[head:head + size]
        self._buf = self._buf[head + size:]
        self.offset += head + size
        return ts, sid, mid, message


class LoggedDB:
    """The database seen through ttserver's ``tculogadb*`` wrappers: every update is applied
    and then logged (request bytes + result byte) with the origin server ID ``sid`` and the
    master ID ``mid``; reads pass straight through."""

    def __init__(self, db: TokyoCabinetDB, ulog: UpdateLog, sid: int):
        self.db = db
        self.ulog = ulog
        self.sid = sid

    def __getattr__(self, name: str):
        return getattr(self.db, name)

    def _log(self, request: bytes, ok: bool, sid: Optional[int] = None, mid: int = 0) -> None:
        self.ulog.write(tt.encode_ulog_message(request, ok), self.sid if sid is None else sid, mid)

    def put(self, key: bytes, value: bytes, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.put(key, value)
        self._log(tt.encode_put(key, value), ok, sid, mid)
        return ok

    def putkeep(self, key: bytes, value: bytes, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.putkeep(key, value)
        self._log(tt.encode_putkeep(key, value), ok, sid, mid)
        return ok

    def putcat(self, key: bytes, value: bytes, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.putcat(key, value)
        self._log(tt.encode_putcat(key, value), ok, sid, mid)
        return ok

    def putshl(self, key: bytes, value: bytes, width: int, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.putshl(key, value, width)
        self._log(tt.encode_putshl(key, value, width), ok, sid, mid)
        return ok

    def out(self, key: bytes, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.out(key)
        self._log(tt.encode_out(key), ok, sid, mid)
        return ok

    def addint(self, key: bytes, num: int, sid: Optional[int] = None, mid: int = 0) -> Optional[int]:
        total = self.db.addint(key, num)
        if num != 0:  # tculogadbaddint skips logging a zero increment
            self._log(tt.encode_addint(key, num), total is not None, sid, mid)
        return total

    def adddouble(self, key: bytes, num: float, sid: Optional[int] = None, mid: int = 0) -> Optional[float]:
        total = self.db.adddouble(key, num)
        if num != 0.0:
            self._log(tt.encode_adddouble(key, num), total is not None, sid, mid)
        return total

    def sync(self, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.sync()
        self._log(tt.encode_sync(), ok, sid, mid)
        return ok

    def optimize(self, params: bytes = b"", sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.optimize(params)
        self._log(tt.encode_optimize(params), ok, sid, mid)
        return ok

    def vanish(self, sid: Optional[int] = None, mid: int = 0) -> bool:
        ok = self.db.vanish()
        self._log(tt.encode_vanish(), ok, sid, mid)
        return ok

    def misc_logged(self, name: bytes, args: Sequence[bytes], sid: Optional[int] = None,
                    mid: int = 0) -> Optional[List[bytes]]:
        result = self.db.misc(name, args)
        message = tt.encode_misc_log(name.split(b"\0", 1)[0], list(args), result is not None)
        self.ulog.write(message, self.sid if sid is None else sid, mid)
        return result


def redo(store, req: tt.Request, sid: int, mid: int) -> bool:
    """Re-execute a logged update (``tculogadbredo``); True when it succeeded."""
    cmd = req.command
    kw = {"sid": sid, "mid": mid} if isinstance(store, LoggedDB) else {}
    if cmd == tt.CMD_PUT or cmd == tt.CMD_PUTNR:
        return store.put(req.key, req.value, **kw)
    if cmd == tt.CMD_PUTKEEP:
        return store.putkeep(req.key, req.value, **kw)
    if cmd == tt.CMD_PUTCAT:
        return store.putcat(req.key, req.value, **kw)
    if cmd == tt.CMD_PUTSHL:
        return store.putshl(req.key, req.value, req.width, **kw)
    if cmd == tt.CMD_OUT:
        return store.out(req.key, **kw)
    if cmd == tt.CMD_ADDINT:
        return store.addint(req.key, req.num, **kw) is not None
    if cmd == tt.CMD_ADDDOUBLE:
        return store.adddouble(req.key, req.num, **kw) is not None
    if cmd == tt.CMD_SYNC:
        return store.sync(**kw)
    if cmd == tt.CMD_OPTIMIZE:
        return store.optimize(req.params, **kw)
    if cmd == tt.CMD_VANISH:
        return store.vanish(**kw)
    if cmd == tt.CMD_MISC:
        if isinstance(store, LoggedDB):
            return store.misc_logged(req.name, req.args, **kw) is not None
        return store.misc(req.name, req.args) is not None
    return False


def restore_update_logs(service: TTService, directory: str, ts: int, check: bool) -> bool:
    """``restore``: replay the update logs in ``directory`` from timestamp ``ts``
    (``tculogadbrestore``); with ``check`` a result differing from the logged one fails."""
    if not os.path.isdir(directory):
        return False
    reader = UlogReader(directory, ts)
    ok = True
    while True:
        try:
            rec = reader.read()
        except EngineError:
            return False
        if rec is None:
            return ok
        rts, rsid, _mid, message = rec
        try:
            req, logged_ok = tt.parse_log_message(message)
        except Exception:
            return False
        done = redo(service.store, req, rsid, 0)
        if check and done != logged_ok:
            ok = False


def stream_updates(service: TTService, conn: Connection, ts: int, slave_sid: int) -> None:
    """The master side of ``repl``: NOP every second, each logged update not originating from
    (or relayed through) the slave, until the slave leaves or the server stops."""
    ulog = service.ulog
    reader = UlogReader(ulog.directory, ts)
    last_nop = 0.0
    while not service.stopping.is_set():
        now = time.time()
        if now - last_nop >= 1.0:
            if not conn.send(tt.REPL_NOP):
                return
            last_nop = now
        batch = []
        size = 0
        while size < (1 << 20):
            try:
                rec = reader.read()
            except EngineError as exc:
                service.logger.error(f"do_repl: {exc}")
                return
            if rec is None:
                break
            rts, rsid, rmid, message = rec
            if rsid == slave_sid or rmid == slave_sid:
                continue
            frame = tt.encode_repl_record(rts, rsid, message)
            batch.append(frame)
            size += len(frame)
        if batch:
            if not conn.send(b"".join(batch)):
                return
            continue
        with ulog.changed:
            ulog.changed.wait(0.5)


_MAX_TEXT_LINE = 1 << 16
_MAX_HTTP_HEAD = 1 << 20
_SCAN_FROM = 1 << 16  # a request still incomplete with this much buffered is scanned, not re-parsed

# Commands that may block or take long (disk, Lua, other servers): run in a worker thread so
# the event loop keeps serving the other connections.
_OFFLOADED = frozenset((tt.CMD_EXT, tt.CMD_SYNC, tt.CMD_OPTIMIZE, tt.CMD_COPY, tt.CMD_RESTORE,
                        tt.CMD_SETMST, tt.CMD_VANISH))
# misc functions run on the event loop: record operations and searches (a search holds the loop
# for its duration, but going through a worker doubled its cost: 126 vs 255 µs of CPU for an
# indexed search of 10k rows); any other (index building, sync, optimize...) goes to a worker.
_INLINE_MISC = frozenset((b"put", b"out", b"get", b"putlist", b"outlist", b"getlist", b"getpart", b"search",
                          b"iterinit", b"iternext", b"error"))


def _after_bad_request(exc: tt.RequestError, counts: List[int], end: int) -> Optional[int]:
    """ttserver's answer to invalid header fields: the command is counted, nothing is replied,
    and what is already buffered after the header is parsed as the next request (its task
    loop goes on while ``sock->ep > sock->rp``); with nothing buffered the connection ends.
    The offset to go on from, or None to close."""
    if exc.command is not None:
        counts[SEQ[tt.COMMAND_NAMES[exc.command]]] += 1
    if exc.consumed is None or exc.consumed >= end:
        return None
    return exc.consumed


_SEQ_OF_COMMAND = {cmd: SEQ[name] for cmd, name in tt.COMMAND_NAMES.items() if name in SEQ}


class TTHandler:
    """ttserver's request handling for :class:`EventLoopServer`: ``open``/``step``/``close``.

    A request starting with 0xC8 is binary; anything else is a memcached or HTTP text request
    (ttserver's other front-ends), answered by :class:`TextFrontEnd`.  Record commands run on
    the event loop; blocking ones (:data:`_OFFLOADED`, slow ``misc`` functions, ``ext`` and
    HTTP ``POST``) in a worker; ``repl`` takes the connection over in its own thread.
    """

    def __init__(self, service: TTService):
        self.service = service
        self.text = TextFrontEnd(service)
        self.logger = service.logger
        native = self._native = bulk_speedups()
        self._scan = native.scan_request if native is not None else tt.scan_request
        # the commands the compiled module may serve (those the mask does not forbid)
        self._fast = frozenset() if native is None else frozenset(
            cmd for cmd, name in ((tt.CMD_GET, "get"), (tt.CMD_PUT, "put"), (tt.CMD_MGET, "mget"),
                                  (tt.CMD_MISC, "misc")) if not service._forbidden[name])

    def open(self, conn: Connection) -> None:
        pass

    def close(self, conn: Connection) -> None:
        pass

    def step(self, conn: Connection, eof: bool):
        buf = conn.buf
        if buf[0] != tt.MAGIC:
            return self._text(conn)
        if conn.state is not None or len(buf) > _SCAN_FROM:
            # a big mget/misc arriving: walk only its new item sizes, parse it once
            decidable, conn.state = self._scan(buf, 0, conn.state)
            if not decidable:
                return None
            conn.state = None
        service = self.service
        if len(buf) > 1 and buf[1] in self._fast:
            served = self._serve_native(conn)
            if served is not None:
                return served
        try:
            parsed = tt.parse_request(buf, 0)
        except tt.RequestError as exc:
            resume = _after_bad_request(exc, service.counters(), len(buf))
            if resume is None:
                # ttserver: unknown command byte, bad sizes -> close without a reply.
                self.logger.info(f"closing {conn.peer}: {exc}")
                return b"", False
            self.logger.info(f"{conn.peer}: {exc}")
            conn.consume(resume)
            return b"", True
        if parsed is None:
            return None
        req, end = parsed
        conn.consume(end)
        cmd = req.command
        if cmd == tt.CMD_REPL:
            return self._repl(conn, req)
        if cmd in _OFFLOADED or (cmd == tt.CMD_MISC and req.name not in _INLINE_MISC):
            return Offload(lambda: self._run(req, conn))
        return self._run(req, conn)

    def _serve_native(self, conn: Connection) -> Optional[tuple]:
        """get/put/mget/record misc in C (``kt._speedups.tt_server_bulk``); None: not taken."""
        service = self.service
        handle = service.db._h
        if handle is None:
            return None
        ulog = service.ulog
        served = self._native.serve(handle, conn.buf, ulog is not None)
        if served is None:
            return None
        end, reply, cmd, ok, message = served
        conn.consume(end)
        counts = service.counters()
        counts[_SEQ_OF_COMMAND[cmd]] += 1
        if not ok:
            if cmd == tt.CMD_GET:
                counts[SEQ_GET_MISS] += 1
            elif cmd == tt.CMD_PUT:
                counts[SEQ_PUT_MISS] += 1
        if message is not None:
            ulog.write(message, service.sid)
        return reply, True

    def _run(self, req: tt.Request, conn: Connection) -> tuple:
        service = self.service
        try:
            reply = service._handlers[req.command](req, service.counters(), conn)
        except _Close as stop:
            return stop.reply, False
        return reply or b"", True

    def _repl(self, conn: Connection, req: tt.Request):
        service = self.service
        if service.ulog is None or service._forbidden["repl"] or req.sid == service.sid:
            return self._run(req, conn)  # refused: at most the server ID, then closed

        def stream(conn: Connection) -> None:
            try:
                self._run(req, conn)
            finally:
                service.retire_counters()

        return HandOver(stream)

    def _text(self, conn: Connection):
        text = self.text
        try:
            treq = text.parse(conn.buf, 0)
            if treq is None:
                return None
            if treq.tokens and treq.tokens[0] == b"POST":  # ext / misc: may be slow
                return Offload(lambda: self._text_reply(conn, treq))
            return self._text_reply(conn, treq)
        except _Close as stop:
            return stop.reply, False

    def _text_reply(self, conn: Connection, treq: TextRequest) -> tuple:
        try:
            reply, keep, end = self.text.handle(treq, self.service.counters(), conn)
        except _Close as stop:
            return stop.reply, False
        conn.consume(end)
        # ttserver ends a session only when idle: requests already buffered are still served
        return reply, keep or bool(conn.buf)


class TextRequest:
    """One memcached or HTTP request read off the wire (tokens of the first line)."""

    __slots__ = ("tokens", "headers", "body", "end")

    def __init__(self, tokens: List[bytes], headers: Dict[bytes, bytes], body: bytes, end: int):
        self.tokens = tokens
        self.headers = headers
        self.body = body
        self.end = end


_MC_STORAGE = {b"set", b"add", b"replace", b"append", b"prepend"}
_HTTP_METHODS = {b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS"}
_MC_CLIENT_ERROR = b"CLIENT_ERROR error\r\n"
_MC_FORBIDDEN = b"CLIENT_ERROR forbidden\r\n"


def _url_decode(data: bytes) -> bytes:
    """Tokyo Cabinet's ``tcurldecode`` (``+`` is a space, ``%XX`` a byte)."""
    return tc_codec(b"~url", data) or b""


def _url_encode(data: bytes) -> bytes:
    """Tokyo Cabinet's ``tcurlencode``."""
    return tc_codec(b"url", data) or b""


def _noreply(tokens: List[bytes], *positions: int) -> bool:
    return any(len(tokens) > i and tokens[i] == b"noreply" for i in positions)


def _line_at(buf: bytearray, pos: int) -> Optional[tuple]:
    """(line without CR/LF, position after it) or None; too long a line closes the session."""
    nl = buf.find(b"\n", pos)
    if nl < 0:
        if len(buf) - pos >= _MAX_TEXT_LINE:
            raise _Close()
        return None
    line = bytes(buf[pos:nl])
    if line.endswith(b"\r"):
        line = line[:-1]
    return line, nl + 1


def _http_response(status: str, body: bytes = b"", ctype: str = "text/plain",
                   extra: Sequence[str] = (), with_body: bool = True) -> bytes:
    head = [f"HTTP/1.1 {status}"]
    if with_body:
        head += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    head += list(extra)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body if with_body else b"")


class TextFrontEnd:
    """ttserver's memcached and HTTP front-ends (``ttserver.c: do_mc_*``, ``do_http_*``)."""

    def __init__(self, service: TTService):
        self.service = service
        self.db = service.store
        self.mask = service.mask

    def _masked(self, name: str, group: str, extra: str = "") -> bool:
        bits = (1 << SEQ[name]) | (1 << SEQ[group])
        if extra:
            bits |= 1 << SEQ[extra]
        return bool(self.mask & bits)

    # -- framing ----------------------------------------------------------------------------
    def parse(self, buf: bytearray, pos: int) -> Optional[TextRequest]:
        """A complete text request at ``pos``, or None while bytes are missing."""
        first = _line_at(buf, pos)
        if first is None:
            return None
        line, cur = first
        tokens = line.split(b"\0", 1)[0].replace(b"\t", b" ").split()
        if not tokens:
            return TextRequest(tokens, {}, b"", cur)
        cmd = tokens[0]
        if cmd in _MC_STORAGE and len(tokens) >= 5:
            size = max(_atoi(tokens[4].decode("latin-1")), 0)
            if len(buf) < cur + size + 2:
                if size > tt.MAX_ARG_SIZE:
                    raise _Close()
                return None
            if buf[cur + size:cur + size + 2] != b"\r\n":
                raise _Close()  # ttserver: "invalid entity", no reply
            return TextRequest(tokens, {}, bytes(buf[cur:cur + size]), cur + size + 2)
        if len(tokens) > 2 and tokens[2].startswith(b"HTTP/1.") and cmd in _HTTP_METHODS:
            headers: Dict[bytes, bytes] = {}
            ends = [i for i in (buf.find(b"\n\r\n", cur - 1), buf.find(b"\n\n", cur - 1)) if i >= 0]
            if not ends:  # the head is not complete: wait (scan again only once it is)
                if len(buf) - pos > _MAX_HTTP_HEAD:
                    raise _Close()  # endless header lines: drop the client instead of buffering
                return None
            while True:
                nxt = _line_at(buf, cur)
                if nxt is None:
                    return None
                hline, cur = nxt
                if not hline:
                    break
                name, sep, value = hline.partition(b":")
                if sep:
                    headers[name.strip().lower()] = value.lstrip(b" \t")
            body = b""
            if cmd in (b"PUT", b"POST"):
                size = _atoi(headers.get(b"content-length", b"0").decode("latin-1"))
                if size < 0 or size > tt.MAX_ARG_SIZE:
                    raise _Close()
                if len(buf) < cur + size:
                    return None
                body = bytes(buf[cur:cur + size])
                cur += size
            return TextRequest(tokens, headers, body, cur)
        return TextRequest(tokens, {}, b"", cur)

    def handle(self, req: TextRequest, counts: List[int], conn: Connection) -> tuple:
        """-> (reply bytes, keep the connection, position after the request)."""
        tokens = req.tokens
        if not tokens:
            return b"", False, req.end
        cmd = tokens[0]
        if len(tokens) > 2 and tokens[2].startswith(b"HTTP/1."):
            if cmd not in _HTTP_METHODS:
                return b"", False, req.end
            reply, keep = self._http(req, counts, conn)
            return reply, keep, req.end
        method = _MC_COMMANDS.get(cmd)
        if method is None:
            return b"", False, req.end  # unknown line: nothing done, connection closed
        reply, keep = method(self, req, counts)
        return reply, keep, req.end

    # -- memcached --------------------------------------------------------------------------
    def _store(self, req: TextRequest, counts: List[int], seq: str,
               op: Callable[[bytes, bytes], Optional[bool]]) -> tuple:
        tokens = req.tokens
        counts[SEQ[seq]] += 1
        if len(tokens) < 5:
            return _MC_CLIENT_ERROR, False
        noreply = _noreply(tokens, 5)
        if self._masked(seq, "allmc", "allwrite"):
            reply = _MC_FORBIDDEN
        else:
            result = op(tokens[1], req.body)
            if result is None:
                reply = b"SERVER_ERROR unexpected\r\n"
            elif result:
                reply = b"STORED\r\n"
            else:
                counts[SEQ_PUT_MISS] += 1
                reply = b"NOT_STORED\r\n"
        return (b"" if noreply else reply), True

    def _mc_set(self, req, counts):
        db = self.db

        def op(key: bytes, value: bytes) -> Optional[bool]:
            if db.put(key, value):
                return True
            counts[SEQ_PUT_MISS] += 1
            return None

        return self._store(req, counts, "put", op)

    def _mc_add(self, req, counts):
        return self._store(req, counts, "putkeep", self.db.putkeep)

    def _mc_replace(self, req, counts):
        db = self.db

        def op(key: bytes, value: bytes) -> Optional[bool]:
            if db.vsiz(key) < 0:
                return False
            return True if db.put(key, value) else None

        return self._store(req, counts, "put", op)

    def _mc_append(self, req, counts):
        db = self.db

        def op(key: bytes, value: bytes) -> Optional[bool]:
            if db.vsiz(key) < 0:
                return False
            return True if db.putcat(key, value) else None

        return self._store(req, counts, "put", op)

    def _mc_prepend(self, req, counts):
        db = self.db

        def op(key: bytes, value: bytes) -> Optional[bool]:
            old = db.get(key)
            if old is None:
                return False
            db.put(key, value + old)
            return True

        return self._store(req, counts, "put", op)

    def _mc_get(self, req, counts):
        tokens = req.tokens
        if len(tokens) < 2:
            return _MC_CLIENT_ERROR, False
        parts = []
        masked = self._masked("get", "allmc", "allread")
        for key in tokens[1:]:
            counts[SEQ["get"]] += 1
            value = None if masked else self.db.get(key)
            if value is None:
                counts[SEQ_GET_MISS] += 1
                continue
            parts.append(b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(value), value))
        parts.append(b"END\r\n")
        return b"".join(parts), True

    def _mc_delete(self, req, counts):
        tokens = req.tokens
        counts[SEQ["out"]] += 1
        if len(tokens) < 2:
            return _MC_CLIENT_ERROR, False
        noreply = _noreply(tokens, 2, 3)
        if self._masked("out", "allmc", "allwrite"):
            reply = _MC_FORBIDDEN
        elif self.db.out(tokens[1]):
            reply = b"DELETED\r\n"
        else:
            counts[SEQ_OUT_MISS] += 1
            reply = b"NOT_FOUND\r\n"
        return (b"" if noreply else reply), True

    def _add_number(self, req, counts, sign: int):
        tokens = req.tokens
        counts[SEQ["addint"]] += 1
        if len(tokens) < 3:
            return _MC_CLIENT_ERROR, False
        noreply = _noreply(tokens, 3)
        if self._masked("addint", "allmc", "allwrite"):
            return (b"" if noreply else _MC_FORBIDDEN), True
        key = tokens[1]
        num = _wrap64(sign * _atoi(tokens[2].decode("latin-1")))
        from kt.server.tt_lua import record_lock_index  # the same 31 mutexes as ext

        lock = self._record_locks()[record_lock_index(key)]
        with lock:
            old = self.db.get(key)
            if old is None:
                reply = b"NOT_FOUND\r\n"
            else:
                num = max(0, _wrap64(num + _atoi(old.split(b"\0", 1)[0].decode("latin-1"))))
                text = b"%d" % num
                reply = text + b"\r\n" if self.db.put(key, text) else b"SERVER_ERROR unexpected\r\n"
        return (b"" if noreply else reply), True

    def _record_locks(self) -> List[threading.Lock]:
        ext = self.service.ext
        shared = getattr(ext, "shared", None)
        if shared is not None:
            return shared.record_locks
        locks = getattr(self.service, "_text_locks", None)
        if locks is None:
            locks = [threading.Lock() for _ in range(31)]
            self.service._text_locks = locks
        return locks

    def _mc_incr(self, req, counts):
        return self._add_number(req, counts, 1)

    def _mc_decr(self, req, counts):
        return self._add_number(req, counts, -1)

    def _mc_stats(self, req, counts):
        service = self.service
        counts[SEQ["stat"]] += 1
        if self._masked("stat", "allmc", "allread"):
            return b"", True
        now = int(time.time())
        lines = [
            f"STAT pid {os.getpid()}",
            f"STAT uptime {now - int(service.start_time)}",
            f"STAT time {now}",
            f"STAT version {service.version}",
            "STAT pointer_size 64",
        ]
        try:
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            lines += [f"STAT rusage_user {usage.ru_utime:.6f}", f"STAT rusage_system {usage.ru_stime:.6f}"]
        except ImportError:
            pass
        total = service.total
        puts = sum(total(SEQ[n]) for n in ("put", "putkeep", "putcat", "putshl", "putnr"))
        put_miss, outs, out_miss = total(SEQ_PUT_MISS), total(SEQ["out"]), total(SEQ_OUT_MISS)
        gets, get_miss = total(SEQ["get"]), total(SEQ_GET_MISS)
        rnum = self.db.rnum()
        lines += [
            f"STAT cmd_set {puts}", f"STAT cmd_set_hits {puts - put_miss}", f"STAT cmd_set_misses {put_miss}",
            f"STAT cmd_delete {outs}", f"STAT cmd_delete_hits {outs - out_miss}",
            f"STAT cmd_delete_misses {out_miss}",
            f"STAT cmd_get {gets}", f"STAT cmd_get_hits {gets - get_miss}", f"STAT cmd_get_misses {get_miss}",
            f"STAT cmd_flush {total(SEQ['vanish'])}",
            f"STAT curr_items {rnum}", f"STAT total_items {rnum}", f"STAT bytes {self.db.size()}",
            f"STAT threads {service.thnum}",
            "END",
        ]
        return ("\r\n".join(lines) + "\r\n").encode(), True

    def _mc_flush_all(self, req, counts):
        tokens = req.tokens
        counts[SEQ["vanish"]] += 1
        noreply = _noreply(tokens, 1, 2)
        if self._masked("vanish", "allmc", "allwrite"):
            reply = _MC_FORBIDDEN
        elif self.db.vanish():
            reply = b"OK\r\n"
        else:
            reply = b"SERVER_ERROR unexpected\r\n"
        return (b"" if noreply else reply), True

    def _mc_version(self, req, counts):
        counts[SEQ["stat"]] += 1
        if self._masked("stat", "allmc", "allread"):
            return _MC_FORBIDDEN, True
        return f"VERSION {self.service.version}\r\n".encode(), True

    def _mc_quit(self, req, counts):
        return b"", False

    # -- HTTP -------------------------------------------------------------------------------
    def _http(self, req: TextRequest, counts: List[int], conn: Connection) -> tuple:
        method, uri, version = req.tokens[0], req.tokens[1], req.tokens[2]
        keep = _atoi(version[7:].decode("latin-1")) >= 1
        connection = req.headers.get(b"connection", b"").lower()
        if connection == b"close":
            keep = False
        elif connection == b"keep-alive":
            keep = True
        if uri[:7].lower() == b"http://":
            slash = uri.find(b"/", 7)
            if slash >= 0:
                uri = uri[slash:]
        if uri.startswith(b"/"):
            uri = uri[1:]
        key = _url_decode(uri)
        forbidden = _http_response("403 Forbidden", b"Forbidden\n")
        db = self.db
        if method == b"GET":
            counts[SEQ["get"]] += 1
            if self._masked("get", "allhttp", "allread"):
                return forbidden, keep
            value = db.get(key)
            if value is None:
                counts[SEQ_GET_MISS] += 1
                return _http_response("404 Not Found", b"Not Found\n"), keep
            return _http_response("200 OK", value, "application/octet-stream"), keep
        if method == b"HEAD":
            counts[SEQ["vsiz"]] += 1
            if self._masked("vsiz", "allhttp", "allread"):
                return b"HTTP/1.1 403 Forbidden\r\n\r\n", keep
            size = db.vsiz(key)
            if size < 0:
                return b"HTTP/1.1 404 Not Found\r\n\r\n", keep
            return (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Length: {size}\r\n\r\n").encode(), keep
        if method == b"PUT":
            counts[SEQ["put"]] += 1
            if self._masked("put", "allhttp", "allwrite"):
                return forbidden, keep
            mode = _atoi(req.headers.get(b"x-tt-pdmode", b"0").decode("latin-1"))
            op = {1: db.putkeep, 2: db.putcat}.get(mode, db.put)
            if op(key, req.body):
                return _http_response("201 Created", b"Created\n"), keep
            counts[SEQ_PUT_MISS] += 1
            if mode == 1:
                return _http_response("409 Conflict", b"Conflict\n"), keep
            return _http_response("500 Internal Server Error", b"Internal Server Error\n"), keep
        if method == b"POST":
            return self._http_post(req, key, counts, forbidden), keep
        if method == b"DELETE":
            counts[SEQ["out"]] += 1
            if self._masked("out", "allhttp", "allwrite"):
                return forbidden, keep
            if db.out(key):
                return _http_response("200 OK", b"OK\n"), keep
            counts[SEQ_OUT_MISS] += 1
            return _http_response("404 Not Found", b"Not Found\n"), keep
        return self._http_options(counts, conn), keep

    def _http_post(self, req: TextRequest, key: bytes, counts: List[int], forbidden: bytes) -> bytes:
        counts[SEQ["ext"]] += 1
        headers = req.headers
        error = _http_response("500 Internal Server Error", b"Internal Server Error\n")
        xname = headers.get(b"x-tt-xname", b"")
        mname = headers.get(b"x-tt-mname", b"")
        if xname:
            if self.mask & ((1 << SEQ["ext"]) | (1 << SEQ["allhttp"])):
                return forbidden
            ext = self.service.ext
            opts = _atoi(headers.get(b"x-tt-xopts", b"0").decode("latin-1"))
            result = ext.call(xname, key, req.body, opts) if ext is not None else None
            if result is None:
                return error
            return _http_response("200 OK", result, "application/octet-stream")
        if mname:
            if self.mask & ((1 << SEQ["misc"]) | (1 << SEQ["allhttp"])):
                return forbidden
            from urllib.parse import parse_qsl

            form: Dict[bytes, bytes] = {}
            if req.body:
                for name, value in parse_qsl(req.body, keep_blank_values=True):
                    form[name] = value  # tcmapvals: one value per name, first-seen order
            mopts = _atoi(headers.get(b"x-tt-mopts", b"0").decode("latin-1"))
            logged = getattr(self.db, "misc_logged", None)
            if logged is not None and not mopts & tt.MISC_NO_UPDATE_LOG:
                res = logged(mname, list(form.values()))
            else:
                res = self.db.misc(mname, list(form.values()))
            if res is None:
                return error
            body = b"&".join(b"res%d=%s" % (i + 1, _url_encode(item)) for i, item in enumerate(res))
            return _http_response("200 OK", body, "application/x-www-form-urlencoded")
        return _http_response("400 Bad Request", b"Bad Request\n")

    def _http_options(self, counts: List[int], conn: Connection) -> bytes:
        counts[SEQ["stat"]] += 1
        if self.mask & ((1 << SEQ["stat"]) | (1 << SEQ["allorg"]) | (1 << SEQ["allread"])):
            return _http_response("403 Forbidden", b"Forbidden\n")
        allow = ["OPTIONS"]
        for name, group, verb in (("get", "allread", "GET"), ("vsiz", "allread", "HEAD"),
                                  ("put", "allwrite", "PUT"), ("ext", "allwrite", "POST"),
                                  ("out", "allwrite", "DELETE")):
            if not self.mask & ((1 << SEQ[name]) | (1 << SEQ[group])):
                allow.append(verb)
        lines = ["HTTP/1.1 200 OK", "Content-Length: 0", "Allow: " + ", ".join(allow)]
        late = {}
        for name, value in self.service.stat_pairs(conn):
            if name.startswith("cnt_"):
                break
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if name in ("ru_user", "ru_sys", "ru_real"):
                late[name] = value
            elif name != "fatal":
                lines.append(f"X-TT-{name.upper()}: {value}")
        for name in ("ru_real", "ru_user", "ru_sys"):  # do_http_options' order
            if name in late:
                lines.append(f"X-TT-{name.upper()}: {late[name]}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


_MC_COMMANDS: Dict[bytes, Callable] = {
    b"set": TextFrontEnd._mc_set,
    b"add": TextFrontEnd._mc_add,
    b"replace": TextFrontEnd._mc_replace,
    b"append": TextFrontEnd._mc_append,
    b"prepend": TextFrontEnd._mc_prepend,
    b"get": TextFrontEnd._mc_get,
    b"gets": TextFrontEnd._mc_get,
    b"delete": TextFrontEnd._mc_delete,
    b"incr": TextFrontEnd._mc_incr,
    b"decr": TextFrontEnd._mc_decr,
    b"stats": TextFrontEnd._mc_stats,
    b"flush_all": TextFrontEnd._mc_flush_all,
    b"version": TextFrontEnd._mc_version,
    b"quit": TextFrontEnd._mc_quit,
}


# ------------------------------------------------------------------------------ command line

OPTION_SPECS: Dict[str, OptionSpec] = {
    "-host": OptionSpec(True),
    "-port": OptionSpec(True),
    "-thnum": OptionSpec(True),
    "-tout": OptionSpec(True),
    "-dmn": OptionSpec(False),
    "-pid": OptionSpec(True),
    "-kl": OptionSpec(False),
    "-log": OptionSpec(True),
    "-ld": OptionSpec(False),
    "-le": OptionSpec(False),
    "-ulog": OptionSpec(True),
    "-ulim": OptionSpec(True),
    "-uas": OptionSpec(False, effective=False),
    "-sid": OptionSpec(True),
    "-mhost": OptionSpec(True),
    "-mport": OptionSpec(True),
    "-rts": OptionSpec(True),
    "-rcc": OptionSpec(False),
    "-skel": OptionSpec(True, effective=False),
    "-mul": OptionSpec(True),
    "-ext": OptionSpec(True),
    "-extpc": OptionSpec(True),
    "-mask": OptionSpec(True),
    "-unmask": OptionSpec(True),
}

USAGE = (
    "usage: python -m kt.server tt [-host name] [-port num] [-thnum num] [-tout num] [-dmn]\n"
    "  [-pid path] [-kl] [-log path] [-ld|-le] [-ulog path] [-ulim num] [-uas] [-sid num]\n"
    "  [-mhost name] [-mport num] [-rts path] [-rcc] [-skel name] [-mul num] [-ext path]\n"
    "  [-extpc name period] [-mask expr] [-unmask expr] [dbname]\n"
)


def _split_argv(argv: Sequence[str]) -> tuple:
    """Pull out ``-extpc name period`` (two values, repeatable), then parse the rest."""
    rest: List[str] = []
    extpc: List[tuple] = []
    mask = 0
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-extpc", "-mask", "-unmask"):
            need = 2 if arg == "-extpc" else 1
            if i + need >= len(args):
                raise UsageError(f"option {arg} needs {need} value(s)")
            if arg == "-extpc":
                extpc.append((args[i + 1], args[i + 2]))
            elif arg == "-mask":
                mask |= parse_mask(args[i + 1])  # applied in order, like ttserver
            else:
                mask &= ~parse_mask(args[i + 1])
            rest += [arg] + args[i + 1:i + 1 + need] if arg != "-extpc" else []
            i += need + 1
            continue
        rest.append(arg)
        i += 1
    options, positionals = parse_options(rest, OPTION_SPECS, stop_at_positional=True)
    if len(positionals) > 1:
        raise UsageError("exactly one database name, given last")
    return options, positionals, extpc, mask


def _int_option(options: Dict[str, object], name: str, default: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    return _atoi(str(raw))


def _wrap64(n: int) -> int:
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def _atoi(text: str) -> int:
    """Tokyo Cabinet's ``tcatoi``: optional sign and leading ASCII digits, anything else is 0;
    an int64 that overflows wraps as in C."""
    text = text.lstrip("".join(map(chr, range(1, 33))))
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    num = 0
    for ch in text:
        if not "0" <= ch <= "9":
            break
        num = num * 10 + ord(ch) - 48
    return _wrap64(sign * num)


def _kill_previous(pid_file: str, logger: Logger) -> None:
    """``-kl``: SIGTERM the process named in the PID file, wait (10 s) for the file to go,
    then SIGKILL it and remove the file, as ttserver does."""
    import signal

    try:
        with open(pid_file) as fh:
            pid = _atoi(fh.read())
    except OSError:
        return
    logger.info(f"warning: killing the process {pid} with SIGTERM")
    try:
        if pid > 0 and pid != os.getpid():
            os.kill(pid, signal.SIGTERM)
    except OSError:
        logger.error("kill failed")
    deadline = time.monotonic() + 10
    while os.path.exists(pid_file):
        if time.monotonic() >= deadline:
            logger.info(f"warning: killing the process {pid} with SIGKILL")
            try:
                if pid > 0 and pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                logger.error("kill failed")
            try:
                os.remove(pid_file)
            except OSError:
                pass
            break
        time.sleep(0.1)


def _absolute_db_name(dbname: str) -> str:
    if dbname[:1] in ("*", "+") or dbname.startswith("/"):
        return dbname
    return os.path.abspath(dbname)


def _pid_file_owner(pid_file: str) -> Optional[str]:
    try:
        with open(pid_file) as fh:
            return fh.read().strip() or "?"
    except OSError:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--version" in argv:
        print(f"Tokyo Tyrant version {TT_VERSION} ({TT_LIBVER}:{PROTOCOL_VERSION}) for Linux "
              f"(kt bundled server on Tokyo Cabinet {library_version()})")
        return 0
    try:
        options, positionals, extpc, mask = _split_argv(argv)
        port = _int_option(options, "-port", 1978)
        thnum = _int_option(options, "-thnum", 8)
        if thnum < 1:
            raise UsageError("-thnum must be at least 1")
        tout = _int_option(options, "-tout", 0)
        sid = _int_option(options, "-sid", 0)
        if not 0 <= sid <= 65535:
            sid = 0  # ttserver: "the SID is ignored because it exceeds 65535"
        mul = _int_option(options, "-mul", 0)
        periods = [(name, float(period)) for name, period in extpc]
    except (UsageError, ValueError) as exc:
        sys.stderr.write(f"ttserver: {exc}\n{USAGE}")
        return 1
    dbname = positionals[0] if positionals else "*"
    host = str(options.get("-host", "127.0.0.1"))
    kinds = LOG_INFO | LOG_SYSTEM | LOG_ERROR
    if options.get("-ld"):
        kinds = LOG_ALL
    elif options.get("-le"):
        kinds = LOG_ERROR
    log_path = options.get("-log")
    daemon = bool(options.get("-dmn"))
    if daemon:
        # ttserver chdirs to "/" and only warns about relative paths; we make them absolute.
        dbname = _absolute_db_name(dbname)
        for name in ("-log", "-pid", "-ext", "-ulog", "-rts"):
            if options.get(name):
                options[name] = os.path.abspath(str(options[name]))
        log_path = options.get("-log")
        daemonize()
    logger = Logger(str(log_path) if log_path else None, kinds=kinds, style="tt")
    for name in ineffective_options(options, OPTION_SPECS):
        logger.error(f"warning: option {name} is accepted but has no effect in this server")
    if extpc and "-ext" not in options:
        logger.error("warning: -extpc without -ext has no effect")
    pid_file = options.get("-pid")
    if daemon and not pid_file:
        pid_file = "ttserver.pid"  # in "/" after daemonizing, as ttserver does
    if pid_file:
        if options.get("-kl"):
            _kill_previous(str(pid_file), logger)
        owner = _pid_file_owner(str(pid_file))
        if owner is not None:
            logger.error(f"the process {owner} may be already running")
            sys.stderr.write(f"ttserver: the process {owner} may be already running ({pid_file})\n")
            return 1
    try:
        db = TokyoCabinetDB(dbname, multiple=mul)
    except EngineError as exc:
        logger.error(f"cannot open the database: {exc}")
        sys.stderr.write(f"ttserver: {exc}\n")
        return 1
    version = TT_VERSION
    rts_path = str(options.get("-rts", "ttserver.rts"))
    service = TTService(db, logger=logger, sid=sid, mask=mask, version=version, thnum=thnum,
                        rts_path=os.path.abspath(rts_path) if "-rts" in options else rts_path)
    ulog_dir = options.get("-ulog")
    if ulog_dir and sid < 1:
        logger.info("warning: update logging is omitted because the SID is not specified")
        ulog_dir = None
    if ulog_dir:
        try:
            service.attach_update_log(UpdateLog(str(ulog_dir), parse_size(str(options.get("-ulim", "1g")))))
        except (EngineError, OSError) as exc:
            logger.error(f"cannot open the update log: {exc}")
            sys.stderr.write(f"ttserver: cannot open the update log: {exc}\n")
            db.close()
            return 1
    if options.get("-ext"):
        try:
            from kt.server.tt_lua import LuaPool

            levels = {0: logger.debug, 1: logger.info, 2: logger.error, 3: logger.system}

            def lua_log(level: int, message: str) -> None:
                levels.get(level, logger.info)(message)

            service.ext = LuaPool(str(options["-ext"]), service.store, size=thnum, sid=sid, version=version,
                                  log=lua_log)
        except (EngineError, OSError) as exc:
            logger.error(f"cannot load the extension: {exc}")
            db.close()
            sys.stderr.write(f"ttserver: {exc}\n")
            return 1
    ext = service.ext
    logger.system(f"service started: {os.getpid()}")
    logger.system(f"database opened: {dbname} (Tokyo Cabinet {library_version()})")

    server = EventLoopServer(
        TTHandler(service),
        workers=thnum,
        host=host,
        port=port,
        timeout=float(tout) if tout > 0 else None,
        logger=logger,
    )
    try:
        server.bind()
    except OSError as exc:
        logger.error(f"cannot listen on {host}:{port}: {exc}")
        sys.stderr.write(f"ttserver: cannot listen on {host}:{port}: {exc}\n")
        db.close()
        return 1
    if port == 0 and log_path:  # the chosen port must reach the caller even with -log
        print(f"listening on {server.address[0]}:{server.address[1]}", flush=True)

    mhost = options.get("-mhost")
    if mhost and sid < 1:
        logger.info("warning: replication is omitted because the SID is not specified")
    elif mhost:
        opts = tt.RESTORE_CONSISTENCY_CHECK if options.get("-rcc") else 0
        service.set_master(str(mhost), _int_option(options, "-mport", 1978), 0, opts,
                           rts_path=os.path.abspath(service.rts_path))

    stop_periodic = threading.Event()
    for name, period in periods:
        if ext is not None and period > 0:
            _start_periodic(ext, name.encode(), period, stop_periodic, logger)

    def stop_all() -> None:
        stop_periodic.set()
        service.stop()

    def close_all() -> None:
        if ext is not None:
            ext.close()
        if service.ulog is not None:
            service.ulog.close()
        if not db.close():
            raise EngineError("closing the database failed")
        logger.system("database closed")

    status = server.run(pid_file=str(pid_file) if pid_file else None, on_stop=stop_all,
                        on_close=close_all)
    logger.close()
    return status


def _start_periodic(ext, name: bytes, period: float, stop: threading.Event, logger: Logger) -> None:
    """``-extpc name period``: call ``name`` every ``period`` seconds in its own thread."""

    def loop() -> None:
        while not stop.wait(period):
            try:
                ext.call_periodic(name)
            except Exception as exc:  # a broken script must not stop the server
                logger.error(f"do_extpc: {exc}")

    threading.Thread(target=loop, name=f"extpc-{name.decode(errors='replace')}", daemon=True).start()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
