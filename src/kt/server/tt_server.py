"""The bundled Tokyo Tyrant server: ttserver 1.1.41's binary protocol on Tokyo Cabinet.

``python -m kt.server tt [ttserver options] [dbname]`` (protocol.md §E, §F).  Requests are read
and replies written only through :mod:`kt.protocol.tt_binary`; storage is Tokyo Cabinet's
abstract database (:mod:`kt.server.engines.tc`), so every command, ``misc`` function and table
search has Tokyo Cabinet's own semantics.  Connections are served by the shared
thread-per-connection listener of :mod:`kt.server.common`.

Faithful to ttserver where a client can tell: command counters, ``stat`` fields and order,
``-mask``/``-unmask``, the 5-byte ``misc`` failure, ``putnr`` never answering, and closing
without a reply on an unknown command byte, a negative or oversized size, an over-long
``ext``/``misc`` name or a negative ``putshl`` width.  Without an update log (this server keeps
none) ``repl`` answers the server ID and closes, as ttserver does without ``-ulog``.
"""

from __future__ import annotations

import os
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
    Logger,
    OptionSpec,
    ThreadedServer,
    UsageError,
    ineffective_options,
    parse_options,
)
from kt.server.engines.tc import TokyoCabinetDB, library_version

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
    ) -> None:
        self.db = db
        self.logger = logger or Logger(kinds=LOG_ERROR, style="tt")
        self.ext = ext
        self.sid = sid
        self.mask = mask
        self.version = version
        self.libver = libver
        self.start_time = time.time()
        self.master: Optional[Dict[str, object]] = None
        self._counter_sets: List[List[int]] = []
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
            return sum(counts[seq] for counts in self._counter_sets)

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
        return tt.REPLY_OK if self._write("put", self.db.put, req, counts) else tt.REPLY_FAIL

    def _putkeep(self, req, counts, conn):
        return tt.REPLY_OK if self._write("putkeep", self.db.putkeep, req, counts) else tt.REPLY_FAIL

    def _putcat(self, req, counts, conn):
        return tt.REPLY_OK if self._write("putcat", self.db.putcat, req, counts) else tt.REPLY_FAIL

    def _putshl(self, req, counts, conn):
        width = req.width

        def shift(key: bytes, value: bytes) -> bool:
            return self.db.putshl(key, value, width)

        return tt.REPLY_OK if self._write("putshl", shift, req, counts) else tt.REPLY_FAIL

    def _putnr(self, req, counts, conn):
        self._write("putnr", self.db.put, req, counts)
        return None

    def _out(self, req, counts, conn):
        counts[SEQ["out"]] += 1
        if self._forbidden["out"]:
            return tt.REPLY_FAIL
        if self.db.out(req.key):
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
        total = None if self._forbidden["addint"] else self.db.addint(req.key, req.num)
        return tt.encode_addint_reply(total)

    def _adddouble(self, req, counts, conn):
        counts[SEQ["adddouble"]] += 1
        total = None if self._forbidden["adddouble"] else self.db.adddouble(req.key, req.num)
        return tt.encode_adddouble_reply(total)

    def _ext(self, req, counts, conn):
        counts[SEQ["ext"]] += 1
        if self._forbidden["ext"] or self.ext is None:
            return tt.encode_ext_reply(None)
        return tt.encode_ext_reply(self.ext.call(req.name, req.key, req.value, req.opts))

    # -- database commands -------------------------------------------------------------------
    def _sync(self, req, counts, conn):
        counts[SEQ["sync"]] += 1
        return tt.encode_status_reply(not self._forbidden["sync"] and self.db.sync())

    def _optimize(self, req, counts, conn):
        counts[SEQ["optimize"]] += 1
        params = req.params.split(b"\0", 1)[0]
        return tt.encode_status_reply(not self._forbidden["optimize"] and self.db.optimize(params))

    def _vanish(self, req, counts, conn):
        counts[SEQ["vanish"]] += 1
        return tt.encode_status_reply(not self._forbidden["vanish"] and self.db.vanish())

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
        # Replaying update logs needs the update-log reader, which this server does not have.
        self.logger.error("do_restore: operation failed (update logs are not supported)")
        return tt.REPLY_FAIL

    def _setmst(self, req, counts, conn):
        counts[SEQ["setmst"]] += 1
        if self._forbidden["setmst"]:
            return tt.REPLY_FAIL
        host = req.host.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.master = {"host": host, "port": req.port, "ts": req.ts, "opts": req.opts} if host else None
        if host:
            self.logger.error("do_setmst: replication is not supported; master recorded only")
        return tt.REPLY_OK

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
        return tt.encode_misc_reply(self.db.misc(req.name, req.args))

    def _repl(self, req, counts, conn):
        counts[SEQ["repl"]] += 1
        if self._forbidden["repl"]:
            self.logger.info("do_repl: forbidden")
            raise _Close()
        if req.sid == self.sid:
            self.logger.info("do_repl: rejected circular replication")
            raise _Close()
        # ttserver sends its ID, then fails to open the (absent) update log and closes.
        self.logger.error("do_repl: tculrdnew failed (no update log)")
        raise _Close(tt.encode_repl_sid(self.sid))

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
                pairs += [
                    ("mhost", self.master["host"]),
                    ("mport", self.master["port"]),
                    ("rts", 0),
                    ("delay", f"{now:.6f}"),
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

_MAX_TEXT_LINE = 1 << 16


def serve_connection(service: TTService, conn: Connection) -> None:
    """Read requests off one client until it leaves or sends what ttserver closes on."""
    handle = service.handle
    parse = tt.parse_request
    logger = service.logger
    while True:
        buf = conn.buf
        pos = 0
        out: List[bytes] = []
        close = False
        try:
            while True:
                parsed = parse(buf, pos)
                if parsed is None:
                    break
                req, pos = parsed
                reply = handle(req, conn)
                if reply is not None:
                    out.append(reply)
        except _Close as stop:
            if stop.reply:
                out.append(stop.reply)
            close = True
        except tt.RequestError as exc:
            if exc.kind != "not_binary" or _text_line_complete(buf, pos):
                # ttserver: unknown command byte, bad sizes -> close without a reply; a text
                # line (memcached/HTTP, not served here) -> nothing done, connection closed.
                logger.info(f"closing {conn.peer}: {exc}")
                close = True
            # else: ttserver blocks reading the rest of the text line; so do we.
        if pos:
            conn.consume(pos)
        if out and not conn.send(out[0] if len(out) == 1 else b"".join(out)):
            return
        if close or not conn.fill():
            return


def _text_line_complete(buf: bytearray, pos: int) -> bool:
    """Whether the text line starting at ``pos`` is complete (or too long to wait for)."""
    return buf.find(b"\n", pos) >= 0 or len(buf) - pos >= _MAX_TEXT_LINE


# ------------------------------------------------------------------------------ command line

OPTION_SPECS: Dict[str, OptionSpec] = {
    "-host": OptionSpec(True),
    "-port": OptionSpec(True),
    "-thnum": OptionSpec(True),
    "-tout": OptionSpec(True),
    "-dmn": OptionSpec(False, effective=False),
    "-pid": OptionSpec(True),
    "-kl": OptionSpec(False),
    "-log": OptionSpec(True),
    "-ld": OptionSpec(False),
    "-le": OptionSpec(False),
    "-ulog": OptionSpec(True, effective=False),
    "-ulim": OptionSpec(True, effective=False),
    "-uas": OptionSpec(False, effective=False),
    "-sid": OptionSpec(True),
    "-mhost": OptionSpec(True, effective=False),
    "-mport": OptionSpec(True, effective=False),
    "-rts": OptionSpec(True, effective=False),
    "-rcc": OptionSpec(False, effective=False),
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


def _atoi(text: str) -> int:
    """Tokyo Cabinet's ``tcatoi``: optional sign and leading digits; anything else is 0."""
    text = text.strip()
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits or "0")


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
    logger = Logger(str(log_path) if log_path else None, kinds=kinds, style="tt")
    for name in ineffective_options(options, OPTION_SPECS):
        logger.error(f"warning: option {name} is accepted but has no effect in this server")
    if extpc and "-ext" not in options:
        logger.error("warning: -extpc without -ext has no effect")
    pid_file = options.get("-pid")
    if options.get("-dmn") and not pid_file:
        pid_file = "ttserver.pid"
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
    ext = None
    version = TT_VERSION
    if options.get("-ext"):
        try:
            from kt.server.tt_lua import LuaPool

            ext = LuaPool(str(options["-ext"]), db, size=thnum, sid=sid, version=version)
        except (EngineError, OSError) as exc:
            logger.error(f"cannot load the extension: {exc}")
            db.close()
            sys.stderr.write(f"ttserver: {exc}\n")
            return 1
    service = TTService(db, logger=logger, ext=ext, sid=sid, mask=mask, version=version)
    logger.system(f"service started: {os.getpid()}")
    logger.system(f"database opened: {dbname} (Tokyo Cabinet {library_version()})")

    server = ThreadedServer(
        lambda conn: serve_connection(service, conn),
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

    stop_periodic = threading.Event()
    for name, period in periods:
        if ext is not None and period > 0:
            _start_periodic(ext, name.encode(), period, stop_periodic, logger)

    def close_all() -> None:
        if ext is not None:
            ext.close()
        if not db.close():
            raise EngineError("closing the database failed")
        logger.system("database closed")

    status = server.run(pid_file=str(pid_file) if pid_file else None, on_stop=stop_periodic.set,
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
