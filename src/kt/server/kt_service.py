"""The ktserver "Worker": every RPC procedure, REST verb and binary command, transport-free.

``KTService`` owns the databases (``TimedDB`` over Kyoto Cabinet), the update log, the Lua
scripts and the WAIT/SIGNAL conditions; the network layer (``kt_server.py``) parses requests
and calls ``rpc`` / ``rest_*`` / ``bin_*`` from the connection's thread, with one ``Session``
per connection (it holds that connection's cursors).  Results are exactly ktserver 0.9.56's:
HTTP status codes, ``ERROR`` texts, output fields (``ktserver.cc: Worker::do_*``).
"""

from __future__ import annotations

import calendar
import email.utils
import itertools
import math
import os
import platform
import re
import resource
import subprocess
import threading
import time
from fractions import Fraction
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from kt.protocol import kt_binary as kb
from kt.server.engines import kc
from kt.server.engines.kc import DUPREC, LOGIC, NOIMPL, NOREC, KCError
from kt.server.timeddb import (
    INT64MAX,
    INT64MIN,
    XTMAX,
    XTREADFREQ,
    XTSCUNIT,
    TimedCursor,
    TimedDB,
    atoi,
    c_number_start,
    long_double,
)
from kt.server.ulog import UpdateLogger, clock_pure, db_message, parse_db_message

Params = Dict[bytes, bytes]
RpcResult = Tuple[int, Dict[bytes, bytes]]
RestResult = Tuple[int, Dict[str, str], bytes]

# RPCClient::ReturnValue -> HTTP status
RV_SUCCESS, RV_NOIMPL, RV_INVALID, RV_LOGIC, RV_TIMEOUT, RV_INTERNAL = 0, 1, 2, 3, 4, 5
_STATUS = {RV_SUCCESS: 200, RV_NOIMPL: 501, RV_INVALID: 400, RV_LOGIC: 450, RV_TIMEOUT: 503, RV_INTERNAL: 500}

KT_VERSION = "0.9.56b"
KT_LIBVER, KT_LIBREV = 2, 19
DEFAULT_WAIT = 30.0
MAX_WAIT = float(1 << 30)  # longer waits overflow the platform's time_t in threading
DEFAULT_PORT = 1978
_ALNUM = re.compile(rb"[A-Za-z0-9]+\Z")


def _status(rv: int) -> int:
    return _STATUS.get(rv, 500)


def _err(message: str) -> Dict[bytes, bytes]:
    return {b"ERROR": message.encode()}


def _db_err(e: KCError) -> Dict[bytes, bytes]:
    return {b"ERROR": b"DB: %d: %s: %s" % (e.code, e.name.encode(), e.message.encode())}


_NOREC_ERROR = KCError(NOREC, "no record")


def atof(text: bytes) -> float:
    """``kc::atof`` step by step in x87 ``long double`` arithmetic, then rounded to a double:
    integer digits, at most 16 significant digits in all (later fraction digits are ignored),
    ``e`` with ``kc::atoi``'s exponent; ``inf``/``nan`` prefixes; garbage -> 0."""
    i, sign = c_number_start(text)
    end = len(text)
    word = text[i:i + 3].lower()
    if word == b"inf":
        return math.inf * sign
    if word == b"nan":
        return math.nan
    num, col = Fraction(0), 0
    while i < end and 0x30 <= text[i] <= 0x39:
        num = long_double(num * 10 + (text[i] - 0x30))
        i += 1
        if num > 0:
            col += 1
    if text[i:i + 1] == b".":
        i += 1
        fract, base = Fraction(0), Fraction(10)
        while col < 16 and i < end and 0x30 <= text[i] <= 0x39:
            fract = long_double(fract + long_double(Fraction(text[i] - 0x30) / base))
            i += 1
            col += 1
            base = long_double(base * 10)
        num = long_double(num + fract)
    if text[i:i + 1] in (b"e", b"E") and num:
        exponent = atoi(text[i + 1:])
        if exponent > 5000:
            return math.inf * sign
        if exponent < -5000:
            return 0.0 * sign
        num = long_double(num * long_double(Fraction(10) ** exponent))
    try:
        return float(num) * sign
    except OverflowError:
        return math.inf * sign


def _fmt_double(x: float) -> bytes:
    """``%f`` through ``kc::vstrprintf``: a 128-byte buffer, longer output cut to 127 bytes
    and ``*`` (an output of exactly 128 bytes keeps snprintf's terminating NUL instead)."""
    if math.isnan(x):
        return b"-nan" if math.copysign(1, x) < 0 else b"nan"
    if math.isinf(x):
        return b"inf" if x > 0 else b"-inf"
    text = b"%f" % x
    if len(text) >= 128:
        return text[:127] + (b"*" if len(text) > 128 else b"\0")
    return text


def strmktime(text: bytes) -> int:
    """ktutil's ``strmktime``: decimal, 0x-hex, W3CDTF, ``YYYY/MM/DD``, RFC 822/1123 -> epoch."""
    s = text.decode("latin-1").lstrip("".join(chr(c) for c in range(1, 33)))
    if not s:
        return INT64MIN
    if s[:2] in ("0x", "0X"):
        m = re.match(r"[0-9A-Fa-f]*", s[2:])
        return int(m.group(0) or "0", 16)
    t = atoi(s)
    m = re.match(r"[0-9]*[\x01- ]*", s)
    rest = s[m.end():]
    if not rest:
        return t
    if len(rest) == 1 or rest[1] <= " ":
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(rest[0].lower())
        if mult:
            return t * mult
    if len(s) > 4 and s[4] in "-/":
        sep = s[4]
        tsep = "T" if sep == "-" else " "
        year, mon, day, hour, minute, sec = atoi(s), 1, 1, 0, 0, 0
        if len(s) > 7 and s[7] == sep:
            mon = atoi(s[5:])
            if len(s) > 7:
                day = atoi(s[8:])
            if len(s) > 10 and s[10] == tsep:
                hour = atoi(s[11:])
                if len(s) > 13 and s[13] == ":":
                    minute = atoi(s[14:])
                if len(s) > 16 and s[16] == ":":
                    sec = atoi(s[17:])
                tail = s[19:] if len(s) > 19 else ""
                if tail.startswith("."):
                    tail = tail[1:]
                tail = tail.lstrip("0123456789")
                if tail[:1] in ("+", "-") and len(tail) >= 6 and tail[3] == ":":
                    off = atoi(tail[1:]) * 3600 + atoi(tail[4:]) * 60
                    sec -= off if tail[0] == "+" else -off
        elif len(s) > 5:
            mon = atoi(s[5:])
        return _timegm(year, mon, day, hour, minute, sec)
    parsed = email.utils.parsedate_tz(s)
    if parsed is None:
        return INT64MIN
    return calendar.timegm(parsed[:6]) - (parsed[9] or 0)


def _timegm(year: int, mon: int, day: int, hour: int, minute: int, sec: int) -> int:
    year += (mon - 1) // 12
    mon = (mon - 1) % 12 + 1
    try:
        base = calendar.timegm((year, mon, 1, 0, 0, 0))
    except (ValueError, OverflowError):
        return INT64MIN
    return base + (day - 1) * 86400 + hour * 3600 + minute * 60 + sec


_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _civil_from_days(days: int) -> Tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01, proleptic Gregorian, any year."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def datestr_http(t: int) -> str:
    """RFC 1123 date in GMT (``kt::datestrhttp(t, 0)``), for every year an xt can reach: KT
    expiry times run to 2^40 - 1 s, the year 36812, beyond what ``datetime`` formats."""
    days, rem = divmod(t, 86400)
    year, month, day = _civil_from_days(days)
    y, m = (year - 1, month + 12) if month < 3 else (year, month)
    weekday = (day + (8 + 13 * m) // 5 + y + y // 4 - y // 100 + y // 400) % 7  # kt::dayofweek
    clock = f"{rem // 3600:02d}:{rem // 60 % 60:02d}:{rem % 60:02d}"
    return f"{_WEEKDAYS[weekday]}, {day:02d} {_MONTHS[month - 1]} {year:04d} {clock} GMT"


class _Conditions:
    """Named condition variables for WAIT / SIGNAL (``kc::CondMap``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiters: Dict[bytes, List[threading.Event]] = {}
        self._aborted = False

    def wait(self, name: bytes, timeout: float) -> bool:
        ev = threading.Event()
        with self._lock:
            if self._aborted:
                return False
            self._waiters.setdefault(name, []).append(ev)
        ok = ev.wait(timeout)
        with self._lock:
            lst = self._waiters.get(name)
            if lst and ev in lst:
                lst.remove(ev)
                if not lst:
                    del self._waiters[name]
        return ok and not self._aborted

    def signal(self, name: bytes, broadcast: bool) -> int:
        with self._lock:
            lst = self._waiters.get(name, [])
            woken = lst[:] if broadcast else lst[:1]
            for ev in woken:
                lst.remove(ev)
                ev.set()
            if not lst:
                self._waiters.pop(name, None)
            return len(woken)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            for lst in self._waiters.values():
                for ev in lst:
                    ev.set()
            self._waiters.clear()


class Session:
    """Per-connection state: the cursors created by ``CUR`` ids (``Worker::SLS``)."""

    def __init__(self, service: KTService):
        self.service = service
        self.cursors: Dict[int, TimedCursor] = {}
        self.thread_id = threading.get_ident()

    def close(self) -> None:
        cursors, self.cursors = self.cursors, {}
        for cur in cursors.values():
            try:
                cur.close()
            except Exception:
                pass


class _UlogStream:
    """Replication reader: ``read()`` -> ``(ts, message)``, ``(ts, None)`` for a skipped record."""

    def __init__(self, reader, sid: int, white: bool):
        self.reader = reader
        self.sid = sid
        self.white = white

    def read(self):
        rec = self.reader.read()
        if rec is None:
            return None
        ts, message = rec
        parsed = parse_db_message(message)
        rsid = parsed[0] if parsed else 0
        if (rsid != self.sid) if self.white else (rsid == self.sid):
            return ts, None
        return ts, message

    def close(self) -> None:
        self.reader.close()


def _sysinfo() -> Dict[str, str]:
    """``kc::getsysinfo`` on Linux: memory and CPU figures of this process."""
    info: Dict[str, str] = {}
    ru = resource.getrusage(resource.RUSAGE_SELF)
    info["ru_utime"] = f"{ru.ru_utime:.6f}"
    info["ru_stime"] = f"{ru.ru_stime:.6f}"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                key = {"VmPeak": "mem_peak", "VmSize": "mem_size", "VmRSS": "mem_rss"}.get(name)
                if key:
                    info[key] = str(int(value.split()[0]) * 1024)
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                key = {"MemTotal": "mem_total", "MemFree": "mem_free", "Cached": "mem_cached"}.get(name)
                if key:
                    info[key] = str(int(value.split()[0]) * 1024)
    except OSError:
        pass
    return info


class _EchoOnlyScripts:
    """``ScriptProcessor::call`` of a ktserver built without Lua: only ``echo``."""

    @staticmethod
    def call(name: bytes, inmap: Dict[bytes, bytes]) -> Tuple[int, Dict[bytes, bytes]]:
        if name == b"echo":
            return RV_SUCCESS, dict(inmap)
        return RV_NOIMPL, {}


class _Origin(threading.local):
    """The origin sid of the replicated record this thread applies; None: this server's."""

    sid: Optional[int] = None


class _LogTrigger:
    """A database's update trigger: logs its updates framed with the origin sid (this
    server's, or the master's while a replicated record is applied) and its index.  Native
    batches queue theirs in C instead (``pending``/``prefix``) and ``flush`` them."""

    __slots__ = ("service", "dbidx", "ulog")

    def __init__(self, service: KTService, dbidx: int):
        self.service = service
        self.dbidx = dbidx
        self.ulog = service.ulog

    def sid(self) -> int:
        sid = self.service._origin.sid
        return self.service.sid if sid is None else sid

    def __call__(self, update: bytes) -> None:
        self.ulog.write(db_message(self.sid(), self.dbidx, update))

    @property
    def queue(self):
        return self.ulog.pending

    def prefix(self) -> int:
        """``db_message``'s ``[sid:2][dbid:2]`` as a number."""
        return (self.sid() & 0xFFFF) << 16 | (self.dbidx & 0xFFFF)

    def flush(self) -> None:
        self.ulog.flush()


class KTService:
    """All of ktserver's database-facing behaviour, shared by every connection (thread-safe)."""

    def __init__(
        self,
        db_specs: Optional[List[str]] = None,
        *,
        script_path: Optional[str] = None,
        ulog_dir: Optional[str] = None,
        ulog_limit: int = 0,
        sid: int = 0,
        readonly: bool = False,
        logger=None,
        cmd_dir: Optional[str] = None,
        rts_path: Optional[str] = None,
        thread_count: int = 16,
        open_flags: int = 0,
    ):
        self.logger = logger
        self.sid = sid & 0xFFFF
        self.cmd_dir = cmd_dir or "."
        self.rts_path = rts_path
        self.thread_count = thread_count
        self.readonly = readonly
        self.start_time = time.time()
        self.connection_count: Callable[[], int] = lambda: 0
        self.task_count: Callable[[], int] = lambda: 0
        self._conds = _Conditions()
        self._origin = _Origin()
        self.slave: Optional[ReplicationSlave] = None
        self._counts = [0] * 8  # set, set_misses, remove, remove_misses, get, get_misses, script, misc
        self.ulog: Optional[UpdateLogger] = None
        if ulog_dir:
            self.ulog = UpdateLogger(ulog_dir, ulog_limit if ulog_limit > 0 else 256 << 20)
        mode = kc.OREADER if readonly else (kc.OWRITER | kc.OCREATE)
        mode |= open_flags
        self.dbs: List[TimedDB] = []
        self.dbmap: Dict[bytes, int] = {}
        try:
            for idx, spec in enumerate(db_specs or [":"]):
                trigger = self._trigger(idx) if self.ulog is not None else None
                db = TimedDB(spec, mode, trigger)
                self.dbs.append(db)
                self.dbmap[db.name.encode("utf-8", "surrogateescape")] = idx
        except Exception:
            self.close()
            raise
        self.scripts = None
        if script_path:
            from kt.errors import EngineError
            from kt.server.kt_lua import ScriptProcessor

            try:
                self.scripts = ScriptProcessor(script_path, self, logger=logger)
            except EngineError as exc:  # no lupa: behave like a ktserver built without Lua
                if logger is not None:
                    logger.error(f"{exc}; only the built-in 'echo' procedure is available")
                self.scripts = _EchoOnlyScripts()
        self._idle_index = 0

    def _trigger(self, idx: int) -> _LogTrigger:
        return _LogTrigger(self, idx)

    def apply_replicated(self, message: bytes) -> bool:
        """Apply a master's log message (``[sid][dbid][update]``); False if it was not applied.

        Records that originated here (same sid) or name a database we do not have are skipped;
        re-logged records keep their origin sid so that chains and rings do not loop.
        """
        parsed = parse_db_message(message)
        if parsed is None:
            return False
        rsid, dbid, update = parsed
        if rsid == self.sid or dbid >= len(self.dbs):
            return False
        self._origin.sid = rsid
        try:
            self.dbs[dbid].recover(update)
        except KCError as e:
            if self.logger is not None:
                self.logger.error(f"recovering a database failed: {e.name}: {e.message}")
            return False
        finally:
            del self._origin.sid
        return True

    def start_replication(self, host: str, port: int = DEFAULT_PORT, interval: float = 0.04) -> None:
        """Become a slave of ``host:port`` (``-mhost``/``-mport``/``-riv``; needs ``rts_path``)."""
        if not self.rts_path:
            raise ValueError("replication needs an RTS file (-rts)")
        self.slave = ReplicationSlave(self, host, port, self.rts_path, interval)
        self.slave.start()

    def _log_error(self, e: KCError) -> None:
        if self.logger is not None:
            self.logger.error(f"database error: {e.code}: {e.name}: {e.message}")

    # -- lifecycle ----------------------------------------------------------------------------
    def session(self) -> Session:
        return Session(self)

    def stop(self) -> None:
        """Wake every WAIT (they answer 503) and refuse new ones; stop replicating."""
        self._conds.abort()
        if self.slave is not None:
            self.slave.stop()

    def close(self) -> None:
        """Sync and close every database and the update log; errors are logged, not raised."""
        slave = getattr(self, "slave", None)
        if slave is not None:
            slave.stop()
            slave.join(5)
        for db in getattr(self, "dbs", []):
            try:
                db.close()
            except Exception as exc:  # keep closing the others
                if self.logger is not None:
                    self.logger.error(f"closing a database failed: {exc}")
        self.dbs = []
        if self.ulog is not None:
            self.ulog.close()

    def idle(self) -> None:
        """ktserver's ``process_idle``: purge a few expired records of one database per call."""
        if self.readonly or not self.dbs:
            return
        db = self.dbs[self._idle_index % len(self.dbs)]
        self._idle_index += 1
        try:
            db.vacuum(2)
        except KCError as e:
            self._log_error(e)

    def synchronize_all(self, hard: bool = False) -> None:
        for db in self.dbs:
            db.synchronize(hard)

    # -- database selection -------------------------------------------------------------------
    def _select(self, expr: Optional[bytes]) -> Optional[TimedDB]:
        idx = 0
        if expr:
            if 0x30 <= expr[0] <= 0x39:
                idx = atoi(expr)
            else:
                idx = self.dbmap.get(expr.split(b"\0", 1)[0], -1)
        if 0 <= idx < len(self.dbs):
            return self.dbs[idx]
        return None

    def has_db(self, db_expr: Optional[bytes]) -> bool:
        """Whether a REST/RPC database expression names an open database."""
        return self._select(db_expr) is not None

    # -- RPC ----------------------------------------------------------------------------------
    def rpc(self, procedure: str, params: Params, session: Optional[Session] = None) -> RpcResult:
        """Run one RPC with its meta parameters; returns ``(HTTP status, output map)``."""
        if session is None:
            session = Session(self)
        out: Dict[bytes, bytes] = {}
        wait = params.get(b"WAIT")
        if wait is not None:
            wt = params.get(b"WAITTIME")
            wsec = atof(wt) if wt is not None else 0.0
            if not wsec > 0:
                wsec = DEFAULT_WAIT
            wsec = min(wsec, MAX_WAIT)
            if not self._conds.wait(wait, wsec):
                return 503, _err("the condition timed out")
        db = self._select(params.get(b"DB"))
        cur = None
        curexpr = params.get(b"CUR")
        if curexpr is not None and curexpr[:1].isdigit():
            curid = atoi(curexpr)
            cur = session.cursors.get(curid)
            if cur is None:
                if db is not None:
                    cur = db.cursor()
                    session.cursors[curid] = cur
            elif procedure == "cur_delete":
                del session.cursors[curid]
                cur.close()
                return 200, out
        handler = _PROCEDURES.get(procedure)
        if handler is None:
            out = _err(f"not implemented: {procedure}")
            rv = RV_NOIMPL
        else:
            kind, fn = handler
            arg = db if kind == "db" else cur if kind == "cur" else None
            if kind == "db" and db is None:
                rv, out = RV_INVALID, _err("no such database")
            elif kind == "cur" and cur is None:
                rv, out = RV_INVALID, _err("no such cursor")
            else:
                try:
                    rv, out = fn(self, arg, params)
                except KCError as e:
                    rv, out = self._db_failure(e)
        signal = params.get(b"SIGNAL")
        if signal is not None:
            n = self._conds.signal(signal, b"SIGNALBROAD" in params)
            out[b"SIGNALED"] = b"%d" % n
        return _status(rv), out

    def _db_failure(self, e: KCError, logic=(NOREC,)) -> Tuple[int, Dict[bytes, bytes]]:
        if e.code == NOIMPL and NOIMPL in logic:
            return RV_NOIMPL, _db_err(e)
        if e.code in logic:
            return RV_LOGIC, _db_err(e)
        self._log_error(e)
        return RV_INTERNAL, _db_err(e)

    def _count(self, idx: int, n: int = 1) -> None:
        self._counts[idx] += n

    # procedures without a database
    def _do_void(self, _x, p):
        return RV_SUCCESS, {}

    def _do_echo(self, _x, p):
        return RV_SUCCESS, dict(p)

    def _do_report(self, _x, p):
        out: Dict[str, str] = {}
        tc = ts = 0
        for i, db in enumerate(self.dbs):
            c, s = db.count(), db.size()
            out[f"db_{i}"] = f"count={c} size={s} path={db.path()}"
            tc += c
            ts += s
        out["db_total_count"] = str(tc)
        out["db_total_size"] = str(ts)
        out["serv_conn_count"] = str(self.connection_count())
        out["serv_task_count"] = str(self.task_count())
        out["serv_thread_count"] = str(self.thread_count)
        now = time.time()
        out["serv_current_time"] = f"{now:.6f}"
        out["serv_running_term"] = f"{now - self.start_time:.6f}"
        out["serv_proc_id"] = str(os.getpid())
        for k, v in _sysinfo().items():
            out["sys_" + k] = v
        master = self.slave.master() if self.slave is not None else None
        if master and master[0]:
            host, port, rts, iv = master
            out["repl_master_host"] = host
            out["repl_master_port"] = str(port)
            out["repl_timestamp"] = str(rts)
            out["repl_interval"] = f"{iv:.6f}"
            out["repl_delay"] = f"{max(clock_pure() - rts, 0) / 1e9:.6f}"
        names = ["set", "set_misses", "remove", "remove_misses", "get", "get_misses", "script", "misc"]
        for name, n in zip(names, self._counts):
            out["cnt_" + name] = str(n)
        out["conf_kt_version"] = f"{KT_VERSION} ({KT_LIBVER}.{KT_LIBREV})"
        out["conf_kt_features"] = "(python)" + ("(lua)" if self.scripts is not None else "")
        status = self.dbs[0].db.status() if self.dbs else {}
        libver, librev = status.get("libver", "16"), status.get("librev", "0")
        out["conf_kc_version"] = f"{kc.version()} ({libver}.{librev})"
        out["conf_kc_features"] = f"({kc.LIBRARY_NAME})"
        out["conf_os_name"] = platform.system()
        return RV_SUCCESS, {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in out.items()}

    def _do_play_script(self, _x, p):
        if self.scripts is None:
            return RV_NOIMPL, _err("the scripting extention is disabled")
        name = p.get(b"name")
        if not name or not _ALNUM.match(name):
            return RV_INVALID, _err("invalid parameters")
        inmap = {k[1:]: v for k, v in p.items() if k[:1] == b"_"}
        self._count(6)
        rv, outmap = self.scripts.call(name, inmap)
        if rv == RV_SUCCESS:
            return rv, {b"_" + k: v for k, v in outmap.items()}
        if rv == RV_NOIMPL:
            return rv, _err("no such scripting procedure")
        return rv, _err("the scripting procedure failed")

    def _do_tune_replication(self, _x, p):
        if not self.rts_path:
            return RV_NOIMPL, _err("the RTS file is not set")
        host = p.get(b"host", b"").decode("utf-8", "replace")
        port = atoi(p[b"port"]) if b"port" in p else 0
        if port < 1:
            port = DEFAULT_PORT
        ts = None
        if b"ts" in p:
            ts = clock_pure() if p[b"ts"] == b"now" else atoi(p[b"ts"])
        iv = atof(p[b"iv"]) if b"iv" in p else -1.0
        if self.logger is not None:
            tss = "*" if ts is None else str(ts)
            ivs = "*" if iv < 0 else f"{iv:.6f}"
            self.logger.system(
                f"replication setting was modified: host={host} port={port} ts={tss} iv={ivs}")
        if self.slave is None:
            self.slave = ReplicationSlave(self, "", port, self.rts_path, 0.04)
            self.slave.start()
        self.slave.set_master(host, port, ts, iv)
        return RV_SUCCESS, {}

    def _do_ulog_list(self, _x, p):
        if self.ulog is None:
            return RV_INVALID, _err("no update log allows no replication")
        out = {}
        for path, size, ts in self.ulog.list_files():
            out[path.encode("utf-8", "surrogateescape")] = b"%d:%d" % (size, ts)
        return RV_SUCCESS, out

    def _do_ulog_remove(self, _x, p):
        if self.ulog is None:
            return RV_INVALID, _err("no update log allows no replication")
        ts = (1 << 64) - 1
        if b"ts" in p:
            ts = clock_pure() if p[b"ts"] == b"now" else atoi(p[b"ts"])
        failed = self.ulog.remove_files(ts)
        if failed:
            if self.logger is not None:
                self.logger.error(f"removing a file failed: {failed}")
            return RV_INTERNAL, _err(f"removing a file failed: {failed}")
        return RV_SUCCESS, {}

    # procedures on a database
    def _do_status(self, db: TimedDB, p):
        self._count(7)
        st = db.status()
        return RV_SUCCESS, {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in st.items()}

    def _do_clear(self, db: TimedDB, p):
        self._count(7)
        db.clear()
        return RV_SUCCESS, {}

    def _do_synchronize(self, db: TimedDB, p):
        self._count(7)
        hard = b"hard" in p
        command = p.get(b"command", b"")
        try:
            db.synchronize(hard)
        except KCError as e:
            return self._db_failure(e, ())
        if command and not self._run_command(command, db):
            e = KCError(LOGIC, "postprocessing failed")
            self._log_error(e)
            return RV_INTERNAL, _db_err(e)
        return RV_SUCCESS, {}

    def _run_command(self, command: bytes, db: TimedDB) -> bool:
        cmd = command.decode("utf-8", "surrogateescape")
        if "/" in cmd or cmd in (".", ".."):
            if self.logger is not None:
                self.logger.info(f"invalid command name: {cmd}")
            return False
        cc = self.ulog.clock() if self.ulog is not None else clock_pure()
        args = [os.path.join(self.cmd_dir, cmd), db.path(), f"{cc:020d}"]
        if self.logger is not None:
            self.logger.system(f'executing: {cmd} "{db.path()}"')
        try:
            ok = subprocess.call(args) == 0
        except OSError:
            ok = False
        if not ok and self.logger is not None:
            self.logger.error(f'execution failed: {cmd} "{db.path()}"')
        return ok

    @staticmethod
    def _xt(p: Params) -> int:
        x = p.get(b"xt")
        return atoi(x) if x is not None else INT64MAX

    def _write(self, db: TimedDB, p: Params, op: str, logic=()):
        key, value = p.get(b"key"), p.get(b"value")
        if key is None or value is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(0)
        try:
            getattr(db, op)(key, value, self._xt(p))
        except KCError as e:
            self._count(1)
            return self._db_failure(e, logic)
        return RV_SUCCESS, {}

    def _do_set(self, db, p):
        return self._write(db, p, "set")

    def _do_add(self, db, p):
        return self._write(db, p, "add", (DUPREC,))

    def _do_replace(self, db, p):
        return self._write(db, p, "replace", (NOREC,))

    def _do_append(self, db, p):
        return self._write(db, p, "append")

    def _do_increment(self, db: TimedDB, p):
        key, num = p.get(b"key"), p.get(b"num")
        if key is None or num is None:
            return RV_INVALID, _err("invalid parameters")
        o = p.get(b"orig")
        orig = 0 if o is None else INT64MIN if o == b"try" else INT64MAX if o == b"set" else atoi(o)
        self._count(0)
        try:
            n = db.increment(key, atoi(num), orig, self._xt(p))
        except KCError as e:
            self._count(1)
            return self._db_failure(e, (LOGIC,))
        return RV_SUCCESS, {b"num": b"%d" % n}

    def _do_increment_double(self, db: TimedDB, p):
        key, num = p.get(b"key"), p.get(b"num")
        if key is None or num is None:
            return RV_INVALID, _err("invalid parameters")
        o = p.get(b"orig")
        orig = 0.0 if o is None else -math.inf if o == b"try" else math.inf if o == b"set" else atof(o)
        self._count(0)
        try:
            n = db.increment_double(key, atof(num), orig, self._xt(p))
        except KCError as e:
            self._count(1)
            return self._db_failure(e, (LOGIC,))
        return RV_SUCCESS, {b"num": _fmt_double(n)}

    def _do_cas(self, db: TimedDB, p):
        key = p.get(b"key")
        if key is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(0)
        try:
            db.cas(key, p.get(b"oval"), p.get(b"nval"), self._xt(p))
        except KCError as e:
            self._count(1)
            return self._db_failure(e, (LOGIC,))
        return RV_SUCCESS, {}

    def _do_remove(self, db: TimedDB, p):
        key = p.get(b"key")
        if key is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(2)
        try:
            db.remove(key)
        except KCError as e:
            self._count(3)
            return self._db_failure(e)
        return RV_SUCCESS, {}

    @staticmethod
    def _with_xt(out: Dict[bytes, bytes], xt: int) -> Dict[bytes, bytes]:
        if xt < XTMAX:
            out[b"xt"] = b"%d" % xt
        return out

    def _do_get(self, db: TimedDB, p):
        key = p.get(b"key")
        if key is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(4)
        rec = db.get(key)
        if rec is None:
            self._count(5)
            return RV_LOGIC, _db_err(_NOREC_ERROR)
        return RV_SUCCESS, self._with_xt({b"value": rec[0]}, rec[1])

    def _do_check(self, db: TimedDB, p):
        key = p.get(b"key")
        if key is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(4)
        rec = db.check(key)
        if rec is None:
            self._count(5)
            return RV_LOGIC, _db_err(_NOREC_ERROR)
        return RV_SUCCESS, self._with_xt({b"vsiz": b"%d" % rec[0]}, rec[1])

    def _do_seize(self, db: TimedDB, p):
        key = p.get(b"key")
        if key is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(2)
        self._count(4)
        rec = db.seize(key)
        if rec is None:
            self._count(3)
            self._count(5)
            return RV_LOGIC, _db_err(_NOREC_ERROR)
        return RV_SUCCESS, self._with_xt({b"value": rec[0]}, rec[1])

    @staticmethod
    def _underscored(p: Params) -> Dict[bytes, bytes]:
        return {k[1:]: v for k, v in sorted(p.items()) if k[:1] == b"_"}

    def _do_set_bulk(self, db: TimedDB, p):
        recs = self._underscored(p)
        self._count(0, len(recs))
        try:
            n = db.set_bulk(recs, self._xt(p), b"atomic" in p)
        except KCError as e:
            self._count(1, len(recs))
            return self._db_failure(e, ())
        return RV_SUCCESS, {b"num": b"%d" % n}

    def _do_remove_bulk(self, db: TimedDB, p):
        keys = list(self._underscored(p))
        self._count(2, len(keys))
        try:
            n = db.remove_bulk(keys, b"atomic" in p)
        except KCError as e:
            self._count(3, len(keys))
            return self._db_failure(e, ())
        self._count(3, len(keys) - n)
        return RV_SUCCESS, {b"num": b"%d" % n}

    def _do_get_bulk(self, db: TimedDB, p):
        keys = list(self._underscored(p))
        self._count(4, len(keys))
        recs = db.get_bulk(keys, b"atomic" in p)
        self._count(5, len(keys) - len(recs))
        out = {b"_" + k: v for k, v in recs.items()}
        out[b"num"] = b"%d" % len(recs)
        return RV_SUCCESS, out

    def _do_vacuum(self, db: TimedDB, p):
        self._count(7)
        step = atoi(p[b"step"]) if b"step" in p else 0
        try:
            db.vacuum(step)
        except KCError as e:
            return self._db_failure(e, ())
        return RV_SUCCESS, {}

    def _match(self, db: TimedDB, p, param: bytes, run, logic=()):
        arg = p.get(param)
        if arg is None:
            return RV_INVALID, _err("invalid parameters")
        maxp = p.get(b"max")
        mx = atoi(maxp) if maxp is not None else -1
        self._count(7)
        try:
            keys = run(arg, mx)
        except KCError as e:
            return self._db_failure(e, logic)
        out = {b"_" + k: b"%d" % i for i, k in enumerate(keys)}
        out[b"num"] = b"%d" % len(keys)
        return RV_SUCCESS, out

    def _do_match_prefix(self, db: TimedDB, p):
        return self._match(db, p, b"prefix", db.match_prefix)

    def _do_match_regex(self, db: TimedDB, p):
        return self._match(db, p, b"regex", db.match_regex, (LOGIC,))

    def _do_match_similar(self, db: TimedDB, p):
        rng = atoi(p[b"range"]) if b"range" in p else 1
        if rng < 0:
            rng = 1
        utf = b"utf" in p
        return self._match(db, p, b"origin", lambda o, m: db.match_similar(o, rng, utf, m), (LOGIC,))

    # cursor procedures
    def _cur_move(self, ok_fn, logic=(NOREC,)):
        try:
            ok = ok_fn()
        except KCError as e:
            return self._db_failure(e, logic)
        if not ok:
            return RV_LOGIC, _db_err(_NOREC_ERROR)
        return RV_SUCCESS, {}

    def _do_cur_jump(self, cur: TimedCursor, p):
        self._count(7)
        return self._cur_move(lambda: cur.jump(p.get(b"key")))

    def _do_cur_jump_back(self, cur: TimedCursor, p):
        self._count(7)
        return self._cur_move(lambda: cur.jump_back(p.get(b"key")), (NOREC, NOIMPL))

    def _do_cur_step(self, cur: TimedCursor, p):
        self._count(7)
        return self._cur_move(cur.step)

    def _do_cur_step_back(self, cur: TimedCursor, p):
        self._count(7)
        return self._cur_move(cur.step_back, (NOREC, NOIMPL))

    def _do_cur_set_value(self, cur: TimedCursor, p):
        value = p.get(b"value")
        if value is None:
            return RV_INVALID, _err("invalid parameters")
        self._count(0)
        rv, out = self._cur_move(lambda: cur.set_value(value, self._xt(p), b"step" in p))
        if rv != RV_SUCCESS:
            self._count(1)
        return rv, out

    def _do_cur_remove(self, cur: TimedCursor, p):
        self._count(2)
        rv, out = self._cur_move(cur.remove)
        if rv != RV_SUCCESS:
            self._count(3)
        return rv, out

    def _cur_read(self, cur: TimedCursor, p, fields: str, seize: bool = False):
        self._count(4)
        try:
            rec = cur.seize() if seize else cur.get(b"step" in p)
        except KCError as e:
            self._count(5)
            return self._db_failure(e)
        if rec is None:
            self._count(5)
            return RV_LOGIC, _db_err(_NOREC_ERROR)
        key, value, xt = rec
        out: Dict[bytes, bytes] = {}
        if "k" in fields:
            out[b"key"] = key
        if "v" in fields:
            out[b"value"] = value
        if "x" in fields:
            self._with_xt(out, xt)
        return RV_SUCCESS, out

    def _do_cur_get_key(self, cur, p):
        return self._cur_read(cur, p, "k")

    def _do_cur_get_value(self, cur, p):
        return self._cur_read(cur, p, "v")

    def _do_cur_get(self, cur, p):
        return self._cur_read(cur, p, "kvx")

    def _do_cur_seize(self, cur, p):
        return self._cur_read(cur, p, "kvx", seize=True)

    # -- REST ---------------------------------------------------------------------------------
    @staticmethod
    def _rest_error(e: KCError, headers: Dict[str, str], missing: int) -> int:
        headers["X-Kt-Error"] = f"DB: {e.code}: {e.name}: {e.message}"
        return missing

    def rest_get(self, db_expr: Optional[bytes], key: bytes) -> RestResult:
        db = self._select(db_expr)
        if db is None:
            return 400, {}, b"no such database\n"
        self._count(4)
        headers: Dict[str, str] = {}
        rec = db.get(key)
        if rec is None:
            self._count(5)
            return self._rest_error(_NOREC_ERROR, headers, 404), headers, b""
        if rec[1] < XTMAX:
            headers["X-Kt-Xt"] = datestr_http(rec[1])
        return 200, headers, rec[0]

    def rest_head(self, db_expr: Optional[bytes], key: bytes) -> RestResult:
        db = self._select(db_expr)
        if db is None:
            return 400, {}, b"no such database\n"
        self._count(4)
        headers: Dict[str, str] = {}
        rec = db.get(key)
        if rec is None:
            self._count(5)
            headers["Content-Length"] = "0"
            return self._rest_error(_NOREC_ERROR, headers, 404), headers, b""
        if rec[1] < XTMAX:
            headers["X-Kt-Xt"] = datestr_http(rec[1])
        headers["Content-Length"] = str(len(rec[0]))
        return 200, headers, b""

    def rest_put(
        self,
        db_expr: Optional[bytes],
        key: bytes,
        value: bytes,
        headers: Optional[Dict[bytes, bytes]] = None,
        url: Optional[bytes] = None,
    ) -> RestResult:
        db = self._select(db_expr)
        if db is None:
            return 400, {}, b"no such database\n"
        headers = headers or {}
        mode = headers.get(b"x-kt-mode", b"").lower()
        op = "add" if mode == b"add" else "replace" if mode == b"replace" else "set"
        xh = headers.get(b"x-kt-xt")
        xt = strmktime(xh) if xh is not None else -1
        xt = -xt if 0 < xt < XTMAX else INT64MAX
        self._count(0)
        out: Dict[str, str] = {}
        try:
            getattr(db, op)(key, value, xt)
        except KCError as e:
            self._count(1)
            if e.code in (DUPREC, NOREC):
                return self._rest_error(e, out, 450), out, b""
            self._log_error(e)
            return self._rest_error(e, out, 500), out, b""
        if url is not None:
            out["Location"] = url.decode("latin-1")
        return 201, out, b""

    def rest_delete(self, db_expr: Optional[bytes], key: bytes) -> RestResult:
        db = self._select(db_expr)
        if db is None:
            return 400, {}, b"no such database\n"
        self._count(2)
        out: Dict[str, str] = {}
        try:
            db.remove(key)
        except KCError as e:
            self._count(3)
            if e.code == NOREC:
                return self._rest_error(e, out, 404), out, b""
            self._log_error(e)
            return self._rest_error(e, out, 500), out, b""
        return 204, out, b""

    # -- binary protocol ----------------------------------------------------------------------
    def bin_set_bulk(self, records: Sequence[Tuple[int, bytes, bytes, int]]) -> int:
        """Apply records in order; out-of-range dbidx skipped; a DB failure raises KCError.

        Each run of records for one database is one engine batch (``TimedDB.set_many``).
        """
        hits = 0
        for db, run in self._runs(records):
            self._count(0, len(run))
            try:
                db.set_many([rec[1:] for rec in run])
            except KCError as exc:
                self._count(0, getattr(exc, "applied", len(run) - 1) + 1 - len(run))
                self._count(1)
                raise
            hits += len(run)
        return hits

    def bin_remove_bulk(self, records: Sequence[Tuple[int, bytes]]) -> int:
        """Remove records; misses are not errors; other DB failures raise KCError."""
        hits = 0
        for db, run in self._runs(records):
            self._count(2, len(run))
            try:
                n = db.remove_many([rec[1] for rec in run])
            except KCError:
                self._count(3)
                raise
            self._count(3, len(run) - n)
            hits += n
        return hits

    def bin_get_bulk(self, records: Sequence[Tuple[int, bytes]]) -> List[Tuple[int, bytes, bytes, int]]:
        """Hits in request order as ``(dbidx, key, value, absolute xt)``."""
        out: List[Tuple[int, bytes, bytes, int]] = []
        for db, run in self._runs(records):
            keys = [rec[1] for rec in run]
            found = db.get_many(keys)
            dbidx = run[0][0]
            hits = [(dbidx, key, rec[0], rec[1]) for key, rec in zip(keys, found) if rec is not None]
            self._count(4, len(run))
            self._count(5, len(run) - len(hits))
            out += hits
        return out

    # -- the same for a native batch (kt._speedups.kt_server_bulk.parse) ---------------------
    def _batch_runs(self, batch):
        """``(db, start, stop)`` per run of a native batch (unknown dbidx dropped)."""
        dbs = self.dbs
        return [(dbs[dbidx], start, stop) for dbidx, start, stop in batch.runs() if dbidx < len(dbs)]

    def bin_set_bulk_batch(self, batch) -> int:
        """``bin_set_bulk`` of a native batch; a database that cannot take it in C
        (``TimedDB.native``) gets its records the pure-Python way."""
        hits = 0
        for db, start, stop in self._batch_runs(batch):
            if not db.native:
                hits += self.bin_set_bulk(batch.records(start, stop))
                continue
            self._count(0, stop - start)
            try:
                db.set_batch(batch, start, stop)
            except KCError as exc:
                self._count(0, getattr(exc, "applied", stop - start - 1) + 1 - (stop - start))
                self._count(1)
                raise
            hits += stop - start
        return hits

    def bin_remove_bulk_batch(self, batch) -> int:
        """``bin_remove_bulk`` of a native batch."""
        hits = 0
        for db, start, stop in self._batch_runs(batch):
            if not db.native:
                hits += self.bin_remove_bulk(batch.records(start, stop))
                continue
            self._count(2, stop - start)
            try:
                n = db.remove_batch(batch, start, stop)
            except KCError:
                self._count(3)
                raise
            self._count(3, stop - start - n)
            hits += n
        return hits

    def bin_get_bulk_batch(self, batch, whole: bool = False) -> Tuple[int, bytes]:
        """``bin_get_bulk`` of a native batch as ``(hits, the reply's records encoded)``;
        ``whole``: the whole reply, head included (built in place when it can be)."""
        runs = self._batch_runs(batch)
        if whole and len(runs) == 1 and runs[0][0].native_reads:
            db, start, stop = runs[0]
            n, reply = db.get_batch(batch, start, stop, True)
            self._count(4, stop - start)
            self._count(5, stop - start - n)
            return n, reply
        hits = 0
        parts = [kb.encode_count_reply(kb.MAGIC_GET_BULK, 0)] if whole else []
        for db, start, stop in runs:
            if not db.native_reads:
                found = self.bin_get_bulk(batch.records(start, stop))
                n, body = len(found), kb.encode_get_bulk_records(found)
            else:
                n, body = db.get_batch(batch, start, stop)
                self._count(4, stop - start)
                self._count(5, stop - start - n)
            hits += n
            parts.append(body)
        if whole:
            parts[0] = kb.encode_count_reply(kb.MAGIC_GET_BULK, hits)
        return hits, parts[0] if len(parts) == 1 else b"".join(parts)

    def bin_small(self, buf, most: int) -> Optional[Tuple[bytes, int]]:
        """A whole small set/remove/get_bulk request at the start of ``buf`` straight through
        C (``kt_server_bulk.serve_small``): ``(reply, end)``, or None when it must take the
        general path.  An engine failure raises KCError with ``end`` (the records before it
        stay applied, as in ``bin_set_bulk``)."""
        native = kc.bulk_speedups()
        if native is None:
            return None
        done = native.serve_small(buf, self.dbs, int(time.time()), most)
        if done is None:
            return None
        reply, end, db, magic, n, hits, failed = done
        if magic == kb.MAGIC_GET_BULK:
            if reply is None:
                raise _engine_error_at(db, end)
            db._expire(XTSCUNIT // XTREADFREQ * n)
            self._count(4, n)
            self._count(5, n - hits)
            return reply, end
        db._expire(XTSCUNIT * n)
        if magic == kb.MAGIC_SET_BULK:
            self._count(0, n if failed < 0 else failed + 1)
            if failed >= 0:
                self._count(1)
        else:
            self._count(2, n)
            self._count(3, n - hits if failed < 0 else 1)
        if failed >= 0:
            raise _engine_error_at(db, end)
        return reply, end

    def _runs(self, records: Sequence[tuple]) -> List[Tuple[TimedDB, Sequence[tuple]]]:
        """Consecutive records for one database, as ``(db, records)``; unknown dbidx dropped."""
        if not records:
            return []
        dbs = self.dbs
        first = records[0][0]
        if all(rec[0] == first for rec in records):  # the usual case: one database
            return [(dbs[first], records)] if first < len(dbs) else []
        runs: List[Tuple[TimedDB, Sequence[tuple]]] = []
        for dbidx, group in itertools.groupby(records, key=lambda rec: rec[0]):
            if dbidx < len(dbs):
                runs.append((dbs[dbidx], list(group)))
        return runs

    def bin_play_script(
        self, name: bytes, records: Iterable[Tuple[bytes, bytes]]
    ) -> Optional[List[Tuple[bytes, bytes]]]:
        """Script output records sorted by key, or None (answer 0xBF, keep the connection)."""
        if self.scripts is None:
            return None
        inmap = dict(records)
        self._count(6)
        rv, outmap = self.scripts.call(name.split(b"\0", 1)[0], inmap)
        if rv != RV_SUCCESS:
            return None
        return sorted(outmap.items())

    # -- replication --------------------------------------------------------------------------
    def ulog_reader(self, ts: int, sid: int, white_sid: bool = False) -> Optional[_UlogStream]:
        """A stream of log records newer than ``ts`` for a slave with ``sid``; None without -ulog."""
        if self.ulog is None:
            return None
        return _UlogStream(self.ulog.reader(ts), sid, white_sid)


class ReplicationSlave(threading.Thread):
    """ktserver's replication ``Slave``: follow a master's update log over the binary protocol.

    The last applied timestamp is kept in the RTS file (``%020llu\n``), so a restarted slave
    resumes where it stopped.  ``tune_replication`` changes the master at run time.
    """

    RTS_SIZE = 21
    DUMMYFREQ = 256

    def __init__(self, service: KTService, host: str, port: int, rts_path: str, interval: float):
        super().__init__(name="kt-replication", daemon=True)
        self.service = service
        self.rts_path = rts_path
        self._lock = threading.Lock()
        self._host, self._port, self._iv = host, port, interval
        self._wrts: Optional[int] = None
        self.rts = 0
        self._rts_fd = -1
        self._alive = True
        self._hup = False
        self._sock = None

    def master(self) -> Tuple[str, int, int, float]:
        with self._lock:
            return self._host, self._port, self.rts, self._iv

    def set_master(self, host: str, port: int, ts: Optional[int], iv: float) -> None:
        with self._lock:
            self._host, self._port = host, port
            if ts is not None:
                self._wrts = ts
            if iv >= 0:
                self._iv = iv
            self._hup = True
        self._drop()

    def stop(self) -> None:
        self._alive = False
        self._drop()

    def _drop(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def _log(self, kind: str, message: str) -> None:
        logger = self.service.logger
        if logger is not None:
            getattr(logger, kind)(message)

    def _open_rts(self) -> int:
        """Open the RTS file as ktserver does (created, cut to 21 bytes); the stored position."""
        try:
            self._rts_fd = os.open(self.rts_path, os.O_RDWR | os.O_CREAT, 0o644)
            os.ftruncate(self._rts_fd, self.RTS_SIZE)
            return atoi(os.pread(self._rts_fd, self.RTS_SIZE - 1, 0))
        except OSError:
            if self._rts_fd >= 0:
                os.close(self._rts_fd)
                self._rts_fd = -1
            self._log("error", f"opening the RTS file failed: path={self.rts_path}")
            return 0

    def _write_rts(self) -> None:
        """One in-place write of ``%020llu\n``: a killed process leaves the old or the new one."""
        try:
            os.pwrite(self._rts_fd, b"%020d\n" % self.rts, 0)
        except OSError:
            self._log("system", "writing the time stamp failed")

    def run(self) -> None:
        self.rts = self._open_rts()
        if self._rts_fd < 0:
            return  # ktserver's slave ends here too
        try:
            self._replicate()
        finally:
            if self._rts_fd >= 0:
                os.close(self._rts_fd)
                self._rts_fd = -1

    def _replicate(self) -> None:
        self._write_rts()
        deferred = False
        while self._alive:
            with self._lock:
                host, port, wrts = self._host, self._port, self._wrts
                self._wrts = None
                self._hup = False
            if wrts is not None:
                self.rts = wrts
                self._write_rts()
            if host:
                if self._session(host, port):
                    deferred = False
                else:
                    if not deferred:
                        self._log("system", f"replication was deferred: host={host} port={port}")
                    deferred = True
            for _ in range(10):
                if not self._alive or self._hup:
                    break
                time.sleep(0.1)
        self._write_rts()

    def _session(self, host: str, port: int) -> bool:
        import socket

        from kt.protocol import kt_binary as kb

        try:
            sock = socket.create_connection((host, port), timeout=60)
        except OSError:
            return False
        self._sock = sock
        started = False
        buf = b""
        rivsum = 0.0
        try:
            sock.sendall(kb.encode_replication(self.rts, self.service.sid))
            while self._alive and not self._hup:
                parsed = kb.parse_replication_frame(buf, 0, started)
                if parsed is None:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    continue
                msg, end = parsed
                buf = buf[end:]
                if msg.kind == "ack":
                    started = True
                    self._log("system", f"replication started: host={host} port={port} rts={self.rts}")
                    continue
                if msg.kind == "nop":
                    sock.sendall(kb.REPLICATION_ACK)
                elif msg.message:
                    self.service.apply_replicated(msg.message)
                    rivsum += self._iv
                else:
                    rivsum += self._iv * self.DUMMYFREQ / 4
                while rivsum > 100 and self._alive and not self._hup:
                    time.sleep(0.1)
                    rivsum -= 100
                if msg.ts > self.rts:  # recorded with each record (ktserver: when the session ends),
                    self.rts = msg.ts  # so a killed slave replays at most the record it was applying
                    self._write_rts()
        except (OSError, ValueError) as exc:
            self._log("info", f"replication connection ended: {exc}")
        except Exception as exc:  # a protocol error from the master
            self._log("error", f"replication failed: {exc}")
        finally:
            self._sock = None
            sock.close()
            self._write_rts()
        if started:
            self._log("system", f"replication finished: host={host} port={port}")
        return started


_PROCEDURES: Dict[str, Tuple[str, Callable]] = {}
for _name, _kind in [
    ("void", ""), ("echo", ""), ("report", ""), ("play_script", ""), ("tune_replication", ""),
    ("ulog_list", ""), ("ulog_remove", ""),
    ("status", "db"), ("clear", "db"), ("synchronize", "db"), ("set", "db"), ("add", "db"),
    ("replace", "db"), ("append", "db"), ("increment", "db"), ("increment_double", "db"),
    ("cas", "db"), ("remove", "db"), ("get", "db"), ("check", "db"), ("seize", "db"),
    ("set_bulk", "db"), ("remove_bulk", "db"), ("get_bulk", "db"), ("vacuum", "db"),
    ("match_prefix", "db"), ("match_regex", "db"), ("match_similar", "db"),
    ("cur_jump", "cur"), ("cur_jump_back", "cur"), ("cur_step", "cur"), ("cur_step_back", "cur"),
    ("cur_set_value", "cur"), ("cur_remove", "cur"), ("cur_get_key", "cur"),
    ("cur_get_value", "cur"), ("cur_get", "cur"), ("cur_seize", "cur"),
]:
    _PROCEDURES[_name] = (_kind, getattr(KTService, "_do_" + _name))


def _engine_error_at(db: TimedDB, end: int) -> Exception:
    """The engine's error for a request that failed part-way; ``end``: where that request
    ends in the buffer, so the caller can answer it and go on (see ``bin_small``)."""
    err = db.db.error()
    err.end = end
    return err


RV_TO_STATUS = dict(_STATUS)

__all__ = ["KTService", "Session", "ReplicationSlave", "strmktime", "datestr_http", "RV_TO_STATUS"]

