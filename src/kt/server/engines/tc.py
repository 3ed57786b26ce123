"""Tokyo Cabinet through its abstract database API (``tcadb*``), in ctypes ABI mode.

ttserver keeps exactly one ``TCADB`` and calls ``tcadb*`` (and ``tcadbmisc`` for everything
behind the ``misc`` command), so going through the same API gives the bundled server Tokyo
Cabinet's own semantics for every database type: on-memory hash ``*`` and tree ``+``, and
``.tch .tcb .tcf .tct`` files with ``#name=value`` tuning parameters.  Files written by
ttserver open unchanged.

The library is thread-safe for one handle (``tcadbopen`` enables the per-database mutexes),
and ctypes releases the GIL around each call.  This module knows no wire format.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import struct
import threading
from typing import Any, List, Optional, Sequence, Tuple

from kt.errors import EngineError

__all__ = ["TokyoCabinetDB", "load_library", "library_version", "DB_TYPE_NAMES", "INT_MIN",
           "codec", "md5_hex", "crc32", "regex_match", "regex_replace"]

LIBRARY_NAME = "libtokyocabinet.so.9"
DEBIAN_PACKAGE = "libtokyocabinet9"

INT_MIN = -(2**31)

# tcadb.h: enum { ADBOVOID, ADBOMDB, ADBONDB, ADBOHDB, ADBOBDB, ADBOFDB, ADBOTDB, ADBOSKEL }
DB_TYPE_NAMES = {
    0: "void",
    1: "on-memory hash",
    2: "on-memory tree",
    3: "hash",
    4: "B+ tree",
    5: "fixed-length",
    6: "table",
    7: "skeleton",
}

_c_void_p = ctypes.c_void_p
_c_int = ctypes.c_int
_c_char_p = ctypes.c_char_p
_c_bool = ctypes.c_bool
_c_uint64 = ctypes.c_uint64
_c_int_p = ctypes.POINTER(ctypes.c_int)
_string_at = ctypes.string_at

# void *(*TCPDPROC)(const void *vbuf, int vsiz, int *sp, void *op)
_PDPROC = ctypes.CFUNCTYPE(_c_void_p, _c_void_p, _c_int, _c_int_p, _c_void_p)

_lib: Optional[ctypes.CDLL] = None
_push: Any = None  # tclistpush(list: c_void_p, bytes, int), see load_library
_lib_lock = threading.Lock()
_libc = ctypes.CDLL(None)
_libc.malloc.restype = _c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]


def _declare(lib: ctypes.CDLL) -> None:
    """Give every function we call its C signature (ABI mode: nothing is checked for us)."""
    sigs = {
        "tcadbnew": (_c_void_p, []),
        "tcadbdel": (None, [_c_void_p]),
        "tcadbopen": (_c_bool, [_c_void_p, _c_char_p]),
        "tcadbclose": (_c_bool, [_c_void_p]),
        "tcadbput": (_c_bool, [_c_void_p, _c_char_p, _c_int, _c_char_p, _c_int]),
        "tcadbputkeep": (_c_bool, [_c_void_p, _c_char_p, _c_int, _c_char_p, _c_int]),
        "tcadbputcat": (_c_bool, [_c_void_p, _c_char_p, _c_int, _c_char_p, _c_int]),
        "tcadbputproc": (_c_bool, [_c_void_p, _c_char_p, _c_int, _c_char_p, _c_int, _PDPROC, _c_void_p]),
        "tcadbout": (_c_bool, [_c_void_p, _c_char_p, _c_int]),
        "tcadbget": (_c_void_p, [_c_void_p, _c_char_p, _c_int, _c_int_p]),
        "tcadbvsiz": (_c_int, [_c_void_p, _c_char_p, _c_int]),
        "tcadbiterinit": (_c_bool, [_c_void_p]),
        "tcadbiternext": (_c_void_p, [_c_void_p, _c_int_p]),
        "tcadbfwmkeys": (_c_void_p, [_c_void_p, _c_char_p, _c_int, _c_int]),
        "tcadbaddint": (_c_int, [_c_void_p, _c_char_p, _c_int, _c_int]),
        "tcadbadddouble": (ctypes.c_double, [_c_void_p, _c_char_p, _c_int, ctypes.c_double]),
        "tcadbsync": (_c_bool, [_c_void_p]),
        "tcadboptimize": (_c_bool, [_c_void_p, _c_char_p]),
        "tcadbvanish": (_c_bool, [_c_void_p]),
        "tcadbcopy": (_c_bool, [_c_void_p, _c_char_p]),
        "tcadbpath": (_c_char_p, [_c_void_p]),
        "tcadbrnum": (_c_uint64, [_c_void_p]),
        "tcadbsize": (_c_uint64, [_c_void_p]),
        "tcadbomode": (_c_int, [_c_void_p]),
        "tcadbreveal": (_c_void_p, [_c_void_p]),
        "tcadbmisc": (_c_void_p, [_c_void_p, _c_char_p, _c_void_p]),
        "tcadbsetskelmulti": (_c_bool, [_c_void_p, _c_int]),
        "tclistnew": (_c_void_p, []),
        "tclistpush": (None, [_c_void_p, _c_char_p, _c_int]),
        "tclistnum": (_c_int, [_c_void_p]),
        "tclistval": (_c_void_p, [_c_void_p, _c_int, _c_int_p]),
        "tclistdel": (None, [_c_void_p]),
        "tcfree": (None, [_c_void_p]),
        # tcutil.h helpers used by ttserver's Lua built-ins and HTTP front-end
        "tcmd5hash": (None, [_c_char_p, _c_int, _c_char_p]),
        "tcgetcrc": (ctypes.c_uint32, [_c_char_p, _c_int]),
        "tcregexmatch": (_c_bool, [_c_char_p, _c_char_p]),
        "tcregexreplace": (_c_void_p, [_c_char_p, _c_char_p, _c_char_p]),
        "tcxmlescape": (_c_void_p, [_c_char_p]),
        "tcxmlunescape": (_c_void_p, [_c_char_p]),
    }
    for name in ("tcurlencode", "tcbaseencode", "tcquoteencode", "tchexencode"):  # (ptr, size) -> str
        sigs[name] = (_c_void_p, [_c_char_p, _c_int])
    for name in ("tcurldecode", "tcbasedecode", "tcquotedecode", "tchexdecode"):  # (str, *sp) -> buf
        sigs[name] = (_c_void_p, [_c_char_p, _c_int_p])
    for name in ("tcpackencode", "tcpackdecode", "tcbsencode", "tcbsdecode", "tcdeflate", "tcinflate",
                 "tcgzipencode", "tcgzipdecode", "tcbzipencode", "tcbzipdecode"):  # (ptr, size, *sp)
        sigs[name] = (_c_void_p, [_c_char_p, _c_int, _c_int_p])
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def load_library() -> ctypes.CDLL:
    """Load ``libtokyocabinet.so.9`` once; a clear EngineError names the package if missing."""
    global _lib
    with _lib_lock:
        if _lib is None:
            candidates = [LIBRARY_NAME]
            found = ctypes.util.find_library("tokyocabinet")
            if found and found not in candidates:
                candidates.append(found)
            last: Optional[OSError] = None
            for cand in candidates:
                try:
                    lib = ctypes.CDLL(cand)
                    break
                except OSError as exc:
                    last = exc
            else:
                raise EngineError(
                    f"Tokyo Cabinet library {LIBRARY_NAME} not found ({last}); install the Debian "
                    f"package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE})"
                )
            _declare(lib)
            global _push
            # tclistpush takes no lock: called with the GIL held and without argtypes (their
            # conversion costs more than the call), once per argument of a misc call
            _push = ctypes.PyDLL(lib._name).tclistpush
            _push.restype = None
            _lib = lib
        return _lib


_bulk_module = None
_bulk_loaded = False


def bulk_speedups():
    """``kt._speedups.tt_server_bulk`` bound to this library, or None when it is not built,
    ``KT_PURE_PYTHON`` is set or Tokyo Cabinet is missing (callers then take the pure-Python
    path).  The Kyoto Cabinet twin is ``engines.kc.bulk_speedups``."""
    global _bulk_module, _bulk_loaded
    if not _bulk_loaded:
        from kt import _native

        module = _native.load("tt_server_bulk")
        if module is not None:
            try:
                module.bind(load_library())
            except EngineError:  # the server says so when it opens a database
                module = None
        _bulk_module, _bulk_loaded = module, True
    return _bulk_module


def library_version() -> str:
    """Tokyo Cabinet's own version string (``tcversion``), e.g. ``1.4.48``."""
    lib = load_library()
    return _c_char_p.in_dll(lib, "tcversion").value.decode("ascii", "replace")


# ---------------------------------------------------------------------------- tcutil helpers

_CODECS = {
    # mode: (encoder, kind, decoder, kind); kinds: "str" returns a C string, "sized" fills *sp
    b"url": ("tcurlencode", "str", "tcurldecode", "cstr_in"),
    b"base": ("tcbaseencode", "str", "tcbasedecode", "cstr_in"),
    b"quote": ("tcquoteencode", "str", "tcquotedecode", "cstr_in"),
    b"hex": ("tchexencode", "str", "tchexdecode", "cstr_in"),
    b"pack": ("tcpackencode", "sized", "tcpackdecode", "sized"),
    b"tcbs": ("tcbsencode", "sized", "tcbsdecode", "sized"),
    b"deflate": ("tcdeflate", "sized", "tcinflate", "sized"),
    b"gzip": ("tcgzipencode", "sized", "tcgzipdecode", "sized"),
    b"bzip": ("tcbzipencode", "sized", "tcbzipdecode", "sized"),
}


def _take_c(lib: ctypes.CDLL, ptr: Optional[int], size: Optional[int] = None) -> Optional[bytes]:
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr) if size is None else ctypes.string_at(ptr, size)
    finally:
        lib.tcfree(ptr)


def utf_to_ucs(data: bytes) -> list:
    """``tcstrutftoucs`` on the C string ``data``: Tokyo Cabinet's UTF-8 reading, 16-bit units."""
    lib = load_library()
    text = data.split(b"\0", 1)[0]
    ary = (ctypes.c_uint16 * (len(text) + 1))()
    num = ctypes.c_int(0)
    lib.tcstrutftoucs(ctypes.c_char_p(text), ary, ctypes.byref(num))
    return list(ary[: num.value])


def ucs_to_utf(units: list) -> bytes:
    """``tcstrucstoutf`` over 16-bit units (each value truncated to 16 bits as in C)."""
    lib = load_library()
    ary = (ctypes.c_uint16 * max(1, len(units)))(*[u & 0xFFFF for u in units])
    buf = ctypes.create_string_buffer(len(units) * 3 + 1)
    size = lib.tcstrucstoutf(ary, len(units), buf)
    return buf.raw[:size]


def codec(mode: bytes, data: bytes) -> Optional[bytes]:
    """Tokyo Cabinet's encoders (``url base quote hex pack tcbs deflate gzip bzip xml``); a
    leading ``~`` decodes.  ``None`` for an unknown mode or undecodable input (scrext ``_codec``)."""
    lib = load_library()
    name = mode.lower()
    decode = name.startswith(b"~")
    name = name[1:] if decode else name
    if name == b"xml":
        fn = lib.tcxmlunescape if decode else lib.tcxmlescape
        return _take_c(lib, fn(data))
    spec = _CODECS.get(name)
    if spec is None:
        return None
    fname, kind = (spec[2], spec[3]) if decode else (spec[0], spec[1])
    fn = getattr(lib, fname)
    size = ctypes.c_int()
    if kind == "str":
        return _take_c(lib, fn(data, len(data)))
    if kind == "cstr_in":
        ptr = fn(data, size)
    else:
        ptr = fn(data, len(data), size)
    return _take_c(lib, ptr, size.value) if ptr else None


def md5_hex(data: bytes) -> bytes:
    lib = load_library()
    out = ctypes.create_string_buffer(48)
    lib.tcmd5hash(data, len(data), out)
    return out.value


def crc32(data: bytes) -> int:
    return int(load_library().tcgetcrc(data, len(data)))


def regex_match(text: bytes, regex: bytes) -> bool:
    """``tcregexmatch``: POSIX extended regex anywhere in ``text``; leading ``*`` = ignore case."""
    return bool(load_library().tcregexmatch(text, regex))


def regex_replace(text: bytes, regex: bytes, alt: bytes) -> bytes:
    lib = load_library()
    return _take_c(lib, lib.tcregexreplace(text, regex, alt)) or b""


class _ListDatum(ctypes.Structure):
    """tcutil.h ``TCLISTDATUM``: one element of a TCLIST."""

    _fields_ = [("ptr", _c_void_p), ("size", _c_int)]


_DATUM_SIZE = ctypes.sizeof(_ListDatum)
_DATUM = struct.Struct("@Pi" + "x" * (_DATUM_SIZE - struct.calcsize("@Pi")))


class _ListHead(ctypes.Structure):
    """tcutil.h ``TCLIST`` (public struct): elements ``array[start:start+num]``."""

    _fields_ = [("array", ctypes.POINTER(_ListDatum)), ("anum", _c_int), ("start", _c_int), ("num", _c_int)]


class _ShiftOp(ctypes.Structure):
    """The ``op`` handed to the putshl proc: the bytes to append and the width to keep."""

    _fields_ = [("vbuf", _c_void_p), ("vsiz", _c_int), ("width", _c_int)]


def _putshl_proc(vbuf: int, vsiz: int, sp, op: int) -> int:
    """tculog.c's putshl proc: old value + appended bytes, keeping only the last ``width``."""
    shift = _ShiftOp.from_address(op)
    old = ctypes.string_at(vbuf, vsiz) if vsiz > 0 else b""
    new = old + (ctypes.string_at(shift.vbuf, shift.vsiz) if shift.vsiz > 0 else b"")
    width = shift.width
    if len(new) > width:
        new = new[len(new) - width :] if width > 0 else b""
    buf = _libc.malloc(len(new) + 1)
    if not buf:
        return 0
    ctypes.memmove(buf, new + b"\0", len(new) + 1)
    sp[0] = len(new)
    return buf


_PUTSHL_PROC = _PDPROC(_putshl_proc)


# Table-database misc functions whose first argument (of each pair, for putlist) is a primary key.
_TABLE_KEYED_PUTS = frozenset((b"put", b"putkeep", b"putcat", b"putlist"))


def _without_empty_primary_key(name: bytes, args: Sequence[bytes]) -> Tuple[Sequence[bytes], bool]:
    """``(args to run, refused)``: the arguments before the first empty primary key, if any."""
    if name != b"putlist":
        return (args, False) if (not args or args[0]) else ((), True)
    for i in range(0, len(args) - 1, 2):
        if not args[i]:
            return args[:i], True
    return args, False


class TokyoCabinetDB:
    """One open Tokyo Cabinet database (any type), the way ttserver holds it.

    Methods return plain Python values: ``bool`` for success, ``None`` for "no such record".
    Keys and values are ``bytes``.
    """

    def __init__(self, name: str, *, multiple: int = 0) -> None:
        lib = load_library()
        self._lib = lib
        self.name = name
        handle = lib.tcadbnew()
        if not handle:
            raise EngineError("tcadbnew failed (out of memory)")
        if multiple > 0 and not lib.tcadbsetskelmulti(handle, multiple):
            lib.tcadbdel(handle)
            raise EngineError(f"cannot split the database into {multiple} files (-mul)")
        if not lib.tcadbopen(handle, name.encode("utf-8", "surrogateescape")):
            lib.tcadbdel(handle)
            raise EngineError(f"cannot open the database {name!r} (tcadbopen failed)")
        self._h: Optional[int] = handle
        self._close_lock = threading.Lock()
        # Bound C functions for the hot paths (saves an attribute lookup per call).
        self._get = lib.tcadbget
        self._put = lib.tcadbput
        self._tcfree = lib.tcfree
        self._is_table = self.type_name == "table"

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def handle(self) -> int:
        if self._h is None:
            raise EngineError("the database is closed")
        return self._h

    def close(self) -> bool:
        """Sync and close the database; safe to call twice."""
        with self._close_lock:
            if self._h is None:
                return True
            handle, self._h = self._h, None
            ok = bool(self._lib.tcadbclose(handle))
            self._lib.tcadbdel(handle)
            return ok

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> TokyoCabinetDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------
    def _take(self, ptr: Optional[int], size: int) -> bytes:
        """Copy a buffer TC allocated for us and free it."""
        try:
            return ctypes.string_at(ptr, size)
        finally:
            self._tcfree(ptr)

    def _take_list(self, lptr: Optional[int]) -> Optional[List[bytes]]:
        """Copy a TCLIST into Python bytes and delete it (``None`` for a NULL list)."""
        if not lptr:
            return None
        try:
            # Read the public TCLIST layout directly: one struct read instead of a C call per
            # element (the hot path of searches and getlist).
            head = _ListHead.from_address(lptr)
            if head.num <= 0:
                return []
            # the TCLISTDATUM array as (ptr, size) pairs in one copy and one unpack, rather
            # than a ctypes attribute read per field per element
            base = ctypes.addressof(head.array.contents) + head.start * _DATUM_SIZE
            raw = ctypes.string_at(base, head.num * _DATUM_SIZE)
            string_at = ctypes.string_at
            return [string_at(ptr, size) for ptr, size in _DATUM.iter_unpack(raw)]
        finally:
            self._lib.tclistdel(lptr)

    # -- records --------------------------------------------------------------------------
    def put(self, key: bytes, value: bytes) -> bool:
        handle = self._h
        if handle is None:
            raise EngineError("the database is closed")
        return bool(self._put(handle, key, len(key), value, len(value)))

    def putkeep(self, key: bytes, value: bytes) -> bool:
        return bool(self._lib.tcadbputkeep(self.handle, key, len(key), value, len(value)))

    def putcat(self, key: bytes, value: bytes) -> bool:
        return bool(self._lib.tcadbputcat(self.handle, key, len(key), value, len(value)))

    def putshl(self, key: bytes, value: bytes, width: int) -> bool:
        """Append ``value`` and keep the last ``width`` bytes; a new key stores ``value`` as is."""
        if not key and self._is_table:
            return False  # Tokyo Cabinet would abort the process (empty primary key)
        vbuf = ctypes.create_string_buffer(value, len(value))
        op = _ShiftOp(ctypes.cast(vbuf, _c_void_p), len(value), width)
        return bool(
            self._lib.tcadbputproc(
                self.handle, key, len(key), value, len(value), _PUTSHL_PROC, ctypes.addressof(op)
            )
        )

    def out(self, key: bytes) -> bool:
        return bool(self._lib.tcadbout(self.handle, key, len(key)))

    def get(self, key: bytes) -> Optional[bytes]:
        handle = self._h
        if handle is None:
            raise EngineError("the database is closed")
        size = _c_int()
        ptr = self._get(handle, key, len(key), size)  # ctypes passes ``size`` by reference
        if not ptr:
            return None
        value = _string_at(ptr, size.value)
        self._tcfree(ptr)
        return value

    def vsiz(self, key: bytes) -> int:
        """Size of the stored value, -1 if missing (table: TC's internal serialization)."""
        return int(self._lib.tcadbvsiz(self.handle, key, len(key)))

    def iterinit(self) -> bool:
        return bool(self._lib.tcadbiterinit(self.handle))

    def iternext(self) -> Optional[bytes]:
        size = ctypes.c_int()
        ptr = self._lib.tcadbiternext(self.handle, ctypes.byref(size))
        if not ptr:
            return None
        return self._take(ptr, size.value)

    def fwmkeys(self, prefix: bytes, max_keys: int = -1) -> List[bytes]:
        keys = self._take_list(self._lib.tcadbfwmkeys(self.handle, prefix, len(prefix), max_keys))
        return keys or []

    def addint(self, key: bytes, num: int) -> Optional[int]:
        """Add to a 4-byte native int record; ``None`` when the record is not such an int."""
        rv = int(self._lib.tcadbaddint(self.handle, key, len(key), num))
        return None if rv == INT_MIN else rv

    def adddouble(self, key: bytes, num: float) -> Optional[float]:
        rv = float(self._lib.tcadbadddouble(self.handle, key, len(key), num))
        return None if math.isnan(rv) else rv

    # -- database -------------------------------------------------------------------------
    def sync(self) -> bool:
        return bool(self._lib.tcadbsync(self.handle))

    def optimize(self, params: bytes = b"") -> bool:
        return bool(self._lib.tcadboptimize(self.handle, params or None))

    def vanish(self) -> bool:
        return bool(self._lib.tcadbvanish(self.handle))

    def copy(self, path: bytes) -> bool:
        return bool(self._lib.tcadbcopy(self.handle, path))

    def rnum(self) -> int:
        return int(self._lib.tcadbrnum(self.handle))

    def size(self) -> int:
        return int(self._lib.tcadbsize(self.handle))

    def path(self) -> Optional[str]:
        raw = self._lib.tcadbpath(self.handle)
        return None if raw is None else raw.decode("utf-8", "surrogateescape")

    def omode(self) -> int:
        return int(self._lib.tcadbomode(self.handle))

    @property
    def type_name(self) -> str:
        """ttserver's ``stat`` name of the database type (``on-memory hash``, ``table``, ...)."""
        return DB_TYPE_NAMES.get(self.omode(), "unknown")

    def misc(self, name: bytes, args: Sequence[bytes] = ()) -> Optional[List[bytes]]:
        """``tcadbmisc``: the misc functions and table searches; ``None`` on failure."""
        name = name.split(b"\0", 1)[0]  # ttserver passes the name as a C string
        if self._is_table and name in _TABLE_KEYED_PUTS:
            args, refused = _without_empty_primary_key(name, args)
            if refused:
                # Tokyo Cabinet aborts the process on an empty primary key here (an assertion
                # in the table engine, ttserver dies with it): fail the call instead, as a
                # failed put would, after the pairs before it (putlist stops at a failure).
                if args:
                    self._misc(name, args)
                return None
        return self._misc(name, args)

    def _misc(self, name: bytes, args: Sequence[bytes]) -> Optional[List[bytes]]:
        lib = self._lib
        targs = lib.tclistnew()
        try:
            push, tlist = _push, _c_void_p(targs)
            for arg in args:
                push(tlist, arg, len(arg))
            return self._take_list(lib.tcadbmisc(self.handle, name, targs))
        finally:
            lib.tclistdel(targs)
