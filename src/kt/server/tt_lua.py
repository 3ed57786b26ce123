"""ttserver's ``-ext`` Lua extension (``scrext.c``) on top of ``lupa``.

A script defines global functions ``name(key, value)``; the ``ext`` command calls one and
answers its first result (protocol.md §E.5): string/number -> bytes (numbers formatted the way
Lua 5.1 prints them), ``true`` -> ``"true"``, a table -> its first element, ``nil``/``false``/
empty table/error -> failure.  Names starting with ``_`` are refused.  Scripts reach the
database through ttserver's built-ins (``_put``, ``_get``, ``_misc``, ...), implemented here on
the same :class:`~kt.server.engines.tc.TokyoCabinetDB` the server uses.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from kt.errors import EngineError
from kt.server.engines.tc import TokyoCabinetDB
from kt.server.lua_runtime import load_lua_runtime as _load_lua_runtime
from kt.server.lua_runtime import new_lua_state
from kt.server.timeddb import c_int64, c_unsigned

__all__ = ["LuaExtension", "LuaPool", "SharedState", "load_lua_runtime", "lua_available"]

log = logging.getLogger("kt.server.tt")

_LOCK_SLOTS = 31  # scrext.c: record locks hash the key into this many mutexes
_TT_VERSION = "1.1.41"


def lua_available() -> bool:
    try:
        load_lua_runtime()
    except EngineError:
        return False
    return True


def load_lua_runtime() -> Callable[..., Any]:
    """The ``LuaRuntime`` class, Lua 5.1 first (what ttserver 1.1.41 embeds)."""
    return _load_lua_runtime("-ext")


def _lua_number_text(num: float) -> bytes:
    """Lua 5.1 ``tostring`` of a number (``%.14g``): 7 -> "7", 1.5 -> "1.5"."""
    if isinstance(num, int):
        return str(num).encode()
    if num == int(num) and abs(num) < 1e15:
        return str(int(num)).encode()
    return b"%.14g" % num


def _to_bytes(value: Any, what: str = "argument") -> bytes:
    """Coerce a Lua string or number the way ``lua_tolstring`` does; anything else is an error."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bool) or value is None:
        raise ValueError(f"bad {what}: string expected, got {type(value).__name__}")
    if isinstance(value, (int, float)):
        return _lua_number_text(value)
    raise ValueError(f"bad {what}: string expected")


def _c_int32(value: Any) -> int:
    """C's ``int`` from a double on x86-64: truncation, INT_MIN when out of range."""
    num = c_int64(value)
    return num if -(1 << 31) <= num < (1 << 31) else -(1 << 31)


def _c_string(data: bytes) -> bytes:
    """What C sees of ``data``: the bytes before the first NUL."""
    return data.split(b"\0", 1)[0]


def _result_bytes(value: Any) -> Optional[bytes]:
    """scrextcallmethod's conversion of the function's first result (None = failure)."""
    if isinstance(value, tuple):
        value = value[0] if value else None
    if value is None or value is False:
        return None
    if value is True:
        return b"true"
    if isinstance(value, (bytes, str, int, float)):
        return _to_bytes(value)
    # A Lua table: its first element, same conversion.
    try:
        first = value[1]
    except (KeyError, IndexError, TypeError):
        return None
    if first is None or isinstance(first, bool) or not isinstance(first, (bytes, str, int, float)):
        return b"true" if first is True else None
    return _to_bytes(first)


class SharedState:
    """What every Lua state of one server shares: ttserver's record mutexes, the stash and the
    ``_lock`` table (these are process-wide in ttserver, not per worker thread)."""

    def __init__(self) -> None:
        self.record_locks = [threading.Lock() for _ in range(_LOCK_SLOTS)]
        self.locked_keys: set = set()  # scrext's lock table: keys held by _lock
        self.locked_changed = threading.Condition()
        self.terminating = False
        self.stash: Dict[bytes, bytes] = {}
        self.stash_lock = threading.Lock()
        self.states: List[LuaExtension] = []  # every state, for _eval
        self.log: Callable[[int, str], None] = _default_log


_LOG_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.ERROR, 3: logging.INFO}


def _default_log(level: int, message: str) -> None:
    """ttserver levels (0 debug, 1 info, 2 error, 3 system) onto Python logging."""
    log.log(_LOG_LEVELS.get(level, logging.INFO), "%s", message)


def record_lock_index(key: bytes) -> int:
    """ttserver's ``recmtxidx``: which of the 31 record mutexes guards ``key``."""
    h = 725
    for byte in key:
        h = (h * 29 + byte) & 0xFFFFFFFF
    return h % _LOCK_SLOTS


class LuaExtension:
    """One Lua state running an ``-ext`` script against the server's database.

    ttserver keeps one state per worker thread; :class:`LuaPool` keeps ``thnum`` of them and
    lends one to each ``ext`` call.
    """

    def __init__(
        self,
        script_path: str,
        db: TokyoCabinetDB,
        *,
        sid: int = 0,
        thnum: int = 1,
        thid: int = 0,
        version: str = _TT_VERSION,
        shared: Optional[SharedState] = None,
    ) -> None:
        runtime_cls = load_lua_runtime()
        self.path = script_path
        self.db = db
        self.shared = shared or SharedState()
        self.thid = thid
        self.shared.states.append(self)
        self._stash = self.shared.stash
        self.lua = new_lua_state(runtime_cls)
        self._install_builtins(sid=sid, thnum=thnum, thid=thid, version=version)
        with open(script_path, "rb") as fh:
            code = fh.read()
        try:
            self.lua.execute(code)
        except Exception as exc:  # lupa.LuaError, LuaSyntaxError
            # scrextnew reports the error and keeps the state: what the chunk defined before
            # the failing line stays callable, and the server keeps serving.
            self.shared.log(2, f"Lua error: {exc}")
        begin = self.lua.globals()[b"_begin"]
        if begin is not None and thid == 0:  # scrextnew: only the first state runs _begin
            try:
                begin()
            except Exception as exc:
                self.shared.log(2, f"Lua error: {exc}")

    def call(self, name: bytes, key: bytes, value: bytes, opts: int = 0) -> Optional[bytes]:
        """Run ``name(key, value)``; the reply bytes, or ``None`` for a failure reply.

        ``opts & 2`` holds every record mutex (ttserver's global lock), ``opts & 1`` the
        key's one; other calls run unlocked, exactly as in ttserver.
        """
        name = name.split(b"\0", 1)[0]  # ttserver copies the name into a C string
        if not name or name.startswith(b"_"):
            return None
        func = self.lua.globals()[name]
        if func is None:
            return None
        locks = self.shared.record_locks
        if opts & 2:
            held = locks
        elif opts & 1:
            held = [locks[record_lock_index(key)]]
        else:
            held = []
        for lock in held:
            lock.acquire()
        try:
            result = func(key, value)
        except Exception as exc:
            self.shared.log(2, f"Lua error: {exc}")
            return None
        finally:
            for lock in reversed(held):
                lock.release()
        try:
            return _result_bytes(result)
        except ValueError:
            return None

    def call_periodic(self, name: bytes) -> None:
        """``-extpc name period``: ttserver calls ``name("", "")`` and ignores the result."""
        self.call(name, b"", b"", 0)

    def close(self) -> None:
        end = self.lua.globals()[b"_end"]
        if end is not None and self.thid == 0:  # scrextdel: only the first state runs _end
            try:
                end()
            except Exception as exc:
                self.shared.log(2, f"Lua error: {exc}")

    # -- built-ins ------------------------------------------------------------------------
    def _table(self, items: List[Any]) -> Any:
        return self.lua.table_from(items)

    def _install_utilities(self, g: Any) -> None:
        """The pure helpers of scrext.c: hashing, codecs, bit ops, set ops, distance, UCS."""
        table = self._table
        g[b"_hash"] = _hash
        g[b"_pack"] = _pack
        g[b"_unpack"] = lambda fmt, data=None: table(_unpack(fmt, data))
        g[b"_codec"] = _codec
        g[b"_bit"] = _bit
        g[b"_dist"] = _distance

        def isect(*tables: Any) -> Any:
            lists = [_lua_list(t) for t in tables if t is not None]
            if len(lists) == 1:  # one table of tables
                lists = [_lua_list(t) for t in lists[0]]
            if not lists:
                return table([])
            common = set(lists[0]).intersection(*map(set, lists[1:]))
            return table([v for v in dict.fromkeys(lists[0]) if v in common])

        def union(*tables: Any) -> Any:
            lists = [_lua_list(t) for t in tables if t is not None]
            if len(lists) == 1 and lists[0] and not isinstance(lists[0][0], (bytes, str, int, float)):
                lists = [_lua_list(t) for t in lists[0]]
            return table(list(dict.fromkeys(v for items in lists for v in items)))

        g[b"_isect"] = isect
        g[b"_union"] = union

        def ucs(value: Any) -> Any:
            from kt.server.engines import tc

            if isinstance(value, (bytes, str, int, float)) and not isinstance(value, bool):
                return table(tc.utf_to_ucs(_to_bytes(value)))
            return tc.ucs_to_utf([c_int64(_lua_tonumber(c)) for c in _lua_list(value)])

        g[b"_ucs"] = ucs

    def _install_builtins(self, *, sid: int, thnum: int, thid: int, version: str) -> None:
        db = self.db
        g = self.lua.globals()
        table = self._table

        def kv(fn: Callable[[bytes, bytes], bool]) -> Callable[[Any, Any], bool]:
            return lambda k, v: fn(_to_bytes(k, "key"), _to_bytes(v, "value"))

        g[b"_put"] = kv(db.put)
        g[b"_putkeep"] = kv(db.putkeep)
        g[b"_putcat"] = kv(db.putcat)
        g[b"_out"] = lambda k: db.out(_to_bytes(k, "key"))
        g[b"_get"] = lambda k: db.get(_to_bytes(k, "key"))
        g[b"_vsiz"] = lambda k: db.vsiz(_to_bytes(k, "key"))
        g[b"_iterinit"] = lambda: db.iterinit()
        g[b"_iternext"] = lambda: db.iternext()

        def fwmkeys(prefix: Any, max_keys: Any = -1) -> Any:
            limit = -1 if max_keys is None else _c_int32(_lua_tonumber(max_keys))
            return table(db.fwmkeys(_to_bytes(prefix, "prefix"), limit))

        g[b"_fwmkeys"] = fwmkeys

        def addint(k: Any, n: Any) -> Optional[int]:
            if not isinstance(n, (int, float)) or isinstance(n, bool):
                raise ValueError("_addint: invalid arguments")
            num = _c_int32(n)  # serv_addint: int num = lua_tonumber(...)
            total = db.addint(_to_bytes(k, "key"), num)
            return None if total is None or total == -(1 << 31) else total  # INT_MIN: failure

        def adddouble(k: Any, n: Any) -> Optional[float]:
            return db.adddouble(_to_bytes(k, "key"), float(n or 0))

        g[b"_addint"] = addint
        g[b"_adddouble"] = adddouble
        g[b"_vanish"] = lambda: db.vanish()
        g[b"_rnum"] = lambda: db.rnum()
        g[b"_size"] = lambda: db.size()

        def misc(name: Any, *args: Any) -> Any:
            """scrext _misc(name, ...): string/number arguments and tables of them, flattened;
            a ``$`` before the name skips the update log."""
            fname = _to_bytes(name, "name")
            items: List[bytes] = []
            for arg in args:
                if isinstance(arg, (bytes, str, int, float)) and not isinstance(arg, bool):
                    items.append(_to_bytes(arg))
                elif arg is not None and not isinstance(arg, bool) and hasattr(arg, "values"):
                    items.extend(_to_bytes(v) for v in _lua_list(arg)
                                 if isinstance(v, (bytes, str, int, float)) and not isinstance(v, bool))
            if fname.startswith(b"$"):
                res = db.misc(fname[1:], items)
            else:
                run = getattr(db, "misc_logged", db.misc)  # logged when the server keeps an update log
                res = run(fname, items)
            return None if res is None else table(res)

        g[b"_misc"] = misc

        def foreach(func: Any) -> bool:
            for key in db.fwmkeys(b"", -1):
                val = db.get(key)
                if val is None:
                    continue
                rv = func(key, val)
                if rv is False or rv is None:
                    break
            return True

        g[b"_foreach"] = foreach

        def mapreduce(mapper: Any, reducer: Any, keys: Any = None) -> bool:
            """scrext _mapreduce: ``mapper(key, value, emit)`` over every record (or ``keys``),
            the emitted pairs sorted by key (byte order), then ``reducer(key, values)`` per key;
            false when a function fails or returns false."""
            emitted: List[tuple] = []

            def emit(k: Any, v: Any) -> bool:
                emitted.append((_to_bytes(k, "key"), _to_bytes(v, "value")))
                return True

            if keys is None:
                targets = db.fwmkeys(b"", -1)
            else:
                targets = [_to_bytes(k) for k in _lua_list(keys)]
            ok = True
            for key in targets:
                value = db.get(key)
                if value is None:
                    continue
                if not mapper(key, value, emit):
                    ok = False
            emitted.sort(key=lambda kv: kv[0])
            i = 0
            while i < len(emitted):
                key = emitted[i][0]
                j = i
                while j < len(emitted) and emitted[j][0] == key:
                    j += 1
                if not reducer(key, table([v for _, v in emitted[i:j]])):
                    ok = False
                i = j
            return ok

        g[b"_mapreduce"] = mapreduce

        def log_message(msg: Any, level: Any = 1) -> None:
            text = _to_bytes(msg, "message").decode("utf-8", "replace")
            self.shared.log(int(level) if isinstance(level, (int, float)) else 1, text)

        g[b"_log"] = log_message

        def lua_eval(code: Any) -> bool:
            """scrext's _eval: run ``code`` in every state of the server (all worker threads)."""
            source = _to_bytes(code, "code")
            for state in list(self.shared.states):
                try:
                    state.lua.execute(source)
                except Exception as exc:
                    self.shared.log(2, f"Lua error: {exc}")
            return True

        g[b"_eval"] = lua_eval

        shared = self.shared

        def user_lock(key: Any) -> bool:
            """scrext _lock: wait until no one holds ``key``, then hold it; false at shutdown."""
            k = _to_bytes(key, "key")
            with shared.locked_changed:
                while k in shared.locked_keys:
                    if shared.terminating:
                        return False
                    shared.locked_changed.wait(0.1)
                shared.locked_keys.add(k)
            return True

        def user_unlock(key: Any) -> bool:
            k = _to_bytes(key, "key")
            with shared.locked_changed:
                if k not in shared.locked_keys:
                    return False
                shared.locked_keys.discard(k)
                shared.locked_changed.notify_all()
            return True

        g[b"_lock"] = user_lock
        g[b"_unlock"] = user_unlock

        stash = self._stash
        g[b"_stashput"] = lambda k, v: stash.__setitem__(_to_bytes(k), _to_bytes(v)) or True

        def stashputkeep(k: Any, v: Any) -> bool:
            key = _to_bytes(k)
            with self.shared.stash_lock:
                if key in stash:
                    return False
                stash[key] = _to_bytes(v)
                return True

        def stashputcat(k: Any, v: Any) -> bool:
            key = _to_bytes(k)
            with self.shared.stash_lock:
                stash[key] = stash.get(key, b"") + _to_bytes(v)
            return True

        g[b"_stashputkeep"] = stashputkeep
        g[b"_stashputcat"] = stashputcat
        g[b"_stashout"] = lambda k: stash.pop(_to_bytes(k), None) is not None
        g[b"_stashget"] = lambda k: stash.get(_to_bytes(k))
        g[b"_stashvanish"] = lambda: stash.clear() or True

        def stashforeach(func: Any) -> bool:
            for k, v in list(stash.items()):
                rv = func(k, v)
                if rv is False or rv is None:
                    break
            return True

        g[b"_stashforeach"] = stashforeach

        def split(text: Any, delims: Any = None) -> Any:
            s = _to_bytes(text, "string")
            if delims is None:
                return table(s.split(b"\0"))
            s = _c_string(s)  # with delimiters, serv_split walks C strings
            d = _c_string(_to_bytes(delims, "delimiters"))
            if not d:
                return table([s])
            return table(re.split(b"[" + re.escape(d) + b"]", s))

        g[b"_split"] = split

        def strstr(text: Any, pat: Any, alt: Any = None) -> Any:
            s, p = _c_string(_to_bytes(text)), _c_string(_to_bytes(pat))
            if alt is None:
                return s.find(p) + 1 if p in s else 0
            return s.replace(p, _c_string(_to_bytes(alt))) if p else s

        g[b"_strstr"] = strstr

        def regex(text: Any, pattern: Any, alt: Any = None) -> Any:
            from kt.server.engines import tc

            s, p = _to_bytes(text), _to_bytes(pattern)
            if alt is None:
                return tc.regex_match(s, p)
            return tc.regex_replace(s, p, _to_bytes(alt))

        g[b"_regex"] = regex
        g[b"_time"] = lambda: time.time()
        g[b"_sleep"] = lambda sec: time.sleep(max(0.0, float(sec or 0))) or True

        def stat_file(path: Any) -> Any:
            try:
                st = os.stat(_to_bytes(path))
            except OSError:
                return None
            t = self.lua.table()
            t[b"dev"], t[b"ino"], t[b"mode"] = st.st_dev, st.st_ino, st.st_mode
            t[b"nlink"], t[b"uid"], t[b"gid"] = st.st_nlink, st.st_uid, st.st_gid
            t[b"size"], t[b"atime"], t[b"mtime"], t[b"ctime"] = (
                st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))
            t[b"_regular"] = bool(st.st_mode & 0o100000)
            t[b"_directory"] = bool(st.st_mode & 0o040000)
            return t

        g[b"_stat"] = stat_file
        g[b"_glob"] = lambda pat: table(sorted(glob.glob(_to_bytes(pat))))

        def remove(path: Any) -> bool:
            p = _to_bytes(path)
            try:
                if os.path.isdir(p):
                    os.rmdir(p)
                else:
                    os.remove(p)
            except OSError:
                return False
            return True

        def mkdir(path: Any) -> bool:
            try:
                os.mkdir(_to_bytes(path))
            except OSError:
                return False
            return True

        g[b"_remove"] = remove
        g[b"_mkdir"] = mkdir
        g[b"_fnmatch"] = lambda s, p: fnmatch.fnmatchcase(_to_bytes(s).decode("latin-1"),
                                                          _to_bytes(p).decode("latin-1"))
        self._install_utilities(g)
        g[b"_version"] = version.encode()
        g[b"_pid"] = os.getpid()
        g[b"_sid"] = sid
        g[b"_thnum"] = thnum
        g[b"_thid"] = thid + 1  # scrext numbers the states from 1


def _hash(name: Any, data: Any) -> Any:
    """scrext ``_hash(mode, str)``: ``md5`` (hex), ``md5raw``, ``crc32`` (number); else nil."""
    from kt.server.engines import tc

    kind = _to_bytes(name, "name").lower()
    raw = _to_bytes(data, "string")
    if kind == b"md5":
        return tc.md5_hex(raw)
    if kind == b"md5raw":
        return bytes.fromhex(tc.md5_hex(raw).decode("ascii"))
    if kind == b"crc32":
        return tc.crc32(raw)
    return None


def _codec(mode: Any, data: Any) -> Any:
    """scrext ``_codec(mode, str)`` through Tokyo Cabinet's own encoders: url, base, quote, hex,
    pack, tcbs, deflate, gzip, bzip, xml; a leading ``~`` decodes; nil when it fails."""
    from kt.server.engines import tc

    return tc.codec(_to_bytes(mode, "mode"), _to_bytes(data, "string"))


_PACK_FIXED = {
    # format char: (struct code, size); native byte order like scrext (x86: little-endian)
    "c": ("b", 1), "C": ("B", 1), "s": ("h", 2), "S": ("H", 2), "i": ("i", 4), "I": ("I", 4),
    "l": ("q", 8), "L": ("Q", 8), "f": ("f", 4), "F": ("f", 4), "d": ("d", 8), "D": ("d", 8),
    "n": (">H", 2), "N": (">I", 4), "M": (">Q", 8),
}


def _format_items(fmt: str):
    """(char, count) pairs of a pack format; count None = ``*`` (everything left)."""
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        i += 1
        if i < len(fmt) and fmt[i] == "*":
            yield ch, None
            i += 1
            continue
        digits = ""
        while i < len(fmt) and fmt[i].isdigit():
            digits += fmt[i]
            i += 1
        yield ch, int(digits) if digits else 1


def _lua_tonumber(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, (int, float)):
        return value
    try:
        text = _to_bytes(value).strip()
        return int(text, 0) if text.lstrip(b"-+").isdigit() else float(text)
    except (ValueError, TypeError):
        return 0


def _ber(num: int) -> bytes:
    """The ``w`` format of both servers' pack: BER, except that from 2^56 on their code writes
    nine bytes, bit 63 then bits 55..0 (bits 62..56 are dropped)."""
    if num >= 1 << 56:
        head = [(num >> 63) | 0x80]
        return bytes(head + [((num >> s) & 0x7F) | 0x80 for s in range(49, 0, -7)] + [num & 0x7F])
    out = [num & 0x7F]
    num >>= 7
    while num:
        out.append((num & 0x7F) | 0x80)
        num >>= 7
    return bytes(reversed(out))


def _pack(fmt: Any, *args: Any) -> bytes:
    """scrext ``_pack(format, ...)``: numbers into binary (c C s S i I l L f d n N M w)."""
    import struct

    items: List[Any] = []
    for arg in args:
        if isinstance(arg, (bytes, str, int, float)) and not isinstance(arg, bool):
            items.append(arg)
        elif arg is not None and not isinstance(arg, bool) and hasattr(arg, "values"):
            items.extend(_lua_list(arg))
        else:
            items.append(0)
    out = []
    idx = 0
    for ch, count in _format_items(_to_bytes(fmt, "format").decode("latin-1")):
        take = len(items) - idx if count is None else min(count, len(items) - idx)
        for value in items[idx:idx + take]:
            num = _lua_tonumber(value)
            if ch in _PACK_FIXED:
                code, size = _PACK_FIXED[ch]
                if code.lstrip(">") in "fd":
                    out.append(struct.pack("<" + code if not code.startswith(">") else code, float(num)))
                else:
                    unsigned = c_unsigned(num, size)
                    order = ">" if code.startswith(">") else "<"
                    out.append(unsigned.to_bytes(size, "big" if order == ">" else "little"))
            elif ch in "wW":
                out.append(_ber(c_unsigned(num, 8)))
        idx += take
        if idx >= len(items):
            break
    return b"".join(out)


def _unpack(fmt: Any, data: Any) -> List[Any]:
    """scrext ``_unpack(format, str)``: the inverse of ``_pack`` -> list of numbers."""
    import struct

    buf = _to_bytes(data) if data is not None else b""
    pos = 0
    out: List[Any] = []
    for ch, count in _format_items(_to_bytes(fmt, "format").decode("latin-1")):
        loop = len(buf) - pos if count is None else min(count, len(buf) - pos)
        for _ in range(loop):
            if pos >= len(buf):
                break
            if ch in _PACK_FIXED:
                code, size = _PACK_FIXED[ch]
                if len(buf) - pos < size:
                    pos = len(buf)
                    break
                fmt_code = code if code.startswith(">") else "<" + code
                out.append(struct.unpack_from(fmt_code, buf, pos)[0])
                pos += size
            elif ch in "wW":
                num = 0
                while pos < len(buf):
                    byte = buf[pos]
                    pos += 1
                    num = num * 0x80 + (byte & 0x7F)
                    if byte < 0x80:
                        break
                out.append(num)
        if pos >= len(buf):
            break
    return out


def _bit(mode: Any, num: Any, aux: Any = 0) -> Any:
    """``_bit(mode, num, aux)`` on 32-bit unsigned integers: and or xor not left right."""
    name = _to_bytes(mode, "mode").lower()
    a = c_unsigned(_lua_tonumber(num), 4)  # uint32_t from lua_tonumber, as C converts
    b = c_unsigned(_lua_tonumber(aux), 4)
    ops = {
        b"and": lambda: a & b,
        b"or": lambda: a | b,
        b"xor": lambda: a ^ b,
        b"not": lambda: ~a & 0xFFFFFFFF,
        b"left": lambda: (a << (b & 31)) & 0xFFFFFFFF,  # x86 shifts use the count's low 5 bits
        b"right": lambda: a >> (b & 31),
    }
    op = ops.get(name)
    if op is None:
        raise ValueError("_bit: invalid arguments")
    return op()


def _distance(a: Any, b: Any, utf: Any = False) -> int:
    """``_dist(a, b, utf)``: Levenshtein edit distance (by characters when ``utf``)."""
    from kt.server.engines import tc

    x, y = _c_string(_to_bytes(a)), _c_string(_to_bytes(b))  # serv_dist reads C strings
    s1 = tc.utf_to_ucs(x) if utf else x
    s2 = tc.utf_to_ucs(y) if utf else y
    prev = list(range(len(s2) + 1))
    for i, c1 in enumerate(s1, 1):
        cur = [i]
        for j, c2 in enumerate(s2, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (c1 != c2)))
        prev = cur
    return prev[-1]


def _lua_list(value: Any) -> List[Any]:
    """The array part of a Lua table (1..n), or a single value as a one-element list."""
    if isinstance(value, (bytes, str, int, float)):
        return [value]
    out = []
    i = 1
    while True:
        item = value[i]
        if item is None:
            return out
        out.append(item)
        i += 1


class LuaPool:
    """``thnum`` Lua states (ttserver: one per worker thread); each ``ext`` borrows one."""

    def __init__(self, script_path: str, db: TokyoCabinetDB, *, size: int = 1, sid: int = 0,
                 version: str = _TT_VERSION, log: Optional[Callable[[int, str], None]] = None) -> None:
        import queue

        size = max(1, size)
        self.shared = SharedState()
        if log is not None:
            self.shared.log = log
        self.states = [
            LuaExtension(script_path, db, sid=sid, thnum=size, thid=i, version=version, shared=self.shared)
            for i in range(size)
        ]
        self._idle: queue.LifoQueue = queue.LifoQueue()
        for state in self.states:
            self._idle.put(state)

    def call(self, name: bytes, key: bytes, value: bytes, opts: int = 0) -> Optional[bytes]:
        state = self._idle.get()
        try:
            return state.call(name, key, value, opts)
        finally:
            self._idle.put(state)

    def call_periodic(self, name: bytes) -> None:
        self.call(name, b"", b"", 0)

    def close(self) -> None:
        with self.shared.locked_changed:
            self.shared.terminating = True  # scrextkill: _lock waiters give up
            self.shared.locked_changed.notify_all()
        for state in self.states:
            state.close()
