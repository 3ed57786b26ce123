"""ktserver's ``-scr`` Lua as scripts meet it: bundled == real, the real answer written here.

Each test runs against the bundled server always and against ``$KTSERVER`` when it is set.
The script below is our own; its procedures exercise one behaviour each (issue 10).
"""

from __future__ import annotations

import pytest

from fidelity import FLAVOURS, KTWire, require_lua, served_with_script, start_kt

require_lua()

SCRIPT = r"""
kt = __kyototycoon__
db = kt.db

-- the xt a read gives for a record without expiry
function getxt(inmap, outmap)
  db:set(inmap.key, "v")
  local v, xt = db:get(inmap.key)
  outmap.get = tostring(xt)
  local cur = db:cursor()
  cur:jump(inmap.key)
  local k, cv, cxt = cur:get()
  outmap.cur_get = tostring(cxt)
  k, cv, cxt = cur:seize()
  outmap.cur_seize = tostring(cxt)
  cur:disable()
  db:set(inmap.key, "v")
  v, xt = db:seize(inmap.key)
  outmap.seize = tostring(xt)
  db:set(inmap.key, "v")
  db:accept(inmap.key, function(k, v, xt) outmap.visit = tostring(xt) end, false)
  outmap.check = tostring(select("#", db:check(inmap.key)))
  return kt.RVSUCCESS
end

-- a visitor returning its new xt as a number or a numeric string
function visitxt(inmap, outmap)
  db:set(inmap.key, "v")
  local xt = inmap.xt
  if inmap.num then xt = tonumber(xt) end
  db:accept(inmap.key, function(k, v, old) return "w", xt end)
  local v, got = db:get(inmap.key)
  outmap.value = v
  outmap.xt = tostring(got)
  return kt.RVSUCCESS
end

-- db:increment with its arguments passed as strings (lua_tonumber: non-numbers are 0)
function incr(inmap, outmap)
  if inmap.reset then db:remove(inmap.key) end
  local r = db:increment(inmap.key, inmap.num, inmap.orig)
  outmap.num = tostring(r)
  return kt.RVSUCCESS
end

-- kt.regex (POSIX ERE through kc::Regex) and kt.levdist
function rx(inmap, outmap)
  if inmap.alt then
    outmap.r = kt.regex(inmap.s, inmap.p, inmap.alt)
  else
    outmap.r = tostring(kt.regex(inmap.s, inmap.p))
  end
  return kt.RVSUCCESS
end
function lev(inmap, outmap)
  outmap.d = kt.levdist(inmap.a, inmap.b, inmap.utf ~= nil)
  return kt.RVSUCCESS
end
function dbrx(inmap, outmap)
  db:set("rx\0tail", "v")
  db:set("rx.\255", "v")
  local keys = db:match_regex(inmap.p)
  if keys == nil then
    outmap.r = "nil"
  else
    table.sort(keys)
    outmap.r = table.concat(keys, "|")
  end
  return kt.RVSUCCESS
end

-- a Lua chunk sent by the test (loadstring is plain Lua 5.1): one expression per "_code"
function run(inmap, outmap)
  local f = assert(loadstring("return " .. inmap.code))
  outmap.r = f()
  return kt.RVSUCCESS
end

-- kt mapreduce: word counts over the values of keys under a prefix
function wordcount(inmap, outmap)
  db:set("mr:1", "b a")
  db:set("mr:2", "a c\0a")
  db:set("mr:3", "")
  local order = {}
  local calls = 0
  local function map(key, value, emit)
    if string.sub(key, 1, 3) ~= "mr:" then return true end
    for word in string.gmatch(value, "[^ ]+") do emit(word, 1) end
    return true
  end
  local function reduce(key, iter)
    local n = 0
    while true do
      local v = iter()
      if v == nil then break end
      n = n + tonumber(v)
    end
    outmap[key] = n
    table.insert(order, key)
    return true
  end
  local function proc(emit)
    calls = calls + 1
    return true
  end
  outmap.ok = tostring(db:mapreduce(map, reduce, "", 0, 4, 1024, 64, nil, proc))
  outmap.order = table.concat(order, ",")
  outmap.calls = calls
  outmap.fail = tostring(db:mapreduce(function() return nil end, reduce))
  return kt.RVSUCCESS
end

-- cur:set_value passes (step, xt) swapped in myscript.cc
function cursv(inmap, outmap)
  db:set("csv", "old")
  local c = db:cursor()
  c:jump("csv")
  outmap.r = tostring(c:set_value("new", 0))
  outmap.same = tostring(c:get_key())
  c:disable()
  local v, xt = db:get("csv")
  outmap.v = v
  outmap.soon = tostring(xt - kt.time() <= 2)
  return kt.RVSUCCESS
end

-- what a script can see of the host
function globals(inmap, outmap)
  outmap.python = type(rawget(_G, "python"))
  outmap.loaded = type(package.loaded["python"])
  return kt.RVSUCCESS
end
"""


@pytest.fixture(scope="module", params=FLAVOURS)
def kt_lua(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("lua")
    yield from served_with_script(start_kt, request.param, directory, "fidelity.lua", SCRIPT)


@pytest.fixture
def wire(kt_lua):
    w = KTWire(kt_lua)
    yield w
    w.close()


def test_reads_give_xtmax_for_records_without_expiry(wire):
    status, out = wire.rpc("play_script", name="getxt", _key="noexp")
    assert status == 200
    # ktserver: 1099511627775 (TimedDB::XTMAX) from get, cursor get/seize, seize and visitors;
    # check answers only the size.
    assert out == {
        b"_get": b"1099511627775", b"_cur_get": b"1099511627775", b"_cur_seize": b"1099511627775",
        b"_seize": b"1099511627775", b"_visit": b"1099511627775", b"_check": b"1",
    }


@pytest.mark.parametrize("num", ["", "1"])
def test_visitor_xt_as_number_or_numeric_string(wire, num):
    params = {"num": num} if num else {}
    status, out = wire.rpc("play_script", name="visitxt", _key="vx", _xt="-2000000000", **params)
    assert (status, out) == (200, {b"_value": b"w", b"_xt": b"2000000000"})
    status, out = wire.rpc("play_script", name="visitxt", _key="vx", _xt=" 0x10 ", **params)
    # Lua's tonumber takes hexadecimal and surrounding spaces: 16 s from now
    assert status == 200 and out[b"_value"] == b"w" and out[b"_xt"] != b"1099511627775"
    status, out = wire.rpc("play_script", name="visitxt", _key="vx", _xt="soon")
    # not a number: the record keeps its (absent) expiry
    assert (status, out) == (200, {b"_value": b"w", b"_xt": b"1099511627775"})


def test_scripts_cannot_reach_python(wire):
    assert wire.rpc("play_script", name="globals") == (200, {b"_python": b"nil", b"_loaded": b"nil"})


BROKEN = r"""
kt = __kyototycoon__
function before(inmap, outmap)
  outmap.ok = "yes"
  return kt.RVSUCCESS
end
local v = jit.version
function after(inmap, outmap)
  return kt.RVSUCCESS
end
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_script_failing_while_loading_does_not_stop_the_server(flavour, tmp_path):
    path = tmp_path / "broken.lua"
    path.write_text(BROKEN)
    with start_kt(flavour, args=["-scr", str(path)]) as server:
        wire = KTWire(server)
        # ktserver logs "could not load a script file" and serves what was defined so far
        assert wire.rpc("play_script", name="before") == (200, {b"_ok": b"yes"})
        assert wire.rpc("play_script", name="after") == (501, {b"ERROR": b"no such scripting procedure"})
        assert wire.rpc("set", key="k", value="v") == (200, {})
        wire.close()


@pytest.mark.parametrize(
    "steps",
    [
        # (num, orig) -> tostring of the result; each list starts from a missing key
        [("1", "try", "1"), ("1", "try", "2")],  # "try" is 0 in Lua: +-math.huge are the modes
        [("2", "-inf", "nil"), ("2", "inf", "2"), ("3", "inf", "3"), ("4", "", "7")],
        [("9223372036854775807", "", "nil")],  # 2^63 as a double: INT64MIN, the failure value
        [("-9223372036854775808", "", "nil")],
        [("1", "-9223372036854775808", "nil"), ("1", "1e400", "1")],
        [("0x10", "  5  ", "21"), ("1.9", "x", "22")],
    ],
)
def test_lua_increment_argument_conversion(wire, steps):
    for i, (num, orig, expected) in enumerate(steps):
        params = {"_key": "lincr", "_num": num, "_orig": orig}
        if i == 0:
            params["_reset"] = "1"
        assert wire.rpc("play_script", name="incr", **params) == (200, {b"_num": expected.encode()})


@pytest.mark.parametrize(
    "s, p, alt, expected",
    [
        ("abc", "b", None, "true"),
        ("abc", "[", None, "false"),  # does not compile: no match
        ("abd", "\\d", None, "true"),  # POSIX has no \d: it is "d"
        ("a+b", "a+b", None, "false"),
        ("\xff", ".", None, "true"),  # the C locale: any byte
        ("hello world", "o", "0", "hell0 w0rld"),
        ("hello world", "(l+)", "[$1]", "he[ll]o wor[l]d"),
        ("hello", "l", "<$&$x>", "he<lx><lx>o"),  # $& the match, $x a plain x
        ("hello", "[", "x", "hello"),  # does not compile: unchanged
        ("hello", "", "x", "hello"),  # an empty pattern replaces nothing
        ("aaa", "a*", "-", "-"),
        ("abab", "^ab", "X", "Xab"),
    ],
)
def test_lua_regex_is_posix_ere(wire, s, p, alt, expected):
    params = {"_s": s.encode("latin-1"), "_p": p}
    if alt is not None:
        params["_alt"] = alt
    assert wire.rpc("play_script", name="rx", **params) == (200, {b"_r": expected.encode("latin-1")})


@pytest.mark.parametrize(
    "a, b, utf, expected",
    [
        (b"kitten", b"sitting", False, b"3"),
        (b"\xc3\xa9", b"e", False, b"2"),
        (b"\xc3\xa9", b"e", True, b"1"),
        (b"\xff\xfe", b"", True, b"0"),  # Kyoto Cabinet drops 0xFE/0xFF
        (b"a\x00b", b"ab", True, b"1"),  # NUL is a character
    ],
)
def test_lua_levdist(wire, a, b, utf, expected):
    params = {"_a": a, "_b": b}
    if utf:
        params["_utf"] = b""
    assert wire.rpc("play_script", name="lev", **params) == (200, {b"_d": expected})


def test_lua_db_match_regex(wire):
    # keys are C strings to regexec, returned whole; an invalid pattern gives nil
    assert wire.rpc("play_script", name="dbrx", _p="^rx") == (200, {b"_r": b"rx\x00tail|rx.\xff"})
    assert wire.rpc("play_script", name="dbrx", _p="tail") == (200, {b"_r": b""})
    assert wire.rpc("play_script", name="dbrx", _p="[") == (200, {b"_r": b"nil"})


@pytest.mark.parametrize(
    "code, expected",
    [
        # kt.codec: Kyoto Cabinet's codecs, zlib at level 6 / memLevel 9
        ('kt.codec("hex", "\\001\\171\\255")', b"01abff"),  # Lua escapes are decimal
        ('kt.codec("~hex", " 01 7 9ad")', b"\x01\x07\x9a\x0d"),  # a lone digit is a byte
        ('kt.codec("url", "a b/~\\195\\169")', b"a%20b%2f~%c3%a9"),
        ('kt.codec("~url", "a%20b%2F")', b"a b/"),
        ('kt.codec("base", "ab")', b"YWI="),
        ('kt.codec("~base", "YWI=")', b"ab"),
        ('kt.codec("quote", "a=b\\001")', b"a=3Db=01"),
        ('kt.codec("hex", kt.codec("zlib", "hello hello"))', b"cb48cdc9c957c800910000"),  # + NUL
        ('kt.codec("hex", kt.codec("deflate", "hello hello"))', b"789ccb48cdc9c957c800910019910449"),
        ('kt.codec("hex", kt.codec("gzip", "hello hello"))',
         b"1f8b0800000000000003cb48cdc9c957c800910040a62d010b000000"),
        ('kt.codec("~deflate", kt.codec("deflate", "round trip"))', b"round trip"),
        ('tostring(kt.codec("~gzip", "not gzip"))', b"nil"),
        ('tostring(kt.codec("rot13", "x"))', b"nil"),
        # kt.bit on uint32; an unknown mode answers the number
        ('kt.bit("and", 12, 10)', b"8"),
        ('kt.bit("OR", 12, 3)', b"15"),
        ('kt.bit("xor", 12, 10)', b"6"),
        ('kt.bit("not", 0)', b"4294967295"),
        ('kt.bit("left", 1, 31)', b"2147483648"),
        ('kt.bit("right", 256, 4)', b"16"),
        ('kt.bit("sideways", 5, 1)', b"5"),
        # kt.pack / kt.unpack
        ('kt.codec("hex", kt.pack("NnC", 1, 2, 3))', b"00000001000203"),
        ('kt.codec("hex", kt.pack("N*", {1, 2}))', b"0000000100000002"),
        ('table.concat(kt.unpack("N*", "\\0\\0\\0\\1\\0\\0\\0\\2"), ",")', b"1,2"),
        ('kt.codec("hex", kt.pack("w", 300))', b"822c"),
        # from 2^56 on, 'w' writes nine bytes; -1, NaN and inf convert like C on x86-64
        ('kt.codec("hex", kt.pack("w*", -1, 0/0, 1/0))', b"81ffffffffffffff7f" b"818080808080808000" b"00"),
        ('kt.atoix("-3.5e2z")', b"-4035225266123964416"),  # a fraction times 2^60
        ('kt.atoix(" 1.5 k")', b"1536"),
        # mapdump/arraydump keep strings and numbers only (numbers as %lld / %.6f)
        ('kt.codec("hex", kt.mapdump({a = true}))', b""),
        ('kt.codec("hex", kt.arraydump({1.5, "x", true}))', b"08312e35303030303001" + b"78"),
        ('kt.mapload(kt.mapdump({k = 7})).k', b"7"),
        ('tostring(#kt.arrayload(kt.arraydump({"a", "", "b"})))', b"3"),
        # hashes keep 48 bits
        ('kt.hash_murmur("hello")', b"254910939360214"),
        ('kt.hash_fnv("hello")', b"117791150636571"),
        # a cursor refuses to set an empty value (an error, not false)
        ('pcall(function() local c = db:cursor() c:jump() return c:set_value("") end)', b"false"),
        # string helpers read C strings
        ('kt.strfwm("abc", "\\0x")', b"true"),
        ('kt.strbwm("abc", "c\\0x")', b"true"),
        ('kt.strstr("a\\0b", "b")', b"0"),
        ('kt.strstr("aXbXc", "X", "--")', b"a--b--c"),
        # kt.atof is kc::atof, not Lua's tonumber
        ('kt.atof("0x10")', b"0"),
        ('kt.atof(" 1.5e2xyz")', b"150"),
        ('kt.atof("0.000001") * 1e15', b"1000000000"),
        ('kt.atof("Infinity") > 1e308', b"true"),
        # how numbers leave a procedure (myscript.cc's StringBuilder)
        ("1/0", b"-9223372036854775808"),
        ("0.5", b"0.500000"),
        ("2^53", b"9007199254740992"),
        ("true", b"true"),
    ],
)
def test_lua_module_functions(wire, code, expected):
    assert wire.rpc("play_script", name="run", _code=code) == (200, {b"_r": expected})


def test_lua_mapreduce(wire):
    assert wire.rpc("play_script", name="wordcount") == (200, {
        b"_a": b"2", b"_b": b"1", b"_c\x00a": b"1", b"_ok": b"true", b"_order": b"a,b,c\x00a",
        b"_calls": b"3", b"_fail": b"false"})


def test_lua_cursor_set_value_swaps_step_and_xt_like_ktserver(wire):
    # xt 0 means "do not step", and the record expires within a second (step false -> xt 0)
    assert wire.rpc("play_script", name="cursv") == (
        200, {b"_r": b"true", b"_same": b"csv", b"_v": b"new", b"_soon": b"true"})
