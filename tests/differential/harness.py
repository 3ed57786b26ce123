"""Differential testing of the bundled servers against the real ones (issue 10 point 11).

A *sequence* is a seeded random list of raw requests.  Each is replayed, from a cleared
database and on fresh connections, against a real server and a bundled one; the replies are
compared byte for byte once volatile fields are blanked (HTTP ``Date``/``Server``, TT ``stat``
times and build identity).  A failing sequence is shrunk to a short reproducer by dropping
steps while the difference persists.

Reply framing is done here, per protocol, so that a server that closes the connection or
sends something unexpected is recorded (``<closed>``, ``<timeout>``) rather than hanging.
"""

from __future__ import annotations

import random
import re
import socket
import struct
from typing import Callable, List, Optional, Sequence, Tuple

from kt.protocol import kt_binary as kb
from kt.protocol import kt_rpc
from kt.protocol import tt_binary as tt

CLOSED = b"<closed>"
TIMEOUT = b"<timeout>"

# -- shared edge values ------------------------------------------------------------------------

KEYS = [b"a", b"b", b"", b"\x00", b"a\x00b", b"\xff\xfe", b"\xc3\xa9", b"k1", b"k10", b"ab"]
VALUES = [b"", b"v", b"\x00", b"\xff\xfe\x00", b"x" * 300, b"12345678", b"\t\n\r", b"\xc3\xa9t\xc3\xa9"]
NUMS = [b"0", b"1", b"-1", b"7", b"9223372036854775807", b"-9223372036854775808", b"1e3", b"abc", b"",
        b"18446744073709551616", b"0x10", b" 5"]
FLOATS = [b"0", b"1.5", b"-2.25", b"1e300", b"-1e300", b"nan", b"inf", b"-inf", b"abc", b"0.000001", b"0.3",
          b"-481.2919713439847555", b"1e-20", b"123456789.123456789"]
# only expiry times that do not depend on the current second (absolute, or beyond XTMAX)
XTS = [None, None, None, b"-1", b"-4102444800", b"1099511627775", b"-1099511627774", b"-4102444801x"]


class Wire:
    """One TCP connection with a receive buffer; replies are framed by a callback."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.addr = (host, port)
        self.timeout = timeout
        self.sock: Optional[socket.socket] = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = bytearray()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes, frame: Callable[[bytes], Optional[int]],
                 no_reply_wait: float = 0.0) -> bytes:
        """Send ``request`` and read one framed reply (``frame`` -> its length or None)."""
        sock = self._connect()
        try:
            sock.sendall(request)
        except OSError:
            self.close()
            return CLOSED
        if no_reply_wait:
            sock.settimeout(no_reply_wait)
        while True:
            end = frame(bytes(self.buf)) if self.buf else None
            if end is not None:
                reply = bytes(self.buf[:end])
                del self.buf[:end]
                sock.settimeout(self.timeout)
                return reply
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                sock.settimeout(self.timeout)
                if no_reply_wait and not self.buf:
                    return b""
                self.close()
                return TIMEOUT
            except OSError:
                chunk = b""
            if not chunk:
                reply = bytes(self.buf) + CLOSED
                self.close()
                return reply
            self.buf += chunk


# -- Kyoto Tycoon --------------------------------------------------------------------------

_RPC = {
    # procedure: list of (parameter, choices) -- None in choices means "leave it out"
    "void": [], "echo": [("_a", VALUES), ("_b", NUMS)],
    "set": [("key", KEYS), ("value", VALUES), ("xt", XTS)],
    "add": [("key", KEYS), ("value", VALUES), ("xt", XTS)],
    "replace": [("key", KEYS), ("value", VALUES), ("xt", XTS)],
    "append": [("key", KEYS), ("value", VALUES), ("xt", XTS)],
    "increment": [("key", KEYS), ("num", NUMS), ("orig", [None, b"try", b"set", b"num", b"-5", b"100"]),
                  ("xt", XTS)],
    "increment_double": [("key", KEYS), ("num", FLOATS), ("orig", [None, b"try", b"set", b"1.5"]),
                         ("xt", XTS)],
    "cas": [("key", KEYS), ("oval", [None] + VALUES), ("nval", [None] + VALUES), ("xt", XTS)],
    "remove": [("key", KEYS)], "get": [("key", KEYS)], "check": [("key", KEYS)],
    "seize": [("key", KEYS)],
    "set_bulk": [("_k1", VALUES), ("_a", VALUES), ("_\x00", VALUES), ("xt", XTS), ("atomic", [None, b""])],
    "remove_bulk": [("_a", [b""]), ("_k1", [None, b""]), ("_\xff\xfe", [None, b""]), ("atomic", [None, b""])],
    "get_bulk": [("_a", [b""]), ("_k1", [None, b""]), ("_", [None, b""]), ("atomic", [None, b""])],
    "match_prefix": [("prefix", [b"", b"a", b"k", b"\x00", b"\xff"]),
                     ("max", [None, b"-1", b"0", b"1", b"2"])],
    "match_regex": [("regex", [b"", b".", b"^a", b"[", b"a|", b"k1$", b"z\x00", b"\\d", b"(a",
                               b"[[:alpha:]]"]),
                    ("max", [None, b"-1", b"1"])],
    "match_similar": [("origin", [b"a", b"", b"\xff\xfe", b"k", b"z\x00", b"\xc3\xa9"]),
                      ("range", [None, b"0", b"1", b"2", b"-3"]), ("utf", [None, b""]),
                      ("max", [None, b"-1", b"0", b"2"])],
    "cur_jump": [("CUR", [b"1", b"2"]), ("key", [None] + KEYS)],
    "cur_jump_back": [("CUR", [b"1", b"2"]), ("key", [None] + KEYS)],
    "cur_step": [("CUR", [b"1", b"2"])], "cur_step_back": [("CUR", [b"1", b"2"])],
    "cur_set_value": [("CUR", [b"1"]), ("value", VALUES), ("step", [None, b""]), ("xt", XTS)],
    "cur_remove": [("CUR", [b"1", b"2"])], "cur_get_key": [("CUR", [b"1", b"2"]), ("step", [None, b""])],
    "cur_get_value": [("CUR", [b"1"]), ("step", [None, b""])],
    "cur_get": [("CUR", [b"1", b"2"]), ("step", [None, b""])], "cur_seize": [("CUR", [b"1"])],
    "cur_delete": [("CUR", [b"1", b"2"])],
    "play_script": [("name", [b"echo", b"get", b"incr", b"visit", b"nosuch", b"bad_name"]),
                    ("_key", KEYS), ("_value", VALUES), ("_num", NUMS)],
    "count": [], "vacuum": [("step", [None, b"0", b"2"])],
    "ulog_list": [], "ulog_remove": [("ts", [None, b"1", b"abc"])],
    "tune_replication": [("host", [None, b"127.0.0.1"]), ("port", [None, b"1"])],
    "synchronize": [("hard", [None, b""])], "nosuchprocedure": [("a", [b"1"])],
}
_DB_CHOICES = [None, None, None, b"0", b"1", b"%", b"nosuch"]

KT_SCRIPT = r"""
kt = __kyototycoon__
db = kt.db
function echo(inmap, outmap)
  for k, v in pairs(inmap) do outmap[k] = v end
  return kt.RVSUCCESS
end
function get(inmap, outmap)
  local v, xt = db:get(inmap.key or "")
  if v then outmap.value = v; outmap.xt = xt end
  return kt.RVSUCCESS
end
function incr(inmap, outmap)
  outmap.num = tostring(db:increment(inmap.key or "", inmap.num))
  return kt.RVSUCCESS
end
function run(inmap, outmap)
  local f = assert(loadstring("return " .. inmap.code))
  local r = {pcall(f)}
  outmap.ok = tostring(r[1])
  for i = 2, #r do outmap[i - 1] = r[i] end
  if not r[1] then outmap[1] = nil end  -- error texts differ between implementations
  return kt.RVSUCCESS
end
function visit(inmap, outmap)
  local ok = db:accept(inmap.key or "", function(k, v, xt)
    if v then return v .. (inmap.value or ""), inmap.num end
    return kt.Visitor.NOP
  end)
  outmap.ok = tostring(ok)
  return kt.RVSUCCESS
end
"""


_LUA_STRINGS = ['""', '"a"', '"a,b,,c"', '"\\0x\\0"', '"\\255\\254"', '"hello world"', '"0x1F"',
                '" 12k"', '"-3.5e2z"', '"%41%zz+"', '"=41"', '"YWI="', '"abc"', '"k1"']
_LUA_NUMS = ["0", "1", "-1", "7", "2^31", "2^53", "-2^63", "1/0", "0/0", "0.5", "-2.5", "1e300", "4294967296"]
_LUA_CALLS = [
    "kt.split({s})", "kt.split({s}, {s})", "kt.strstr({s}, {s})", "kt.strstr({s}, {s}, {s})",
    "kt.strfwm({s}, {s})", "kt.strbwm({s}, {s})", "kt.atoi({s})", "kt.atoix({s})", "kt.atof({s})",
    "kt.levdist({s}, {s})", "kt.levdist({s}, {s}, true)", "kt.codec({m}, {s})", "kt.bit({b}, {n}, {n})",
    "kt.hash_murmur({s})", "kt.hash_fnv({s})", "kt.regex({s}, {s})", "kt.regex({s}, {s}, {s})",
    "kt.arraydump({{{s}, {n}, {s}}})", "kt.mapdump({{[{s}] = {s}, x = {n}}})",
    "#kt.arrayload(kt.arraydump({{{s}, {s}}}))", "kt.pack({f}, {n}, {n})", "#kt.unpack({f}, {s})",
    "db:set({s}, {s}, {n})", "db:add({s}, {s})", "db:replace({s}, {s}, {n})", "db:append({s}, {s})",
    "db:increment({s}, {n}, {n})", "db:increment_double({s}, {n}, {n})", "db:cas({s}, {s}, {s})",
    "db:remove({s})", "db:get({s})", "db:check({s})", "db:seize({s})", "db:count()",
    "#db:match_prefix({s})", "#(db:match_regex({s}) or {{}})", "#db:match_similar({s}, {n})",
    "#db:match_similar({s})", "table.concat(db:match_similar({s}, {n}, true, {n}), ',')",
    "db:set_bulk({{[{s}] = {s}}}, {n})", "db:remove_bulk({{{s}, {s}}})", "db:get_bulk({{{s}}})[{s}]",
    "(function() local c = db:cursor() local r = c:jump({s}) local k, v, x = c:get(true) c:disable() "
    "return tostring(r) .. '/' .. tostring(k) .. '/' .. tostring(x) end)()",
    "(function() local c = db:cursor() local r = c:jump_back() local k = c:get_key() local s = c:step_back() "
    "c:disable() return tostring(r) .. tostring(k) .. tostring(s) end)()",
    "(function() local c = db:cursor() c:jump() local r = c:set_value({s}, {n}, true) "
    "local v = c:get_value() c:disable() return tostring(r) .. '/' .. tostring(v) end)()",
    "(function() local c = db:cursor() c:jump({s}) local k, v = c:seize() c:disable() return k end)()",
    "(function() local r = db:accept({s}, function(k, v, x) return {s}, {n} end) "
    "local v, x = db:get({s}) return tostring(r) .. '/' .. tostring(v) .. '/' .. tostring(x) end)()",
    "(function() local n = 0 local r = db:iterate(function(k, v, x) n = n + 1 "
    "if n == 1 then return kt.Visitor.REMOVE end return kt.Visitor.NOP end, true) return n end)()",
    "(function() local seen = {{}} db:accept_bulk({{{s}, {s}}}, function(k, v, x) "
    "seen[#seen + 1] = k return v end, false) return table.concat(seen, ',') end)()",
    "(function() local t = {{}} for k, v, x in db:pairs() do t[#t + 1] = k end return #t end)()",
]


def _lua_expr(rng: random.Random) -> bytes:
    template = rng.choice(_LUA_CALLS)
    out = []
    i = 0
    while i < len(template):
        if template.startswith("{{", i) or template.startswith("}}", i):
            out.append(template[i])
            i += 2
            continue
        if template[i] == "{":
            j = template.index("}", i)
            kind = template[i + 1:j]
            out.append(rng.choice({"s": _LUA_STRINGS, "n": _LUA_NUMS,
                                   "m": ['"url"', '"~url"', '"base"', '"~base"', '"quote"', '"~quote"',
                                         '"hex"', '"~hex"', '"zlib"', '"deflate"', '"gzip"', '"nope"'],
                                   "b": ['"and"', '"or"', '"xor"', '"not"', '"left"', '"right"', '"x"'],
                                   "f": ['"NnC"', '"w*"', '"c*"', '"s2"', '"iI"', '"d"', '"Z"']}[kind]))
            i = j + 1
            continue
        out.append(template[i])
        i += 1
    return "".join(out).encode()


def kt_step(rng: random.Random) -> bytes:
    """One random KT request: RPC (POST or GET), REST, binary, or a Lua expression via play_script."""
    roll = rng.random()
    if roll > 0.9:
        body = kt_rpc.encode_tsv([(b"name", b"run"), (b"_code", _lua_expr(rng))], "B")
        return (b"POST /rpc/play_script HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: text/tab-separated-values; colenc=B\r\nContent-Length: %d\r\n\r\n"
                % len(body)) + body
    if roll < 0.12:
        return _kt_rest(rng)
    if roll < 0.22:
        return _kt_binary(rng)
    proc = rng.choice(sorted(_RPC))
    pairs: List[Tuple[bytes, bytes]] = []
    for name, choices in _RPC[proc]:
        value = rng.choice(choices)
        if value is not None:
            pairs.append((name.encode("latin-1"), value))
    db = rng.choice(_DB_CHOICES)
    if db is not None:
        pairs.append((b"DB", db))
    if rng.random() < 0.25:
        query = kt_rpc.encode_www_form(pairs)
        return b"GET /rpc/%s?%s HTTP/1.1\r\nHost: x\r\n\r\n" % (proc.encode(), query)
    colenc = rng.choice(["B", "U", "Q", None]) if all(b"\t" not in k + v and b"\n" not in k + v
                                                     for k, v in pairs) else rng.choice(["B", "U", "Q"])
    body = kt_rpc.encode_tsv(pairs, colenc)
    ctype = "text/tab-separated-values" + (f"; colenc={colenc}" if colenc else "")
    return (b"POST /rpc/%s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (proc.encode(), ctype.encode(), len(body))) + body


def _kt_rest(rng: random.Random) -> bytes:
    key = kt_rpc.url_encode(rng.choice(KEYS))
    method = rng.choice([b"GET", b"HEAD", b"PUT", b"DELETE"])
    db = rng.choice([b"", b"/0", b"/1", b"/%25"])
    path = db + b"/" + key
    if method == b"PUT":
        value = rng.choice(VALUES)
        xt = rng.choice([None, b"-4102444800", b"-1"])
        extra = b"" if xt is None else b"X-Kt-Xt: " + xt + b"\r\n"
        mode = rng.choice([None, b"set", b"add", b"replace"])
        extra += b"" if mode is None else b"X-Kt-Mode: " + mode + b"\r\n"
        head = b"PUT %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n" % (path, extra, len(value))
        return head + value
    return b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path)


def _kt_binary(rng: random.Random) -> bytes:
    kind = rng.choice(["set", "get", "remove", "script"])
    keys = rng.sample(KEYS, rng.randint(0, 3))
    dbidx = rng.choice([0, 0, 1, 5])
    if kind == "set":
        xt = rng.choice([(1 << 40) - 1, 1 << 62, -4102444800])  # relative xt would depend on the second
        return kb.encode_set_bulk([(dbidx, k, rng.choice(VALUES), xt) for k in keys])
    if kind == "get":
        return kb.encode_get_bulk([(dbidx, k) for k in keys])
    if kind == "remove":
        return kb.encode_remove_bulk([(dbidx, k) for k in keys])
    name = rng.choice([b"echo", b"get", b"incr", b"visit", b"nosuch"])
    records = [(k, rng.choice(VALUES)) for k in keys]
    if name in (b"get", b"incr", b"visit"):
        records = [(b"key", rng.choice(KEYS)), (b"num", rng.choice(NUMS)), (b"value", rng.choice(VALUES))]
    return kb.encode_play_script(name, records)


_HTTP_END = re.compile(rb"\r\n\r\n")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)


def kt_frame(request: bytes) -> Callable[[bytes], Optional[int]]:
    """The framing of the reply to ``request``."""
    parsers = {kb.MAGIC_SET_BULK: kb.parse_set_bulk_reply, kb.MAGIC_REMOVE_BULK: kb.parse_remove_bulk_reply,
               kb.MAGIC_GET_BULK: kb.parse_get_bulk_reply, kb.MAGIC_PLAY_SCRIPT: kb.parse_play_script_reply}
    if request and request[0] in parsers:
        parser = parsers[request[0]]

        def frame_binary(buf: bytes) -> Optional[int]:
            if buf[:1] == kb.ERROR_REPLY:
                return 1
            try:
                parsed = parser(buf)
            except Exception:
                return len(buf)
            return None if parsed is None else parsed[1]

        return frame_binary
    head_only = request.startswith(b"HEAD ")

    def frame_http(buf: bytes) -> Optional[int]:
        m = _HTTP_END.search(buf)
        if m is None:
            return None
        length = _CONTENT_LENGTH.search(buf[:m.end()])
        end = m.end() + (0 if head_only or length is None else int(length.group(1)))
        return end if len(buf) >= end else None

    return frame_http


_VOLATILE_HTTP = re.compile(rb"\r\n(Date|Server): [^\r]*", re.I)


_LOCATION = re.compile(rb"\r\nLocation: http://[^/\r]*/", re.I)


def kt_normalize(reply: bytes) -> bytes:
    reply = _LOCATION.sub(rb"\r\nLocation: http://-/", reply)  # the server's own port
    return _VOLATILE_HTTP.sub(rb"\r\n\1: -", reply)


def kt_reset(wire: Wire) -> None:
    for db in (b"0", b"1"):
        body = kt_rpc.encode_tsv([(b"DB", db)], None)
        head = b"POST /rpc/clear HTTP/1.1\r\nHost: x\r\nContent-Type: text/tab-separated-values\r\n"
        wire.exchange(head + b"Content-Length: %d\r\n\r\n" % len(body) + body, kt_frame(b"POST"))


# -- Tokyo Tyrant --------------------------------------------------------------------------

def _i32(n: int) -> bytes:
    return struct.pack(">i", n)


_MISC = [b"put", b"putkeep", b"putcat", b"putdup", b"out", b"get", b"putlist", b"outlist", b"getlist",
         b"getpart", b"iterinit", b"iternext", b"sync", b"optimize", b"vanish", b"error", b"regex", b"range",
         b"nosuch", b""]


_MC_KEYS = [b"a", b"b", b"k1", b"n"]


def _tt_text(rng: random.Random) -> bytes:
    """A memcached or HTTP request (ttserver's other front-ends on the same port)."""
    k = rng.choice(_MC_KEYS)
    v = rng.choice([b"", b"v", b"12", b"x" * 40])
    kind = rng.choice(["set", "add", "replace", "append", "prepend", "get", "gets", "delete", "incr",
                       "decr", "flush_all", "version", "bogus", "http_get", "http_head", "http_put",
                       "http_delete", "http_options"])
    if kind in ("set", "add", "replace", "append", "prepend"):
        return b"%s %s %d 0 %d\r\n%s\r\n" % (kind.encode(), k, rng.choice([0, 7]), len(v), v)
    if kind in ("get", "gets"):
        return kind.encode() + b" " + b" ".join(rng.sample(_MC_KEYS, rng.randint(1, 3))) + b"\r\n"
    if kind == "delete":
        return b"delete " + k + b"\r\n"
    if kind in ("incr", "decr"):
        num = rng.choice([b"1", b"5", b"0", b"18446744073709551615", b"x", b"-3"])
        return b"%s %s %s\r\n" % (kind.encode(), k, num)
    if kind == "flush_all":
        return b"flush_all\r\n"
    if kind == "version":
        return b"version\r\n"
    if kind == "bogus":
        return b"bogus command\r\n" + tt.encode_rnum()
    method = kind[5:].upper().encode()
    if method == b"PUT":
        extra = rng.choice([b"", b"X-TT-PDMODE: 1\r\n", b"X-TT-PDMODE: 2\r\n"])
        return b"PUT /%s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s" % (k, extra, len(v), v)
    if method == b"OPTIONS":
        return b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
    return b"%s /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, k)


TT_SCRIPT = r"""
function run(key, value)
  local f = assert(loadstring("return " .. key))
  local r = {pcall(f)}
  if not r[1] then return "error" end
  local out = {}
  for i = 2, #r do
    local v = r[i]
    if type(v) == "table" then
      local parts = {}
      for j = 1, #v do parts[j] = tostring(v[j]) end
      v = "{" .. table.concat(parts, ",") .. "}"
    end
    out[#out + 1] = tostring(v)
  end
  return "ok:" .. table.concat(out, "|")
end
"""

_TT_LUA_CALLS = [
    "_split({s})", "_split({s}, {s})", "_strstr({s}, {s})", "_strstr({s}, {s}, {s})", "_regex({s}, {s})",
    "_regex({s}, {s}, {s})", "_dist({s}, {s})", "_dist({s}, {s}, true)", "_ucs({s})", "_hash({h}, {s})",
    "_codec({c}, {s})", "_bit({b}, {n}, {n})", "_pack({f}, {n}, {n})", "_unpack({f}, {s})",
    "_isect({{{s}, {s}}}, {{{s}}})", "_union({{{s}}}, {{{s}, {s}}})", "_put({s}, {s})", "_putkeep({s}, {s})",
    "_putcat({s}, {s})", "_out({s})", "_get({s})", "_vsiz({s})", "_addint({s}, {n})", "_adddouble({s}, {n})",
    "_fwmkeys({s})", "_fwmkeys({s}, {n})", "_rnum()", "_misc({mi}, {{{s}, {s}}})", "_stashput({s}, {s})",
    "_stashget({s})", "_stashout({s})",
]
_TT_LUA_CHOICES = {
    "s": _LUA_STRINGS,
    "n": ["0", "1", "-1", "7", "2^31", "2^53", "-2^63", "1/0", "0.5", "-2.5", "1e300", "4294967296"],
    "h": ['"md5"', '"sha1"', '"crc32"', '"murmur"', '"nope"'],
    "c": ['"url"', '"~url"', '"base"', '"~base"', '"quote"', '"~quote"', '"hex"', '"~hex"', '"pack"',
          '"~pack"', '"tcbs"', '"~tcbs"', '"deflate"', '"~deflate"', '"gzip"', '"xml"', '"~xml"', '"nope"'],
    "b": ['"and"', '"or"', '"xor"', '"not"', '"left"', '"right"'],
    "f": ['"NnC"', '"w*"', '"c*"', '"s2"', '"iI"', '"d"'],
    "mi": ['"put"', '"get"', '"out"', '"putlist"', '"getlist"', '"outlist"', '"iterinit"', '"nope"'],
}


def _tt_lua(rng: random.Random) -> bytes:
    template = rng.choice(_TT_LUA_CALLS)
    out, i = [], 0
    while i < len(template):
        if template.startswith("{{", i) or template.startswith("}}", i):
            out.append(template[i])
            i += 2
        elif template[i] == "{":
            j = template.index("}", i)
            out.append(rng.choice(_TT_LUA_CHOICES[template[i + 1:j]]))
            i = j + 1
        else:
            out.append(template[i])
            i += 1
    return tt.encode_ext(b"run", "".join(out).encode())


def tt_step(rng: random.Random) -> bytes:
    """One random TT request: binary (sizes occasionally hostile), memcached/HTTP text, or a Lua
    expression through the ``run`` extension function."""
    roll = rng.random()
    if roll < 0.1:
        return _tt_lua(rng)
    if roll < 0.3:
        return _tt_text(rng)
    k, v = rng.choice(KEYS), rng.choice(VALUES)
    kind = rng.choice(["put", "putkeep", "putcat", "putshl", "putnr", "out", "get", "mget", "vsiz",
                       "iterinit", "iternext", "fwmkeys", "addint", "adddouble", "vanish", "rnum", "misc",
                       "misc", "stat", "hostile"])
    if kind == "put":
        return tt.encode_put(k, v)
    if kind == "putkeep":
        return tt.encode_putkeep(k, v)
    if kind == "putcat":
        return tt.encode_putcat(k, v)
    if kind == "putshl":
        return b"\xc8\x13" + _i32(len(k)) + _i32(len(v)) + _i32(rng.choice([0, 1, 3, 1000])) + k + v
    if kind == "putnr":
        return tt.encode_putnr(k, v)
    if kind == "out":
        return tt.encode_out(k)
    if kind == "get":
        return tt.encode_get(k)
    if kind == "mget":
        return tt.encode_mget(rng.sample(KEYS, rng.randint(0, 4)))
    if kind == "vsiz":
        return tt.encode_vsiz(k)
    if kind == "iterinit":
        return tt.encode_iterinit()
    if kind == "iternext":
        return tt.encode_iternext()
    if kind == "fwmkeys":
        return tt.encode_fwmkeys(rng.choice([b"", b"a", b"k", b"\x00"]), rng.choice([-1, 0, 1, 5]))
    if kind == "addint":
        return b"\xc8\x60" + _i32(len(k)) + _i32(rng.choice([0, 1, -1, 2**31 - 1, -2**31, 7])) + k
    if kind == "adddouble":
        return b"\xc8\x61" + _i32(len(k)) + struct.pack(">qq", rng.choice([0, 1, -1, 2**62]),
                                                        rng.choice([0, 5 * 10**11, -1])) + k
    if kind == "vanish":
        return tt.encode_vanish()
    if kind == "rnum":
        return tt.encode_rnum()
    if kind == "stat":
        return tt.encode_stat()
    if kind == "misc":
        name = rng.choice(_MISC)
        args = [rng.choice(KEYS + VALUES + [b"1", b"-1", b"0", b"a.*"]) for _ in range(rng.randint(0, 4))]
        return tt.encode_misc(name, args, rng.choice([0, 0, 1]))
    # hostile headers: negative sizes / widths, item sizes; ttserver counts and goes on
    return rng.choice([
        b"\xc8\x10" + _i32(-1) + _i32(1),
        b"\xc8\x13" + _i32(1) + _i32(1) + _i32(-1) + b"kv\r\n",
        b"\xc8\x31" + _i32(2) + _i32(1) + b"a" + _i32(-1),
        b"\xc8\x90" + _i32(3) + _i32(0) + _i32(2) + b"get" + _i32(1) + b"a" + _i32(-5),
        b"\xc8\x30" + _i32(-7),
    ])


def _text_frame(request: bytes) -> Callable[[bytes], Optional[int]]:
    if request.startswith(b"bogus"):  # no answer to the unknown line; the rnum after it answers
        return lambda buf: 9 if len(buf) >= 9 else None
    if request.split(b" ", 1)[0] in (b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"POST"):
        return kt_frame(request)
    multi = request.startswith((b"get ", b"gets "))

    def frame(buf: bytes) -> Optional[int]:
        if multi:
            end = buf.find(b"END\r\n")
            if end >= 0:
                return end + 5
            if buf.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")) and b"\r\n" in buf:
                return buf.index(b"\r\n") + 2
            return None
        end = buf.find(b"\r\n")
        return None if end < 0 else end + 2

    return frame


def tt_frame(request: bytes) -> Callable[[bytes], Optional[int]]:
    if request[:1] != bytes([tt.MAGIC]):
        return _text_frame(request)
    cmd = request[1] if len(request) > 1 else 0
    one = {tt.CMD_PUT, tt.CMD_PUTKEEP, tt.CMD_PUTCAT, tt.CMD_PUTSHL, tt.CMD_OUT, tt.CMD_ITERINIT,
           tt.CMD_VANISH, tt.CMD_SYNC, tt.CMD_OPTIMIZE, tt.CMD_COPY, tt.CMD_RESTORE, tt.CMD_SETMST}

    def need(buf: bytes, n: int) -> Optional[int]:
        return n if len(buf) >= n else None

    def frame(buf: bytes) -> Optional[int]:
        code = buf[0]
        if cmd in one:
            return 1
        if cmd in (tt.CMD_GET, tt.CMD_ITERNEXT, tt.CMD_EXT):
            if code != 0:
                return 1
            if len(buf) < 5:
                return None
            return need(buf, 5 + struct.unpack_from(">I", buf, 1)[0])
        if cmd == tt.CMD_VSIZ or cmd == tt.CMD_ADDINT:
            return 1 if code != 0 else need(buf, 5)
        if cmd == tt.CMD_ADDDOUBLE:
            return 1 if code != 0 else need(buf, 17)
        if cmd in (tt.CMD_RNUM, tt.CMD_SIZE):
            return 1 if code != 0 else need(buf, 9)
        if cmd == tt.CMD_STAT:
            if code != 0:
                return 1
            if len(buf) < 5:
                return None
            return need(buf, 5 + struct.unpack_from(">I", buf, 1)[0])
        if cmd in (tt.CMD_MGET, tt.CMD_FWMKEYS, tt.CMD_MISC):
            if code != 0 and cmd != tt.CMD_MISC:
                return 1
            if len(buf) < 5:
                return None
            count = struct.unpack_from(">I", buf, 1)[0]
            pos = 5
            per = 2 if cmd == tt.CMD_MGET else 1
            for _ in range(count):
                if len(buf) < pos + 4 * per:
                    return None
                sizes = struct.unpack_from(">" + "I" * per, buf, pos)
                pos += 4 * per + sum(sizes)
            return need(buf, pos)
        return len(buf)

    return frame


_VOLATILE_STAT = {b"time", b"pid", b"ru_user", b"ru_sys", b"ru_real", b"loadavg", b"memsize", b"memrss",
                  b"version", b"libver", b"os", b"fd", b"bigend", b"sid", b"size", b"cnt_stat"}


_VOLATILE_TT_HEADERS = re.compile(
    rb"\r\n(X-TT-(?:TIME|PID|LOADAVG|MEMSIZE|MEMRSS|RU_REAL|RU_USER|RU_SYS|SIZE|FD|OS|VERSION|LIBVER|SID"
    rb"|BIGEND)): [^\r]*", re.I)


def tt_normalize(request: bytes, reply: bytes) -> bytes:
    if request[:1] != bytes([tt.MAGIC]):
        return _VOLATILE_TT_HEADERS.sub(rb"\r\n\1: -", kt_normalize(reply))
    if request[1:2] != bytes([tt.CMD_STAT]) or not reply.startswith(b"\x00") or len(reply) < 5:
        return reply
    lines = []
    for line in reply[5:].split(b"\n"):
        name = line.split(b"\t", 1)[0]
        lines.append(name + b"\t-" if name in _VOLATILE_STAT else line)
    return b"\x00" + b"\n".join(lines)


def tt_reset(wire: Wire) -> None:
    wire.exchange(tt.encode_vanish(), tt_frame(tt.encode_vanish()))


# -- running and shrinking -----------------------------------------------------------------

class Protocol:
    def __init__(self, step, frame, normalize, reset):
        self.step, self.frame, self.normalize, self.reset = step, frame, normalize, reset


KT = Protocol(kt_step, kt_frame, lambda req, rep: kt_normalize(rep), kt_reset)
TT = Protocol(tt_step, tt_frame, tt_normalize, tt_reset)


def sequence(proto: Protocol, seed: int, length: int = 14) -> List[bytes]:
    rng = random.Random(seed)
    return [proto.step(rng) for _ in range(rng.randint(1, length))]


def replay(proto: Protocol, addr: Tuple[str, int], steps: Sequence[bytes]) -> List[bytes]:
    wire = Wire(*addr)
    try:
        proto.reset(wire)
        out = []
        for request in steps:
            no_reply = 0.05 if request[:2] == bytes([tt.MAGIC, tt.CMD_PUTNR]) else 0.0
            reply = wire.exchange(request, proto.frame(request), no_reply_wait=no_reply)
            out.append(proto.normalize(request, reply))
        return out
    finally:
        wire.close()


def first_difference(proto: Protocol, real: Tuple[str, int], bundled: Tuple[str, int],
                     steps: Sequence[bytes]) -> Optional[int]:
    a, b = replay(proto, real, steps), replay(proto, bundled, steps)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def shrink(proto: Protocol, real, bundled, steps: List[bytes]) -> List[bytes]:
    """Drop steps (from the end first) while the replay still differs."""
    i = first_difference(proto, real, bundled, steps)
    if i is None:
        return steps
    steps = steps[: i + 1]
    changed = True
    while changed and len(steps) > 1:
        changed = False
        for j in range(len(steps) - 2, -1, -1):
            trial = steps[:j] + steps[j + 1:]
            if first_difference(proto, real, bundled, trial) is not None:
                steps = trial
                changed = True
    return steps


def describe(proto: Protocol, real, bundled, steps: List[bytes]) -> str:
    a, b = replay(proto, real, steps), replay(proto, bundled, steps)
    lines = []
    for request, x, y in zip(steps, a, b):
        lines.append(f"request {request!r}\n  real    {x!r}\n  bundled {y!r}")
    return "\n".join(lines)
