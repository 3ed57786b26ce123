"""ktserver's ``-scr`` Lua scripting (``myscript.cc``) on top of ``lupa`` (Lua 5.1).

The script is loaded into one Lua state per server thread (ktserver keeps one per worker), so
Lua globals are per thread.  ``play_script NAME`` calls the global function
``NAME(inmap, outmap)``: a missing function is RVENOIMPL, a Lua error RVEINTERNAL, otherwise
the first return value (``lua_tointeger``; nil = success).  Output pairs are converted like
ktserver: strings as they are, numbers as ``%lld`` when integral else ``%f``, booleans as
``true``/``false``, anything else dropped.

Scripts reach the databases through the ``__kyototycoon__`` module (``kt.db``, ``kt.dbs``,
``kt.RV*``, ``kt.log``, DB and Cursor methods, a few utilities), built here by a small Lua
prelude over native functions that call the server's ``TimedDB`` objects.
"""

from __future__ import annotations

import ctypes
import math
import re
import threading
import time
from typing import Any, Dict, Optional, Tuple

from kt.errors import ProtocolError
from kt.protocol.kt_ulog import read_varnum
from kt.server.engines.kc import KCError
from kt.server.lua_runtime import load_lua_runtime
from kt.server.timeddb import DROP, INT64MAX, INT64MIN, KEEP, XTMAX, atoi, atoix, levenshtein

RVSUCCESS, RVENOIMPL, RVEINVALID, RVELOGIC, RVETIMEOUT, RVEINTERNAL = 0, 1, 2, 3, 4, 5


def _runtime_class():
    return load_lua_runtime("-scr")


_PRELUDE = r"""
local native = ...
local kt = {}
kt.VERSION = native.version
kt.RVSUCCESS = 0
kt.RVENOIMPL = 1
kt.RVEINVALID = 2
kt.RVELOGIC = 3
kt.RVEINTERNAL = 5
kt.thid = native.thid
kt.log = function(kind, msg) native.log(tostring(kind), tostring(msg)) end
kt.atoi = function(s) return native.atoi(tostring(s)) end
kt.atoix = function(s) return native.atoix(tostring(s)) end
kt.atof = function(s) return tonumber(s) or 0 end
kt.time = function() return native.time() end
kt.sleep = function(sec) native.sleep(sec or 0) end
kt.levdist = function(a, b, utf) return native.levdist(a, b, utf and true or false) end
kt.strfwm = function(s, p) return string.sub(s, 1, #p) == p end
kt.strbwm = function(s, p) return #p == 0 or string.sub(s, -#p) == p end
kt.strstr = function(s, p, alt)
  local i = string.find(s, p, 1, true)
  if alt == nil then return i ~= nil end
  if i == nil then return s end
  return string.sub(s, 1, i - 1) .. alt .. string.sub(s, i + #p)
end
kt.split = function(s, delims)
  local out = {}
  delims = delims or ","
  local cur = ""
  for i = 1, #s do
    local c = string.sub(s, i, i)
    if string.find(delims, c, 1, true) then
      table.insert(out, cur)
      cur = ""
    else
      cur = cur .. c
    end
  end
  table.insert(out, cur)
  return out
end
kt.Error = { SUCCESS = 0, NOIMPL = 1, INVALID = 2, NOREPOS = 3, NOPERM = 4, BROKEN = 5,
             DUPREC = 6, NOREC = 7, LOGIC = 8, SYSTEM = 9, MISC = 15 }
kt.Visitor = { NOP = { "NOP" }, REMOVE = { "REMOVE" } }

local DB = {}
DB.__index = DB
local Cursor = {}
Cursor.__index = Cursor

local function unpack2(r)
  if r == nil then return nil end
  return r[1], r[2]
end

function DB:set(k, v, xt) return native.write(self.idx, "set", k, v, xt) end
function DB:add(k, v, xt) return native.write(self.idx, "add", k, v, xt) end
function DB:replace(k, v, xt) return native.write(self.idx, "replace", k, v, xt) end
function DB:append(k, v, xt) return native.write(self.idx, "append", k, v, xt) end
function DB:increment(k, n, orig, xt) return native.increment(self.idx, k, n, orig, xt) end
function DB:increment_double(k, n, orig, xt) return native.increment_double(self.idx, k, n, orig, xt) end
function DB:cas(k, ov, nv, xt) return native.cas(self.idx, k, ov, nv, xt) end
function DB:remove(k) return native.remove_rec(self.idx, k) end
function DB:get(k) return unpack2(native.get(self.idx, k)) end
function DB:check(k)
  local r = native.get(self.idx, k)
  if r == nil then return -1 end
  return #r[1], r[2]
end
function DB:seize(k) return unpack2(native.seize(self.idx, k)) end
function DB:set_bulk(recs, xt, atomic) return native.set_bulk(self.idx, recs, xt) end
function DB:remove_bulk(keys, atomic) return native.remove_bulk(self.idx, keys) end
function DB:get_bulk(keys, atomic) return native.get_bulk(self.idx, keys) end
function DB:clear() return native.clear(self.idx) end
function DB:synchronize(hard) return native.synchronize(self.idx, hard and true or false) end
function DB:count() return native.count(self.idx) end
function DB:size() return native.size(self.idx) end
function DB:path() return native.path(self.idx) end
function DB:status() return native.status(self.idx) end
function DB:match_prefix(p, max) return native.match(self.idx, "prefix", p, max) end
function DB:match_regex(p, max) return native.match(self.idx, "regex", p, max) end
function DB:match_similar(o, range, utf, max)
  return native.match_similar(self.idx, o, range or 1, utf and true or false, max)
end
function DB:cursor()
  local c = setmetatable({ h = native.cursor(self.idx), dbobj = self }, Cursor)
  return c
end
function DB:pairs()
  local keys = native.match(self.idx, "prefix", "", -1)
  local i = 0
  return function()
    while true do
      i = i + 1
      local k = keys[i]
      if k == nil then return nil end
      local v = native.get(self.idx, k)
      if v ~= nil then return k, v[1], v[2] end
    end
  end
end
local Error = {}
Error.__index = Error
function Error:code() return self.c end
function Error:name() return self.n end
function Error:message() return self.m end
function Error.__tostring(e) return e.c .. ": " .. e.n .. ": " .. e.m end
function DB:error()
  local r = native.error()
  return setmetatable({ c = r[1], n = r[2], m = r[3] }, Error)
end

local function wrapvisit(visit)
  local full, empty
  if type(visit) == "table" then
    full = function(k, v, xt) if visit.visit_full then return visit:visit_full(k, v, xt) end end
    empty = function(k) if visit.visit_empty then return visit:visit_empty(k) end end
  else
    full = visit
    empty = function(k) return visit(k, nil, nil) end
  end
  return function(k, v, xt)
    local r, x
    if v == nil then r, x = empty(k) else r, x = full(k, v, xt) end
    if r == kt.Visitor.REMOVE then return "r" end
    if type(r) ~= "string" and type(r) ~= "number" then return "n" end
    if type(x) ~= "number" then x = nil end
    return "s", tostring(r), x
  end
end
function DB:accept(k, visit, writable)
  return native.accept(self.idx, k, wrapvisit(visit), writable ~= false)
end
function DB:accept_bulk(keys, visit, writable)
  return native.accept_bulk(self.idx, keys, wrapvisit(visit), writable ~= false)
end
function DB:iterate(visit, writable)
  return native.iterate(self.idx, wrapvisit(visit), writable ~= false)
end
function Cursor:accept(visit, writable, step)
  return native.cur_accept(self.h, wrapvisit(visit), writable ~= false, step and true or false)
end
kt.regex = function(s, pattern, alt) return native.regex(s, pattern, alt) end
kt.hash_murmur = function(s) return native.hash(s, "murmur") end
kt.hash_fnv = function(s) return native.hash(s, "fnv") end
kt.mapdump = function(t) return native.mapdump(t) end
kt.mapload = function(s) return native.mapload(s) end
kt.arraydump = function(t) return native.arraydump(t) end
kt.arrayload = function(s) return native.arrayload(s) end

function Cursor:jump(k) return native.cur(self.h, "jump", k) end
function Cursor:jump_back(k) return native.cur(self.h, "jump_back", k) end
function Cursor:step() return native.cur(self.h, "step") end
function Cursor:step_back() return native.cur(self.h, "step_back") end
function Cursor:get_key(step)
  local r = native.cur_get(self.h, step and true or false)
  if r then return r[1] end
end
function Cursor:get_value(step)
  local r = native.cur_get(self.h, step and true or false)
  if r then return r[2] end
end
function Cursor:get(step)
  local r = native.cur_get(self.h, step and true or false)
  if r == nil then return nil end
  return r[1], r[2], r[3]
end
function Cursor:seize()
  local r = native.cur_seize(self.h)
  if r == nil then return nil end
  return r[1], r[2], r[3]
end
function Cursor:set_value(v, xt, step) return native.cur_set_value(self.h, v, xt, step and true or false) end
function Cursor:remove() return native.cur(self.h, "remove") end
function Cursor:db() return self.dbobj end
function Cursor:disable() native.cur_close(self.h) end

kt.DB = DB
kt.Cursor = Cursor
kt.dbs = {}
for i = 1, native.dbnum do
  local db = setmetatable({ idx = i - 1 }, DB)
  kt.dbs[i] = db
  kt.dbs[native.dbname(i - 1)] = db
end
kt.db = kt.dbs[1]
__kyototycoon__ = kt
"""


def _levdist(a: bytes, b: bytes, utf: bool) -> int:
    if utf:
        return levenshtein(a.decode("utf-8", "replace"), b.decode("utf-8", "replace"))
    return levenshtein(a, b)


def _to_bytes(v: Any) -> Optional[bytes]:
    """A Lua value as ktserver turns an output value into a string (None = dropped)."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    if isinstance(v, bool):
        return b"true" if v else b"false"
    if isinstance(v, int):
        return b"%d" % v
    if isinstance(v, float):
        if not math.isinf(v) and not math.isnan(v) and v == int(v):
            return b"%d" % int(v)
        return b"%f" % v
    return None


def _varnum(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def _unvarnum_pairs(data: bytes):
    off = 0
    try:
        while off < len(data):
            ksiz, off = read_varnum(data, off)
            vsiz, off = read_varnum(data, off)
            yield data[off:off + ksiz], data[off + ksiz:off + ksiz + vsiz]
            off += ksiz + vsiz
    except ProtocolError:  # a truncated number ends the list, as in KC's mapload
        return


def _unvarnum_items(data: bytes):
    out = []
    off = 0
    try:
        while off < len(data):
            size, off = read_varnum(data, off)
            out.append(data[off:off + size])
            off += size
    except ProtocolError:
        pass
    return out


def _hash(data: Any, kind: bytes) -> int:
    from kt.server.engines.kc import library

    lib = library()
    raw = data if isinstance(data, bytes) else _to_bytes(data) or b""
    fn = lib.kchashmurmur if kind == b"murmur" else lib.kchashfnv
    fn.restype = ctypes.c_uint64
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return fn(raw, len(raw)) & ((1 << 53) - 1)


def _lua_tointeger(v: Any) -> int:
    if isinstance(v, bool) or v is None:
        return 0
    if isinstance(v, (int, float)):
        return int(v) if not (math.isinf(v) or math.isnan(v)) else 0
    if isinstance(v, bytes):
        try:
            return int(float(v))
        except ValueError:
            return 0
    return 0


def _xt(v: Any) -> int:
    if v is None:
        return INT64MAX
    try:
        return int(v)
    except (TypeError, ValueError):
        return atoi(_to_bytes(v) or b"")


class _State:
    """One Lua state with the module bound to the service's databases."""

    def __init__(self, processor: ScriptProcessor, thid: int):
        self.processor = processor
        service = processor.service
        self.lua = processor.runtime_class(encoding=None, unpack_returned_tuples=False)
        lua = self.lua
        self.cursors: Dict[int, Any] = {}
        self._next_cursor = 1

        self.last_error: Tuple[int, str, str] = (0, "success", "no error")

        def dbs():
            return service.dbs

        def fail(e: KCError):
            self.last_error = (e.code, e.name, e.message)
            return False

        def miss():
            self.last_error = (7, "no record", "no record")
            return None

        def visitor_of(fn):
            def visit(key, value, xt):
                res = fn(key, value, None if value is None else xt)
                if not isinstance(res, tuple):
                    res = (res,)
                if res[0] == b"n":
                    return KEEP
                if res[0] == b"r":
                    return DROP
                newxt = res[2] if len(res) > 2 else None
                if newxt is None:
                    newxt = -xt if value is not None and xt < XTMAX else INT64MAX
                return bstr(res[1]), _xt(newxt)

            return visit

        def accept(idx, k, fn, writable):
            try:
                dbs()[idx].accept(bstr(k), visitor_of(fn), bool(writable))
                return True
            except KCError as e:
                return fail(e)

        def accept_bulk(idx, keys, fn, writable):
            try:
                dbs()[idx].accept_bulk([bstr(k) for k in keys.values()], visitor_of(fn), bool(writable))
                return True
            except KCError as e:
                return fail(e)

        def iterate(idx, fn, writable):
            cur = dbs()[idx].cursor()
            try:
                if not cur.jump():
                    return True
                visit = visitor_of(fn)
                while cur.accept(visit, bool(writable), True):
                    pass
                return True
            except KCError as e:
                return fail(e)
            finally:
                cur.close()

        def cur_accept(h, fn, writable, step):
            c = self.cursors.get(h)
            try:
                return bool(c is not None and c.accept(visitor_of(fn), bool(writable), bool(step)))
            except KCError as e:
                return fail(e)

        def regex(text, pattern, alt):
            try:
                rx = re.compile(bstr(pattern))
            except re.error:
                return None if alt is not None else False
            if alt is None:
                return rx.search(bstr(text)) is not None
            replacement = bstr(alt)
            return rx.sub(lambda m: replacement, bstr(text))

        def mapdump(t):
            out = bytearray()
            for k, v in t.items():
                kb, vb = bstr(k), bstr(v)
                out += _varnum(len(kb)) + _varnum(len(vb)) + kb + vb
            return bytes(out)

        def mapload(data):
            t = lua.table()
            for k, v in _unvarnum_pairs(bstr(data)):
                t[k] = v
            return t

        def arraydump(t):
            out = bytearray()
            for v in t.values():
                vb = bstr(v)
                out += _varnum(len(vb)) + vb
            return bytes(out)

        def arrayload(data):
            return tbl(*_unvarnum_items(bstr(data)))

        def tbl(*items):
            return lua.table(*items)

        def bstr(v) -> bytes:
            b = _to_bytes(v)
            return b if b is not None else b""

        def write(idx, op, k, v, xt):
            try:
                getattr(dbs()[idx], op.decode())(bstr(k), bstr(v), _xt(xt))
                return True
            except KCError as e:
                return fail(e)

        def increment(idx, k, n, orig, xt):
            special = {None: 0, b"try": INT64MIN, b"set": INT64MAX}
            o = special[orig] if orig in special else int(orig)
            try:
                return dbs()[idx].increment(bstr(k), int(n or 0), o, _xt(xt))
            except KCError as e:
                return fail(e) or None

        def increment_double(idx, k, n, orig, xt):
            if orig is None:
                o = 0.0
            elif orig == b"try":
                o = -math.inf
            elif orig == b"set":
                o = math.inf
            else:
                o = float(orig)
            try:
                return dbs()[idx].increment_double(bstr(k), float(n or 0), o, _xt(xt))
            except KCError as e:
                return fail(e) or None

        def cas(idx, k, ov, nv, xt):
            try:
                dbs()[idx].cas(bstr(k), _to_bytes(ov), _to_bytes(nv), _xt(xt))
                return True
            except KCError as e:
                return fail(e)

        def remove_rec(idx, k):
            try:
                dbs()[idx].remove(bstr(k))
                return True
            except KCError as e:
                return fail(e)

        def get(idx, k):
            rec = dbs()[idx].get(bstr(k))
            if rec is None:
                return miss()
            return tbl(rec[0], rec[1] if rec[1] < XTMAX else None)

        def seize(idx, k):
            rec = dbs()[idx].seize(bstr(k))
            return miss() if rec is None else tbl(rec[0], rec[1])

        def set_bulk(idx, recs, xt):
            items = {bstr(k): bstr(v) for k, v in recs.items()}
            return dbs()[idx].set_bulk(items, _xt(xt))

        def remove_bulk(idx, keys):
            return dbs()[idx].remove_bulk([bstr(k) for k in keys.values()])

        def get_bulk(idx, keys):
            out = dbs()[idx].get_bulk([bstr(k) for k in keys.values()])
            t = lua.table()
            for k, v in out.items():
                t[k] = v
            return t

        def status(idx):
            t = lua.table()
            for k, v in dbs()[idx].status().items():
                t[k.encode()] = v.encode()
            return t

        def match(idx, kind, pattern, mx):
            db = dbs()[idx]
            fn = db.match_prefix if kind == b"prefix" else db.match_regex
            try:
                return tbl(*fn(bstr(pattern), -1 if mx is None else int(mx)))
            except KCError:
                return None

        def match_similar(idx, origin, rng, utf, mx):
            keys = dbs()[idx].match_similar(bstr(origin), int(rng), bool(utf), -1 if mx is None else int(mx))
            return tbl(*keys)

        def cursor(idx):
            h = self._next_cursor
            self._next_cursor += 1
            self.cursors[h] = dbs()[idx].cursor()
            return h

        def cur(h, op, k=None):
            c = self.cursors.get(h)
            if c is None:
                return False
            op = op.decode()
            try:
                if op in ("jump", "jump_back"):
                    return bool(getattr(c, op)(None if k is None else bstr(k)))
                return bool(getattr(c, op)())
            except KCError:
                return False

        def cur_get(h, step):
            c = self.cursors.get(h)
            rec = c.get(bool(step)) if c is not None else None
            return None if rec is None else tbl(rec[0], rec[1], rec[2] if rec[2] < XTMAX else None)

        def cur_seize(h):
            c = self.cursors.get(h)
            rec = c.seize() if c is not None else None
            return None if rec is None else tbl(rec[0], rec[1], rec[2] if rec[2] < XTMAX else None)

        def cur_set_value(h, v, xt, step):
            c = self.cursors.get(h)
            return bool(c is not None and c.set_value(bstr(v), _xt(xt), bool(step)))

        def cur_close(h):
            c = self.cursors.pop(h, None)
            if c is not None:
                c.close()

        def log(kind, msg):
            logger = service.logger
            if logger is None:
                return
            text = msg.decode("utf-8", "replace")
            kinds = {b"debug": logger.debug, b"info": logger.info, b"error": logger.error}
            fn = kinds.get(kind, logger.system)
            fn(text)

        native = lua.table()
        for name, fn in [
            ("write", write), ("increment", increment), ("increment_double", increment_double),
            ("cas", cas), ("remove_rec", remove_rec), ("get", get), ("seize", seize),
            ("set_bulk", set_bulk), ("remove_bulk", remove_bulk), ("get_bulk", get_bulk),
            ("clear", lambda idx: dbs()[idx].clear() or True),
            ("synchronize", lambda idx, hard: dbs()[idx].synchronize(bool(hard)) or True),
            ("count", lambda idx: dbs()[idx].count()), ("size", lambda idx: dbs()[idx].size()),
            ("path", lambda idx: dbs()[idx].path().encode()), ("status", status), ("match", match),
            ("match_similar", match_similar), ("cursor", cursor), ("cur", cur), ("cur_get", cur_get),
            ("cur_seize", cur_seize), ("cur_set_value", cur_set_value), ("cur_close", cur_close),
            ("log", log), ("atoi", lambda s: atoi(s)), ("atoix", lambda s: atoix(s)),
            ("time", time.time), ("sleep", lambda s: time.sleep(max(0.0, float(s)))),
            ("levdist", lambda a, b, u: _levdist(bstr(a), bstr(b), bool(u))),
            ("dbname", lambda idx: dbs()[idx].name.encode("utf-8", "surrogateescape")),
            ("error", lambda: tbl(self.last_error[0], *(t.encode() for t in self.last_error[1:]))),
            ("accept", accept), ("accept_bulk", accept_bulk), ("iterate", iterate),
            ("cur_accept", cur_accept), ("regex", regex), ("hash", _hash),
            ("mapdump", mapdump), ("mapload", mapload), ("arraydump", arraydump), ("arrayload", arrayload),
        ]:
            native[name.encode()] = fn
        native[b"version"] = b"0.9.56b"
        native[b"thid"] = thid
        native[b"dbnum"] = len(service.dbs)
        lua.execute(_PRELUDE.encode(), native)
        lua.execute(processor.source)

    def call(self, name: bytes, inmap: Dict[bytes, bytes]) -> Tuple[int, Dict[bytes, bytes]]:
        lua = self.lua
        func = lua.globals()[name]
        if lua_type(lua, func) != "function":
            return RVENOIMPL, {}
        intab = lua.table()
        for k, v in inmap.items():
            intab[k] = v
        outtab = lua.table()
        try:
            rv = func(intab, outtab)
        except Exception as exc:
            logger = self.processor.service.logger
            if logger is not None:
                logger.error(f"the scripting procedure failed: {name.decode('utf-8', 'replace')}: {exc}")
            return RVEINTERNAL, {}
        rv = _lua_tointeger(rv[0] if isinstance(rv, tuple) else rv)
        out: Dict[bytes, bytes] = {}
        for k, v in outtab.items():
            kb, vb = _to_bytes(k), _to_bytes(v)
            if kb is not None and vb is not None:
                out[kb] = vb
        return rv, out


def lua_type(lua, value) -> str:
    """The Lua type name of a value returned by lupa."""
    if value is None:
        return "nil"
    t = lua.globals().type(value)
    return t.decode() if isinstance(t, bytes) else str(t)


class ScriptProcessor:
    """The ``-scr`` script, with one Lua state per calling thread."""

    def __init__(self, path: str, service, logger=None):
        self.runtime_class = _runtime_class()
        self.path = path
        self.service = service
        self.logger = logger
        with open(path, "rb") as f:
            self.source = f.read()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._thids = 0
        _State(self, 0)  # fail at start-up, not at the first call, when the script is broken

    def _state(self) -> _State:
        state = getattr(self._local, "state", None)
        if state is None:
            with self._lock:
                thid = self._thids
                self._thids += 1
            state = _State(self, thid)
            self._local.state = state
        return state

    def call(self, name: bytes, inmap: Dict[bytes, bytes]) -> Tuple[int, Dict[bytes, bytes]]:
        """Run procedure ``name``; ``(return value, output map)``."""
        return self._state().call(name, inmap)


__all__ = ["ScriptProcessor", "RVSUCCESS", "RVENOIMPL", "RVEINVALID", "RVELOGIC", "RVEINTERNAL"]
