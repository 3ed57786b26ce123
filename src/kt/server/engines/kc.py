"""Kyoto Cabinet through its C API (``kclangc.h`` in ``libkyotocabinet.so.16``), via ctypes.

Only what the Kyoto Tycoon server needs: a polymorphic database (``KCDB``) opened by the same
names ktserver accepts (``*`` ``%`` ``:`` ``-`` ``+``, ``.kch`` ``.kct`` ``.kcd`` ``.kcf`` with
``#name=value`` tuning, parsed by KC itself), record operations, visitors for atomic
read-modify-write, cursors, and the match_* searches.  Every buffer KC allocates is freed with
``kcfree``.  A ``KCDB`` is thread-safe; a ``KCCursor`` belongs to one thread at a time.
"""

from __future__ import annotations

import array
import ctypes
import itertools
import threading
from ctypes import POINTER, c_char_p, c_double, c_int32, c_int64, c_size_t, c_uint32, c_void_p
from typing import Callable, Iterable, Optional, Sequence, Union

from kt.errors import EngineError

LIBRARY_NAME = "libkyotocabinet.so.16"
DEBIAN_PACKAGE = "libkyotocabinet16v5"

# Open modes (kclangc.h: KCOREADER ...).
OREADER = 1 << 0
OWRITER = 1 << 1
OCREATE = 1 << 2
OTRUNCATE = 1 << 3
OAUTOTRAN = 1 << 4
OAUTOSYNC = 1 << 5
ONOLOCK = 1 << 6
OTRYLOCK = 1 << 7
ONOREPAIR = 1 << 8

# Error codes (kcdb.h: BasicDB::Error::Code).
SUCCESS, NOIMPL, INVALID, NOREPOS, NOPERM, BROKEN, DUPREC, NOREC, LOGIC, SYSTEM = range(10)
MISC = 15

ERROR_NAMES = {
    SUCCESS: "success",
    NOIMPL: "not implemented",
    INVALID: "invalid operation",
    NOREPOS: "no repository",
    NOPERM: "no permission",
    BROKEN: "broken file",
    DUPREC: "record duplication",
    NOREC: "no record",
    LOGIC: "logical inconsistency",
    SYSTEM: "system error",
    MISC: "miscellaneous error",
}


class KCError(EngineError):
    """A Kyoto Cabinet failure: ``code`` (KC error code), ``name`` and KC's ``message``."""

    def __init__(self, code: int, message: str):
        self.code = code
        self.name = ERROR_NAMES.get(code, "miscellaneous error")
        self.message = message
        super().__init__(f"{code}: {self.name}: {message}")


class _Visit:
    """Sentinels a visitor returns: keep the record as is, or remove it."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


NOP = _Visit("NOP")
REMOVE = _Visit("REMOVE")

VisitResult = Union[bytes, _Visit]
Visitor = Callable[[bytes, Optional[bytes]], VisitResult]
"""``visitor(key, value)``: ``value`` is None for a missing record; returns new bytes, NOP or REMOVE."""

_FULLPROC = ctypes.CFUNCTYPE(
    c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, POINTER(c_size_t), c_void_p
)
_EMPTYPROC = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_size_t, POINTER(c_size_t), c_void_p)



class _KCSTR(ctypes.Structure):
    _fields_ = [("buf", c_char_p), ("size", c_size_t)]


_lib = None
_lib_lock = threading.Lock()


def _declare(lib: ctypes.CDLL) -> None:
    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    vp, sz, i32, i64 = c_void_p, c_size_t, c_int32, c_int64
    psz = POINTER(c_size_t)
    fn("kcfree", None, vp)
    fn("kcecodename", c_char_p, i32)
    fn("kcdbnew", vp)
    fn("kcdbdel", None, vp)
    fn("kcdbopen", i32, vp, c_char_p, c_uint32)
    fn("kcdbclose", i32, vp)
    fn("kcdbecode", i32, vp)
    fn("kcdbemsg", c_char_p, vp)
    fn("kcdbaccept", i32, vp, c_char_p, sz, _FULLPROC, _EMPTYPROC, vp, i32)
    fn("kcdbacceptbulk", i32, vp, POINTER(_KCSTR), sz, _FULLPROC, _EMPTYPROC, vp, i32)
    fn("kcdbsetbulk", i64, vp, vp, sz, i32)  # the arrays are built by _str_array
    fn("kcdbremovebulk", i64, vp, vp, sz, i32)
    fn("kcdbset", i32, vp, c_char_p, sz, c_char_p, sz)
    fn("kcdbadd", i32, vp, c_char_p, sz, c_char_p, sz)
    fn("kcdbreplace", i32, vp, c_char_p, sz, c_char_p, sz)
    fn("kcdbappend", i32, vp, c_char_p, sz, c_char_p, sz)
    fn("kcdbincrint", i64, vp, c_char_p, sz, i64, i64)
    fn("kcdbincrdouble", c_double, vp, c_char_p, sz, c_double, c_double)
    fn("kcdbremove", i32, vp, c_char_p, sz)
    fn("kcdbget", vp, vp, c_char_p, sz, psz)
    fn("kcdbgetbuf", i32, vp, c_char_p, sz, c_void_p, sz)
    fn("kcdbcheck", i32, vp, c_char_p, sz)
    fn("kcdbseize", vp, vp, c_char_p, sz, psz)
    fn("kcdbclear", i32, vp)
    fn("kcdbsync", i32, vp, i32, vp, vp)
    fn("kcdbcount", i64, vp)
    fn("kcdbsize", i64, vp)
    fn("kcdbpath", vp, vp)
    fn("kcdbstatus", vp, vp)
    fn("kcdbmatchprefix", i64, vp, c_char_p, POINTER(c_void_p), sz)
    fn("kcdbmatchregex", i64, vp, c_char_p, POINTER(c_void_p), sz)
    fn("kcdbmatchsimilar", i64, vp, c_char_p, sz, i32, POINTER(c_void_p), sz)
    fn("kcdbbegintran", i32, vp, i32)
    fn("kcdbendtran", i32, vp, i32)
    fn("kcdbcursor", vp, vp)
    fn("kccurdel", None, vp)
    fn("kccuraccept", i32, vp, _FULLPROC, vp, i32, i32)
    fn("kccursetvalue", i32, vp, c_char_p, sz, i32)
    fn("kccurremove", i32, vp)
    fn("kccurgetkey", vp, vp, psz, i32)
    fn("kccurgetvalue", vp, vp, psz, i32)
    fn("kccurget", vp, vp, psz, POINTER(c_void_p), psz, i32)
    fn("kccurseize", vp, vp, psz, POINTER(c_void_p), psz)
    fn("kccurjump", i32, vp)
    fn("kccurjumpkey", i32, vp, c_char_p, sz)
    fn("kccurjumpback", i32, vp)
    fn("kccurjumpbackkey", i32, vp, c_char_p, sz)
    fn("kccurstep", i32, vp)
    fn("kccurstepback", i32, vp)
    fn("kccurecode", i32, vp)
    fn("kccuremsg", c_char_p, vp)


def _declare_gil_holding(lib: ctypes.PyDLL) -> None:
    """Calls made without releasing the GIL, saving a GIL hand-off per call.

    ``kcfree`` (malloc's own locks are never held across a Python callback) and the per-thread
    error getter are always safe.  The record calls below take database locks, and a visitor
    callback holds a record lock while it waits for the GIL; so they run only under the
    database's ``_visit_lock`` (``set_many``/``get_many``), which every visitor call also
    holds: then no callback can be waiting for the GIL while a batch waits for a KC lock.
    Under concurrency this is what keeps a 1000-record bulk request from handing the GIL to
    another thread 1000 times.
    """
    lib.kcfree.restype = None
    lib.kcfree.argtypes = [c_void_p]
    # The batch calls have no argtypes: converting arguments through argtypes costs more than
    # the call itself.  Callers pass the handle as a c_void_p, keys/values as bytes and sizes
    # as small ints (< 2**31: libffi widens a C int argument to the register, so a size_t
    # parameter receives the same value).
    for name in ("kcdbecode", "kcdbset", "kcdbgetbuf"):
        getattr(lib, name).restype = c_int32


_pylib = None


def library() -> ctypes.CDLL:
    """Load ``libkyotocabinet.so.16`` once; a clear EngineError names the package when missing."""
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                try:
                    lib = ctypes.CDLL(LIBRARY_NAME)
                except OSError as exc:
                    raise EngineError(
                        f"cannot load the Kyoto Cabinet library {LIBRARY_NAME} ({exc}); "
                        f"install the Debian/Ubuntu package {DEBIAN_PACKAGE} "
                        f"(apt-get install {DEBIAN_PACKAGE})"
                    ) from exc
                _declare(lib)
                global _pylib
                _pylib = ctypes.PyDLL(LIBRARY_NAME)
                _declare_gil_holding(_pylib)
                _lib = lib
    return _lib


_bulk_module = None
_bulk_loaded = False


def bulk_speedups():
    """``kt._speedups.kt_server_bulk`` bound to this library's functions, or None when it is
    not built or ``KT_PURE_PYTHON`` is set (callers then take the pure-Python path)."""
    global _bulk_module, _bulk_loaded
    if not _bulk_loaded:
        from kt import _native

        module = _native.load("kt_server_bulk")
        if module is not None:
            lib = library()
            if not _VISNOP:
                _init_sentinels()

            def address(name: str) -> int:
                return ctypes.cast(getattr(lib, name), c_void_p).value

            module.bind(address("kcdbset"), address("kcdbgetbuf"), address("kcdbaccept"),
                        address("kcdbecode"), address("kccuraccept"), _VISNOP or 0, _VISREMOVE or 0)
        _bulk_module, _bulk_loaded = module, True
    return _bulk_module


def version() -> str:
    """KC's version string (``KCVERSION``), e.g. ``1.2.76``."""
    return c_char_p.in_dll(library(), "KCVERSION").value.decode()


def _take(lib: ctypes.CDLL, ptr: Optional[int], size: int) -> bytes:
    """Copy a KC-allocated region and free it."""
    try:
        return ctypes.string_at(ptr, size)
    finally:
        _pylib.kcfree(ptr)


# --- visitor trampolines ---------------------------------------------------------------------
# One pair of C callbacks for the whole process; the Python visitor of the running accept call
# lives in thread-local state (KC calls the visitor synchronously in the calling thread).

_tls = threading.local()
_GETBUF_SIZE = 16384


def _visit(key: bytes, value: Optional[bytes], sp) -> int:
    state = _tls.state
    try:
        result = state[0](key, value)
    except BaseException as exc:  # never let an exception unwind through C
        state[2] = exc
        return _VISNOP
    if result is NOP:
        return _VISNOP
    if result is REMOVE:
        return _VISREMOVE
    buf = ctypes.create_string_buffer(result, len(result) or 1)
    state[1] = buf  # keep it alive until KC has copied it
    sp[0] = len(result)
    return ctypes.addressof(buf)


def _full(kbuf, ksiz, vbuf, vsiz, sp, opq):
    return _visit(ctypes.string_at(kbuf, ksiz), ctypes.string_at(vbuf, vsiz), sp)


def _empty(kbuf, ksiz, sp, opq):
    return _visit(ctypes.string_at(kbuf, ksiz), None, sp)


_FULL_CB = _FULLPROC(_full)
_EMPTY_CB = _EMPTYPROC(_empty)
_VISNOP = 0
_VISREMOVE = 0


def _init_sentinels() -> None:
    global _VISNOP, _VISREMOVE
    lib = library()
    _VISNOP = c_void_p.in_dll(lib, "KCVISNOP").value
    _VISREMOVE = c_void_p.in_dll(lib, "KCVISREMOVE").value


def _run_visitor(call: Callable[[], int], visitor: Visitor) -> int:
    prev = getattr(_tls, "state", None)
    state = [visitor, None, None]
    _tls.state = state
    try:
        ok = call()
    finally:
        _tls.state = prev
    if state[2] is not None:
        raise state[2]
    return ok


def _str_array(items: Iterable[bytes], count: int) -> tuple[bytes, array.array]:
    """``count`` KCSTRs ({pointer, size}) over ``items``, built without a Python step per item:
    the items are joined into one buffer (returned: keep it alive during the call) and the
    pointers are its address plus the running sum of the sizes."""
    parts = list(items)
    blob = b"".join(parts)
    base = ctypes.cast(c_char_p(blob), c_void_p).value or 0
    sizes = list(map(len, parts))
    words = [0] * (2 * count)
    words[0::2] = itertools.accumulate(sizes[:-1], initial=base)
    words[1::2] = sizes
    return blob, array.array("Q", words)


class KCDB:
    """One open Kyoto Cabinet polymorphic database."""

    def __init__(self, name: str, mode: int = OWRITER | OCREATE):
        lib = library()
        if not _VISNOP:
            _init_sentinels()
        self._lib = lib
        self.name = name
        self._db = None
        self._life = threading.Lock()  # orders cursor deletion against close
        # held by every call that may call back into Python and by every GIL-holding batch
        # (see _declare_gil_holding); re-entrant for a visitor that calls the database
        self._visit_lock = threading.RLock()
        handle = lib.kcdbnew()
        if not handle:
            raise EngineError("kcdbnew failed (out of memory)")
        if not lib.kcdbopen(handle, name.encode(), mode):
            err = KCError(lib.kcdbecode(handle), lib.kcdbemsg(handle).decode(errors="replace"))
            lib.kcdbdel(handle)
            raise EngineError(f"cannot open database {name!r}: {err}") from err
        self._db = handle

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close (syncing file databases); idempotent.

        The small ``KCDB`` object itself is never freed: a thread that fetched the handle just
        before the close then gets KC's "not opened" error instead of touching freed memory.
        """
        with self._life:
            handle, self._db = self._db, None
            if handle and not self._lib.kcdbclose(handle):
                raise self._error_of(handle)

    @property
    def closed(self) -> bool:
        return not self._db

    def _handle(self) -> int:
        if not self._db:
            raise EngineError(f"database {self.name!r} is closed")
        return self._db

    def _error_of(self, handle: int) -> KCError:
        return KCError(self._lib.kcdbecode(handle), self._lib.kcdbemsg(handle).decode(errors="replace"))

    def error(self) -> KCError:
        """The last error of this thread on this database."""
        return self._error_of(self._handle())

    def _check(self, ok: int) -> None:
        if not ok:
            raise self.error()

    # -- records ------------------------------------------------------------------------------
    def accept(self, key: bytes, visitor: Visitor, writable: bool = True) -> None:
        """Run ``visitor(key, value_or_None)`` under the record lock (atomic read-modify-write)."""
        h = self._handle()
        with self._visit_lock:
            ok = _run_visitor(
                lambda: self._lib.kcdbaccept(h, key, len(key), _FULL_CB, _EMPTY_CB, None, int(writable)),
                visitor,
            )
        self._check(ok)

    def accept_bulk(self, keys: list[bytes], visitor: Visitor, writable: bool = True) -> None:
        """Visit several records atomically (all their locks are held during the visits)."""
        h = self._handle()
        arr = (_KCSTR * len(keys))(*[(k, len(k)) for k in keys])
        with self._visit_lock:
            ok = _run_visitor(
                lambda: self._lib.kcdbacceptbulk(h, arr, len(keys), _FULL_CB, _EMPTY_CB, None, int(writable)),
                visitor,
            )
        self._check(ok)

    def set(self, key: bytes, value: bytes) -> None:
        self._check(self._lib.kcdbset(self._handle(), key, len(key), value, len(value)))

    def add(self, key: bytes, value: bytes) -> bool:
        """False when the key exists (DUPREC); other failures raise."""
        if self._lib.kcdbadd(self._handle(), key, len(key), value, len(value)):
            return True
        return self._miss(DUPREC)

    def replace(self, key: bytes, value: bytes) -> bool:
        if self._lib.kcdbreplace(self._handle(), key, len(key), value, len(value)):
            return True
        return self._miss(NOREC)

    def append(self, key: bytes, value: bytes) -> None:
        self._check(self._lib.kcdbappend(self._handle(), key, len(key), value, len(value)))

    def _miss(self, expected: int) -> bool:
        err = self.error()
        if err.code == expected:
            return False
        raise err

    def get(self, key: bytes) -> Optional[bytes]:
        # One C call into a per-thread buffer for the common small value; kcdbget for big ones.
        buf = getattr(_tls, "getbuf", None)
        if buf is None:
            buf = _tls.getbuf = ctypes.create_string_buffer(_GETBUF_SIZE)
        n = self._lib.kcdbgetbuf(self._handle(), key, len(key), buf, _GETBUF_SIZE)
        if n < 0:
            return self._miss(NOREC) or None
        if n <= _GETBUF_SIZE:
            return buf.raw[:n] if n > 512 else ctypes.string_at(buf, n)
        size = c_size_t()
        ptr = self._lib.kcdbget(self._handle(), key, len(key), ctypes.byref(size))
        if not ptr:
            return self._miss(NOREC) or None
        return _take(self._lib, ptr, size.value)

    def check(self, key: bytes) -> int:
        """Value size, or -1 when missing."""
        n = self._lib.kcdbcheck(self._handle(), key, len(key))
        if n < 0:
            self._miss(NOREC)
        return n

    def remove(self, key: bytes) -> bool:
        if self._lib.kcdbremove(self._handle(), key, len(key)):
            return True
        return self._miss(NOREC)

    def seize(self, key: bytes) -> Optional[bytes]:
        size = c_size_t()
        ptr = self._lib.kcdbseize(self._handle(), key, len(key), ctypes.byref(size))
        if not ptr:
            return self._miss(NOREC) or None
        return _take(self._lib, ptr, size.value)

    # -- batches: one C call, or one GIL hold, for many records ------------------------------
    def set_many(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """``set`` each ``(key, value)`` in order; a failure raises KCError with ``applied``
        (how many records before it were stored, when known)."""
        h = self._handle()
        keys = [key for key, _ in records]
        if len(keys) > 1 and all(map(bytes.__lt__, keys, keys[1:])):
            # kcdbsetbulk sets its records in ascending key order, one by one: the same as
            # ours when the keys already ascend (order matters: it is a hash DB's cursor order)
            blob, strs = _str_array(itertools.chain.from_iterable(records), 2 * len(keys))
            if self._lib.kcdbsetbulk(h, strs.buffer_info()[0], len(keys), 0) < 0:
                err = self.error()
                err.applied = 0
                raise err
            return
        kcset, handle = _pylib.kcdbset, c_void_p(h)
        with self._visit_lock:
            for i, (key, value) in enumerate(records):
                if not kcset(handle, key, len(key), value, len(value)):
                    err = self.error()
                    err.applied = i
                    raise err

    def remove_many(self, keys: Sequence[bytes]) -> int:
        """Remove each key in order; how many existed.  Failures other than NOREC raise."""
        if not keys:
            return 0
        blob, strs = _str_array(keys, len(keys))
        hits = self._lib.kcdbremovebulk(self._handle(), strs.buffer_info()[0], len(keys), 0)
        if hits < 0:
            raise self.error()
        return hits

    def get_many(self, keys: Sequence[bytes]) -> list[Optional[bytes]]:
        """The value of each key (None when missing), in order."""
        h = c_void_p(self._handle())
        buf = getattr(_tls, "getbuf", None)
        if buf is None:
            buf = _tls.getbuf = ctypes.create_string_buffer(_GETBUF_SIZE)
        view = memoryview(buf)
        getbuf, ecode = _pylib.kcdbgetbuf, _pylib.kcdbecode
        out: list[Optional[bytes]] = []
        append = out.append
        large = []
        with self._visit_lock:
            for key in keys:
                n = getbuf(h, key, len(key), buf, _GETBUF_SIZE)
                if 0 <= n <= _GETBUF_SIZE:
                    append(view[:n].tobytes())
                    continue
                if n > 0:  # larger than the buffer: fetched whole below, outside the batch
                    large.append(len(out))
                elif ecode(h) != NOREC:
                    raise self.error()
                append(None)
        for i in large:
            out[i] = self.get(keys[i])
        return out

    def clear(self) -> None:
        self._check(self._lib.kcdbclear(self._handle()))

    def synchronize(self, hard: bool = False) -> None:
        self._check(self._lib.kcdbsync(self._handle(), int(hard), None, None))

    def begin_transaction(self, hard: bool = False) -> None:
        self._check(self._lib.kcdbbegintran(self._handle(), int(hard)))

    def end_transaction(self, commit: bool = True) -> None:
        self._check(self._lib.kcdbendtran(self._handle(), int(commit)))

    # -- information --------------------------------------------------------------------------
    def count(self) -> int:
        n = self._lib.kcdbcount(self._handle())
        if n < 0:
            raise self.error()
        return n

    def size(self) -> int:
        n = self._lib.kcdbsize(self._handle())
        if n < 0:
            raise self.error()
        return n

    def path(self) -> str:
        ptr = self._lib.kcdbpath(self._handle())
        if not ptr:
            raise self.error()
        return _take(self._lib, ptr, len(ctypes.string_at(ptr))).decode(errors="surrogateescape")

    def status(self) -> dict[str, str]:
        """KC's ``status()`` map (name -> value), in KC's order."""
        ptr = self._lib.kcdbstatus(self._handle())
        if not ptr:
            raise self.error()
        text = _take(self._lib, ptr, len(ctypes.string_at(ptr))).decode(errors="surrogateescape")
        out: dict[str, str] = {}
        for line in text.split("\n"):
            if "\t" in line:
                k, v = line.split("\t", 1)
                out[k] = v
        return out

    # -- searches -----------------------------------------------------------------------------
    def _collect(self, call: Callable[[ctypes.Array, int], int], max: int) -> list[bytes]:
        limit = self.count() + 1
        if max < 0 or max > limit:
            max = limit  # never allocate more slots than there are records
        if max == 0:
            return []
        arr = (c_void_p * max)()
        n = call(arr, max)
        if n < 0:
            raise self.error()
        out = []
        for i in range(n):
            ptr = arr[i]
            out.append(_take(self._lib, ptr, len(ctypes.string_at(ptr))))
        return out

    def match_prefix(self, prefix: bytes, max: int = -1) -> list[bytes]:
        """Keys starting with ``prefix`` in KC's order (ascending on trees); ``max<0``: all."""
        h = self._handle()
        return self._collect(lambda a, m: self._lib.kcdbmatchprefix(h, prefix, a, m), max)

    def match_regex(self, regex: bytes, max: int = -1) -> list[bytes]:
        """Keys matching the POSIX extended regex; raises KCError(LOGIC) for a bad pattern."""
        h = self._handle()
        return self._collect(lambda a, m: self._lib.kcdbmatchregex(h, regex, a, m), max)

    def match_similar(self, origin: bytes, range: int = 1, utf: bool = False, max: int = -1) -> list[bytes]:
        """Keys within Levenshtein distance ``range`` of ``origin``, nearest first."""
        h = self._handle()
        return self._collect(
            lambda a, m: self._lib.kcdbmatchsimilar(h, origin, range, int(utf), a, m), max
        )

    def cursor(self) -> KCCursor:
        return KCCursor(self)

    def __enter__(self) -> KCDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class KCCursor:
    """A KC cursor.  Methods return False/None when the cursor has no record (NOREC)."""

    def __init__(self, db: KCDB):
        self._lib = db._lib
        self.db = db
        self._cur = self._lib.kcdbcursor(db._handle())
        if not self._cur:
            raise db.error()

    def close(self) -> None:
        cur, self._cur = self._cur, None
        if cur:
            with self.db._life:
                if not self.db.closed:  # after close KC has freed what the cursor points into
                    self._lib.kccurdel(cur)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _h(self) -> int:
        if not self._cur:
            raise EngineError("cursor is closed")
        return self._cur

    def error(self) -> KCError:
        h = self._h()
        return KCError(self._lib.kccurecode(h), self._lib.kccuremsg(h).decode(errors="replace"))

    def _ok(self, ok: int) -> bool:
        """True on success, False on NOREC; NOIMPL and other failures raise KCError."""
        if ok:
            return True
        err = self.error()
        if err.code == NOREC:
            return False
        raise err

    def jump(self, key: Optional[bytes] = None) -> bool:
        if key is None:
            return self._ok(self._lib.kccurjump(self._h()))
        return self._ok(self._lib.kccurjumpkey(self._h(), key, len(key)))

    def jump_back(self, key: Optional[bytes] = None) -> bool:
        if key is None:
            return self._ok(self._lib.kccurjumpback(self._h()))
        return self._ok(self._lib.kccurjumpbackkey(self._h(), key, len(key)))

    def step(self) -> bool:
        return self._ok(self._lib.kccurstep(self._h()))

    def step_back(self) -> bool:
        return self._ok(self._lib.kccurstepback(self._h()))

    def accept(self, visitor: Visitor, writable: bool = True, step: bool = False) -> bool:
        """Visit the current record atomically; False when the cursor has no record."""
        h = self._h()
        with self.db._visit_lock:
            ok = _run_visitor(
                lambda: self._lib.kccuraccept(h, _FULL_CB, None, int(writable), int(step)), visitor
            )
        return self._ok(ok)

    def set_value(self, value: bytes, step: bool = False) -> bool:
        return self._ok(self._lib.kccursetvalue(self._h(), value, len(value), int(step)))

    def remove(self) -> bool:
        return self._ok(self._lib.kccurremove(self._h()))

    def get_key(self, step: bool = False) -> Optional[bytes]:
        size = c_size_t()
        ptr = self._lib.kccurgetkey(self._h(), ctypes.byref(size), int(step))
        if not ptr:
            return self._ok(0) or None
        return _take(self._lib, ptr, size.value)

    def get_value(self, step: bool = False) -> Optional[bytes]:
        size = c_size_t()
        ptr = self._lib.kccurgetvalue(self._h(), ctypes.byref(size), int(step))
        if not ptr:
            return self._ok(0) or None
        return _take(self._lib, ptr, size.value)

    def get(self, step: bool = False) -> Optional[tuple[bytes, bytes]]:
        ksz, vsz, vptr = c_size_t(), c_size_t(), c_void_p()
        ptr = self._lib.kccurget(
            self._h(), ctypes.byref(ksz), ctypes.byref(vptr), ctypes.byref(vsz), int(step)
        )
        if not ptr:
            return self._ok(0) or None
        try:
            return ctypes.string_at(ptr, ksz.value), ctypes.string_at(vptr.value, vsz.value)
        finally:
            _pylib.kcfree(ptr)

    def seize(self) -> Optional[tuple[bytes, bytes]]:
        ksz, vsz, vptr = c_size_t(), c_size_t(), c_void_p()
        ptr = self._lib.kccurseize(self._h(), ctypes.byref(ksz), ctypes.byref(vptr), ctypes.byref(vsz))
        if not ptr:
            return self._ok(0) or None
        try:
            return ctypes.string_at(ptr, ksz.value), ctypes.string_at(vptr.value, vsz.value)
        finally:
            _pylib.kcfree(ptr)


__all__ = [
    "KCDB",
    "KCCursor",
    "KCError",
    "NOP",
    "REMOVE",
    "library",
    "version",
    "OREADER",
    "OWRITER",
    "OCREATE",
    "OTRUNCATE",
    "OAUTOTRAN",
    "OAUTOSYNC",
    "ONOLOCK",
    "OTRYLOCK",
    "ONOREPAIR",
]
