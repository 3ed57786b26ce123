"""Kyoto Tycoon's TimedDB on top of a Kyoto Cabinet database: records that expire.

Every value is stored as ``[xt:5 bytes big-endian][user value]`` (unless the database name has
``#ktopts=p``: raw values, no expiry), exactly like ktserver, so database files move freely
between ktserver and this server.  ``xt`` inputs follow ktserver: ``xt > 0`` seconds from now,
``xt < 0`` the absolute epoch ``-xt``, anything at or beyond ``XTMAX`` never expires.  Expired
records behave as absent for every operation but stay in the file until the incremental
expirer, ``vacuum``, ``remove`` or an overwrite purges them (so ``count``/``size``/``match_*``
still see them, as on the real server).

Failures raise ``KCError`` with ktserver's code and message (``7 no record``, ``6 record
duplication``, ``8 logical inconsistency`` / ``status conflict``); ``get``-like reads return
None for a miss.  Atomic read-modify-write runs inside Kyoto Cabinet visitors.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import time
from fractions import Fraction
from typing import Callable, Optional, Sequence, Union

from kt.errors import ProtocolError
from kt.protocol.kt_ulog import read_varnum
from kt.server.engines import kc
from kt.server.engines.kc import DUPREC, LOGIC, NOREC, KCError
from kt.server.posix_regex import PosixRegex

XTWIDTH = 5
XTMAX = (1 << 40) - 1
UINT32MAX = (1 << 32) - 1
INT64MAX = (1 << 63) - 1
INT64MIN = -(1 << 63)
DECUNIT = 1000000000000000

TPERSIST = 1 << 1
"""TimedDB option bit for ``ktopts=p`` (as stored in the file's opaque header)."""
MAGICDATA = 0xBB
OPAQUE_OFFSET = 48  # HashDB header offset of the 16-byte opaque region (TreeDB shares the file)

# update-log operation codes (kttimeddb.h: UpdateOperation)
USET, UREMOVE, UCLEAR = 0xA1, 0xA2, 0xA5

# incremental expirer tuning (kttimeddb.h)
XTSCUNIT = 256
XTREADFREQ = 8
XTUNIT = 8

_INT64 = struct.Struct(">q")
_FRACT = struct.Struct(">qq")

UpdateTrigger = Callable[[bytes], None]


class _Keep:
    pass


KEEP = _Keep()
"""A TimedDB visitor result: leave the record untouched."""
DROP = kc.REMOVE
"""A TimedDB visitor result: remove the record."""

VisitResult = Union[_Keep, object, tuple]
"""KEEP, DROP, or ``(new_value, xt_input)``."""


def modify_exptime(xt: int, now: int) -> int:
    """ktserver's input-xt rule: relative/absolute/never -> stored absolute time."""
    if xt < 0:
        xt = -max(xt, INT64MIN // 2)
    else:
        xt = min(xt, INT64MAX // 2) + now
    return min(xt, XTMAX)


def _encode_varnum(n: int) -> bytes:
    """KC's writevarnum: big-endian base-128, high bit = more bytes follow."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def _decode_varnum(buf: bytes, off: int) -> tuple[Optional[int], int]:
    """KC's readvarnum; ``(None, off)`` when the number runs past the buffer."""
    try:
        return read_varnum(buf, off)
    except ProtocolError:
        return None, off


def update_message(op: int, key: bytes = b"", stored: Optional[bytes] = None) -> bytes:
    """An update-log message body (without the sid/dbid prefix)."""
    if op == USET:
        return bytes((USET,)) + _encode_varnum(len(key)) + _encode_varnum(len(stored)) + key + stored
    if op == UREMOVE:
        return bytes((UREMOVE,)) + _encode_varnum(len(key)) + key
    return bytes((op,))


def _split_options(spec: str) -> tuple[int, int, int]:
    """``ktopts``/``ktcapcnt``/``ktcapsiz`` from a database name (TimedDB::open)."""
    opts, capcnt, capsiz = 0, -1, -1
    for elem in spec.split("#")[1:]:
        fields = elem.split("=")
        if len(fields) < 2:
            continue
        key, value = fields[0], fields[1]
        if key in ("ktcapcnt", "ktcapcount", "ktcap_count"):
            capcnt = atoix(value)
        elif key in ("ktcapsiz", "ktcapsize", "ktcap_size"):
            capsiz = atoix(value)
        elif key in ("ktopts", "ktoptions") and "p" in value:
            opts |= TPERSIST
    return opts, capcnt, capsiz


def atoi(text: Union[str, bytes]) -> int:
    """kc::atoi: leading spaces, sign, digits up to the first non-digit; garbage -> 0."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    s = text.lstrip(" \t\r\n\v\f")
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    n = 0
    for ch in s:
        if "0" <= ch <= "9":
            n = n * 10 + ord(ch) - 48
        else:
            break
    n *= sign
    # C int64 wrap-around like the unchecked C loop
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def c_number_start(data: bytes) -> tuple[int, int]:
    """Where KC's number readers start: ``(index after blanks and a sign, sign)``."""
    i, end = 0, len(data)
    while i < end and 0 < data[i] <= 0x20:
        i += 1
    if data[i:i + 1] in (b"-", b"+"):
        return i + 1, -1 if data[i:i + 1] == b"-" else 1
    return i, 1


def atoix(text: Union[str, bytes]) -> int:
    """``kc::atoix``: a decimal number (fraction allowed, in long double) times an optional
    k/m/g/t/p/e binary multiple, clamped to int64 and truncated."""
    data = text.encode("latin-1") if isinstance(text, str) else bytes(text)
    i, sign = c_number_start(data)
    end = len(data)
    num = Fraction(0)
    while i < end and 0x30 <= data[i] <= 0x39:
        num = long_double(num * 10 + (data[i] - 0x30))
        i += 1
    if data[i:i + 1] == b".":
        i += 1
        base = Fraction(10)
        while i < end and 0x30 <= data[i] <= 0x39:
            num = long_double(num + long_double(Fraction(data[i] - 0x30) / base))
            i += 1
            base = long_double(base * 10)
    num *= sign
    while i < end and 0 < data[i] <= 0x20:
        i += 1
    shift = {b"k": 10, b"m": 20, b"g": 30, b"t": 40, b"p": 50, b"e": 60}.get(data[i:i + 1].lower(), 0)
    num = long_double(num * (1 << shift))
    return max(INT64MIN, min(INT64MAX, int(num)))


def db_name_of(spec: str) -> str:
    """ktserver's DB name: the basename of the path part, without ``#options``."""
    path = spec.split("#", 1)[0]
    return path.rsplit("/", 1)[-1]


def _err(code: int, message: str) -> KCError:
    return KCError(code, message)


class TimedDB:
    """A Kyoto Cabinet database with Kyoto Tycoon's expiration layer (thread-safe)."""

    def __init__(
        self,
        spec: str,
        mode: int = kc.OWRITER | kc.OCREATE,
        update_trigger: Optional[UpdateTrigger] = None,
    ):
        self.spec = spec
        self.name = db_name_of(spec)
        self.opts, self.capcnt, self.capsiz = _split_options(spec)
        self.mode = mode
        self.update_trigger = update_trigger
        # An update trigger whose log queues records in C (kt_service._LogTrigger with a
        # compiled ``kt_server_bulk.LogQueue``): native batches then log from their visitors.
        speedups = kc.bulk_speedups()
        self.native_log = None
        if speedups is not None and isinstance(getattr(update_trigger, "queue", None), speedups.LogQueue):
            self.native_log = update_trigger
        # Whether a native batch (kt._speedups.kt_server_bulk) can go to the engine in C: not
        # with a capacity limit (its evictions are Python's), nor with an update log that
        # cannot take records from C.
        self.native = (speedups is not None and (update_trigger is None or self.native_log is not None)
                       and self.capcnt <= 0 and self.capsiz <= 0)
        # Reads log nothing and evict nothing (the sweep after them, ``_expire``, does that in
        # Python), so a native get_bulk suits every database.
        self.native_reads = kc.bulk_speedups() is not None
        self.db = kc.KCDB(spec, mode)
        self._sync_opaque()
        self.persistent = bool(self.opts & TPERSIST)
        self._xlock = threading.Lock()
        self._xsc = 0
        self._xcur: Optional[kc.KCCursor] = None
        # Whether a record with an expiration time (stored xt < XTMAX) may exist: set before
        # such a record is stored, assumed for a database opened with records in it.  Without
        # one the expirer has nothing to purge, so its sweep (a visitor per record) is skipped
        # and reads need not decode xt.
        self._xtrecs = self.db.count() > 0
        # Whether a key with a NUL byte may exist: KC's C search calls hand keys back as C
        # strings, so match_prefix uses them only while no stored key could be cut short.
        self._nul_keys = self._xtrecs
        if (mode & kc.OWRITER) and not self.persistent:
            self._xcur = self.db.cursor()
            if self.db.count() > 0:
                self._xcur.jump()

    # -- opening ------------------------------------------------------------------------------
    def _opaque_location(self) -> Optional[tuple[str, int]]:
        """Where KC keeps the 16-byte opaque region of this database, if it is a file DB."""
        realtype = self.db.status().get("realtype")
        if realtype in ("48", "49"):  # HashDB / TreeDB: in the file header
            return self.db.path(), OPAQUE_OFFSET
        if realtype in ("64", "65"):  # DirDB / ForestDB: a file in the directory
            return os.path.join(self.db.path(), "__opq__"), 0
        return None

    def _sync_opaque(self) -> None:
        """Read ktopts from the database's opaque region, or record it there when empty."""
        where = self._opaque_location()
        if where is None:
            return
        path, offset = where
        opaque = b""
        if os.path.isfile(path):
            with open(path, "rb") as f:
                f.seek(offset)
                opaque = f.read(2)
        if len(opaque) == 2 and opaque[0] == MAGICDATA:
            self.opts = opaque[1]
            return
        if (self.mode & kc.OWRITER) and self.db.count() < 1:
            # KC keeps the opaque region in memory and writes it back on close (a new
            # directory database creates the file only then), so patch the closed database
            # and reopen it.
            self.db.close()
            try:
                if os.path.isfile(path):
                    with open(path, "r+b") as f:
                        f.seek(offset)
                        f.write(bytes((MAGICDATA, self.opts & 0xFF)))
            finally:
                self.db = kc.KCDB(self.spec, self.mode & ~kc.OTRUNCATE)

    def close(self) -> None:
        with self._xlock:
            if self._xcur is not None:
                self._xcur.close()
                self._xcur = None
        self.db.close()

    # -- the timed visitor --------------------------------------------------------------------
    def _log(self, message: bytes) -> None:
        if self.update_trigger is not None:
            self.update_trigger(message)

    def _wrap(self, visitor, now: int, state: list):
        """Turn ``visitor(key, value|None, xt|None)`` into a KC visitor handling the xt header."""
        persistent = self.persistent
        logging = self.update_trigger is not None

        def store(key: bytes, result) -> object:
            if result is KEEP:
                return kc.NOP
            if result is DROP:
                if logging:
                    self._log(update_message(UREMOVE, key))
                return kc.REMOVE
            value, xt = result
            if persistent:
                stored = value
            else:
                stored = self._xt_head(xt, now) + value
            if logging:
                self._log(update_message(USET, key, stored))
            return stored

        def kc_visitor(key: bytes, raw: Optional[bytes]):
            if raw is None:
                return store(key, visitor(key, None, None))
            if persistent:
                return store(key, visitor(key, raw, INT64MAX))
            if len(raw) < XTWIDTH:
                return kc.NOP
            xt = int.from_bytes(raw[:XTWIDTH], "big")
            if now > xt:
                if state[0]:  # cursor scans skip expired records
                    state[1] = True
                    return kc.NOP
                return store(key, visitor(key, None, None))
            return store(key, visitor(key, raw[XTWIDTH:], xt))

        return kc_visitor

    def _xt_head(self, xt: int, now: int) -> bytes:
        """The 5-byte stored expiration time for input ``xt``; notes an expiring record."""
        stored = modify_exptime(xt, now)
        if stored < XTMAX:
            self._xtrecs = True
        return stored.to_bytes(8, "big")[3:]

    def _note_keys(self, keys: bytes) -> None:
        """Before storing under ``keys`` (one key, or several joined): note a NUL byte."""
        if b"\0" in keys:
            self._nul_keys = True

    def accept(self, key: bytes, visitor, writable: bool = True) -> None:
        """Visit ``key``: ``visitor(key, value, xt)`` (value None when absent or expired)."""
        if writable:
            self._note_keys(key)
        now = int(time.time())
        self.db.accept(key, self._wrap(visitor, now, [False, False]), writable)
        self._expire(XTSCUNIT if writable else XTSCUNIT // XTREADFREQ)

    def accept_bulk(self, keys: list[bytes], visitor, writable: bool = True) -> None:
        """``accept`` over several keys atomically."""
        if writable:
            self._note_keys(b"".join(keys))
        now = int(time.time())
        self.db.accept_bulk(keys, self._wrap(visitor, now, [False, False]), writable)
        self._expire(XTSCUNIT if writable else XTSCUNIT // XTREADFREQ)

    def recover(self, update: bytes) -> None:
        """Apply one update-log record from a replication master (``TimedDB::recover``)."""
        if not update:
            raise _err(kc.INVALID, "invalid message format")
        op, body = update[0], update[1:]
        if op == USET:
            ksiz, off = _decode_varnum(body, 0)
            vsiz, off = _decode_varnum(body, off)
            if ksiz is None or vsiz is None or len(body) - off != ksiz + vsiz:
                raise _err(kc.INVALID, "invalid message format")
            key, stored = body[off:off + ksiz], body[off + ksiz:]
            if len(stored) < XTWIDTH or int.from_bytes(stored[:XTWIDTH], "big") < XTMAX:
                self._xtrecs = True
            self._note_keys(key)
            self.db.set(key, stored)
            self._log(update_message(USET, key, stored))
        elif op == UREMOVE:
            ksiz, off = _decode_varnum(body, 0)
            if ksiz is None or len(body) - off != ksiz:
                raise _err(kc.INVALID, "invalid message format")
            key = body[off:]
            self.db.remove(key)
            self._log(update_message(UREMOVE, key))
        elif op == UCLEAR:
            if body:
                raise _err(kc.INVALID, "invalid message format")
            self.clear()
            return
        self._expire(XTSCUNIT)

    # -- the incremental expirer --------------------------------------------------------------
    def _expire(self, score: int) -> None:
        if self._xcur is None:
            return
        self._xsc += score
        if self._xsc < XTSCUNIT * XTUNIT:
            return
        if not self._xlock.acquire(blocking=False):
            return
        try:
            if self._xcur is None:
                return
            step = self._xsc // XTSCUNIT
            self._xsc -= step * XTSCUNIT
            if self._xtrecs or self.capcnt > 0 or self.capsiz > 0:
                self._expire_steps(step)
        finally:
            self._xlock.release()

    def _expire_steps(self, step: int) -> None:
        now = int(time.time())

        def purge(key: bytes, raw: Optional[bytes]):
            if raw is None or len(raw) < XTWIDTH:
                return kc.NOP
            if now <= int.from_bytes(raw[:XTWIDTH], "big"):
                return kc.NOP
            if self.update_trigger is not None:
                self._log(update_message(UREMOVE, key))
            return kc.REMOVE

        cur = self._xcur
        if self.native:  # the purge needs no Python, one C call for the steps
            if self._sweep(cur, step, now) < step:
                cur.jump()
                self._xsc = 0
            step = 0
        for _ in range(step):
            try:
                ok = cur.accept(purge, True, True)
            except KCError:
                ok = False
            if not ok:
                cur.jump()
                self._xsc = 0
                break
        if self.capcnt > 0:
            count = self.db.count()
            while count > self.capcnt:
                if not self._evict_one(cur):
                    break
                count -= 1
        if self.capsiz > 0 and self.db.size() > self.capsiz:
            for _ in range(step):
                if not self._evict_one(cur):
                    break

    def _sweep(self, cur: kc.KCCursor, steps: int, now: int) -> int:
        """``kt_server_bulk.sweep`` (its UREMOVEs logged, with an update log)."""
        return self._logged(kc.bulk_speedups().sweep, cur._h(), steps, now)

    def _logged(self, call, *args):
        """A native engine call; with an update log its visitors queue the log records
        (``native_log``), which are written out before this returns."""
        log = self.native_log
        if log is None:
            return call(*args)
        try:
            return call(*args, log.queue, log.prefix())
        finally:
            log.flush()

    def _evict_one(self, cur: kc.KCCursor) -> bool:
        key = cur.get_key()
        if key is None or not cur.remove():
            cur.jump()
            return False
        if self.update_trigger is not None:
            self._log(update_message(UREMOVE, key))
        return True

    def vacuum(self, step: int = 0) -> None:
        """Purge expired records: ``step`` records from the expirer's position, or all (<= 1).

        Like ``TimedDB::vacuum`` it only works through the expirer, which a read-only or
        ``ktopts=p`` database does not have.
        """
        if self._xcur is None:
            return
        with self._xlock:
            if step > 1:
                if self._xcur is not None:
                    self._expire_steps(step)
                return
            now = int(time.time())
            cur = self.db.cursor()
            try:
                if not cur.jump():
                    return

                def purge(key: bytes, raw: Optional[bytes]):
                    if raw is None or len(raw) < XTWIDTH:
                        return kc.NOP
                    if now <= int.from_bytes(raw[:XTWIDTH], "big"):
                        return kc.NOP
                    if self.update_trigger is not None:
                        self._log(update_message(UREMOVE, key))
                    return kc.REMOVE

                if self.native:
                    while self._sweep(cur, 4096, now) == 4096:
                        pass
                    return
                while cur.accept(purge, True, True):
                    pass
            finally:
                cur.close()

    # -- writes -------------------------------------------------------------------------------
    def set(self, key: bytes, value: bytes, xt: int = INT64MAX) -> None:
        if self.update_trigger is None:
            self._note_keys(key)
            now = int(time.time())
            if self.persistent:
                self.db.set(key, value)
            else:
                self.db.set(key, self._xt_head(xt, now) + value)
            self._expire(XTSCUNIT)
            return
        self.accept(key, lambda k, v, x: (value, xt))

    def add(self, key: bytes, value: bytes, xt: int = INT64MAX) -> None:
        ok = []

        def visit(k, v, x):
            if v is not None:
                return KEEP
            ok.append(True)
            return (value, xt)

        self.accept(key, visit)
        if not ok:
            raise _err(DUPREC, "record duplication")

    def replace(self, key: bytes, value: bytes, xt: int = INT64MAX) -> None:
        ok = []

        def visit(k, v, x):
            if v is None:
                return KEEP
            ok.append(True)
            return (value, xt)

        self.accept(key, visit)
        if not ok:
            raise _err(NOREC, "no record")

    def append(self, key: bytes, value: bytes, xt: int = INT64MAX) -> None:
        self.accept(key, lambda k, v, x: ((v or b"") + value, xt))

    def increment(self, key: bytes, num: int, orig: int = 0, xt: int = INT64MAX) -> int:
        """Add to an 8-byte big-endian integer; orig INT64MIN = must exist, INT64MAX = set.

        As in Kyoto Cabinet, INT64MIN is the failure value: a sum that wraps to it (INT64MAX + 1,
        or adding INT64MIN to 0) is stored, yet reported as a logical inconsistency.
        """
        box = [num]

        def visit(k, v, x):
            if v is None:
                if orig == INT64MIN:
                    box[0] = INT64MIN
                    return KEEP
                if orig != INT64MAX:
                    box[0] = _wrap64(box[0] + orig)
                return (_INT64.pack(box[0]), xt)
            if len(v) != 8:
                box[0] = INT64MIN
                return KEEP
            if orig == INT64MAX:
                onum = 0
            else:
                onum = _INT64.unpack(v)[0]
                if num == 0:
                    box[0] = onum
                    return KEEP
            box[0] = _wrap64(box[0] + onum)
            return (_INT64.pack(box[0]), xt)

        self.accept(key, visit, num != 0 or orig != INT64MIN)
        if box[0] == INT64MIN:
            raise _err(LOGIC, "logical inconsistency")
        return box[0]

    def increment_double(self, key: bytes, num: float, orig: float = 0.0, xt: int = INT64MAX) -> float:
        """Add to a 16-byte ``[integral][fraction*1e15]`` fixed-point value (KT's layout)."""
        box = [num]

        def visit(k, v, x):
            if v is None:
                if math.isnan(orig) or (math.isinf(orig) and orig < 0):
                    box[0] = math.nan
                    return KEEP
                n = num if math.isinf(orig) else num + orig
                if math.isnan(n):
                    linteg = lfract = INT64MIN
                elif math.isinf(n):
                    linteg, lfract = (INT64MAX if n > 0 else INT64MIN), 0
                else:
                    dfract, dinteg = math.modf(n)
                    linteg, lfract = c_int64(dinteg), _fraction_units(dfract)
                box[0] = n
                return (_FRACT.pack(linteg, lfract), xt)
            if len(v) != 16:
                box[0] = math.nan
                return KEEP
            setting = math.isinf(orig) and orig >= 0
            linteg, lfract = (0, 0) if setting else _FRACT.unpack(v)
            if lfract == INT64MIN and linteg == INT64MIN:
                box[0] = math.nan
                return KEEP
            if linteg == INT64MAX:
                box[0] = math.inf
                return KEEP
            if linteg == INT64MIN:
                box[0] = -math.inf
                return KEEP
            if num == 0.0 and not setting:
                box[0] = linteg + lfract / DECUNIT
                return KEEP
            dfract, dinteg = math.modf(num)
            if math.isnan(dinteg):
                linteg = lfract = INT64MIN
                box[0] = math.nan
            elif math.isinf(dinteg):
                linteg, lfract = (INT64MAX if dinteg > 0 else INT64MIN), 0
                box[0] = dinteg
            else:  # C: out-of-range casts give INT64MIN, sums wrap
                linteg = _wrap64(linteg + c_int64(dinteg))
                lfract = _wrap64(lfract + _fraction_units(dfract))
                if lfract >= DECUNIT:
                    linteg = _wrap64(linteg + 1)
                    lfract -= DECUNIT
                box[0] = linteg + lfract / DECUNIT
            return (_FRACT.pack(linteg, lfract), xt)

        self.accept(key, visit)
        if math.isnan(box[0]):
            raise _err(LOGIC, "logical inconsistency")
        return box[0]

    def cas(self, key: bytes, oval: Optional[bytes], nval: Optional[bytes], xt: int = INT64MAX) -> None:
        ok = []

        def visit(k, v, x):
            if v is None:
                if oval is not None:
                    return KEEP
                ok.append(True)
                return KEEP if nval is None else (nval, xt)
            if oval is None or v != oval:
                return KEEP
            ok.append(True)
            return DROP if nval is None else (nval, xt)

        self.accept(key, visit)
        if not ok:
            raise _err(LOGIC, "status conflict")

    def remove(self, key: bytes) -> None:
        """Remove; an expired record is purged too but reported as NOREC."""
        ok = []

        def visit(k, v, x):
            if v is not None:
                ok.append(True)
            return DROP

        self.accept(key, visit)
        if not ok:
            raise _err(NOREC, "no record")

    def seize(self, key: bytes) -> Optional[tuple[bytes, int]]:
        box = []

        def visit(k, v, x):
            if v is None:
                return KEEP
            box.append((v, x))
            return DROP

        self.accept(key, visit)
        return box[0] if box else None

    def clear(self) -> None:
        self.db.clear()
        self._log(update_message(UCLEAR))
        with self._xlock:
            self._xsc = 0
            # _xtrecs/_nul_keys stay as they are: a store racing with the clear may have set
            # them (before storing) just before a reset would have cleared them

    # -- reads --------------------------------------------------------------------------------
    def get(self, key: bytes) -> Optional[tuple[bytes, int]]:
        """``(value, absolute xt)`` (xt = XTMAX, or INT64MAX when persistent), None if absent."""
        raw = self.db.get(key)
        self._expire(XTSCUNIT // XTREADFREQ)
        if raw is None:
            return None
        if self.persistent:
            return raw, INT64MAX
        if not self._xtrecs:  # checked after the read: the flag is set before a store
            return raw[XTWIDTH:], XTMAX
        if len(raw) < XTWIDTH:
            return None
        xt = int.from_bytes(raw[:XTWIDTH], "big")
        if int(time.time()) > xt:
            return None
        return raw[XTWIDTH:], xt

    def check(self, key: bytes) -> Optional[tuple[int, int]]:
        """``(value size, xt)`` or None."""
        rec = self.get(key)
        return None if rec is None else (len(rec[0]), rec[1])

    # -- batches (binary set/remove/get_bulk): one engine call per batch ----------------------
    def set_many(self, records: Sequence[tuple[bytes, bytes, int]]) -> None:
        """``set`` each ``(key, value, xt)`` in order, as one engine batch.

        With an update log or a capacity limit each record goes through ``set`` (log messages
        and evictions follow every record, as on ktserver).  A failure raises KCError; the
        records before it stay stored.
        """
        if self.update_trigger is not None or self.capcnt > 0 or self.capsiz > 0:
            for key, value, xt in records:
                self.set(key, value, xt)
            return
        self._note_keys(b"".join([rec[0] for rec in records]))
        if self.persistent:
            pairs = [(key, value) for key, value, _ in records]
        else:
            now = int(time.time())
            heads: dict[int, bytes] = {}
            pairs = []
            append = pairs.append
            for key, value, xt in records:
                head = heads.get(xt)
                if head is None:
                    head = heads[xt] = self._xt_head(xt, now)
                append((key, head + value))
        try:
            self.db.set_many(pairs)
        finally:
            self._expire(XTSCUNIT * len(pairs))

    def remove_many(self, keys: Sequence[bytes]) -> int:
        """``remove`` each key in order; how many were there (expired ones count as absent)."""
        if self.update_trigger is not None or (self._xtrecs and not self.persistent):
            hits = 0
            for key in keys:
                try:
                    self.remove(key)
                    hits += 1
                except KCError as exc:
                    if exc.code != NOREC:
                        raise
            return hits
        try:
            return self.db.remove_many(keys)
        finally:
            self._expire(XTSCUNIT * len(keys))

    def get_many(self, keys: Sequence[bytes]) -> list[Optional[tuple[bytes, int]]]:
        """``get`` of each key, in order: ``(value, xt)`` or None."""
        raws = self.db.get_many(keys)
        self._expire(XTSCUNIT // XTREADFREQ * len(keys))
        if self.persistent:
            return [None if raw is None else (raw, INT64MAX) for raw in raws]
        if not self._xtrecs:  # checked after the reads: the flag is set before a store
            return [None if raw is None else (raw[XTWIDTH:], XTMAX) for raw in raws]
        now = int(time.time())
        out: list[Optional[tuple[bytes, int]]] = []
        for raw in raws:
            if raw is None or len(raw) < XTWIDTH:
                out.append(None)
                continue
            xt = int.from_bytes(raw[:XTWIDTH], "big")
            out.append(None if now > xt else (raw[XTWIDTH:], xt))
        return out

    # -- native batches (kt._speedups.kt_server_bulk): the same as *_many, in C -----------------
    def _note_batch(self, batch, start: int, stop: int, now: int) -> None:
        flags = batch.flags(start, stop, now)
        if flags & 1:  # FLAG_NUL_KEY
            self._nul_keys = True
        if flags & 2 and not self.persistent:  # FLAG_EXPIRING
            self._xtrecs = True

    def set_batch(self, batch, start: int, stop: int) -> None:
        """``set_many`` of a native batch's records ``start:stop`` (see ``native``)."""
        now = int(time.time())
        self._note_batch(batch, start, stop, now)
        try:
            failed = self._logged(batch.set, self.db._handle(), start, stop, self.persistent, now)
            if failed >= 0:
                err = self.db.error()
                err.applied = failed - start
                raise err
        finally:
            self._expire(XTSCUNIT * (stop - start))

    def remove_batch(self, batch, start: int, stop: int) -> int:
        """``remove_many`` of a native batch's keys ``start:stop``: how many were live."""
        now = int(time.time())
        if self.native_log is not None or (self._xtrecs and not self.persistent):  # as remove_many
            self._note_batch(batch, start, stop, now)
        try:
            hits = self._logged(batch.remove, self.db._handle(), start, stop, self.persistent, now)
            if hits < 0:
                raise self.db.error()
            return hits
        finally:
            self._expire(XTSCUNIT * (stop - start))

    def get_batch(self, batch, start: int, stop: int, whole: bool = False) -> tuple[int, bytes]:
        """``get_many`` of a native batch's keys ``start:stop`` as ``(hits, reply records)``:
        the get_bulk reply's records of the live keys, in order (``whole``: the whole reply)."""
        found = batch.get(self.db._handle(), start, stop, self.persistent, int(time.time()), whole)
        if found is None:
            raise self.db.error()
        self._expire(XTSCUNIT // XTREADFREQ * (stop - start))
        return found

    # -- bulk ---------------------------------------------------------------------------------
    def set_bulk(self, records: dict[bytes, bytes], xt: int = INT64MAX, atomic: bool = False) -> int:
        if atomic and records:
            self.accept_bulk(list(records), lambda k, v, x: (records[k], xt) if k in records else KEEP)
            return len(records)
        for key, value in records.items():
            self.set(key, value, xt)
        return len(records)

    def remove_bulk(self, keys, atomic: bool = False) -> int:
        if atomic and keys:
            hits = []

            def visit(k, v, x):
                if v is not None:
                    hits.append(k)
                return DROP

            self.accept_bulk(list(keys), visit)
            return len(hits)
        return self.remove_many(list(keys))

    def get_bulk(self, keys, atomic: bool = False) -> dict[bytes, bytes]:
        out = {}
        if atomic and keys:

            def visit(k, v, x):
                if v is not None:
                    out[k] = v
                return KEEP

            self.accept_bulk(list(keys), visit, False)
            return out
        for key in keys:
            rec = self.get(key)
            if rec is not None:
                out[key] = rec[0]
        return out

    # -- information --------------------------------------------------------------------------
    def count(self) -> int:
        return self.db.count()

    def size(self) -> int:
        return self.db.size()

    def path(self) -> str:
        return self.db.path()

    def status(self) -> dict[str, str]:
        st = self.db.status()
        st["ktopts"] = str(self.opts)
        st["ktcapcnt"] = str(self.capcnt)
        st["ktcapsiz"] = str(self.capsiz)
        return st

    def synchronize(self, hard: bool = False) -> None:
        self.db.synchronize(hard)

    def _lexical(self) -> bool:
        """Whether the cursor order is lexical (trees with the default comparator)."""
        lexical = getattr(self, "_lexical_cache", None)
        if lexical is None:
            status = self.db.status()
            realtype = status.get("realtype")
            tree = realtype in ("33", "49", "65")
            lexical = realtype == "17" or (tree and status.get("rcomp") == "lexical")
            self._lexical_cache = lexical
        return lexical

    def match_prefix(self, prefix: bytes, max: int = -1) -> list[bytes]:
        """Keys starting with ``prefix`` like ``PolyDB::match_prefix`` (binary-safe, KC's order)."""
        if not self._nul_keys and b"\0" not in prefix:
            return self.db.match_prefix(prefix, max)  # KC's own scan, as ktserver's
        if not self._lexical():
            return self._scan_keys(lambda key: key.startswith(prefix), max)
        if max < 0:
            max = INT64MAX
        out: list[bytes] = []
        cur = self.db.cursor()
        try:
            if not cur.jump(prefix):
                return out
            while len(out) < max:
                key = cur.get_key(True)
                if key is None or not key.startswith(prefix):
                    break
                out.append(key)
        finally:
            cur.close()
        return out

    def _scan_keys(self, wanted: Callable[[bytes], bool], max: int) -> list[bytes]:
        """Keys in cursor order for which ``wanted`` holds, at most ``max`` (< 0: all)."""
        if max < 0:
            max = INT64MAX
        out: list[bytes] = []
        cur = self.db.cursor()
        try:
            if not cur.jump():
                return out
            while len(out) < max:
                key = cur.get_key(True)
                if key is None:
                    break
                if wanted(key):
                    out.append(key)
        finally:
            cur.close()
        return out

    def match_regex(self, regex: bytes, max: int = -1) -> list[bytes]:
        """Keys in which the POSIX ERE occurs (``PolyDB::match_regex``): libc's regex in the C
        locale, pattern and keys read as C strings, the whole keys returned."""
        try:
            rx = PosixRegex(regex, match_only=True)
        except ValueError:
            raise _err(LOGIC, "compilation failed") from None
        return self._scan_keys(rx.search, max)

    def match_similar(self, origin: bytes, range: int = 1, utf: bool = False, max: int = -1) -> list[bytes]:
        """Keys within Levenshtein distance ``range``, nearest first (``PolyDB::match_similar``).

        ``range`` is a ``size_t`` there: a negative one (reachable from Lua) compares as huge and
        admits every key, those beyond the length test with distance UINT32MAX.
        """
        if max < 0:
            max = INT64MAX
        if max == 0:
            return []
        urange = range & 0xFFFFFFFFFFFFFFFF  # the size_t view of the same number
        o = utf_to_ucs(origin.split(b"\0", 1)[0]) if utf else origin  # a C string there
        found = []
        cur = self.db.cursor()
        try:
            if not cur.jump():
                return []
            order = 0
            while True:
                key = cur.get_key(True)
                if key is None:
                    break
                k = utf_to_ucs(key) if utf else key
                dist = UINT32MAX if abs(len(o) - len(k)) > range else levenshtein(o, k)
                if dist <= urange:
                    found.append((dist, key, order))
                order += 1
        finally:
            cur.close()
        found.sort()
        return [key for _, key, _ in found[:max]]

    def cursor(self) -> TimedCursor:
        return TimedCursor(self)


def utf_to_ucs(data: bytes) -> list[int]:
    """``kc::strutftoucs(buf, size, ...)``: UTF-8 to code points the way Kyoto Cabinet reads it.

    A lead byte below 0xE0 (continuation bytes too) starts a 2-byte sequence, 0xE0.. 3,
    0xF0.. 4, 0xF8.. 5, 0xFC.. 6; a sequence cut by a NUL (or the end) is skipped byte by byte,
    an overlong one is dropped whole, and 0xFE/0xFF are dropped.
    """
    buf = data + b"\0"  # KC's buffers are NUL-terminated; the decoder peeks at it
    end = len(data)
    out: list[int] = []
    i = 0
    while i < end:
        c = buf[i]
        if c < 0x80:
            out.append(c)
        elif c < 0xFE:
            n, mask, least = (
                (1, 0x1F, 0x80) if c < 0xE0 else (2, 0x0F, 0x800) if c < 0xF0
                else (3, 0x07, 0x10000) if c < 0xF8 else (4, 0x03, 0x200000) if c < 0xFC
                else (5, 0x01, 0x4000000)
            )
            if all(buf[i + j] for j in range(1, n + 1)):
                cp = c & mask
                for j in range(1, n + 1):
                    cp = (cp << 6) | (buf[i + j] & 0x3F)
                if cp >= least:
                    out.append(cp)
                i += n
        i += 1
    return out


def levenshtein(a, b) -> int:
    """Edit distance between two sequences (bytes, or str for UTF-8 mode)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _wrap64(n: int) -> int:
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def long_double(exact: Fraction) -> Fraction:
    """``exact`` rounded as an x87 ``long double`` holds it (64-bit mantissa, half to even)."""
    if exact == 0:
        return exact
    magnitude = abs(exact)
    shift = 63 - (magnitude.numerator.bit_length() - magnitude.denominator.bit_length())
    while True:  # the bit-length estimate of the exponent can be off by one either way
        mantissa = round(magnitude * Fraction(2) ** shift)
        if mantissa.bit_length() > 64:
            shift -= 1
        elif mantissa.bit_length() < 64:
            shift += 1
        else:
            break
    rounded = Fraction(mantissa) / Fraction(2) ** shift
    return -rounded if exact < 0 else rounded


def _fraction_units(dfract: float) -> int:
    """``(int64_t)(dfract * DECUNIT)`` with KC's ``long double``: the exact product rounded to
    64 significant bits, then truncated.  A double product would round 1e-6 * 1e15 up to 1e9,
    where ktserver stores 999999999."""
    return int(long_double(Fraction(dfract) * DECUNIT))


def c_unsigned(v, size: int) -> int:
    """C's conversion of a double to an unsigned integer of ``size`` bytes, as gcc does it on
    x86-64: 1 and 2 bytes through int32, 4 through int64, 8 through int64 with a 2^63 bias;
    values it cannot represent (inf, NaN, too large) become what the instructions give."""
    if size == 8:
        if isinstance(v, float) and v >= 9.223372036854775808e18:  # NaN takes the other path
            return (c_int64(v - 9.223372036854775808e18) ^ (1 << 63)) & 0xFFFFFFFFFFFFFFFF
        return c_int64(v) & 0xFFFFFFFFFFFFFFFF
    if size == 4:
        return c_int64(v) & 0xFFFFFFFF
    n = c_int64(v)
    if not -(1 << 31) <= n < (1 << 31):
        n = -(1 << 31)
    return n & ((1 << (8 * size)) - 1)


def c_int64(v) -> int:
    """C's ``(int64_t)`` conversion of a number on x86-64: truncation toward zero; NaN and
    out-of-range values give INT64MIN (the "integer indefinite" value)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v if INT64MIN <= v <= INT64MAX else INT64MIN
    if isinstance(v, float):
        if math.isnan(v) or not -9.223372036854775808e18 <= v < 9.223372036854775808e18:
            return INT64MIN
        return int(v)
    return 0


class TimedCursor:
    """A cursor that transparently skips expired records (TimedDB::Cursor)."""

    def __init__(self, tdb: TimedDB):
        self.tdb = tdb
        self.cur = tdb.db.cursor()
        self.back = False

    def close(self) -> None:
        self.cur.close()

    def jump(self, key: Optional[bytes] = None) -> bool:
        if not self.cur.jump(key):
            return False
        self.back = False
        return True

    def jump_back(self, key: Optional[bytes] = None) -> bool:
        if not self.cur.jump_back(key):
            return False
        self.back = True
        return True

    def step(self) -> bool:
        if not self.cur.step():
            return False
        self.back = False
        return True

    def step_back(self) -> bool:
        if not self.cur.step_back():
            return False
        self.back = True
        return True

    def accept(self, visitor, writable: bool = True, step: bool = False) -> bool:
        """Visit the current live record (``visitor(key, value, xt)``); False when none."""
        tdb = self.tdb
        now = int(time.time())
        ok = True
        while True:
            state = [True, False]
            if not self.cur.accept(tdb._wrap(visitor, now, state), writable, step):
                ok = False
                break
            if state[1]:
                if not step and not (self.cur.step_back() if self.back else self.cur.step()):
                    ok = False
                    break
                continue
            break
        tdb._expire(XTSCUNIT if writable else XTSCUNIT // XTREADFREQ)
        return ok

    def _read(self, step: bool, remove: bool = False) -> Optional[tuple[bytes, bytes, int]]:
        box = []

        def visit(k, v, x):
            box.append((k, v, x))
            return DROP if remove else KEEP

        if not self.accept(visit, remove, step):
            return None
        return box[0] if box else None

    def get(self, step: bool = False) -> Optional[tuple[bytes, bytes, int]]:
        """``(key, value, xt)`` of the current live record, or None."""
        return self._read(step)

    def seize(self) -> Optional[tuple[bytes, bytes, int]]:
        return self._read(False, remove=True)

    def set_value(self, value: bytes, xt: int = INT64MAX, step: bool = False) -> bool:
        ok = []

        def visit(k, v, x):
            ok.append(True)
            return (value, xt)

        return self.accept(visit, True, step) and bool(ok)

    def remove(self) -> bool:
        ok = []

        def visit(k, v, x):
            ok.append(True)
            return DROP

        return self.accept(visit, True, False) and bool(ok)


__all__ = [
    "TimedDB",
    "TimedCursor",
    "KEEP",
    "DROP",
    "XTMAX",
    "INT64MAX",
    "INT64MIN",
    "modify_exptime",
    "update_message",
    "atoi",
    "atoix",
    "db_name_of",
    "USET",
    "UREMOVE",
    "UCLEAR",
]
